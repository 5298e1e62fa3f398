"""Sparse BM25 vectors for hybrid search, compatible with Qdrant's IDF modifier.

The index applies IDF (``Modifier.Idf``) from its own document counts, so a document vector carries
only the BM25 term-frequency part, ``tf·(k+1) / (tf + k·(1 − b + b·len/avg_len))``, and a query
vector carries 1.0 per distinct term. Tokenisation (lowercasing, English stop words, Snowball
stemming) and the term hashing come from ``qdrant_edge.Bm25``, the same code Qdrant runs, so vectors
made here match vectors made by Qdrant's own BM25 inference.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from routerforge.embed.base import SparseVector
from routerforge.errors import ArtifactError, ConfigError

BM25_FORMAT_VERSION = 1
_COUNT_K = 1.2


def _load_bm25(k: float, b: float, avg_len: float, language: str) -> Any:
    try:
        from qdrant_edge import Bm25, Bm25Config
    except ImportError as exc:
        raise ConfigError(
            f"BM25 sparse vectors need qdrant-edge-py: {exc}.",
            hint="Install it with `pip install qdrant-edge-py`.",
        ) from exc
    try:
        return Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language=language))
    except ValueError as exc:
        raise ConfigError(
            f"Invalid BM25 settings (k={k}, b={b}, avg_len={avg_len}, language={language!r}): {exc}"
        ) from exc


def _convert(vec: Any) -> SparseVector:
    indices = list(vec.indices)
    values = list(vec.values)
    if any(a >= b for a, b in itertools.pairwise(indices)):
        pairs = sorted(zip(indices, values, strict=True))
        indices = [i for i, _ in pairs]
        values = [v for _, v in pairs]
    return SparseVector(indices=indices, values=values)


class Bm25Encoder:
    """Documents and queries to :class:`SparseVector` (BM25 term weights; IDF is the index's job).

    ``avg_len`` is the corpus's average document length in tokens (after stop-word removal).
    :meth:`fit` measures it on a corpus; the default 256 is Qdrant's. The state is plain JSON
    (:meth:`to_dict`), so a router can save it with its artifact.
    """

    def __init__(
        self, *, k: float = 1.2, b: float = 0.75, avg_len: float = 256.0, language: str = "english"
    ) -> None:
        if k < 0 or not 0.0 <= b <= 1.0 or avg_len <= 0:
            raise ConfigError(
                f"Invalid BM25 parameters: k={k} (>= 0), b={b} (in [0, 1]), avg_len={avg_len} (> 0)."
            )
        self.k = k
        self.b = b
        self.avg_len = avg_len
        self.language = language
        self._model: Any = None
        self._counter: Any = None
        self._lock = threading.Lock()

    def _bm25(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load_bm25(self.k, self.b, self.avg_len, self.language)
        return self._model

    def fit(self, texts: Iterable[str], *, sample: int = 5000) -> Bm25Encoder:
        """Set ``avg_len`` to the mean token count of ``texts`` (an even sample of at most ``sample``)."""
        corpus = list(texts)
        step = max(1, math.ceil(len(corpus) / max(1, sample)))
        lengths = [self.token_count(t) for t in corpus[::step]]
        nonempty = [n for n in lengths if n > 0]
        if nonempty:
            self.avg_len = float(sum(nonempty) / len(nonempty))
            self._model = None
        return self

    def token_count(self, text: str) -> int:
        """Number of indexed tokens (stop words removed) in ``text``.

        With ``b = 0`` each document weight is ``w = tf·(k+1)/(tf+k)``, which inverts exactly to
        ``tf = w·k / (k + 1 − w)``; their sum is the document length BM25 uses.
        """
        if self._counter is None:
            self._counter = _load_bm25(_COUNT_K, 0.0, 1.0, self.language)
        total = 0.0
        for w in self._counter.embed_document(text).values:
            total += w * _COUNT_K / (_COUNT_K + 1.0 - w)
        return round(total)

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        model = self._bm25()
        return [_convert(model.embed_document(t)) for t in texts]

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        model = self._bm25()
        return [_convert(model.embed_query(t)) for t in texts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": BM25_FORMAT_VERSION,
            "k": self.k,
            "b": self.b,
            "avg_len": self.avg_len,
            "language": self.language,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bm25Encoder:
        if data.get("format_version") != BM25_FORMAT_VERSION:
            raise ArtifactError(
                f"BM25 state has format version {data.get('format_version')!r}; expected {BM25_FORMAT_VERSION}.",
                hint="Retrain the router with this routerforge version.",
            )
        try:
            return cls(
                k=float(data["k"]),
                b=float(data["b"]),
                avg_len=float(data["avg_len"]),
                language=data["language"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"BM25 state is malformed: {exc}") from exc


def idf(n_docs: int, doc_freq: int) -> float:
    """Qdrant's IDF: ``ln(1 + (N − df + 0.5) / (df + 0.5))`` (for scoring outside an index)."""
    return math.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))
