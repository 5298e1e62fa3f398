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
``n_clusters="auto"`` picks k among ``k_candidates`` by the mean silhouette (cosine distance, on at most
2,000 training prompts). ``weights`` (``{"quality": 1, "latency": 0.2, "cost": 0.2}``) makes each cluster
rank models by a weighted utility instead of quality alone, with per-cluster mean latency (``latency_ms``
of the eval records) and cost normalised by the most expensive / slowest model of that cluster:

    u(M, c) = (w_q · ŝ(M, c) + w_l · (1 − lat(M, c) / max lat(·, c)) + w_c · (1 − cost(M, c) / max cost(·, c))) / Σw

With ``weights`` the predictions are this utility, not an expected score: use them with the threshold
or tolerance policy (the ``wtp`` policy would count cost twice). Without ``weights``, cost and latency are
the policy layer's business. ``routerforge recluster`` refits the clusters when enough new records arrived.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routerforge.errors import ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router, validate_training_data
from routerforge.routers.registry import register_router

SILHOUETTE_SAMPLE = 2000
DEFAULT_K_CANDIDATES = (2, 4, 8, 16, 32, 64)
WEIGHT_KEYS = ("quality", "latency", "cost")


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


def silhouette(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of ``labels`` on unit rows ``X`` with cosine distance (singleton clusters score 0)."""
    ids, labels = np.unique(labels, return_inverse=True)
    if len(ids) < 2:
        return -1.0
    D = np.clip(1.0 - X @ X.T, 0.0, 2.0)
    onehot = np.zeros((len(X), len(ids)))
    onehot[np.arange(len(X)), labels] = 1.0
    sizes = onehot.sum(0)
    sums = D @ onehot  # (n, k): total distance to each cluster
    own = sizes[labels]
    a = sums[np.arange(len(X)), labels] / np.maximum(own - 1, 1)
    mean_to = sums / sizes[None, :]
    mean_to[np.arange(len(X)), labels] = np.inf
    b = mean_to.min(axis=1)
    sil = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(sil.mean())


def choose_k(
    X: np.ndarray, candidates: list[int], *, rng: np.random.Generator, max_iter: int
) -> tuple[int, dict[int, float]]:
    """The k of ``candidates`` with the highest silhouette (on a seeded sample of ``X``) and every score."""
    sample = X if len(X) <= SILHOUETTE_SAMPLE else X[rng.choice(len(X), SILHOUETTE_SAMPLE, replace=False)]
    scores: dict[int, float] = {}
    for k in sorted({int(k) for k in candidates if 2 <= int(k) < len(sample)}):
        centres = kmeans(sample, k, rng=np.random.default_rng(k), max_iter=max_iter)
        scores[k] = silhouette(sample, np.argmax(sample @ centres.T, axis=1))
    if not scores:
        return 1, {}
    return max(scores, key=lambda k: (scores[k], -k)), scores


@register_router
class ClusterRouter(Router):
    """k-means clusters of prompt embeddings; per-cluster shrunk mean score of each model."""

    name = "cluster"

    def __init__(
        self,
        *,
        n_clusters: int | str = 64,
        shrinkage: float = 10.0,
        temperature: float | None = None,
        soft_top: int = 3,
        max_iter: int = 50,
        k_candidates: list[int] | None = None,
        weights: dict[str, float] | None = None,
        random_state: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.k_candidates = k_candidates
        self.weights = weights
        self.shrinkage = shrinkage
        self.temperature = temperature
        self.soft_top = soft_top
        self.max_iter = max_iter
        self.random_state = random_state

    def set_model_outcomes(self, costs_usd: np.ndarray | None, latency_ms: np.ndarray | None) -> None:
        self._outcomes = tuple(
            np.full((0, 0), np.nan) if a is None else np.asarray(a, dtype=np.float64)
            for a in (costs_usd, latency_ms)
        )

    def _weights(self) -> np.ndarray | None:
        if self.weights is None:
            return None
        unknown = sorted(set(self.weights) - set(WEIGHT_KEYS))
        w = np.array([float(self.weights.get(k, 0.0)) for k in WEIGHT_KEYS])
        if unknown or (w < 0).any() or w.sum() <= 0:
            raise ValidationError(
                f"cluster: weights must map {list(WEIGHT_KEYS)} to numbers ≥ 0 (not all 0), got {self.weights!r}."
            )
        return w

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        auto = self.n_clusters == "auto"
        if (not auto and int(self.n_clusters) < 1) or self.shrinkage < 0 or int(self.soft_top) < 1:
            raise ValidationError(
                "cluster: n_clusters (or 'auto') and soft_top must be ≥ 1 and shrinkage ≥ 0."
            )
        if self.temperature is not None and self.temperature <= 0:
            raise ValidationError(f"cluster: temperature must be > 0 or None, got {self.temperature!r}.")
        weights = self._weights()
        dense = np.asarray(X.dense, dtype=np.float64)
        rng = np.random.default_rng(int(self.random_state))
        self.silhouette_: dict[int, float] = {}
        k = 0 if auto else int(self.n_clusters)
        if auto:
            k, self.silhouette_ = choose_k(
                dense, list(self.k_candidates or DEFAULT_K_CANDIDATES), rng=rng, max_iter=int(self.max_iter)
            )
        self.centres_ = kmeans(dense, k, rng=rng, max_iter=int(self.max_iter))
        k, m = len(self.centres_), scores.shape[1]
        self.sums_ = np.zeros((k, m))
        self.counts_ = np.zeros((k, m))
        self.sizes_ = np.zeros(k)
        costs, latency = (
            a if a.shape == scores.shape or a.size else np.full(scores.shape, np.nan)
            for a in getattr(self, "_outcomes", (np.full(scores.shape, np.nan),) * 2)
        )
        if costs.shape != scores.shape or latency.shape != scores.shape:
            raise ValidationError(
                f"cluster: model outcomes have shape {costs.shape}/{latency.shape}, scores {scores.shape}."
            )
        self.outcome_sums_ = np.zeros((2, k, m))  # [cost, latency] per cluster and model
        self.outcome_counts_ = np.zeros((2, k, m))
        labels = self._accumulate(dense, scores)
        for j, values in enumerate((costs, latency)):
            seen = np.isfinite(values)
            np.add.at(self.outcome_sums_[j], labels, np.where(seen, values, 0.0))
            np.add.at(self.outcome_counts_[j], labels, seen.astype(np.float64))
        if weights is not None:
            for w, j, what in ((weights[2], 0, "cost"), (weights[1], 1, "latency")):
                if w > 0 and not self.outcome_counts_[j].any():
                    raise ValidationError(
                        f"cluster: weights give {what} {w:g}, but the training records have no {what} "
                        f"({'cost_usd' if what == 'cost' else 'latency_ms'}).",
                        hint=f"Import records with {what}, or set its weight to 0.",
                    )

    def _accumulate(self, dense: np.ndarray, scores: np.ndarray) -> np.ndarray:
        labels = np.argmax(dense @ self.centres_.T, axis=1)
        observed = ~np.isnan(scores)
        np.add.at(self.sums_, labels, np.where(observed, scores, 0.0))
        np.add.at(self.counts_, labels, observed.astype(np.float64))
        np.add.at(self.sizes_, labels, 1.0)
        return labels

    def _outcome_table(self, j: int) -> np.ndarray:
        """Per cluster and model mean cost (j=0) or latency (j=1); unknown cells fall back to the model's
        global mean, then to the mean over models; normalised by the row maximum into [0, 1]."""
        sums, counts = self.outcome_sums_[j], self.outcome_counts_[j]
        total = counts.sum(0)
        global_mean = np.where(total > 0, sums.sum(0) / np.maximum(total, 1.0), np.nan)
        if np.isnan(global_mean).all():
            return np.zeros_like(sums)
        global_mean = np.where(np.isnan(global_mean), np.nanmean(global_mean), global_mean)
        table = np.where(counts > 0, sums / np.maximum(counts, 1.0), global_mean[None, :])
        out: np.ndarray = table / np.maximum(table.max(axis=1, keepdims=True), 1e-12)
        return out

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

    def _table(self) -> np.ndarray:
        """What a prediction averages: per cluster and model quality, or the weighted utility."""
        weights = self._weights()
        quality = self._cluster_scores()
        if weights is None:
            return quality
        wq, wl, wc = weights
        utility = wq * quality + wl * (1.0 - self._outcome_table(1)) + wc * (1.0 - self._outcome_table(0))
        out: np.ndarray = utility / weights.sum()
        return out

    def _predict(self, X: PromptBatch) -> np.ndarray:
        W = self._assignments(np.asarray(X.dense, dtype=np.float64))
        out: np.ndarray = W @ self._table()
        return out

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        W = self._assignments(np.asarray(X.dense[:1], dtype=np.float64))[0]
        top = [int(j) for j in np.argsort(-W)[:3] if W[j] > 0]
        table = self._table()
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
        return {
            "centres": self.centres_,
            "sums": self.sums_,
            "counts": self.counts_,
            "sizes": self.sizes_,
            "outcome_sums": self.outcome_sums_,
            "outcome_counts": self.outcome_counts_,
        }

    def _state_meta(self) -> dict[str, Any]:
        return {"silhouette": {str(k): v for k, v in self.silhouette_.items()}}

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Any) -> None:
        self.centres_ = arrays["centres"]
        self.sums_ = arrays["sums"]
        self.counts_ = arrays["counts"]
        self.sizes_ = arrays["sizes"]
        k, m = self.sums_.shape
        self.outcome_sums_ = arrays.get("outcome_sums", np.zeros((2, k, m)))
        self.outcome_counts_ = arrays.get("outcome_counts", np.zeros((2, k, m)))
        self.silhouette_ = {int(k): float(v) for k, v in meta.get("silhouette", {}).items()}
