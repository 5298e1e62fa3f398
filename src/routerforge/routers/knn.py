"""``knn``: Pulze-style nearest-neighbour router over a Qdrant Edge shard.

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
prompts); ``exact=False`` builds an HNSW graph at fit time (faster on very large sets, ~97 % recall at
k=100, and the graph — hence the neighbours — can differ between two fits).

The router works without sparse vectors: fitted on a dense-only batch it behaves as ``mode="dense"``,
and a hybrid router asked about a dense-only batch queries dense only.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from routerforge.data.records import text_hash
from routerforge.errors import ConfigError, ValidationError
from routerforge.index.base import Hit
from routerforge.index.edge import EdgeIndex, copy_shard
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.registry import register_router

KnnMode = Literal["hybrid", "dense"]
Weighting = Literal["softmax", "power"]
Rerank = Literal["fusion", "cosine"]
Duplicates = Literal["exact", "neighbour"]

SHARD_DIR = "shard"
PAYLOAD_TEXT_CHARS = 300
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

    # -- fit ----------------------------------------------------------------------------------------
    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        self._check_params()
        self._release()
        dense = np.ascontiguousarray(X.dense, dtype=np.float32)
        self.dense_ = dense
        self.scores_ = scores.astype(np.float32)
        self.global_mean_ = np.nanmean(scores, axis=0)
        self.hashes_ = np.array([text_hash(t) for t in X.texts], dtype="S32")
        self.effective_mode_: KnnMode = self.mode if X.sparse is not None else "dense"
        self._dup_index = _hash_positions(self.hashes_)
        workdir = Path(tempfile.mkdtemp(prefix="routerforge-knn-"))
        index = EdgeIndex(workdir / SHARD_DIR, dense.shape[1], exact=bool(self.exact))
        self._attach(index, workdir)
        payloads = [
            {"prompt_id": i, "dataset": "", "text": text[:PAYLOAD_TEXT_CHARS]}
            for i, text in enumerate(X.texts)
        ]
        sparse = X.sparse if self.effective_mode_ == "hybrid" else None
        index.upsert(list(range(len(X))), dense, sparse, payloads)
        if not self.exact:
            index.optimize()  # build the HNSW graph (exact search scans and needs none)

    def _attach(self, index: EdgeIndex, workdir: Path) -> None:
        self._index: EdgeIndex | None = index
        self._workdir = workdir
        self._finalizer = weakref.finalize(self, _cleanup, index, workdir)

    def _release(self) -> None:
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        self._index = None

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

    def _query(self, X: PromptBatch, *, with_payload: bool = False) -> list[list[Hit]]:
        index = self._index
        if index is None:
            raise ValidationError("The knn router's index has been closed.", hint="Load the router again.")
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
                with_payload=with_payload,
            )
        return index.query(dense, limit=k, mode="dense", with_payload=with_payload)

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
        hits = self._query(X, with_payload=True)
        payload = {h.id: (h.payload or {}) for h in hits[0]}
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
                    "text": payload.get(int(pos), {}).get("text", ""),
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
        return {
            "knn_dense": self.dense_,
            "knn_scores": self.scores_,
            "knn_global_mean": np.asarray(self.global_mean_, dtype=np.float64),
            "knn_hashes": self.hashes_,
        }

    def _state_meta(self) -> dict[str, Any]:
        return {"effective_mode": self.effective_mode_, "shard": SHARD_DIR}

    def _save_extra(self, directory: Path) -> None:
        index = self._index
        if index is None:
            raise ValidationError("The knn router's index has been closed; cannot save it.")
        target = directory / SHARD_DIR
        if target.resolve() == index.path.resolve():
            return
        if target.exists():
            shutil.rmtree(target)
        index.copy_to(target)

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self._check_params()
        self.dense_ = arrays["knn_dense"].astype(np.float32, copy=False)
        self.scores_ = arrays["knn_scores"].astype(np.float32, copy=False)
        self.global_mean_ = arrays["knn_global_mean"].astype(np.float64, copy=False)
        self.hashes_ = arrays["knn_hashes"]
        self.effective_mode_ = "hybrid" if meta.get("effective_mode", self.mode) == "hybrid" else "dense"
        self._dup_index = _hash_positions(self.hashes_)
        source = directory / str(meta.get("shard", SHARD_DIR))
        if not source.is_dir():
            raise KeyError(f"the index shard {source}")
        # A Qdrant Edge shard can be opened by one process at a time (it locks its WAL): work on a
        # private copy so the artifact stays read-only and can be loaded by several processes.
        workdir = Path(tempfile.mkdtemp(prefix="routerforge-knn-"))
        copy_shard(source, workdir / SHARD_DIR)
        self._attach(EdgeIndex(workdir / SHARD_DIR, self.dense_.shape[1], exact=bool(self.exact)), workdir)

    def close(self) -> None:
        """Close the index and delete the router's private working copy of the shard."""
        self._release()


def _hash_positions(hashes: np.ndarray) -> dict[bytes, list[int]]:
    out: dict[bytes, list[int]] = {}
    for i, h in enumerate(hashes.tolist()):
        out.setdefault(h, []).append(i)
    return out


def _cleanup(index: EdgeIndex, workdir: Path) -> None:
    index.close()
    shutil.rmtree(workdir, ignore_errors=True)
