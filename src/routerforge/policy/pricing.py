"""Per-query prices for routing decisions and cost metrics.

A cell's price (USD for one query of model j on prompt i) is taken, in this order:

1. the eval record's own ``cost_usd`` when present (``ScoreMatrix.costs[i, j]`` finite);
2. the model's list prices × tokens: input tokens estimated from the prompt text
   (:func:`estimate_tokens`: one token per 4 characters, at least 1) plus ``output_tokens`` (default 256)
   at the output price;
3. the mean recorded cost of that model over the other prompts of the same data;
4. otherwise NaN (unknown) — N-model policies refuse to run on unknown prices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
