"""Shadow and canary routers beside a synthetic model's serving router (gateway.yaml ``shadow:`` / ``canary:``).

- **canary** ``{router: DIR, share: 0.1}``: the candidate's decision *serves* ``share`` of the requests. Which
  requests is decided by a hash of the request id (deterministic: the same id always lands in the same arm).
  The logged decision says which arm served: ``decision.canary = {"arm": "canary"|"serving", "router", "share"}``.
- **shadow** ``{router: DIR, share: 1.0}``: on ``share`` of the requests the candidate decides too, off the
  response path: a background task started when the serving decision is made, running while the upstream
  answers. Its decision is written into the request's logged decision as ``decision.shadow`` (model,
  predicted scores, decision prices, policy, knob, reason, routing_ms). When the request ends before the
  shadow decision is ready it waits at most the shadow's ``wait_s`` (default 0.25 s; then
  ``{"status": "timeout"}``);
  at most :attr:`CandidateArms.max_pending` shadow decisions run at once (beyond: ``{"status": "skipped"}``).

Both decide through the same path as the serving router (:meth:`Routing.decide`: the router directory's
``DecisionEngine``), over the synthetic model's candidates and rules; only the router and the policy differ.
``routerforge review --from-shadow`` reads the logged shadow decisions back (gateway/review.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from routerforge.errors import RouterForgeError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from routerforge.gateway.config import CandidateRouterConfig, SyntheticModelConfig
    from routerforge.gateway.logentry import LogEntry
    from routerforge.gateway.metrics import GatewayMetrics
    from routerforge.gateway.routing import RequestRouting, Routing, Target

log = logging.getLogger("routerforge.gateway")


def in_share(request_id: str, share: float, salt: str) -> bool:
    """True for a stable ``share`` of request ids (SHA-256 of ``salt:request_id`` as a number in [0, 1))."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    digest = hashlib.sha256(f"{salt}:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share


def candidate_target(routing: Routing, target: Target, arm: CandidateRouterConfig) -> Target:
    """``target`` (a synthetic model's) with the candidate router and policy of ``arm``: same candidates,
    rules, fallbacks. Without kind and knob the target's policy applies; a knob without a kind takes the
    target's kind; a kind without a knob takes the candidate router's calibrated knob."""
    p = Path(arm.router).expanduser()
    router = routing._router_at(p if p.is_absolute() else routing.routers_dir / p)
    routing._check_models(target.requested, target.candidates, router)
    if arm.kind is None and arm.knob is None:
        return dataclasses.replace(target, router=router)
    kind = arm.kind or target.kind
    return dataclasses.replace(target, router=router, kind=kind, knob=arm.knob, knob_source="config")


def shadow_record(decision: Any, router_name: str) -> dict[str, Any]:
    """The logged form of a shadow decision (also what review reads back)."""
    d = decision.to_dict()
    return {
        "status": "ok",
        "router": router_name,
        "model": d["model"],
        "predicted": d["predicted"],
        "prices_usd": d["prices_usd"],
        "policy": d["policy"],
        "knob": d["knob"],
        "reason": d["reason"],
        "routing_ms": d["routing_ms"],
    }


class CandidateArms:
    """Per service: picks the canary arm of a request and runs its shadow decision."""

    def __init__(self, metrics: GatewayMetrics, *, max_pending: int = 64, wait_s: float = 0.25) -> None:
        self.max_pending = max_pending
        self.wait_s = wait_s
        self.pending: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self.waits: dict[str, float] = {}  # request id -> the shadow's wait_s
        self.m_shadow = Counter(
            "routerforge_shadow_decisions",
            "Shadow decisions by outcome (ok, skipped, timeout, error).",
            ["outcome"],
            registry=metrics.registry,
        )
        self.m_canary = Counter(
            "routerforge_canary_requests",
            "Requests of synthetic models with a canary, by arm that served (canary, serving).",
            ["arm"],
            registry=metrics.registry,
        )

    @staticmethod
    def _config(routing: Routing, target: Target) -> SyntheticModelConfig | None:
        if not target.synthetic:
            return None
        return routing._named.get(target.requested)

    def canary(
        self, routing: Routing, target: Target, request_id: str
    ) -> tuple[Target, dict[str, Any] | None]:
        """The target that serves this request and the ``decision.canary`` record (None: no canary)."""
        syn = self._config(routing, target)
        if syn is None or syn.canary is None:
            return target, None
        arm = syn.canary
        info: dict[str, Any] = {"arm": "serving", "router": Path(arm.router).name, "share": arm.share}
        if in_share(request_id, arm.share, "canary"):
            try:
                chosen = candidate_target(routing, target, arm)
                info["arm"] = "canary"
                self.m_canary.labels("canary").inc()
                return chosen, info
            except (
                RouterForgeError,
                OSError,
                ValueError,
                KeyError,
                TypeError,
            ) as exc:  # a broken canary never fails a request: the serving arm answers
                log.warning("canary router %s of %r cannot serve: %s", arm.router, syn.name, exc)
                info["error"] = str(exc)
        self.m_canary.labels("serving").inc()
        return target, info

    def start_shadow(
        self,
        routing: Routing,
        target: Target,
        request_id: str,
        text: str,
        *,
        fraction_left: float | None,
        allowed: Sequence[str] | None,
        request: RequestRouting | None,
    ) -> None:
        """Start the shadow decision of this request in the background (when its synthetic model has one)."""
        syn = self._config(routing, target)
        if syn is None or syn.shadow is None or not in_share(request_id, syn.shadow.share, "shadow"):
            return
        if len(self.pending) >= self.max_pending:
            done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            done.set_result({"status": "skipped", "reason": "too many shadow decisions in flight"})
            self.pending[request_id] = done  # type: ignore[assignment]
            return
        arm = syn.shadow

        async def decide() -> dict[str, Any]:
            start = time.perf_counter()
            shadow = candidate_target(routing, target, arm)
            assert shadow.router is not None
            meta = request.meta_dict() if request is not None else None
            scores = await routing.batcher(shadow.router).predict(text, meta)
            made = routing.decide(
                shadow, text, fraction_left=fraction_left, allowed=allowed, scores=scores, request=request
            )
            made.routing_ms = (time.perf_counter() - start) * 1000.0
            return shadow_record(made, shadow.router.name)

        self.pending[request_id] = asyncio.get_running_loop().create_task(decide(), name="routerforge-shadow")
        self.waits[request_id] = arm.wait_s

    async def settle(self, entry: LogEntry, *, wait: bool = True) -> None:
        """Put this request's shadow decision (or why there is none) into its logged decision. ``wait``
        False (the client went away: the entry is recorded without suspending): only a finished one."""
        task = self.pending.pop(entry.id, None)
        wait_s = self.waits.pop(entry.id, self.wait_s)
        if task is None:
            return
        result: dict[str, Any]
        try:
            if task.cancelled():
                result = {"status": "cancelled"}
            elif task.done() or not wait:
                if not task.done():
                    raise TimeoutError
                result = task.result()
            else:
                if wait_s <= 0:
                    raise TimeoutError
                result = await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            task.cancel()
            result = {"status": "timeout", "wait_s": wait_s}
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:  # the shadow's failure is recorded, never the request's
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        self.m_shadow.labels(str(result.get("status", "ok"))).inc()
        if entry.decision is None:
            entry.decision = {}
        entry.decision["shadow"] = result

    async def aclose(self) -> None:
        for task in self.pending.values():
            task.cancel()
        for task in list(self.pending.values()):
            with contextlib.suppress(BaseException):
                await task
        self.pending.clear()
        self.waits.clear()
