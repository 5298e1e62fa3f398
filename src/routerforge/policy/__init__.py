"""Policies: turn predicted scores + prices + a knob into one model choice per prompt."""

from __future__ import annotations

from routerforge.policy.binary import (
    BinaryPolicy,
    parse_router_model,
    router_model_name,
    strong_probability,
    threshold_for_share,
)
from routerforge.policy.choice import choose_tolerance, choose_wtp, constraint_mask, lambda_grid
from routerforge.policy.decision import RoutingDecision, decide, resolve_binary_pair
from routerforge.policy.pricing import estimate_tokens, mean_costs, query_prices

__all__ = [
    "BinaryPolicy",
    "RoutingDecision",
    "choose_tolerance",
    "choose_wtp",
    "constraint_mask",
    "decide",
    "estimate_tokens",
    "lambda_grid",
    "mean_costs",
    "parse_router_model",
    "query_prices",
    "resolve_binary_pair",
    "router_model_name",
    "strong_probability",
    "threshold_for_share",
]
