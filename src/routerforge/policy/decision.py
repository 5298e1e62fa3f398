"""The plain result of a routing decision, with the reason that produced it."""

from __future__ import annotations

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
