"""The gateway core: everything between "a caller asked for a chat completion" and the answer.

Shared by the HTTP app (``gateway/app.py``) and the in-process SDK (``routerforge.sdk``): prompt-size
limits, budgets and the budget shift, routing, the upstream fallback chain, cost, metrics and the request
log. HTTP concerns (auth headers, status codes) stay in the app, the SSE wire format in ``gateway/sse.py``,
the request log's queries in ``gateway/requestlog.py``.

Every request that has a request id gets exactly one :class:`LogEntry`, filled as the request goes and
recorded when it ends. With ``logging.durability: commit`` recording waits for the row's commit, and the
answer (the JSON body; for a stream, the final ``[DONE]``) is sent only after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from routerforge.backends.base import ChatRequest
from routerforge.backends.fit import RequestNeeds, misfit
from routerforge.backends.reliability import (
    BreakerPolicy,
    ChainResult,
    ChainStream,
    RetryPolicy,
    UpstreamPool,
)
from routerforge.config import Settings
from routerforge.errors import (
    ArtifactError,
    FallbackExhaustedError,
    RouterForgeError,
    RouterUnavailableError,
    UpstreamError,
    ValidationError,
)
from routerforge.gateway.auth import Principal
from routerforge.gateway.budgets import Budgets, BudgetState, Reservation, estimate_request
from routerforge.gateway.cascade import run_cascade
from routerforge.gateway.config import GatewayConfig
from routerforge.gateway.db import GatewayDB, utcnow
from routerforge.gateway.drift import DriftMonitor
from routerforge.gateway.ledger import build_ledger
from routerforge.gateway.logentry import UNKNOWN_TENANT, AttemptEntry, LogEntry
from routerforge.gateway.logwriter import LogWriter
from routerforge.gateway.metrics import GatewayMetrics
from routerforge.gateway.partitions import setup_partitioning
from routerforge.gateway.ratelimit import Counters, RateLimiter, build_counters
from routerforge.gateway.requestlog import RequestLog
from routerforge.gateway.retention import RetentionPruner
from routerforge.gateway.routing import Decision, RequestRouting, Routing
from routerforge.gateway.schemas import (
    ChatCompletionRequest,
    RoutingParams,
    completion_body,
    error_body,
    limit_prompt,
    overhead_chars,
    prompt_text,
)
from routerforge.gateway.shadow import CandidateArms
from routerforge.gateway.sse import ChunkBodies
from routerforge.gateway.telemetry import RequestTrace, Telemetry

if TYPE_CHECKING:
    from routerforge.gateway.reload import Reloader

log = logging.getLogger("routerforge.gateway")


def new_request_id() -> str:
    """A 24-hex-digit request id from the OS's CSPRNG (unpredictable; ~1.2 µs, measured)."""
    return secrets.token_hex(12)


def error_code(exc: BaseException) -> int:
    return exc.http_status if isinstance(exc, RouterForgeError) else 500


@dataclass
class Prepared:
    """A validated chat request with its routing decision, ready for the upstream call."""

    request_id: str
    principal: Principal
    request: ChatCompletionRequest
    chat: ChatRequest
    decision: Decision
    budget: BudgetState | None
    started: float
    log: LogEntry
    logged: bool = False  # the log entry has been recorded (exactly once per request)
    reservation: Reservation | None = None  # budgets and tokens/minute reserved (gateway/budgets.py)


class GatewayService:
    """Long-lived: one per process (or per SDK client). ``await start()`` once, ``await aclose()`` at the end."""

    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig,
        *,
        db: GatewayDB | None = None,
        counters: Counters | None = None,
        pool: UpstreamPool | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.db = db
        self.metrics = GatewayMetrics.for_gateway(config, lambda: self.routing.loaded)
        self.counters = counters or build_counters(config.counters, db)
        self.ledger = build_ledger(config.counters, db)  # budget/token reservations (gateway/ledger.py)
        self.budgets = Budgets(config, self.ledger)
        self.limiter = RateLimiter(self.counters, config.limits.requests_per_minute)
        self.routing = Routing(settings, config)
        self.pool = pool or build_pool(config)
        self.arms = CandidateArms(self.metrics)  # shadow and canary routers (gateway/shadow.py)
        self.reloader: Reloader | None = None  # hot reload (gateway/reload.py), set by the app
        self.logs: LogWriter | None = None
        self.requests: RequestLog | None = None
        if db is not None:
            self.requests = RequestLog(db)
            self.logs = LogWriter(
                self.requests,
                durable=config.logging.durability == "commit",
                batch_size=config.logging.batch_size,
                flush_interval_s=config.logging.flush_interval_s,
                redact_patterns=config.logging.compiled(),
                store_messages=config.logging.store_messages,
            )
            self.requests.flush = self.logs.flush  # a caller reads back the request it has just made
        self.pruner: RetentionPruner | None = None
        if db is not None and config.logging.retention_days is not None:
            self.pruner = RetentionPruner(
                db,
                config.logging.retention_days,
                interval_s=config.logging.prune_interval_s,
                batch_size=config.logging.prune_batch_size,
            )
        self.drift: DriftMonitor | None = None
        self._drift_task: asyncio.Task[None] | None = None
        # OpenTelemetry (gateway/telemetry.py): None when off, and then no hook below does anything
        self.telemetry: Telemetry | None = Telemetry.from_config(
            config.telemetry, redact_patterns=config.logging.compiled(), spec_of=self._spec_or_none
        )
        self._traces: dict[str, RequestTrace] = {}
        if any(m.deployments for m in config.models):  # load-balanced models: per-deployment /metrics
            from routerforge.gateway.deployment_metrics import DeploymentCollector

            self.metrics.registry.register(DeploymentCollector(lambda: self.pool))
        self.ready = False

    @classmethod
    def from_settings(
        cls, settings: Settings, config: GatewayConfig, *, store: bool = True
    ) -> GatewayService:
        durable = config.logging.durability == "commit"
        db = GatewayDB(settings.store_url, durable_log=durable) if store else None
        if db is not None:
            try:
                done = setup_partitioning(db.engine, config.logging.partition)
            except BaseException:
                db.close()
                raise
            if config.logging.partition != "none":
                log.info("request log partitioning (%s): %s", config.logging.partition, done)
            for t in config.tenants:
                db.ensure_tenant(t.name, training_opt_out=t.training_opt_out)
        return cls(settings, config, db=db)

    async def start(self) -> None:
        if self.reloader is not None:  # promotions recorded so far apply from the first request
            await anyio.to_thread.run_sync(self.reloader.prime)
        await anyio.to_thread.run_sync(self.routing.load_all)
        for path, error in self.routing.failed.items():
            log.warning("router directory %s is not served (requests for it answer 503): %s", path, error)
        if self.logs is not None:
            self.logs.start()
        if self.pruner is not None:
            self.pruner.start()
        if self.db is not None:  # drift and quality alerts (gateway/drift.py): cached, on demand too
            self.drift = DriftMonitor(
                self.settings, lambda: (self.config, self.routing), self.db, self.metrics
            )
            if self.config.drift.enabled and self.config.synthetic_models:
                self._drift_task = asyncio.create_task(self.drift.run(), name="drift")
        if self.reloader is not None:
            self.reloader.start()
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False
        if self.reloader is not None:
            await self.reloader.aclose()
        await self.arms.aclose()
        if self.drift is not None:
            self.drift.close()
        if self._drift_task is not None:
            self._drift_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drift_task
        self.routing.close()
        await self.pool.aclose()
        if self.pruner is not None:
            await anyio.to_thread.run_sync(self.pruner.close)
        if self.logs is not None:
            await anyio.to_thread.run_sync(self.logs.close)
        await self.counters.aclose()
        await self.ledger.aclose()
        if self.telemetry is not None:
            await anyio.to_thread.run_sync(self.telemetry.shutdown)
        if self.db is not None:
            self.db.close()

    # -- models -------------------------------------------------------------------------------------
    def list_models(self, principal: Principal) -> list[dict[str, Any]]:
        now = int(time.time())
        out = [
            {"id": m.id, "object": "model", "created": now, "owned_by": m.provider}
            for m in self.config.models
        ]
        for s in self.config.synthetic_models:
            if s.tenant in (None, principal.tenant):
                out.append({"id": s.name, "object": "model", "created": now, "owned_by": "routerforge"})
        for r in self.routing.router_names(principal.tenant):
            out.append({"id": f"router-{r}", "object": "model", "created": now, "owned_by": "routerforge"})
        return out

    # -- routing ------------------------------------------------------------------------------------
    async def _decide(
        self,
        principal: Principal,
        model: str,
        text: str,
        needs: RequestNeeds | None,
        routing: RoutingParams | None = None,
        request_id: str | None = None,
    ) -> tuple[Decision, BudgetState | None]:
        traced_ns = time.time_ns() if self.telemetry is not None else 0
        budget = await self.budgets.check(principal) if self.budgets.has_budget(principal) else None
        rt = self.routing  # one routing state for the whole decision (a hot reload may swap it meanwhile)
        target = self._resolve(principal.tenant, model, rt)
        serving, canary = target, None
        if request_id is not None and target.synthetic:
            target, canary = self.arms.canary(rt, target, request_id)
        allowed = None
        if needs is not None and target.synthetic:
            allowed = [m for m in target.candidates if misfit(self.pool.spec(m), needs) is None] or None
        fraction = budget.fraction_left if budget is not None else None
        if target.synthetic and target.router is not None:
            start = time.perf_counter()
            # values are strings after RoutingParams' validator; str() states it for the type checker
            meta = {k: str(v) for k, v in routing.metadata.items()} if routing and routing.metadata else None
            scores = await rt.batcher(target.router).predict(text, meta)
            decision = rt.decide(
                target,
                text,
                fraction_left=fraction,
                allowed=allowed,
                scores=scores,
                request=_request(routing),
            )
            decision.routing_ms = (time.perf_counter() - start) * 1000.0
            self.metrics.routing_latency.labels(model).observe(decision.routing_ms / 1000.0)
            if canary is not None:
                decision.details["canary"] = canary
            if request_id is not None:
                self.arms.start_shadow(
                    rt,
                    serving,
                    request_id,
                    text,
                    fraction_left=fraction,
                    allowed=allowed,
                    request=_request(routing),
                )
        else:
            decision = rt.decide(target, text)
        if budget is not None and budget.usd_left is not None:
            self.metrics.budget_left.labels(principal.tenant).set(budget.usd_left)
        trace = self._traces.get(request_id) if traced_ns and request_id is not None else None
        if trace is not None:
            trace.routing(decision, traced_ns, target.router.name if target.router is not None else None)
        return decision, budget

    def _resolve(self, tenant: str, model: str, routing: Routing | None = None) -> Any:
        """``routing.resolve``; a router directory that cannot be loaded answers 503 naming the router."""
        try:
            return (routing or self.routing).resolve(tenant, model)
        except RouterUnavailableError:
            raise
        except (ArtifactError, OSError, ValueError, TypeError) as exc:
            log.warning("router behind %r cannot be loaded: %s", model, exc)
            raise RouterUnavailableError(
                f"The router behind {model!r} is broken and cannot be loaded (the gateway's log says why).",
                hint="The operator must retrain or re-import it (`routerforge router import`).",
            ) from exc

    async def route(
        self,
        principal: Principal,
        model: str,
        text: str,
        *,
        explain: bool = True,
        request_id: str | None = None,
        routing: RoutingParams | None = None,
    ) -> dict[str, Any]:
        """Route only (``POST /v1/route``): the decision, the predictions and the neighbours; no upstream call.

        With a ``request_id`` the call is written to the request log (endpoint ``route``), refusals included.
        """
        started = time.perf_counter()
        limits = self.config.limits
        log = None
        if request_id is not None:
            log = self._new_entry(request_id, principal, model, "route")
        try:
            if len(text) > limits.max_prompt_chars:
                if limits.oversize == "reject":  # refused before embedding; the prompt is not logged
                    raise ValidationError(
                        f"The prompt has {len(text)} characters; this gateway accepts at most "
                        f"{limits.max_prompt_chars}.",
                        param="prompt",
                        code="context_length_exceeded",
                    )
                text = text[: limits.max_prompt_chars]
            if log is not None:
                log.prompt = text
            decision, budget = await self._decide(principal, model, text, None, routing, request_id)
            out = decision.to_dict()
            out["budget_fraction_left"] = budget.fraction_left if budget else None
            out["explanation"] = None
            out["neighbours"] = []
            if explain and decision.synthetic_model is not None:
                target = self._resolve(principal.tenant, model)
                if target.router is not None:
                    router = target.router
                    loop = asyncio.get_running_loop()
                    executor = self.routing.batcher(router).executor
                    # values are strings after RoutingParams' validator; str() states it for the type checker
                    meta = (
                        {k: str(v) for k, v in routing.metadata.items()}
                        if routing and routing.metadata
                        else None
                    )
                    exp = _jsonable(await loop.run_in_executor(executor, router.explain, text, meta))
                    details = exp.get("details") or {}
                    out["neighbours"] = list(details.pop("neighbours", None) or [])[:10]
                    out["explanation"] = exp
        except BaseException as exc:
            if log is not None:
                await self._finish_log(log, started, status=error_code(exc), error=str(exc))
            raise
        if log is not None:
            _log_decision(log, decision)
            await self._finish_log(log, started, status=200, error=None)
        return out

    async def prepare(self, principal: Principal, req: ChatCompletionRequest, request_id: str) -> Prepared:
        """Validate limits, check the budget and route. Refusals are logged before they propagate."""
        started = time.perf_counter()
        raw_messages = req.message_dicts()
        log = self._new_entry(
            request_id, principal, req.model, "chat", stream=req.stream, messages=raw_messages
        )
        try:
            limits = self.config.limits
            try:
                overhead = overhead_chars(req, raw_messages)
                messages = limit_prompt(raw_messages, limits.max_prompt_chars, limits.oversize, overhead)
            except ValidationError:
                log.messages = None  # an oversize request is logged without its payload
                raise
            log.messages = messages
            if req.n is not None and req.n > 1 and req.stream:
                raise ValidationError(
                    "n > 1 is not supported with stream: true.",
                    param="n",
                    hint="Ask for one choice per streamed request, or drop stream to get all n choices.",
                )
            extra = req.extra_fields()
            for key in ("top_p", "tool_choice", "user", "max_completion_tokens", "n"):
                value = getattr(req, key)
                if value is not None:
                    extra[key] = value
            stop = [req.stop] if isinstance(req.stop, str) else req.stop
            chat = ChatRequest(
                model=req.model,
                messages=messages,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                stop=stop,
                tools=req.tools,
                response_format=req.response_format,
                extra=extra,
            )
            text = prompt_text(messages)
            log.prompt = text
            decision, budget = await self._decide(
                principal, req.model, text, RequestNeeds.of(chat), req.routing, request_id
            )
            reservation = await self._reserve(principal, req, messages, decision)
        except BaseException as exc:
            self.metrics.requests.labels(req.model, "", str(error_code(exc))).inc()
            await self._finish_log(log, started, status=error_code(exc), error=str(exc))
            raise
        _log_decision(log, decision)
        return Prepared(
            request_id, principal, req, chat, decision, budget, started, log, reservation=reservation
        )

    async def _reserve(
        self,
        principal: Principal,
        req: ChatCompletionRequest,
        messages: list[dict[str, Any]],
        decision: Decision,
    ) -> Reservation | None:
        """Reserve the request's estimated cost and tokens on every budget and token limit of the caller
        (gateway/budgets.py); refuses with 429 when one would go over."""
        plan = decision.details.get("cascade")
        ids = list(plan["order"]) if plan else decision.chain
        specs = [self.pool.spec(m) for m in ids]
        est = estimate_request(
            specs,
            len(json.dumps(messages, separators=(",", ":"), ensure_ascii=False, default=str)),
            req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
            default_output_tokens=self.config.budgets.default_output_tokens,
            n=req.n or 1,
            cascade=bool(plan),
        )
        return await self.budgets.reserve(principal, est)

    async def _release(self, prep: Prepared) -> None:
        """Free the reservation of a request that ended without settling (refused, failed, cancelled)."""
        res = prep.reservation
        if res is None or res.settled:
            return
        try:
            await asyncio.shield(self.budgets.release(res))
        except Exception as exc:  # the lease expires after budgets.lease_s
            log.warning(
                "budget reservation of %s not released (%s); it expires by itself", prep.request_id, exc
            )

    # -- chat ---------------------------------------------------------------------------------------
    async def _call(self, prep: Prepared) -> ChainResult:
        """The upstream call of a non-streaming request: the fallback chain, or a live cascade when the
        decision planned one (its steps go into the log's decision details)."""
        plan = prep.decision.details.get("cascade")
        if not plan:
            return await self.pool.complete(prep.decision.chain, prep.chat)
        chain, steps = await run_cascade(
            self.pool, prep.chat, plan["order"], plan["verifier"], float(plan["threshold"])
        )
        prep.decision.details["cascade_steps"] = steps
        if prep.log.decision is not None:
            prep.log.decision["cascade_steps"] = _jsonable(steps)
        return chain

    async def complete(self, prep: Prepared) -> dict[str, Any]:
        """Call the chain; returns the OpenAI ``chat.completion`` body. The log row is written in all cases."""
        status: int = 500
        error: str | None = "cancelled"
        attempts: list[Any] = []
        try:
            try:
                chain = await self._call(prep)
            except FallbackExhaustedError as exc:
                attempts = exc.attempts
                _as_client_fault(exc)
                raise
            attempts = chain.attempts
            res = chain.result
            model = chain.model.id
            message = None
            raw_choices = (res.raw or {}).get("choices") if isinstance(res.raw, dict) else None
            if (
                raw_choices
                and isinstance(raw_choices[0], dict)
                and isinstance(raw_choices[0].get("message"), dict)
            ):
                message = raw_choices[0]["message"]
            choices = _all_choices(raw_choices, prep.request.n)
            body = completion_body(
                request_id=prep.request_id,
                model=model,
                text=res.text,
                finish_reason=res.finish_reason,
                tokens_in=res.tokens_in,
                tokens_out=res.tokens_out,
                message=message,
                choices=choices,
            )
            await self._account(prep, model, res.tokens_in, res.tokens_out, res.cost_usd)
            prep.log.answered_model = model
            prep.log.response_text = res.text
            prep.log.usage_estimated = chain.usage_estimated
            status, error = 200, None
            return body
        except asyncio.CancelledError:  # the client went away (the app cancels): the upstream call stops
            status, error = 499, "client disconnected"
            raise
        except BaseException as exc:
            status, error = error_code(exc), str(exc) or type(exc).__name__
            raise
        finally:
            await self._release(prep)
            self._record_attempts(prep, attempts)
            self.metrics.requests.labels(prep.request.model, prep.decision.model, str(status)).inc()
            prep.logged = True
            await self._finish_log(prep.log, prep.started, status=status, error=error, wait=status != 499)

    async def open_stream(self, prep: Prepared) -> ChainStream:
        """Start the upstream stream (falls back until the first content arrives)."""
        try:
            return await self.pool.open_stream(prep.decision.chain, prep.chat)
        except BaseException as exc:
            await self._release(prep)
            attempts = exc.attempts if isinstance(exc, FallbackExhaustedError) else []
            if isinstance(exc, FallbackExhaustedError):
                _as_client_fault(exc)
            self._record_attempts(prep, attempts)
            self.metrics.requests.labels(prep.request.model, prep.decision.model, str(error_code(exc))).inc()
            prep.logged = True
            await self._finish_log(prep.log, prep.started, status=error_code(exc), error=str(exc))
            raise

    async def stream_bodies(self, prep: Prepared, stream: ChainStream) -> AsyncIterator[dict[str, Any]]:
        """The ``chat.completion.chunk`` bodies of an open upstream stream, then the usage body
        (``stream_options.include_usage``), or an OpenAI error body after a mid-stream failure.

        The log entry is recorded before the iterator ends (``commit`` durability: committed), so the
        ``[DONE]`` that follows the last body (``gateway/sse.py``) is only sent once the row is stored.
        """
        bodies = ChunkBodies(prep.request_id, stream.model.id, int(time.time()))
        include_usage = bool(prep.request.stream_options and prep.request.stream_options.include_usage)
        try:
            try:
                async for chunk in stream:
                    body = bodies.of(chunk)
                    if body is not None:
                        yield body
            except UpstreamError as exc:
                await self._finish_stream(prep, stream, 502, f"mid-stream: {exc}")
                yield error_body(str(exc), exc.error_type, code=str(exc.status_code or "upstream_error"))
                return
            await self._finish_stream(prep, stream, 200, None)
            if include_usage:
                yield bodies.usage(stream.tokens_in, stream.tokens_out)
        finally:
            if not prep.logged:  # the client went away mid-stream: log without waiting for the commit
                await self._finish_stream(prep, stream, 499, "client disconnected", wait=False)

    async def _finish_stream(
        self, prep: Prepared, stream: ChainStream, status: int, error: str | None, *, wait: bool = True
    ) -> None:
        """Close the upstream stream and record the request's log entry (once)."""
        if prep.logged:
            return
        prep.logged = True
        try:
            await stream.aclose()
        finally:  # also when cancelled (the client went away): the entry is queued without suspending
            model = stream.model.id
            prep.log.answered_model = model
            prep.log.response_text = stream.text
            prep.log.usage_estimated = stream.usage_estimated
            self._record_attempts(prep, stream.attempts)
            try:
                await self._account(prep, model, stream.tokens_in, stream.tokens_out, stream.cost_usd)
            finally:
                await self._release(prep)
                self.metrics.requests.labels(prep.request.model, prep.decision.model, str(status)).inc()
                await self._finish_log(prep.log, prep.started, status=status, error=error, wait=wait)

    async def finish_abandoned(self, prep: Prepared, stream: ChainStream) -> None:
        """Called after the response ended however it ended: logs a stream whose bodies were never read."""
        if not prep.logged:
            await self._finish_stream(
                prep, stream, 499, "client disconnected before the stream started", wait=False
            )

    # -- accounting and log -------------------------------------------------------------------------
    async def _account(
        self,
        prep: Prepared,
        model: str,
        tokens_in: int | None,
        tokens_out: int | None,
        cost_usd: float | None,
    ) -> None:
        cost = float(cost_usd or 0.0)
        prep.log.tokens_in, prep.log.tokens_out, prep.log.cost_usd = tokens_in, tokens_out, cost_usd
        m = self.metrics
        if tokens_in:
            m.tokens.labels(model, "in").inc(tokens_in)
        if tokens_out:
            m.tokens.labels(model, "out").inc(tokens_out)
        if cost > 0:
            m.cost.labels(prep.principal.tenant, model).inc(cost)
        if prep.reservation is not None and not prep.reservation.settled:
            try:  # shielded: a client that leaves now does not leave the reservation behind
                await asyncio.shield(self.budgets.settle(prep.reservation, cost, tokens_in, tokens_out))
            except Exception as exc:  # the answer stands; the lease expires after budgets.lease_s
                log.warning("spend of request %s not settled: %s", prep.request_id, exc)

    def _record_attempts(self, prep: Prepared, attempts: list[Any]) -> None:
        rows = []
        upstream_ms = 0.0
        for a in attempts:
            rows.append(AttemptEntry(a.model, a.status, a.status_code, a.latency_ms, a.error))
            outcome = a.status if a.error != "circuit open" else "open_circuit"
            self.metrics.upstream_attempts.labels(a.model, outcome).inc()
            if a.status != "skipped":
                upstream_ms += a.latency_ms or 0.0
                self.metrics.upstream_latency.labels(a.model).observe((a.latency_ms or 0.0) / 1000.0)
            if a.status == "ok" and a.latency_ms is not None and not prep.request.stream:
                self.routing.observe_latency(a.model, a.latency_ms)
        prep.log.attempts = rows
        prep.log.upstream_ms = upstream_ms if rows else None
        trace = self._traces.get(prep.request_id) if self.telemetry is not None else None
        if trace is not None:
            trace.attempts(attempts)

    def _new_entry(
        self,
        request_id: str,
        principal: Principal | None,
        model: str,
        endpoint: str,
        *,
        stream: bool = False,
        messages: list[dict[str, Any]] | None = None,
        prompt: str | None = None,
    ) -> LogEntry:
        """The log entry of a new request; ``principal`` ``None``: the caller is not known (refused: 401)."""
        if self.telemetry is not None:
            self._traces[request_id] = self.telemetry.start(request_id, endpoint, model, stream=stream)
        return LogEntry(
            id=request_id,
            tenant=principal.tenant if principal is not None else UNKNOWN_TENANT,
            key_id=principal.key_id if principal is not None else None,
            created_at=utcnow(),
            endpoint=endpoint,
            requested_model=model,
            stream=stream,
            messages=messages,
            prompt=prompt,
        )

    async def _finish_log(
        self, entry: LogEntry, started: float, *, status: int, error: str | None, wait: bool = True
    ) -> None:
        """Record ``entry`` (``commit`` durability and ``wait``: once committed). Call once per entry."""
        await self.arms.settle(entry, wait=wait)  # its shadow decision, if one was started (bounded wait)
        entry.status = status
        entry.error = error
        entry.total_ms = (time.perf_counter() - started) * 1000.0
        trace = self._traces.pop(entry.id, None) if self.telemetry is not None else None
        if trace is not None:
            trace.end(entry)
        if self.logs is not None:
            await self.logs.record(entry, wait=wait)
            self.metrics.log_queue_rows.set(self.logs.written)

    async def log_refusal(
        self, principal: Principal | None, request_id: str, endpoint: str, exc: Exception
    ) -> None:
        """Log a request refused before routing: no or an invalid key (``principal`` ``None``), rate limit,
        or a body that does not parse. The presented key is never logged."""
        entry = self._new_entry(request_id, principal, "", endpoint)
        status = error_code(exc)
        self.metrics.requests.labels("", "", str(status)).inc()
        await self._finish_log(
            entry, time.perf_counter(), status=status, error=str(exc) or type(exc).__name__
        )

    def _spec_or_none(self, model_id: str) -> Any:
        """The ModelSpec of a configured model (``None`` if unknown): telemetry's provider and address."""
        try:
            return self.pool.spec(model_id)
        except KeyError:
            return None

    @property
    def request_log(self) -> RequestLog:
        """The request log's queries (feedback, reads); refuses when the gateway runs without a store."""
        if self.requests is None:
            raise ValidationError("This gateway runs without a store: no request log.")
        return self.requests


def _log_decision(entry: LogEntry, decision: Decision) -> None:
    """Copy a routing decision into its request's log entry."""
    entry.synthetic_model = decision.synthetic_model
    entry.chosen_model = decision.model
    entry.policy = decision.policy
    entry.predicted = decision.predicted or None
    entry.reason = decision.reason
    entry.knob = decision.to_dict()["knob"]
    entry.routing_ms = decision.routing_ms
    if decision.synthetic_model is not None:
        entry.decision = _jsonable({"prices_usd": decision.prices_usd, **decision.details})


def build_pool(config: GatewayConfig) -> UpstreamPool:
    """The upstream pool of ``config``'s models with its retry and circuit-breaker policy."""
    rel = config.reliability
    return UpstreamPool(
        [m.to_spec() for m in config.models],
        retry=RetryPolicy(base_s=rel.retry_base_s, cap_s=rel.retry_cap_s),
        breaker=BreakerPolicy(
            failure_threshold=rel.breaker_failures,
            window_s=rel.breaker_window_s,
            cooldown_s=rel.breaker_cooldown_s,
        ),
    )


def _as_client_fault(exc: FallbackExhaustedError) -> None:
    """When every upstream that was tried refused the request itself (HTTP 400/413/422: a value the
    client chose, such as an absurd ``max_tokens``), the answer is a 400, not a 502 (marked on ``exc``)."""
    codes = [a.status_code for a in exc.attempts if a.status == "error"]
    if exc.http_status == 502 and codes and all(c in (400, 413, 422) for c in codes):
        exc.http_status = 400
        exc.error_type = "invalid_request_error"
        exc.code = "upstream_rejected"


def _all_choices(raw_choices: Any, n: int | None) -> list[dict[str, Any]] | None:
    """Every choice of the upstream's answer when the request asked for ``n`` > 1 (else ``None``: one)."""
    if n is None or n < 2 or not isinstance(raw_choices, list):
        return None
    out = []
    for i, c in enumerate(raw_choices):
        if isinstance(c, dict) and isinstance(c.get("message"), dict):
            finish = c.get("finish_reason") or "stop"
            out.append({"index": i, "message": c["message"], "finish_reason": finish, "logprobs": None})
    return out or None


def _request(routing: RoutingParams | None) -> RequestRouting | None:
    """The validated ``routing`` body field as the routing layer's plain parameters."""
    if routing is None:
        return None
    return RequestRouting(
        max_cost_usd=routing.max_cost_usd,
        max_latency_ms=routing.max_latency_ms,
        willingness_to_pay=routing.willingness_to_pay,
        models=None if routing.models is None else tuple(routing.models),
        metadata=None
        if not routing.metadata
        else tuple(sorted((k, str(v)) for k, v in routing.metadata.items())),
    )


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and NaN turned into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and value != value:
        return None
    return value
