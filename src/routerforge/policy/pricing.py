"""Per-query prices for routing decisions and cost metrics.

A cell's price (USD for one query of model j on prompt i) is taken, in this order:

1. the eval record's own ``cost_usd`` when present (``ScoreMatrix.costs[i, j]`` finite);
2. the model's list prices × tokens: input tokens estimated from the prompt text
   (:func:`estimate_tokens`: one token per 4 characters, at least 1) plus ``output_tokens`` (default 256)
   at the output price;
3. the mean recorded cost of that model over the other prompts of the same data;
4. otherwise NaN (unknown) — N-model policies refuse to run on unknown prices.

When *deciding*, the recorded cost of the query being routed is unknown; :class:`CostModel` estimates it
from the prompt embedding (learnt from the training prompts' recorded costs), see :func:`estimated_prices`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from routerforge.data.records import CandidateModel

CHARS_PER_TOKEN = 4.0
DEFAULT_OUTPUT_TOKENS = 256


def estimate_tokens(text: str) -> int:
    """A cheap, tokenizer-free token estimate: ``ceil(len(text) / 4)``, at least 1."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def list_price(
    model: CandidateModel, prompt_tokens: int, output_tokens: int = DEFAULT_OUTPUT_TOKENS
) -> float:
    """USD for one query at the model's list prices; NaN when the model has no prices."""
    if model.input_cost_usd_per_mtok is None and model.output_cost_usd_per_mtok is None:
        return math.nan
    inp = model.input_cost_usd_per_mtok or 0.0
    out = model.output_cost_usd_per_mtok or 0.0
    return (prompt_tokens * inp + output_tokens * out) / 1e6


def query_prices(
    prompts: Sequence[str],
    models: Sequence[str],
    record_costs: np.ndarray | None = None,
    catalog: Mapping[str, CandidateModel] | None = None,
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    fallback_mean_usd: Mapping[str, float] | None = None,
) -> np.ndarray:
    """An ``(n_prompts, n_models)`` price matrix following the rules in the module docstring.

    ``fallback_mean_usd`` (model → mean recorded cost per query, e.g. saved with a trained router) is
    used at step 3 instead of the column mean when given.
    """
    n, m = len(prompts), len(models)
    prices = np.full((n, m), np.nan)
    if record_costs is not None:
        prices[:] = np.asarray(record_costs, dtype=np.float64)
    tokens = np.array([estimate_tokens(p) for p in prompts], dtype=np.float64)
    for j, name in enumerate(models):
        missing = ~np.isfinite(prices[:, j])
        if not missing.any():
            continue
        model = (catalog or {}).get(name)
        if model is not None and not (
            model.input_cost_usd_per_mtok is None and model.output_cost_usd_per_mtok is None
        ):
            inp = model.input_cost_usd_per_mtok or 0.0
            out = model.output_cost_usd_per_mtok or 0.0
            prices[missing, j] = (tokens[missing] * inp + output_tokens * out) / 1e6
            continue
        if fallback_mean_usd is not None and name in fallback_mean_usd:
            prices[missing, j] = fallback_mean_usd[name]
            continue
        known = prices[~missing, j]
        if known.size:
            prices[missing, j] = float(known.mean())
    return prices


def mean_costs(models: Sequence[str], record_costs: np.ndarray) -> dict[str, float]:
    """Mean recorded cost per query of each model (models without any recorded cost are left out)."""
    out: dict[str, float] = {}
    costs = np.asarray(record_costs, dtype=np.float64)
    for j, name in enumerate(models):
        col = costs[:, j]
        col = col[np.isfinite(col)]
        if col.size:
            out[name] = float(col.mean())
    return out


class CostModel:
    """Per-query price estimates from the prompt embedding, learnt from recorded costs.

    One ridge regression per model of ``log(cost)`` on the prompt's dense vector (closed form, numpy),
    fitted on the training prompts whose cost for that model is recorded; models without any recorded cost
    are left out (NaN). This tells a short question from a coding task that produces a long (costly)
    answer — something a model's mean cost cannot — and uses only what is known before the call.
    State is two arrays (``weights`` ``(dim, m)``, ``bias`` ``(m,)``) saved as ``.npy``; no pickle.
    """

    WEIGHTS = "cost_model_weights.npy"
    BIAS = "cost_model_bias.npy"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.weights_: np.ndarray | None = None
        self.bias_: np.ndarray | None = None

    def fit(self, dense: np.ndarray, costs: np.ndarray) -> CostModel:
        X = np.asarray(dense, dtype=np.float64)
        C = np.asarray(costs, dtype=np.float64)
        d, m = X.shape[1], C.shape[1]
        self.weights_ = np.zeros((d, m))
        self.bias_ = np.full(m, np.nan)
        for j in range(m):
            ok = np.isfinite(C[:, j]) & (C[:, j] > 0)
            if not ok.any():
                continue
            y = np.log(C[ok, j])
            Xj = X[ok]
            mu_x, mu_y = Xj.mean(axis=0), y.mean()
            Xc = Xj - mu_x
            w = np.linalg.solve(Xc.T @ Xc + self.alpha * np.eye(d), Xc.T @ (y - mu_y))
            self.weights_[:, j] = w
            self.bias_[j] = mu_y - mu_x @ w
        return self

    def predict(self, dense: np.ndarray) -> np.ndarray:
        """``(n, m)`` estimated USD per query (NaN for models without recorded costs)."""
        if self.weights_ is None or self.bias_ is None:
            from routerforge.errors import NotFittedError

            raise NotFittedError("This cost model")
        return np.asarray(np.exp(np.asarray(dense, dtype=np.float64) @ self.weights_ + self.bias_))

    def save(self, directory: Path) -> None:
        if self.weights_ is None or self.bias_ is None:
            return
        np.save(directory / self.WEIGHTS, self.weights_, allow_pickle=False)
        np.save(directory / self.BIAS, self.bias_, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> CostModel | None:
        """The saved cost model of a router directory, or ``None`` when it has none."""
        if not (directory / cls.WEIGHTS).is_file():
            return None
        model = cls()
        model.weights_ = np.load(directory / cls.WEIGHTS, allow_pickle=False)
        model.bias_ = np.load(directory / cls.BIAS, allow_pickle=False)
        return model


def estimated_prices(
    prompts: Sequence[str],
    models: Sequence[str],
    dense: np.ndarray | None,
    cost_model: CostModel | None,
    *,
    catalog: Mapping[str, CandidateModel] | None = None,
    fallback_mean_usd: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Decision prices (known before the call): the cost model's estimate where it has one, else
    :func:`query_prices` without record costs (list price × tokens, then the mean recorded cost)."""
    prices = query_prices(prompts, models, None, catalog, fallback_mean_usd=fallback_mean_usd)
    if cost_model is not None and dense is not None and len(prompts):
        est = cost_model.predict(dense)
        prices = np.where(np.isfinite(est), est, prices)
    return prices
