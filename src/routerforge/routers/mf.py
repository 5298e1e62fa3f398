"""``mf``: RouteLLM's matrix factorisation router.

Origin: RouteLLM (Ong et al., 2024), "matrix factorization" router. A model M has a learned embedding
``v_M``; a prompt's frozen embedding ``q`` is projected into the same space, and

    δ(M, q) = w2ᵀ (v_M ⊙ (W1ᵀ q + b))

scores how well M does on q. Two ways to train it (numpy, AdamW, early stopping on an inner validation
split of the training prompts, seeded):

* ``mode="pointwise"``: σ(δ(M, q)) ≈ score(M, q), masked binary cross-entropy over the observed cells
  (``w2ᵀ(v_M ⊙ b)`` acts as a per-model bias, so absolute levels are learnt);
* ``mode="pairwise"`` (RouteLLM's own training): for two models with different scores on a prompt,
  σ(δ(A, q) − δ(B, q)) ≈ P(A beats B); ties are skipped (``tie_weight=0``) or count as half a win each
  with weight ``tie_weight``. Only the observed comparisons are kept (see
  :mod:`routerforge.routers.pairs`), so pairwise battles (one row per battle, two scored models:
  ``routerforge data import --format battles``) train it on exactly the file's battles, at a memory
  cost that grows with the battles, not with rows × model pairs.

Predicted scores. Pointwise: σ(δ). Pairwise training only identifies differences, so the win
probabilities are turned into scores with the identity that holds for independent outcomes with ties
split in half, P(A beats B) = ½ + ½(s_A − s_B):  ŝ_A = s̄ + (1/m) Σ_B (2·σ(δ_A − δ_B) − 1), where s̄
is the mean training score over all models. The ranking between models (what a strong/weak threshold
uses) is exactly the ranking of δ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from routerforge.errors import ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.optim import (
    Adam,
    EarlyStopping,
    group_split,
    masked_bce,
    minibatches,
    sigmoid,
    text_groups,
)
from routerforge.routers.pairs import observed_pairs, row_starts, take_rows
from routerforge.routers.registry import register_router

MODES = ("pointwise", "pairwise")


def mf_logits(Q: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """δ for every prompt × model: ``(n, m)``. ``Q`` holds the (centred) prompt embeddings."""
    P = Q @ params["W1"] + params["b"]
    A = params["V"] * params["w2"]
    out: np.ndarray = P @ A.T
    return out


@dataclass(frozen=True)
class Comparisons:
    """The weighted comparisons of a score matrix, sorted by row: model ``i`` vs ``j`` on ``rows``, target
    P(i beats j) (1 / 0 / ½ for a tie) and weight (``tie_weight`` for ties; weight-0 pairs are dropped)."""

    rows: np.ndarray
    i: np.ndarray
    j: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    starts: np.ndarray  # starts[r]:starts[r + 1] index row r's comparisons


def comparisons(S: np.ndarray, tie_weight: float) -> Comparisons:
    """Every pair of models scored on the same row of ``S`` (NaN = missing) as a :class:`Comparisons`."""
    rows, i, j, diff = observed_pairs(S)
    target = (diff > 0).astype(np.float64) + 0.5 * (diff == 0)
    weight = np.where(diff == 0, tie_weight, 1.0)
    keep = weight > 0
    return Comparisons(
        rows[keep], i[keep], j[keep], target[keep], weight[keep], row_starts(rows[keep], S.shape[0])
    )


def _pairwise_grad(D: np.ndarray, rows: np.ndarray, pairs: Comparisons, m: int) -> tuple[float, np.ndarray]:
    """Weighted logistic loss of the comparisons on ``rows`` (D: their logits) and its gradient."""
    pos, local = take_rows(pairs.starts, rows)
    i, j, T, W = pairs.i[pos], pairs.j[pos], pairs.target[pos], pairs.weight[pos]
    Dp = D[local, i] - D[local, j]
    count = max(float(W.sum()), 1.0)
    value = float(((np.logaddexp(0.0, Dp) - Dp * T) * W).sum() / count)
    G = (sigmoid(Dp) - T) * W / count
    grad = np.zeros((D.shape[0], m))
    np.add.at(grad, (local, i), G)
    np.add.at(grad, (local, j), -G)
    return value, grad


def pairwise_to_scores(delta: np.ndarray, mean_score: float) -> np.ndarray:
    """Scores from pairwise logits: ŝ_A = s̄ + mean_B(2σ(δ_A − δ_B) − 1)."""
    win = sigmoid(delta[:, :, None] - delta[:, None, :])
    return mean_score + (2.0 * win - 1.0).mean(axis=2)


@register_router
class MfRouter(Router):
    """δ(M, q) = w2ᵀ(v_M ⊙ (W1ᵀ q + b)), trained pointwise (scores) or pairwise (preferences)."""

    name = "mf"

    def __init__(
        self,
        *,
        dim: int = 64,
        mode: str = "pointwise",
        tie_weight: float = 0.0,
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        max_epochs: int = 200,
        batch_size: int = 256,
        patience: int = 8,
        val_fraction: float = 0.1,
        random_state: int = 0,
    ) -> None:
        self.dim = dim
        self.mode = mode
        self.tie_weight = tie_weight
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        if self.mode not in MODES:
            raise ValidationError(f"mf: mode must be one of {MODES}, got {self.mode!r}.")
        if int(self.dim) < 1 or int(self.max_epochs) < 1 or int(self.batch_size) < 1:
            raise ValidationError("mf: dim, max_epochs and batch_size must be at least 1.")
        if not 0.0 <= self.tie_weight <= 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ValidationError("mf: tie_weight must lie in [0, 1] and val_fraction in [0, 1).")
        rng = np.random.default_rng(int(self.random_state))
        Q0 = np.asarray(X.dense, dtype=np.float64)
        self.center_ = Q0.mean(0)
        Q = Q0 - self.center_
        _n, d = Q.shape
        m = scores.shape[1]
        k = int(self.dim)
        mask = (~np.isnan(scores)).astype(np.float64)
        S = np.nan_to_num(scores, nan=0.0)
        self.mean_score_ = float(S.sum() / max(mask.sum(), 1.0))
        params = {
            "W1": rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, k)),
            "b": np.ones(k),
            "V": rng.normal(0.0, 1.0 / np.sqrt(k), size=(m, k)),
            "w2": np.ones(k),
        }
        if self.mode == "pointwise":
            # start from the per-model mean score: δ(M, ·) ≈ logit(mean_M) through the bias path.
            col = np.clip((S * mask).sum(0) / np.maximum(mask.sum(0), 1.0), 1e-3, 1 - 1e-3)
            params["V"] = params["V"] * 0.1 + (np.log(col / (1 - col)) / k)[:, None]
        pairs = (
            comparisons(np.where(mask > 0, S, np.nan), float(self.tie_weight))
            if self.mode == "pairwise"
            else None
        )
        opt = Adam(params, lr=float(self.lr), weight_decay=float(self.weight_decay), decay={"W1", "V"})
        train_rows, val_rows = group_split(text_groups(X.texts), float(self.val_fraction), rng)
        stopper = EarlyStopping(int(self.patience))

        def loss_grad(rows: np.ndarray, D: np.ndarray) -> tuple[float, np.ndarray]:
            if pairs is None:
                return masked_bce(D, S[rows], mask[rows])
            return _pairwise_grad(D, rows, pairs, m)

        for epoch in range(int(self.max_epochs)):
            for rows in minibatches(train_rows, int(self.batch_size), rng):
                Qb = Q[rows]
                P = Qb @ params["W1"] + params["b"]
                A = params["V"] * params["w2"]
                D = P @ A.T
                _, G = loss_grad(rows, D)
                dP = G @ A
                dA = G.T @ P
                opt.step(
                    {
                        "W1": Qb.T @ dP,
                        "b": dP.sum(0),
                        "V": dA * params["w2"],
                        "w2": (dA * params["V"]).sum(0),
                    }
                )
            if len(val_rows) == 0:
                continue
            val_loss, _ = loss_grad(val_rows, mf_logits(Q[val_rows], params))
            if stopper.update(val_loss, epoch, params):
                break
        self.params_ = stopper.best_params if stopper.best_params is not None else params
        self.epochs_ = stopper.best_epoch + 1 if stopper.best_params is not None else int(self.max_epochs)

    def _delta(self, X: PromptBatch) -> np.ndarray:
        Q = np.asarray(X.dense, dtype=np.float64) - self.center_
        return mf_logits(Q, self.params_)

    def _predict(self, X: PromptBatch) -> np.ndarray:
        delta = self._delta(X)
        if self.mode == "pointwise":
            return sigmoid(delta)
        return pairwise_to_scores(delta, self.mean_score_)

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        delta = self._delta(X)[0]
        base.reason = f"mf ({self.mode}): " + base.reason
        base.details["delta"] = dict(zip(self.models_ or [], delta.tolist(), strict=True))
        return base

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"center": self.center_, **{f"p_{k}": v for k, v in self.params_.items()}}

    def _state_meta(self) -> dict[str, Any]:
        return {"mean_score": self.mean_score_, "epochs": int(self.epochs_)}

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Any) -> None:
        self.center_ = arrays["center"]
        self.params_ = {k: arrays[f"p_{k}"] for k in ("W1", "b", "V", "w2")}
        self.mean_score_ = float(meta["mean_score"])
        self.epochs_ = int(meta.get("epochs", 0))
