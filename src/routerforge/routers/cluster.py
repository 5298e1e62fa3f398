"""``cluster``: per-cluster model ranking (task clustering).

Origin: task-clustering routers (k-means over prompt embeddings, then the best model per cluster; the
per-task router of DESIGN.md's RouterBench anchor is the same idea with given task labels). Fit runs
seeded k-means++ / Lloyd in numpy on the unit embeddings (cosine geometry), then keeps, per cluster and
model, the sum and count of observed scores. A prediction is the cluster mean shrunk toward the model's
global mean with ``shrinkage`` pseudo-prompts:

    ŝ(M, c) = (Σ_{i∈c} s_iM + λ · s̄_M) / (n_cM + λ)

With ``temperature`` set, a prompt is spread over its ``soft_top`` nearest clusters with weights
softmax(cos / temperature) instead of taking the nearest one. ``partial_fit`` adds new scored prompts
(e.g. from the gateway's feedback) to their nearest clusters and moves those centroids — no refit.
Cost and latency are not the router's business: the policy layer weighs them against these scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routerforge.errors import ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router, validate_training_data
from routerforge.routers.registry import register_router


def kmeans(X: np.ndarray, k: int, *, rng: np.random.Generator, max_iter: int = 50) -> np.ndarray:
    """Spherical k-means (k-means++ seeding, Lloyd updates, unit centroids); returns ``(k, dim)``."""
    n = len(X)
    k = min(k, n)
    centres = np.empty((k, X.shape[1]))
    centres[0] = X[rng.integers(n)]
    dist = 1.0 - X @ centres[0]
    for j in range(1, k):
        p = np.maximum(dist, 0.0)
        total = p.sum()
        idx = rng.choice(n, p=p / total) if total > 0 else int(rng.integers(n))
        centres[j] = X[idx]
        dist = np.minimum(dist, 1.0 - X @ centres[j])
    labels = np.full(n, -1)
    for _ in range(max_iter):
        new_labels = np.argmax(X @ centres.T, axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for j in range(k):
            members = X[labels == j]
            if len(members):
                c = members.sum(0)
                centres[j] = c / max(np.linalg.norm(c), 1e-12)
    return centres


@register_router
class ClusterRouter(Router):
    """k-means clusters of prompt embeddings; per-cluster shrunk mean score of each model."""

    name = "cluster"

    def __init__(
        self,
        *,
        n_clusters: int = 64,
        shrinkage: float = 10.0,
        temperature: float | None = None,
        soft_top: int = 3,
        max_iter: int = 50,
        random_state: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.shrinkage = shrinkage
        self.temperature = temperature
        self.soft_top = soft_top
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        if int(self.n_clusters) < 1 or self.shrinkage < 0 or int(self.soft_top) < 1:
            raise ValidationError("cluster: n_clusters and soft_top must be ≥ 1 and shrinkage ≥ 0.")
        if self.temperature is not None and self.temperature <= 0:
            raise ValidationError(f"cluster: temperature must be > 0 or None, got {self.temperature!r}.")
        dense = np.asarray(X.dense, dtype=np.float64)
        rng = np.random.default_rng(int(self.random_state))
        self.centres_ = kmeans(dense, int(self.n_clusters), rng=rng, max_iter=int(self.max_iter))
        k, m = len(self.centres_), scores.shape[1]
        self.sums_ = np.zeros((k, m))
        self.counts_ = np.zeros((k, m))
        self.sizes_ = np.zeros(k)
        self._accumulate(dense, scores)

    def _accumulate(self, dense: np.ndarray, scores: np.ndarray) -> np.ndarray:
        labels = np.argmax(dense @ self.centres_.T, axis=1)
        observed = ~np.isnan(scores)
        np.add.at(self.sums_, labels, np.where(observed, scores, 0.0))
        np.add.at(self.counts_, labels, observed.astype(np.float64))
        np.add.at(self.sizes_, labels, 1.0)
        return labels

    def partial_fit(self, X: PromptBatch, scores: np.ndarray) -> ClusterRouter:
        """Add scored prompts to their nearest clusters (and pull those centroids toward them)."""
        self._check_fitted()
        arr = validate_training_data(X, scores, self.models, requires_dense=True)
        self._validate_batch(X)
        dense = np.asarray(X.dense, dtype=np.float64)
        before = self.sizes_.copy()
        labels = self._accumulate(dense, arr)
        for j in np.unique(labels):
            c = self.centres_[j] * before[j] + dense[labels == j].sum(0)
            self.centres_[j] = c / max(np.linalg.norm(c), 1e-12)
        self.n_train_ += len(X)
        return self

    def _cluster_scores(self) -> np.ndarray:
        total = self.counts_.sum(0)
        global_mean = self.sums_.sum(0) / np.maximum(total, 1.0)
        lam = float(self.shrinkage)
        out: np.ndarray = (self.sums_ + lam * global_mean) / np.maximum(self.counts_ + lam, 1e-12)
        return out

    def _assignments(self, dense: np.ndarray) -> np.ndarray:
        sims = dense @ self.centres_.T
        W = np.zeros_like(sims)
        if self.temperature is None:
            W[np.arange(len(sims)), np.argmax(sims, axis=1)] = 1.0
            return W
        top = min(int(self.soft_top), sims.shape[1])
        idx = np.argpartition(-sims, top - 1, axis=1)[:, :top]
        s = np.take_along_axis(sims, idx, axis=1) / float(self.temperature)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        np.put_along_axis(W, idx, e / e.sum(axis=1, keepdims=True), axis=1)
        return W

    def _predict(self, X: PromptBatch) -> np.ndarray:
        W = self._assignments(np.asarray(X.dense, dtype=np.float64))
        out: np.ndarray = W @ self._cluster_scores()
        return out

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        W = self._assignments(np.asarray(X.dense[:1], dtype=np.float64))[0]
        top = [int(j) for j in np.argsort(-W)[:3] if W[j] > 0]
        table = self._cluster_scores()
        base.reason = f"cluster {top[0]} ({int(self.sizes_[top[0]])} training prompts): " + base.reason
        base.details["clusters"] = [
            {
                "cluster": j,
                "weight": float(W[j]),
                "size": int(self.sizes_[j]),
                "scores": dict(zip(self.models_ or [], table[j].tolist(), strict=True)),
            }
            for j in top
        ]
        return base

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"centres": self.centres_, "sums": self.sums_, "counts": self.counts_, "sizes": self.sizes_}

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Any) -> None:
        self.centres_ = arrays["centres"]
        self.sums_ = arrays["sums"]
        self.counts_ = arrays["counts"]
        self.sizes_ = arrays["sizes"]
