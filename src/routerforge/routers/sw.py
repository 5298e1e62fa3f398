"""``sw``: RouteLLM's similarity-weighted (SW) ranking router.

Origin: RouteLLM (Ong et al., 2024), "similarity-weighted ranking". Every training prompt yields
pairwise comparisons between the models scored on it (higher score wins; equal scores are a tie, counted
as half a win for each side with weight ``tie_weight``). For a new prompt q, each training prompt i gets
the weight

    w_i = γ^(1 + κ · S(q, q_i) / max_j S(q, q_j))

(S = cosine similarity of the embeddings; RouteLLM uses γ = 10, κ = 1 and all training prompts), and a
Bradley–Terry model is fitted to the weighted comparisons, giving each model a strength π_M for q.
``top_k`` keeps only the k most similar training prompts; a larger ``sharpness`` κ concentrates the
weights on the nearest prompts. ``prior`` adds that many pseudo-comparisons (ties) between every pair of
models, so strengths stay finite when one model always wins.

Weights are rescaled to sum to their effective sample size (Σw)²/Σw², so ``prior`` is measured in
prompts. The fit is Hunter's MM algorithm, vectorised over a batch of queries, in numpy.

Only observed comparisons are kept (:mod:`routerforge.routers.pairs`); when the table of wins per
training prompt × model pair would exceed 4 M cells it is held as a sparse matrix, so pairwise battles
(one row per battle with two scored models: ``routerforge data import --format battles``) of an arena
set with dozens of models fit in memory. Each battle is then one comparison, exactly as in the file.

Predicted scores (what the policy layer reads): with ties split in half and independent outcomes,
P(A beats B) = ½ + ½ (s_A − s_B), so ŝ_A = s̄_q + (1/m) Σ_B (2·P(A beats B) − 1), where s̄_q is the
similarity-weighted mean training score over all models. The model ranking equals the BT ranking; for two
models, ŝ_strong − ŝ_weak = P(strong beats weak) − P(weak beats strong).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.errors import ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.pairs import observed_pairs
from routerforge.routers.registry import register_router

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

_CHUNK = 256
_DENSE_CELLS = 1 << 22  # a larger table of wins is kept sparse


def win_matrix(
    scores: np.ndarray, tie_weight: float, *, max_dense_cells: int = _DENSE_CELLS
) -> np.ndarray | csr_matrix:
    """Per training prompt, the wins of model a over model b at column ``a·m + b``: ``(n, m²)``.

    A win counts 1, a tie ½·tie_weight for each side; pairs not scored on the prompt count 0. Dense when
    n·m² ≤ ``max_dense_cells``, else a ``scipy.sparse`` CSR matrix (same values).
    """
    n, m = scores.shape
    rows, i, j, diff = observed_pairs(scores)
    tie = 0.5 * tie_weight
    win_i = np.where(diff > 0, 1.0, np.where(diff == 0, tie, 0.0))
    win_j = np.where(diff < 0, 1.0, np.where(diff == 0, tie, 0.0))
    r = np.concatenate([rows, rows])
    c = np.concatenate([i * m + j, j * m + i])
    v = np.concatenate([win_i, win_j])
    keep = v > 0
    r, c, v = r[keep], c[keep], v[keep]
    if n * m * m <= max_dense_cells:
        dense = np.zeros((n, m * m))
        dense[r, c] = v
        return dense
    from scipy.sparse import csr_matrix

    return csr_matrix((v, (r, c)), shape=(n, m * m))


def similarity_weights(sims: np.ndarray, *, gamma: float, sharpness: float, top_k: int | None) -> np.ndarray:
    """RouteLLM weights γ^(1 + κ·s/max s) for each row of ``sims`` (queries × training prompts), rescaled
    to sum to their effective sample size; with ``top_k`` only the k most similar prompts keep a weight."""
    smax = sims.max(axis=1, keepdims=True)
    smax = np.where(smax > 1e-12, smax, 1.0)
    logw = np.log(gamma) * sharpness * (sims / smax - 1.0)  # = log w − log γ^(1+κ), for stability
    w = np.exp(logw)
    if top_k is not None and top_k < sims.shape[1]:
        cut = np.argpartition(-sims, top_k - 1, axis=1)[:, top_k:]
        np.put_along_axis(w, cut, 0.0, axis=1)
    total = w.sum(axis=1, keepdims=True)
    ess = total**2 / np.maximum((w * w).sum(axis=1, keepdims=True), 1e-300)
    out: np.ndarray = w * (ess / np.maximum(total, 1e-300))
    return out


def fit_bradley_terry(
    wins: np.ndarray, counts: np.ndarray, *, prior: float, max_iter: int = 200, tol: float = 1e-8
) -> np.ndarray:
    """Batched Bradley–Terry MLE by Hunter's MM updates.

    ``wins`` / ``counts``: ``(q, m, m)`` weighted wins of row over column and comparisons per pair. ``prior``
    pseudo-comparisons (ties) are added to every pair. Returns log-strengths ``(q, m)`` centred per row.
    """
    q, m, _ = wins.shape
    off = 1.0 - np.eye(m)
    W = wins + 0.5 * prior * off
    N = counts + prior * off
    total_wins = W.sum(axis=2)
    pi = np.ones((q, m))
    active = np.arange(q)  # rows still moving; each row stops on its own, so batching changes nothing
    for _ in range(max_iter):
        p = pi[active]
        denom = (N[active] / (p[:, :, None] + p[:, None, :])).sum(axis=2)
        new = np.where(denom > 0, total_wins[active] / np.maximum(denom, 1e-300), p)
        new = np.maximum(new, 1e-300)
        new /= np.exp(np.log(new).mean(axis=1, keepdims=True))
        moving = np.abs(new - p).max(axis=1) >= tol
        pi[active] = new
        active = active[moving]
        if len(active) == 0:
            break
    out: np.ndarray = np.log(pi)
    return out


def strengths_to_scores(theta: np.ndarray, mean_score: np.ndarray) -> np.ndarray:
    """ŝ_A = s̄ + mean_B(2·σ(θ_A − θ_B) − 1) for log-strengths ``theta`` ``(q, m)``."""
    diff = theta[:, :, None] - theta[:, None, :]
    win = 0.5 * (1.0 + np.tanh(0.5 * diff))
    out: np.ndarray = mean_score[:, None] + (2.0 * win - 1.0).mean(axis=2)
    return out


@register_router
class SwRouter(Router):
    """Similarity-weighted Bradley–Terry ranking over the training prompts (exact dense similarity)."""

    name = "sw"

    def __init__(
        self,
        *,
        gamma: float = 10.0,
        sharpness: float = 1.0,
        top_k: int | None = 100,
        tie_weight: float = 1.0,
        prior: float = 1.0,
        max_iter: int = 200,
        random_state: int = 0,
    ) -> None:
        self.gamma = gamma
        self.sharpness = sharpness
        self.top_k = top_k
        self.tie_weight = tie_weight
        self.prior = prior
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        if self.gamma <= 1.0:
            raise ValidationError(f"sw: gamma must be > 1, got {self.gamma!r}.")
        if self.sharpness <= 0 or self.prior < 0 or not 0.0 <= self.tie_weight <= 1.0:
            raise ValidationError("sw: sharpness must be > 0, prior ≥ 0 and tie_weight in [0, 1].")
        if self.top_k is not None and int(self.top_k) < 1:
            raise ValidationError(f"sw: top_k must be a positive integer or None, got {self.top_k!r}.")
        self.train_dense_ = np.ascontiguousarray(X.dense, dtype=np.float32)
        self.train_scores_ = np.asarray(scores, dtype=np.float64)
        self._prepare()

    def _prepare(self) -> None:
        self._wins_flat = win_matrix(self.train_scores_, float(self.tie_weight))
        observed = ~np.isnan(self.train_scores_)
        filled = np.where(observed, self.train_scores_, 0.0)
        overall = float(filled.sum() / max(int(observed.sum()), 1))
        n_obs = observed.sum(axis=1)
        self._row_mean = np.where(n_obs > 0, filled.sum(axis=1) / np.maximum(n_obs, 1), overall)

    def _weights(self, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = np.asarray(dense, dtype=np.float32) @ self.train_dense_.T
        top_k = None if self.top_k is None else int(self.top_k)
        w = similarity_weights(
            sims.astype(np.float64), gamma=float(self.gamma), sharpness=float(self.sharpness), top_k=top_k
        )
        return sims, w

    def _theta(self, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        m = self.train_scores_.shape[1]
        sims, w = self._weights(dense)
        if isinstance(self._wins_flat, np.ndarray):
            flat = w @ self._wins_flat
        else:
            flat = np.asarray((self._wins_flat.T @ w.T).T)
        wins = flat.reshape(len(dense), m, m)
        counts = wins + np.transpose(wins, (0, 2, 1))
        theta = fit_bradley_terry(wins, counts, prior=float(self.prior), max_iter=int(self.max_iter))
        mean = (w @ self._row_mean) / np.maximum(w.sum(axis=1), 1e-300)
        return theta, mean, sims, w

    def _predict(self, X: PromptBatch) -> np.ndarray:
        out = []
        for start in range(0, len(X), _CHUNK):
            theta, mean, _, _ = self._theta(np.asarray(X.dense[start : start + _CHUNK]))
            out.append(strengths_to_scores(theta, mean))
        return np.vstack(out)

    def _explain(self, X: PromptBatch) -> Explanation:
        theta, mean, sims, w = self._theta(np.asarray(X.dense[:1]))
        pred = np.clip(strengths_to_scores(theta, mean)[0], 0.0, 1.0)
        models = list(self.models_ or [])
        top = np.argsort(-w[0])[:5]
        neighbours = [
            {
                "train_index": int(i),
                "similarity": float(sims[0, i]),
                "weight": float(w[0, i]),
                "scores": {
                    m: (None if np.isnan(s) else float(s))
                    for m, s in zip(models, self.train_scores_[i], strict=True)
                },
            }
            for i in top
        ]
        best = models[int(np.argmax(pred))]
        return Explanation(
            router=self.name,
            reason=(
                f"sw: Bradley–Terry on comparisons weighted by similarity (effective sample "
                f"{float(w[0].sum()):.1f} prompts) ranks {best} first."
            ),
            details={
                "predicted": dict(zip(models, pred.tolist(), strict=True)),
                "log_strength": dict(zip(models, theta[0].tolist(), strict=True)),
                "neighbours": neighbours,
            },
        )

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"train_dense": self.train_dense_, "train_scores": self.train_scores_}

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Any) -> None:
        self.train_dense_ = np.ascontiguousarray(arrays["train_dense"], dtype=np.float32)
        self.train_scores_ = np.asarray(arrays["train_scores"], dtype=np.float64)
        self._prepare()
