"""Texts to the vectors routers and indexes consume: dense (float32, unit rows) plus sparse BM25."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from routerforge.embed.base import Embedder, SparseVector
from routerforge.embed.sparse import Bm25Encoder
from routerforge.embed.text import BoilerplateStripper
from routerforge.errors import ValidationError

SparseKind = Literal["document", "query"]
_PROGRESS_CHUNK = 256


def encode(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    sparse: bool = True,
    progress: bool = False,
    stripper: BoilerplateStripper | None = None,
    bm25: Bm25Encoder | None = None,
    sparse_kind: SparseKind = "document",
) -> tuple[np.ndarray, list[SparseVector] | None]:
    """Dense ``(len(texts), embedder.dim)`` float32 vectors and, when ``sparse``, BM25 vectors.

    ``stripper`` (fitted on the training prompts) removes shared boilerplate before both encodings.
    ``sparse_kind="document"`` gives term-frequency vectors for indexing, ``"query"`` the vectors to
    search with. ``progress`` shows a progress bar (dense vectors are made in chunks of 256).
    """
    if isinstance(texts, str):
        raise ValidationError("encode() takes a sequence of texts, not one string; wrap it in a list.")
    prepared = stripper.apply_many(texts) if stripper is not None else list(texts)
    dense = _dense(prepared, embedder, progress)
    if dense.shape != (len(prepared), embedder.dim):
        raise ValidationError(
            f"Embedder {embedder.id} returned shape {dense.shape} for {len(prepared)} texts of dim {embedder.dim}."
        )
    if not sparse:
        return dense, None
    encoder = bm25 or Bm25Encoder()
    vectors = (
        encoder.encode_queries(prepared) if sparse_kind == "query" else encoder.encode_documents(prepared)
    )
    return dense, vectors


def _dense(texts: list[str], embedder: Embedder, progress: bool) -> np.ndarray:
    if not progress or len(texts) <= _PROGRESS_CHUNK:
        return np.asarray(embedder.embed(texts), dtype=np.float32)
    from tqdm.auto import tqdm

    # Chunks of similar length pad less; the order is restored at the end.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc="embedding", unit="text") as bar:
        for start in range(0, len(order), _PROGRESS_CHUNK):
            rows = order[start : start + _PROGRESS_CHUNK]
            out[rows] = np.asarray(embedder.embed([texts[i] for i in rows]), dtype=np.float32)
            bar.update(len(rows))
    return out
