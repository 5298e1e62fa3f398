"""``random``: uniform random predicted scores — the floor every router must beat (APGR ≈ 0.5).

The prediction for a prompt depends only on its text and ``random_state``, so the same prompt always
gets the same prediction (within and across processes) and predictions do not depend on batch order.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.registry import register_router


@register_router
class RandomRouter(Router):
    """Predicts U(0, 1) scores drawn from a generator seeded by (text hash, random_state)."""

    name = "random"
    _requires_dense = False

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        return None

    def _predict(self, X: PromptBatch) -> np.ndarray:
        m = len(self.models_ or [])
        out = np.empty((len(X), m), dtype=np.float64)
        for i, text in enumerate(X.texts):
            seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
            out[i] = np.random.default_rng([seed, int(self.random_state) & 0xFFFFFFFF]).random(m)
        return out

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        base.reason = "random router: scores are uniform random numbers seeded by the prompt text."
        return base

    def _state_meta(self) -> dict[str, Any]:
        return {}
