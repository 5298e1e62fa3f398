"""``bench --policy cascade``: replay a cascade over the held-out prompts of a benchmark (no live calls).

For every router the verifier is the router's own predicted score of the model being tried (``router``);
the ``judge`` replay (the recorded score as the verifier) is reported once, as ``cascade_judge``, with the
caveat of :mod:`routerforge.policy.cascade`: when the scores come from reference answers it is an upper bound.
Candidates are tried cheapest first (mean true cost; without costs, the lower mean score first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routerforge.policy.cascade import replay_cascade


def cascade_results(
    doc: dict[str, Any],
    keep: dict[str, Any],
    scores: np.ndarray,
    costs: np.ndarray,
    threshold: float,
) -> None:
    """Add ``escalation_rate`` and ``cascade`` to every router of ``doc`` and ``doc["cascade"]``.

    ``keep`` is what ``run_bench(..., keep=...)`` filled (out-of-fold predictions, columns ``keep["models"]``);
    ``scores``/``costs`` are the held-out rows' true scores and costs in the same column order."""
    models = list(keep["models"])
    mean_cost = np.nanmean(np.where(np.isfinite(costs), costs, np.nan), axis=0) if costs.size else None
    mean_score = scores.mean(axis=0)

    def key(j: int) -> tuple[float, float, int]:
        c = float(mean_cost[j]) if mean_cost is not None and np.isfinite(mean_cost[j]) else np.inf
        return (c, float(mean_score[j]), j)

    order = sorted(range(len(models)), key=key)
    has_costs = bool(np.isfinite(costs).all())
    judge: dict[str, Any] = dict(replay_cascade(scores, costs, threshold, order).summary(scores))
    if not has_costs:
        judge["cost"] = None
    doc["cascade"] = {
        "threshold": threshold,
        "order": [models[j] for j in order],
        "verifier": "router",
        "costs_known": has_costs,
        "judge": {
            **judge,
            "note": "recorded score as the verifier: an upper bound when scores need a reference",
        },
    }
    for name, pred in keep["predicted"].items():
        entry = doc["routers"].get(name)
        if entry is None:
            continue
        summary: dict[str, Any] = dict(replay_cascade(pred, costs, threshold, order).summary(scores))
        if not has_costs:
            summary["cost"] = None
        entry["cascade"] = summary
        entry["escalation_rate"] = summary["escalation_rate"]
