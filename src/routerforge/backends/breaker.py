"""A circuit breaker per model: closed → open after repeated failures → half-open probe → closed.

The clock is injected (monotonic seconds), so tests drive cool-downs without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Clock = Callable[[], float]
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerPolicy:
    """Open after ``failure_threshold`` consecutive failures within ``window_s``; probe after ``cooldown_s``."""

    failure_threshold: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0


class CircuitBreaker:
    """closed → open (N consecutive failures within the window) → half-open (after the cool-down, one probe).

    A successful probe closes the breaker; a failed one opens it again for another cool-down.
    """

    def __init__(self, policy: BreakerPolicy | None = None, clock: Clock = time.monotonic) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.policy.cooldown_s:
            return "half_open"
        return "open"

    def try_acquire(self) -> bool:
        """May a call go through now? In half-open state only the first caller (the probe) may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def release(self) -> None:
        """A call that held the probe ended without a verdict (cancelled): let the next caller probe."""
        self._probing = False

    def record_success(self) -> None:
        self._failures.clear()
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        now = self._clock()
        if self._opened_at is not None:  # a failed probe (or a late failure): open for another cool-down
            self._opened_at = now
            self._probing = False
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.policy.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.policy.failure_threshold:
            self._opened_at = now
            self._failures.clear()
