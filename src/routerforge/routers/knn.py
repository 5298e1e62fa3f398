"""``knn``: Pulze-style nearest-neighbour router over a vector index (Qdrant Edge or a Qdrant server).

How a prediction is made (origin: Pulze's v1 knn router; RouteLLM's kNN baseline):

1. **Retrieve.** ``mode="hybrid"``: dense (cosine) and BM25 sparse prefetches of ``k × multiplier``
   coarse hits each, fused by reciprocal rank fusion; ``mode="dense"``: the ``k`` nearest by cosine.
2. **Re-rank** the coarse hits (hybrid only) down to ``k`` neighbours: ``rerank="fusion"`` keeps the
   RRF order; ``rerank="cosine"`` orders them by exact cosine (numpy, on the stored vectors); a
   cross-encoder can be plugged in with :meth:`KnnRouter.set_reranker` (off by default: no
   cross-encoder weights ship with routerforge, and nothing is downloaded).
3. **Average.** Each neighbour i gets a weight from its exact cosine similarity s_i:
   ``weighting="softmax"``: w_i = exp((s_i − 1) / temperature) (a perfect match weighs 1);
   ``weighting="power"``: w_i = max(s_i, 0) ** power. Per model j, ignoring neighbours whose score
   for j is missing: ``pred_j = (Σ w_i·score_ij + α·mean_j) / (Σ w_i + α)``, where ``mean_j`` is
   model j's training mean and ``α = shrinkage`` a pseudo-count: with few or dissimilar neighbours
   the prediction falls back to the global mean.
4. **Duplicates.** ``duplicates="exact"`` (default): a prompt whose text is identical to training
   prompts gets their (averaged) recorded scores directly, for every model they have; the neighbour
   estimate fills models they lack. ``duplicates="neighbour"``: treat them like any neighbour.

Dense search is exact by default (``exact=True``: a deterministic scan, ~1 ms per query on 10,000
prompts); ``exact=False`` builds an HNSW graph at fit and load time (faster on very large sets, ~97 %
recall at k=100, and the graph — hence the neighbours — can differ between two builds, so between a fitted
router and the same router loaded back).

The router works without sparse vectors: fitted on a dense-only batch it behaves as ``mode="dense"``,
and a hybrid router asked about a dense-only batch queries dense only.

**The index** (``index`` settings, given by :meth:`KnnRouter.configure_index`): ``kind: edge`` (default)
builds a Qdrant Edge shard in a private temporary directory; the router directory keeps only the vectors
(``knn_dense.npy``, the BM25 document vectors in CSR arrays for hybrid, the first 300 characters of each
text for ``explain``) and ``load`` rebuilds the shard from them (a live shard pre-allocates ~100 MiB of
files, so it is never saved). ``kind: qdrant`` builds the collection named by ``configure_index`` on the
server at ``index.url`` (replacing a collection of that name); ``router.json`` records the collection name
only (never the URL or the key), and the router reconnects through the settings given after ``load``.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np

from routerforge.config import IndexSettings
from routerforge.data.records import text_hash
from routerforge.embed.base import SparseVector
from routerforge.errors import ArtifactError, ConfigError, ValidationError
from routerforge.index.base import Hit, Index
from routerforge.index.factory import open_index
from routerforge.index.qdrant import is_collection_name
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.registry import register_router

KnnMode = Literal["hybrid", "dense"]
Weighting = Literal["softmax", "power"]
Rerank = Literal["fusion", "cosine"]
Duplicates = Literal["exact", "neighbour"]

SHARD_DIR = "shard"  # the Edge shard's folder inside the router's private temporary directory
EXPLAIN_TEXT_CHARS = 300  # the part of each training text kept for explain()
# A reranker takes the query text and the candidates' training positions and returns one relevance
# score per candidate (higher = more relevant); the k best are kept.
Reranker = Callable[[str, np.ndarray], np.ndarray]


@register_router
class KnnRouter(Router):
    """Similarity-weighted, shrunk average of the scores of the nearest evaluated prompts."""

    name = "knn"

    def __init__(
        self,
        *,
        k: int = 100,
        multiplier: int = 10,
        mode: KnnMode = "dense",
        rerank: Rerank = "fusion",
        weighting: Weighting = "power",
        temperature: float = 0.1,
        power: float = 1.0,
        shrinkage: float = 1.0,
        duplicates: Duplicates = "exact",
        exact: bool = True,
        random_state: int = 0,
    ) -> None:
        self.k = k
        self.multiplier = multiplier
        self.mode = mode
        self.rerank = rerank
        self.weighting = weighting
        self.temperature = temperature
        self.power = power
        self.shrinkage = shrinkage
        self.duplicates = duplicates
        self.exact = exact
        self.random_state = random_state

    def uses_sparse(self) -> bool:
        mode = getattr(self, "effective_mode_", None) if self.is_fitted else self.mode
        return mode == "hybrid"

    # -- checks -------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        problems = []
        if int(self.k) < 1:
            problems.append(f"k must be ≥ 1 (got {self.k})")
        if int(self.multiplier) < 1:
            problems.append(f"multiplier must be ≥ 1 (got {self.multiplier})")
        if self.mode not in ("hybrid", "dense"):
            problems.append(f"mode must be 'hybrid' or 'dense' (got {self.mode!r})")
        if self.rerank not in ("fusion", "cosine"):
            problems.append(f"rerank must be 'fusion' or 'cosine' (got {self.rerank!r})")
        if self.weighting not in ("softmax", "power"):
            problems.append(f"weighting must be 'softmax' or 'power' (got {self.weighting!r})")
        if not float(self.temperature) > 0:
            problems.append(f"temperature must be > 0 (got {self.temperature})")
        if not float(self.power) >= 0:
            problems.append(f"power must be ≥ 0 (got {self.power})")
        if not float(self.shrinkage) >= 0:
            problems.append(f"shrinkage must be ≥ 0 (got {self.shrinkage})")
        if self.duplicates not in ("exact", "neighbour"):
            problems.append(f"duplicates must be 'exact' or 'neighbour' (got {self.duplicates!r})")
        if problems:
            raise ConfigError("Invalid knn parameters: " + "; ".join(problems) + ".")

    # -- the index ----------------------------------------------------------------------------------
    def configure_index(self, settings: IndexSettings | None, *, name: str = "router") -> None:
        """Where ``fit`` builds the index: ``settings.kind`` ``edge`` (default, also for ``None``) or
        ``qdrant`` (collection ``name`` at ``settings.url``, replaced at each fit). On a router loaded from a
        Qdrant-backed directory it connects to the saved collection now (``ArtifactError`` without
        ``kind: qdrant`` + ``url``; ``IndexUnavailableError`` when the server cannot be reached)."""
        self._index_settings = settings
        self._index_name = name
        if self.is_fitted and getattr(self, "_index", None) is None and self.index_kind_ == "qdrant":
            self._connect()

    def _build_index(self, settings: IndexSettings) -> None:
        """A new index holding the training vectors (fit, and load of an Edge-backed router)."""
        workdir = Path(tempfile.mkdtemp(prefix="routerforge-knn-")) if settings.kind == "edge" else None
        try:
            index = open_index(
                settings,
                dim=self.dense_.shape[1],
                path=None if workdir is None else workdir / SHARD_DIR,
                collection=self.collection_ or "router",
                exact=bool(self.exact),
                mode="replace",
                wal=False,  # a scratch shard: rebuilt from the saved vectors, never recovered
                search_threads=1,  # one segment: search in the caller's thread, no pool hand-off
            )
        except BaseException:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            raise
        self._attach(index, workdir)
        index.upsert(range(self.dense_.shape[0]), self.dense_, self._sparse_vectors())
        if not self.exact:
            index.optimize()  # build the HNSW graph (exact search scans and needs none)

    def _connect(self) -> None:
        """Open the saved Qdrant collection of a loaded router, with the settings of ``configure_index``."""
        settings: IndexSettings | None = getattr(self, "_index_settings", None)
        if settings is None or settings.kind != "qdrant" or not settings.url:
            raise ArtifactError(
                f"This knn router keeps its neighbours in the Qdrant collection {self.collection_!r}, "
                "and no Qdrant server is configured.",
                hint="Set index.kind: qdrant and index.url (ROUTERFORGE_INDEX__KIND, ROUTERFORGE_INDEX__URL) "
                "to the server it was trained with, or retrain it with index.kind: edge.",
            )
        assert self.collection_ is not None
        index = open_index(
            settings,
            dim=self.dense_.shape[1],
            collection=self.collection_,
            exact=bool(self.exact),
            mode="open",
        )
        count = index.count()
        if count != self.dense_.shape[0]:
            index.close()
            raise ArtifactError(
                f"The Qdrant collection {self.collection_!r} at {settings.url} holds {count} points, but this "
                f"router was trained on {self.dense_.shape[0]}.",
                hint="The collection changed after training (another router of the same directory name?): retrain.",
            )
        self._attach(index, None)

    def _attach(self, index: Index, workdir: Path | None) -> None:
        self._index: Index | None = index
        self._finalizer = weakref.finalize(self, _cleanup, index, workdir)

    def _release(self) -> None:
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        self._index = None

    def _live_index(self) -> Index:
        index = getattr(self, "_index", None)
        if index is not None:
            return index
        if self.index_kind_ == "qdrant" and not getattr(self, "_closed", False):
            self._connect()  # loaded without configure_index: explains what to set
            assert self._index is not None
            return self._index
        raise ValidationError("The knn router's index has been closed.", hint="Load the router again.")

    def _sparse_vectors(self) -> list[SparseVector] | None:
        if self.sparse_ is None:
            return None
        indptr, indices, values = self.sparse_
        ind, val, bounds = indices.tolist(), values.tolist(), indptr.tolist()  # one conversion, then slices
        return [SparseVector(ind[a:b], val[a:b]) for a, b in pairwise(bounds)]

    def _text(self, pos: int) -> str:
        start, end = self.text_offsets_[pos], self.text_offsets_[pos + 1]
        return bytes(self.text_bytes_[start:end]).decode("utf-8", "replace")

    # -- fit ----------------------------------------------------------------------------------------
    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        self._check_params()
        self._release()
        self._closed = False
        self.dense_ = np.ascontiguousarray(X.dense, dtype=np.float32)
        self.scores_ = scores.astype(np.float32)
        self.global_mean_ = np.nanmean(scores, axis=0)
        self.hashes_ = np.array([text_hash(t) for t in X.texts], dtype="S32")
        self.effective_mode_: KnnMode = self.mode if X.sparse is not None else "dense"
        self._dup_index = _hash_positions(self.hashes_)
        self.text_bytes_, self.text_offsets_ = _pack_texts(X.texts)
        self.sparse_: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if X.sparse is not None and self.effective_mode_ == "hybrid":
            self.sparse_ = _pack_sparse(X.sparse)
        settings: IndexSettings = getattr(self, "_index_settings", None) or IndexSettings()
        self.index_kind_ = settings.kind
        self.collection_: str | None = (
            getattr(self, "_index_name", "router") if settings.kind == "qdrant" else None
        )
        self._build_index(settings)

    def set_reranker(self, reranker: Reranker | None) -> None:
        """Install a cross-encoder (or any) reranker for the coarse hits; ``None`` removes it.

        Not saved with the router (it is code, not data): install it again after ``load``.
        """
        self._reranker = reranker

    # -- predict ------------------------------------------------------------------------------------
    def _predict(self, X: PromptBatch) -> np.ndarray:
        ids, sims = self.neighbours(X)
        pred = self._aggregate(ids, sims)
        if self.duplicates == "exact":
            self._apply_duplicates(X.texts, pred)
        return pred

    def neighbours(self, X: PromptBatch) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` neighbours of every prompt: training positions ``(n, k)`` (−1 = none) and their exact
        cosine similarities ``(n, k)``, best first (in the order the re-ranking chose)."""
        self._check_fitted()
        hits = self._query(X)
        return self._select(X, hits)

    def _query(self, X: PromptBatch) -> list[list[Hit]]:
        index = self._live_index()
        dense = np.asarray(X.dense, dtype=np.float32)
        k = min(int(self.k), int(self.n_train_))
        if self.effective_mode_ == "hybrid" and X.sparse is not None:
            coarse = min(k * int(self.multiplier), int(self.n_train_))
            if self.rerank == "cosine" or getattr(self, "_reranker", None) is not None:
                limit = 2 * coarse  # every fused candidate: the re-ranker sees the whole coarse set
            else:
                limit = k + max(10, k // 5)  # a margin so RRF ties at the k-th place resolve by id
            return index.query(
                dense,
                X.sparse,
                limit=min(limit, 2 * coarse, int(self.n_train_)),
                mode="hybrid",
                prefetch_limit=coarse,
            )
        # a margin past k so that neighbours tied at the k-th place are all seen and resolved by id in
        # ``_select`` (the index's own order among equal scores is not stable between two fits)
        limit = min(k + max(10, k // 5), int(self.n_train_))
        return index.query(dense, limit=limit, mode="dense")

    def _select(self, X: PromptBatch, hits: Sequence[Sequence[Hit]]) -> tuple[np.ndarray, np.ndarray]:
        n = len(hits)
        k = min(int(self.k), int(self.n_train_))
        ids = np.full((n, k), -1, dtype=np.int64)
        sims = np.zeros((n, k), dtype=np.float64)
        dense = np.asarray(X.dense, dtype=np.float32)
        reranker: Reranker | None = getattr(self, "_reranker", None)
        for row, row_hits in enumerate(hits):
            cand = np.fromiter((h.id for h in row_hits), dtype=np.int64, count=len(row_hits))
            if cand.size == 0:
                continue
            cos = self.dense_[cand] @ dense[row]
            if reranker is not None:
                order = np.argsort(-np.asarray(reranker(X.texts[row], cand), dtype=np.float64), kind="stable")
            elif self.effective_mode_ == "hybrid" and self.rerank == "fusion":
                fused = np.fromiter((h.score for h in row_hits), dtype=np.float64, count=len(row_hits))
                order = np.lexsort((cand, -fused))  # RRF score, ties by id
            else:
                order = np.lexsort((cand, -cos))
            order = order[:k]
            ids[row, : order.size] = cand[order]
            sims[row, : order.size] = cos[order]
        return ids, sims

    def _weights(self, sims: np.ndarray) -> np.ndarray:
        if self.weighting == "softmax":
            w = np.exp((np.minimum(sims, 1.0) - 1.0) / float(self.temperature))
        else:
            w = np.maximum(sims, 0.0) ** float(self.power)
        return w

    def _aggregate(self, ids: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """Shrunk similarity-weighted average of the neighbours' scores, per model (NaN cells ignored)."""
        w = np.where(ids >= 0, self._weights(sims), 0.0)  # (n, k)
        neigh = self.scores_[np.maximum(ids, 0)].astype(np.float64)  # (n, k, m)
        observed = ~np.isnan(neigh)
        wm = w[:, :, None] * observed
        num = (wm * np.where(observed, neigh, 0.0)).sum(axis=1)
        den = wm.sum(axis=1)
        alpha = float(self.shrinkage)
        mean = self.global_mean_[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            pred = (num + alpha * mean) / (den + alpha)
        # no usable neighbour and no shrinkage: fall back to the global mean
        return np.where(den + alpha > 0, pred, mean)

    def _apply_duplicates(self, texts: Sequence[str], pred: np.ndarray) -> None:
        dup = getattr(self, "_dup_index", None)
        if dup is None:
            dup = self._dup_index = _hash_positions(self.hashes_)
        for row, text in enumerate(texts):
            rows = dup.get(text_hash(text).encode("ascii"))
            if rows is None:
                continue
            block = self.scores_[rows].astype(np.float64)
            seen = ~np.isnan(block).all(axis=0)
            if seen.any():
                pred[row, seen] = np.nanmean(block[:, seen], axis=0)

    # -- explain ------------------------------------------------------------------------------------
    def _explain(self, X: PromptBatch) -> Explanation:
        assert self.models_ is not None
        hits = self._query(X)
        ids, sims = self._select(X, hits)
        pred = self._aggregate(ids, sims)
        duplicate = False
        if self.duplicates == "exact":
            before = pred.copy()
            self._apply_duplicates(X.texts, pred)
            duplicate = not np.array_equal(before, pred, equal_nan=True)
        weights = self._weights(sims[0])
        neighbours = []
        for pos, sim, weight in zip(ids[0], sims[0], weights, strict=True):
            if pos < 0:
                continue
            row = self.scores_[pos]
            neighbours.append(
                {
                    "prompt_id": int(pos),
                    "text": self._text(int(pos)),
                    "similarity": round(float(sim), 4),
                    "weight": round(float(weight), 4),
                    "scores": {
                        m: (None if np.isnan(v) else float(v)) for m, v in zip(self.models_, row, strict=True)
                    },
                }
            )
        predicted = {m: float(np.clip(v, 0, 1)) for m, v in zip(self.models_, pred[0], strict=True)}
        best = max(predicted, key=lambda m: predicted[m])
        top = neighbours[0]["similarity"] if neighbours else float("nan")
        if duplicate:
            reason = f"knn: the prompt was evaluated before; its recorded scores were used. {best} best."
        else:
            reason = (
                f"knn: {len(neighbours)} nearest evaluated prompts ({self.effective_mode_} retrieval, "
                f"top similarity {top:.2f}) predict {best} best ({predicted[best]:.3f})."
            )
        return Explanation(
            router=self.name,
            reason=reason,
            details={
                "predicted": predicted,
                "global_mean": {m: float(v) for m, v in zip(self.models_, self.global_mean_, strict=True)},
                "shrinkage": float(self.shrinkage),
                "mode": self.effective_mode_,
                "duplicate": duplicate,
                "neighbours": neighbours[:10],
                "n_neighbours": len(neighbours),
            },
        )

    # -- save / load --------------------------------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "knn_dense": self.dense_,
            "knn_scores": self.scores_,
            "knn_global_mean": np.asarray(self.global_mean_, dtype=np.float64),
            "knn_hashes": self.hashes_,
            "knn_text_bytes": self.text_bytes_,
            "knn_text_offsets": self.text_offsets_,
        }
        if self.sparse_ is not None:
            arrays.update(zip(SPARSE_ARRAYS, self.sparse_, strict=True))
        return arrays

    def _state_meta(self) -> dict[str, Any]:
        index: dict[str, Any] = {"kind": self.index_kind_}
        if self.collection_ is not None:
            index["collection"] = self.collection_
        return {"effective_mode": self.effective_mode_, "index": index}

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self._check_params()
        self._closed = False
        self.dense_ = arrays["knn_dense"].astype(np.float32, copy=False)
        self.scores_ = arrays["knn_scores"].astype(np.float32, copy=False)
        self.global_mean_ = arrays["knn_global_mean"].astype(np.float64, copy=False)
        self.hashes_ = arrays["knn_hashes"]
        self.text_bytes_ = arrays["knn_text_bytes"]
        self.text_offsets_ = arrays["knn_text_offsets"]
        self.effective_mode_ = "hybrid" if meta.get("effective_mode", self.mode) == "hybrid" else "dense"
        self.sparse_ = None
        if self.effective_mode_ == "hybrid":
            indptr, indices, values = (arrays[name] for name in SPARSE_ARRAYS)
            self.sparse_ = (indptr, indices, values)
        _check_arrays(self, directory)
        self._dup_index = _hash_positions(self.hashes_)
        # router.json is data: its index reference is checked, and names no path at all
        ref = meta.get("index")
        kind = ref.get("kind") if isinstance(ref, dict) else None
        if kind not in ("edge", "qdrant"):
            raise ArtifactError(
                f"{directory} holds a knn router without a valid index reference ({ref!r}).",
                hint="Retrain it with this version of routerforge.",
            )
        assert isinstance(ref, dict)
        self.index_kind_ = kind
        self.collection_ = None
        if kind == "qdrant":
            name = ref.get("collection")
            if not is_collection_name(name):
                raise ArtifactError(
                    f"{directory} names an invalid Qdrant collection {name!r}; refusing it.",
                    hint="Retrain the router (collection names are letters, digits, '_', '.', '-').",
                )
            self.collection_ = name
            self._index = None  # connected by configure_index (the server's URL is not in the directory)
        else:
            self._build_index(IndexSettings())

    def close(self) -> None:
        """Close the index: the Qdrant connection, or the private Edge shard (deleted)."""
        self._closed = True
        self._release()


SPARSE_ARRAYS = ("knn_sparse_indptr", "knn_sparse_indices", "knn_sparse_values")


def _pack_texts(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The first characters of each text as UTF-8 bytes in one array, plus ``n + 1`` offsets."""
    encoded = [t[:EXPLAIN_TEXT_CHARS].encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def _pack_sparse(vectors: Sequence[SparseVector]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse vectors as CSR arrays (indptr int64, indices uint32, values float32: Qdrant's own types)."""
    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum([len(v.indices) for v in vectors], out=indptr[1:])
    indices = np.fromiter((i for v in vectors for i in v.indices), dtype=np.uint32, count=int(indptr[-1]))
    values = np.fromiter((x for v in vectors for x in v.values), dtype=np.float32, count=int(indptr[-1]))
    return indptr, indices, values


def _check_offsets(offsets: np.ndarray, n: int, size: int) -> bool:
    return (
        offsets.ndim == 1
        and offsets.shape[0] == n + 1
        and np.issubdtype(offsets.dtype, np.integer)
        and int(offsets[0]) == 0
        and int(offsets[-1]) == size
        and bool(np.all(np.diff(offsets) >= 0))
    )


def _check_arrays(router: KnnRouter, directory: Path) -> None:
    """Shapes that agree with each other (arrays are data: a mismatch is an ``ArtifactError``)."""
    n, m = router.n_train_, len(router.models_ or [])
    problems = []
    if router.dense_.ndim != 2 or router.dense_.shape[0] != n:
        problems.append(f"knn_dense has shape {router.dense_.shape}, expected ({n}, dim)")
    if router.scores_.shape != (n, m):
        problems.append(f"knn_scores has shape {router.scores_.shape}, expected ({n}, {m})")
    if router.hashes_.shape != (n,):
        problems.append(f"knn_hashes has shape {router.hashes_.shape}, expected ({n},)")
    if router.text_bytes_.dtype != np.uint8 or not _check_offsets(
        router.text_offsets_, n, router.text_bytes_.size
    ):
        problems.append("knn_text_bytes / knn_text_offsets do not match")
    if router.sparse_ is not None:
        indptr, indices, values = router.sparse_
        if indices.shape != values.shape or not _check_offsets(indptr, n, indices.size):
            problems.append("the knn_sparse_* arrays do not match")
    if problems:
        raise ArtifactError(
            f"{directory} holds inconsistent knn arrays: {'; '.join(problems)}.", hint="Retrain it."
        )


def _hash_positions(hashes: np.ndarray) -> dict[bytes, list[int]]:
    out: dict[bytes, list[int]] = {}
    for i, h in enumerate(hashes.tolist()):
        out.setdefault(h, []).append(i)
    return out


def _cleanup(index: Index, workdir: Path | None) -> None:
    index.close()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
