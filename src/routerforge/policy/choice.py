"""N-model policies over predicted scores and per-query prices, under hard constraints.

* **willingness to pay**: choose ``argmax_j ŝ_ij − λ · price_ij``; λ is in quality points per USD
  (λ = 0: best predicted model whatever the price; λ → ∞: cheapest allowed model).
* **tolerance**: the cheapest allowed model whose prediction is within ``δ`` of the best allowed prediction.
* **hard constraints**: a boolean ``(n, m)`` mask of allowed cells (:func:`constraint_mask`) from an
  allow-list of models and each model's context window against the prompt's estimated tokens.

Ties are broken deterministically: lower price first, then the model's column order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from routerforge.errors import ValidationError
from routerforge.policy.pricing import estimate_tokens

_EPS = 1e-12


def constraint_mask(
    prompts: Sequence[str],
    models: Sequence[str],
    *,
    allowed: Sequence[str] | None = None,
    context_windows: Mapping[str, int | None] | None = None,
    reserve_output_tokens: int = 0,
) -> np.ndarray:
    """Allowed (prompt, model) cells: model in ``allowed`` (all when None) and prompt fits its context window."""
    n, m = len(prompts), len(models)
    mask = np.ones((n, m), dtype=bool)
    if allowed is not None:
        allow = set(allowed)
        unknown = allow - set(models)
        if unknown:
            from routerforge.errors import UnknownModelError

            raise UnknownModelError(sorted(unknown)[0], models)
        mask[:, [j for j, name in enumerate(models) if name not in allow]] = False
    if context_windows:
        tokens = np.array([estimate_tokens(p) for p in prompts]) + reserve_output_tokens
        for j, name in enumerate(models):
            window = context_windows.get(name)
            if window:
                mask[:, j] &= tokens <= window
    return mask


def _check(
    predicted: np.ndarray, prices: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    pred = np.atleast_2d(np.asarray(predicted, dtype=np.float64))
    cost = np.atleast_2d(np.asarray(prices, dtype=np.float64))
    if pred.shape != cost.shape:
        raise ValidationError(
            f"Predicted scores {pred.shape} and prices {cost.shape} must have the same shape."
        )
    allowed = np.ones(pred.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if allowed.shape != pred.shape:
        raise ValidationError(f"Constraint mask {allowed.shape} does not match the scores {pred.shape}.")
    if not np.isfinite(cost[allowed]).all():
        raise ValidationError(
            "Some per-query prices are unknown.",
            hint="Import costs with the eval records or set model prices with `routerforge models`.",
        )
    if not allowed.any(axis=1).all():
        raise ValidationError("No candidate model satisfies the constraints for some prompts.")
    return np.nan_to_num(pred, nan=-np.inf), np.where(allowed, cost, np.inf)


def _argbest(utility: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Row-wise argmax of ``utility``; ties go to the lower cost, then the lower column."""
    best = utility.max(axis=1, keepdims=True)
    tied = utility >= best - _EPS
    masked_cost = np.where(tied, cost, np.inf)
    return np.asarray(masked_cost.argmin(axis=1), dtype=np.int64)


def choose_wtp(
    predicted: np.ndarray, prices: np.ndarray, lam: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """Column index per prompt maximising ``ŝ − λ·price`` among allowed models."""
    pred, cost = _check(predicted, prices, mask)
    if np.isinf(lam):
        utility = np.where(np.isfinite(cost), -cost, -np.inf)
    else:
        utility = np.where(np.isfinite(cost), pred - lam * np.nan_to_num(cost, posinf=0.0), -np.inf)
    return _argbest(utility, cost)


def choose_tolerance(
    predicted: np.ndarray, prices: np.ndarray, delta: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """Column index per prompt: the cheapest allowed model within ``delta`` of the best allowed prediction."""
    if delta < 0:
        raise ValidationError(f"Tolerance must be ≥ 0, got {delta}.")
    pred, cost = _check(predicted, prices, mask)
    pred = np.where(np.isfinite(cost), pred, -np.inf)
    best = pred.max(axis=1, keepdims=True)
    ok = pred >= best - delta - _EPS
    return np.asarray(np.where(ok, cost, np.inf).argmin(axis=1), dtype=np.int64)


def lambda_grid(prices: np.ndarray, n: int = 121) -> np.ndarray:
    """λ values covering every trade-off these prices allow: 0, a geometric range, and ∞ (cheapest)."""
    cost = np.asarray(prices, dtype=np.float64)
    positive = cost[np.isfinite(cost) & (cost > 0)]
    if positive.size == 0:
        return np.array([0.0, np.inf])
    lo = 1e-3 / float(positive.max())
    hi = 1e3 / float(positive.min())
    return np.concatenate([[0.0], np.geomspace(lo, hi, n), [np.inf]])
