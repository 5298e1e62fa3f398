"""The plain result of a routing decision, with the reason that produced it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RoutingDecision:
    """One choice: the model, the policy and knob that chose it, the predictions, the prices and why.

    ``details`` carries what the policy looked at: ``p_strong``/``strong``/``weak`` (threshold policy),
    ``candidates``, ``knob_source`` (request | config | name | calibration | default) and, when a low
    budget moved the knob, ``budget_shift`` and ``knob_before_shift``.
    """

    model: str
    policy: str
    knob: float
    predicted: dict[str, float]
    reason: str
    prices_usd: dict[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "policy": self.policy,
            "knob": self.knob if math.isfinite(self.knob) else None,
            "predicted": dict(self.predicted),
            "reason": self.reason,
            "prices_usd": None if self.prices_usd is None else dict(self.prices_usd),
            "details": dict(self.details),
        }
