"""Per-query prices for routing decisions and cost metrics.

A cell's price (USD for one query of model j on prompt i) is taken, in this order:

1. the eval record's own ``cost_usd`` when present (``ScoreMatrix.costs[i, j]`` finite);
2. the model's list prices × tokens: input tokens estimated from the prompt text
   (:func:`estimate_tokens`: one token per 4 characters, at least 1) plus ``output_tokens`` (default 256)
   at the output price;
3. the mean recorded cost of that model over the other prompts of the same data;
4. otherwise NaN (unknown) — N-model policies refuse to run on unknown prices.

These are the *true* costs used by the metrics. When *deciding*, the recorded cost of the query being
routed is unknown: :class:`PriceEstimator` gives the decision prices (a :class:`CostModel` learnt from the
training prompts' recorded costs, registered list prices × estimated tokens, or mean recorded costs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.data.records import CandidateModel, cost_usd

CHARS_PER_TOKEN = 4.0
DEFAULT_OUTPUT_TOKENS = 256


def estimate_tokens(text: str) -> int:
    """A cheap, tokenizer-free token estimate: ``ceil(len(text) / 4)``, at least 1."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


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
        if model is not None and model.has_prices:
            inp, out = model.input_usd_per_mtok or 0.0, model.output_usd_per_mtok or 0.0
            prices[missing, j] = cost_usd(inp, out, tokens[missing], output_tokens)
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


class PriceEstimator:
    """The one per-prompt price estimate used for decisions (USD for one query of each model, known before
    the call), in ``bench``, ``calibrate``, ``route``, the SDK and the gateway alike.

    Per model, in this order: the :class:`CostModel` fitted on the training prompts' recorded costs (when
    the training data has costs for that model); the model's registered list prices × tokens (prompt
    tokens estimated from the text, ``output_tokens`` for the answer); the mean recorded cost; else NaN.
    State is JSON (``to_dict``) plus the cost model's two ``.npy`` arrays.
    """

    def __init__(
        self,
        models: Sequence[str],
        *,
        list_prices: Mapping[str, tuple[float | None, float | None]] | None = None,
        mean_cost_usd: Mapping[str, float] | None = None,
        cost_model: CostModel | None = None,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        self.models = list(models)
        self.list_prices = {
            m: (p[0], p[1]) for m, p in (list_prices or {}).items() if p[0] is not None or p[1] is not None
        }
        self.mean_cost_usd = {m: float(v) for m, v in (mean_cost_usd or {}).items() if math.isfinite(v)}
        self.cost_model = cost_model
        self.output_tokens = int(output_tokens)

    @classmethod
    def fit(
        cls,
        models: Sequence[str],
        dense: np.ndarray | None,
        record_costs: np.ndarray,
        catalog: Mapping[str, CandidateModel] | None = None,
        *,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> PriceEstimator:
        """Learn from training prompts: their dense vectors and ``(n, m)`` recorded costs (NaN = unknown)."""
        costs = np.asarray(record_costs, dtype=np.float64)
        cost_model = None
        if dense is not None and len(dense) and np.isfinite(costs).any():
            cost_model = CostModel().fit(dense, costs)
        return cls(
            models,
            list_prices=list_prices_of(models, catalog),
            mean_cost_usd=mean_costs(models, costs),
            cost_model=cost_model,
            output_tokens=output_tokens,
        )

    def with_list_prices(self, extra: Mapping[str, tuple[float | None, float | None]]) -> PriceEstimator:
        """A copy where models that have no price at all take ``extra``'s list prices (e.g. the gateway's)."""
        known = set(self.list_prices) | set(self.mean_cost_usd) | set(self._modelled())
        fill = {m: p for m, p in extra.items() if m in self.models and m not in known}
        return PriceEstimator(
            self.models,
            list_prices={**self.list_prices, **fill},
            mean_cost_usd=self.mean_cost_usd,
            cost_model=self.cost_model,
            output_tokens=self.output_tokens,
        )

    def _modelled(self) -> list[str]:
        if self.cost_model is None or self.cost_model.bias_ is None:
            return []
        return [m for m, b in zip(self.models, self.cost_model.bias_, strict=True) if np.isfinite(b)]

    def has_prices(self) -> bool:
        """True when every model has some price."""
        known = set(self.list_prices) | set(self.mean_cost_usd) | set(self._modelled())
        return all(m in known for m in self.models)

    def estimate(self, texts: Sequence[str], dense: np.ndarray | None = None) -> np.ndarray:
        """``(len(texts), n_models)`` decision prices (NaN where a model has no price at all)."""
        n, m = len(texts), len(self.models)
        prices = np.full((n, m), np.nan)
        if n == 0:
            return prices
        tokens = np.array([estimate_tokens(t) for t in texts], dtype=np.float64)
        for j, name in enumerate(self.models):
            listed = self.list_prices.get(name)
            if listed is not None:
                prices[:, j] = cost_usd(listed[0] or 0.0, listed[1] or 0.0, tokens, self.output_tokens)
            elif name in self.mean_cost_usd:
                prices[:, j] = self.mean_cost_usd[name]
        if self.cost_model is not None and dense is not None:
            est = self.cost_model.predict(np.asarray(dense, dtype=np.float64))
            prices = np.where(np.isfinite(est), est, prices)
        return prices

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "list_prices": {m: list(p) for m, p in self.list_prices.items()},
            "mean_cost_usd": self.mean_cost_usd,
            "output_tokens": self.output_tokens,
            "cost_model": self.cost_model is not None and self.cost_model.weights_ is not None,
        }

    def save(self, directory: Path) -> None:
        """Write the cost model's arrays (the JSON part goes into the router's manifest via ``to_dict``)."""
        if self.cost_model is not None:
            self.cost_model.save(directory)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], directory: Path | None = None) -> PriceEstimator:
        """Rebuild from :meth:`to_dict` (and the cost model's arrays in ``directory``)."""
        models = [str(m) for m in doc.get("models") or []]
        list_prices: dict[str, tuple[float | None, float | None]] = {}
        for m, pair in dict(doc.get("list_prices") or {}).items():
            inp, out = list(pair)
            list_prices[str(m)] = (_float_or_none(inp), _float_or_none(out))
        means = {str(k): float(v) for k, v in dict(doc.get("mean_cost_usd") or {}).items()}
        cost_model = CostModel.load(directory) if directory is not None and doc.get("cost_model") else None
        return cls(
            models,
            list_prices=list_prices,
            mean_cost_usd=means,
            cost_model=cost_model,
            output_tokens=int(doc.get("output_tokens", DEFAULT_OUTPUT_TOKENS)),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def list_prices_of(
    models: Sequence[str], catalog: Mapping[str, CandidateModel] | None
) -> dict[str, tuple[float | None, float | None]]:
    """Registered list prices (input, output USD per million tokens) of the models that have them."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for name in models:
        model = (catalog or {}).get(name)
        if model is None:
            continue
        if model.has_prices:
            out[name] = (model.input_usd_per_mtok, model.output_usd_per_mtok)
    return out
