"""Policies: turn predicted scores + prices + a knob into one model choice per prompt.

:class:`DecisionEngine` is the only code path from predictions to a choice (bench, calibrate, route, the
SDK and the gateway); the functions below are its building blocks.
"""

from __future__ import annotations

from routerforge.policy.binary import (
    parse_router_model,
    router_model_name,
    strong_probability,
    threshold_for_share,
)
from routerforge.policy.choice import choose_tolerance, choose_wtp, constraint_mask, lambda_grid
from routerforge.policy.decision import RoutingDecision
from routerforge.policy.engine import (
    DEFAULT_KNOBS,
    POLICY_KINDS,
    DecisionEngine,
    Policy,
    policy_kind,
    shift_amount,
    shift_knob,
    strong_weak,
)
from routerforge.policy.pricing import PriceEstimator, estimate_tokens, mean_costs, query_prices

__all__ = [
    "DEFAULT_KNOBS",
    "POLICY_KINDS",
    "DecisionEngine",
    "Policy",
    "PriceEstimator",
    "RoutingDecision",
    "choose_tolerance",
    "choose_wtp",
    "constraint_mask",
    "estimate_tokens",
    "lambda_grid",
    "mean_costs",
    "parse_router_model",
    "policy_kind",
    "query_prices",
    "router_model_name",
    "shift_amount",
    "shift_knob",
    "strong_probability",
    "strong_weak",
    "threshold_for_share",
]
