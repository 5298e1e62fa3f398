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
  with weight ``tie_weight``.

Predicted scores. Pointwise: σ(δ). Pairwise training only identifies differences, so the win
probabilities are turned into scores with the identity that holds for independent outcomes with ties
split in half, P(A beats B) = ½ + ½(s_A − s_B):  ŝ_A = s̄ + (1/m) Σ_B (2·σ(δ_A − δ_B) − 1), where s̄
is the mean training score over all models. The ranking between models (what a strong/weak threshold
uses) is exactly the ranking of δ.
"""

from __future__ import annotations

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
from routerforge.routers.registry import register_router

MODES = ("pointwise", "pairwise")


def mf_logits(Q: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """δ for every prompt × model: ``(n, m)``. ``Q`` holds the (centred) prompt embeddings."""
    P = Q @ params["W1"] + params["b"]
    A = params["V"] * params["w2"]
    out: np.ndarray = P @ A.T
    return out


def pair_targets(S: np.ndarray, tie_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle model pairs (iu, ju), target (1 / 0 / ½ for ties) and weight per prompt × pair."""
    m = S.shape[1]
    iu, ju = np.triu_indices(m, k=1)
    diff = S[:, iu] - S[:, ju]
    observed = ~np.isnan(diff)
    diff = np.nan_to_num(diff, nan=0.0)
    T = (diff > 0).astype(np.float64) + 0.5 * (diff == 0)
    W = observed * np.where(diff == 0, tie_weight, 1.0)
    return iu, ju, T, W


def _pairwise_grad(
    D: np.ndarray, T: np.ndarray, W: np.ndarray, iu: np.ndarray, ju: np.ndarray, m: int
) -> tuple[float, np.ndarray]:
    Dp = D[:, iu] - D[:, ju]
    count = max(float(W.sum()), 1.0)
    value = float(((np.logaddexp(0.0, Dp) - Dp * T) * W).sum() / count)
    G = (sigmoid(Dp) - T) * W / count
    grad = np.zeros((D.shape[0], m))
    for k in range(len(iu)):
        grad[:, iu[k]] += G[:, k]
        grad[:, ju[k]] -= G[:, k]
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
            pair_targets(np.where(mask > 0, S, np.nan), float(self.tie_weight))
            if self.mode == "pairwise"
            else None
        )
        opt = Adam(params, lr=float(self.lr), weight_decay=float(self.weight_decay), decay={"W1", "V"})
        train_rows, val_rows = group_split(text_groups(X.texts), float(self.val_fraction), rng)
        stopper = EarlyStopping(int(self.patience))

        def loss_grad(rows: np.ndarray, D: np.ndarray) -> tuple[float, np.ndarray]:
            if pairs is None:
                return masked_bce(D, S[rows], mask[rows])
            iu, ju, T, W = pairs
            return _pairwise_grad(D, T[rows], W[rows], iu, ju, m)

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
