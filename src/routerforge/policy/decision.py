"""The plain result of a routing decision, with the reason that produced it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RoutingDecision:
    """One choice: the model, the policy and knob that chose it, the predictions, and why."""

    model: str
    policy: str
    knob: dict[str, float]
    predicted: dict[str, float]
    reason: str
    prices_usd: dict[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_binary_pair(
    models: Sequence[str],
    strong: str | None = None,
    weak: str | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> tuple[str, str] | None:
    """The (strong, weak) pair for a binary decision, or ``None`` for an N-model one.

    Explicit ``strong``/``weak`` win; else a binary calibration's pair; else, for a two-model router, its
    first and second model.
    """
    from routerforge.errors import UnknownModelError, ValidationError

    calib = calibration or {}
    if strong is None and weak is None and calib.get("policy") == "binary":
        strong, weak = calib.get("strong"), calib.get("weak")
    if (strong is None) != (weak is None):
        raise ValidationError("Give both --strong and --weak, or neither.")
    if strong is not None and weak is not None:
        for m in (strong, weak):
            if m not in models:
                raise UnknownModelError(m, models, hint="The router was trained on these models.")
        return strong, weak
    if len(models) == 2:
        return models[0], models[1]
    return None


def decide(
    models: Sequence[str],
    prompt: str,
    predicted: Any,
    *,
    threshold: float | None = None,
    lam: float | None = None,
    tolerance: float | None = None,
    strong: str | None = None,
    weak: str | None = None,
    calibration: Mapping[str, Any] | None = None,
    mean_cost_usd: Mapping[str, float] | None = None,
    prices: Mapping[str, float] | None = None,
) -> RoutingDecision:
    """The decision for one prompt from its predicted scores (one row, columns = ``models``).

    Policy: ``tolerance`` → cheapest within δ; ``lam`` → willingness to pay; otherwise binary threshold
    when a strong/weak pair is known (:func:`resolve_binary_pair`), else willingness to pay. A knob that
    is not given comes from ``calibration`` (the router's ``calibration.json``) or defaults to
    threshold 0.5 / λ = 0. Prices: ``prices`` (model → estimated USD for this prompt, e.g. from a
    :class:`~routerforge.policy.pricing.CostModel`) where given, else ``mean_cost_usd`` per model.
    """
    import numpy as np

    from routerforge.errors import ValidationError
    from routerforge.policy.binary import BinaryPolicy, strong_probability
    from routerforge.policy.choice import choose_tolerance, choose_wtp
    from routerforge.policy.pricing import query_prices

    names = list(models)
    pred = np.atleast_2d(np.asarray(predicted, dtype=np.float64))[:1]
    scores = {m: float(v) for m, v in zip(names, pred[0], strict=True)}
    calib = calibration or {}
    knob = calib.get("knob", {}) if isinstance(calib.get("knob"), dict) else {}
    pair = resolve_binary_pair(names, strong, weak, calib)
    if lam is None and tolerance is None and pair is not None:
        if threshold is None:
            threshold = float(knob.get("threshold", 0.5)) if calib.get("policy") == "binary" else 0.5
        s, w = pair
        p = float(strong_probability(pred, names.index(s), names.index(w))[0])
        chosen = BinaryPolicy(s, w, threshold).choose(names, pred)[0]
        reason = f"P(strong needed) = {p:.3f} {'≥' if chosen == s else '<'} threshold {threshold:g}"
        return RoutingDecision(
            chosen,
            "binary",
            {"threshold": threshold},
            scores,
            reason,
            details={"p_strong": p, "strong": s, "weak": w},
        )
    cost = query_prices([prompt], names, None, fallback_mean_usd=dict(mean_cost_usd or {}))
    if prices is not None:
        cost = np.array([[float(prices.get(m, c)) for m, c in zip(names, cost[0], strict=True)]])
    if not np.isfinite(cost).all():
        raise ValidationError(
            "This router has no prices for its models, so only a binary policy is possible.",
            hint="Give --strong and --weak (and --threshold), or train on data with costs.",
        )
    price_map = {m: float(v) for m, v in zip(names, cost[0], strict=True)}
    if tolerance is not None:
        j = int(choose_tolerance(pred, cost, tolerance)[0])
        reason = f"cheapest model predicted within {tolerance:g} of the best ({max(scores.values()):.3f})"
        return RoutingDecision(names[j], "tolerance", {"tolerance": tolerance}, scores, reason, price_map)
    if lam is None:
        lam = float(knob.get("lambda", 0.0)) if calib.get("policy") == "wtp" else 0.0
    j = int(choose_wtp(pred, cost, lam)[0])
    reason = f"maximises predicted score − {lam:g}·price (score {scores[names[j]]:.3f}, ${price_map[names[j]]:.6f})"
    return RoutingDecision(names[j], "wtp", {"lambda": lam}, scores, reason, price_map)
