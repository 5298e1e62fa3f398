"""Live cascades in the gateway (the definition is :mod:`routerforge.policy.cascade`).

A synthetic model with ``cascade:`` answers a non-streaming request with its candidates in order (cheapest
estimated price first unless ``order`` is given): each answer is scored by a live verifier and the request
escalates while the score is below the threshold. Every call is paid and recorded (``steps`` in the log's
decision details); the last candidate's answer is kept whatever its score, and a candidate that fails counts
as a failed step (score 0) unless it is the last. Streaming requests cannot be verified before they are
sent, so they go to the model the router itself chose (``details["routed_choice"]``), without a cascade.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from routerforge.backends.base import ChatRequest
from routerforge.backends.reliability import ChainResult, UpstreamPool
from routerforge.errors import FallbackExhaustedError
from routerforge.policy.cascade import live_verdict


async def run_cascade(
    pool: UpstreamPool, request: ChatRequest, order: Sequence[str], verifier: str, threshold: float
) -> tuple[ChainResult, list[dict[str, Any]]]:
    """Answer ``request`` through the cascade; returns the kept answer (with every step's attempts and the
    summed cost) and the steps (model, score, cost)."""
    steps: list[dict[str, Any]] = []
    attempts: list[Any] = []
    total = 0.0
    for k, model in enumerate(order):
        last = k == len(order) - 1
        try:
            chain = await pool.complete([model], request)
        except FallbackExhaustedError as exc:
            attempts += exc.attempts
            steps.append({"model": model, "score": None, "cost_usd": 0.0, "error": str(exc)})
            if last:
                exc.attempts = attempts
                raise
            continue
        attempts += chain.attempts
        cost = float(chain.result.cost_usd or 0.0)
        total += cost
        score = live_verdict(verifier, chain.result.text)
        steps.append({"model": model, "score": score, "cost_usd": cost})
        if score >= threshold or last:
            result = dataclasses.replace(chain.result, cost_usd=total)
            return dataclasses.replace(chain, result=result, attempts=attempts), steps
    raise AssertionError("unreachable: the last step always returns or raises")
