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
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

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
from routerforge.gateway.budgets import Budgets, BudgetState
from routerforge.gateway.cascade import run_cascade
from routerforge.gateway.config import GatewayConfig
from routerforge.gateway.db import GatewayDB, utcnow
from routerforge.gateway.logentry import UNKNOWN_TENANT, AttemptEntry, LogEntry
from routerforge.gateway.logwriter import LogWriter
from routerforge.gateway.metrics import GatewayMetrics
from routerforge.gateway.ratelimit import Counters, RateLimiter, build_counters
from routerforge.gateway.requestlog import RequestLog
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
from routerforge.gateway.sse import ChunkBodies

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
        self.budgets = Budgets(config, self.counters)
        self.limiter = RateLimiter(self.counters, config.limits.requests_per_minute)
        self.routing = Routing(settings, config)
        rel = config.reliability
        self.pool = pool or UpstreamPool(
            [m.to_spec() for m in config.models],
            retry=RetryPolicy(base_s=rel.retry_base_s, cap_s=rel.retry_cap_s),
            breaker=BreakerPolicy(
                failure_threshold=rel.breaker_failures,
                window_s=rel.breaker_window_s,
                cooldown_s=rel.breaker_cooldown_s,
            ),
        )
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
        self.ready = False

    @classmethod
    def from_settings(
        cls, settings: Settings, config: GatewayConfig, *, store: bool = True
    ) -> GatewayService:
        durable = config.logging.durability == "commit"
        db = GatewayDB(settings.store_url, durable_log=durable) if store else None
        if db is not None:
            for t in config.tenants:
                db.ensure_tenant(t.name, training_opt_out=t.training_opt_out)
        return cls(settings, config, db=db)

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.routing.load_all)
        for path, error in self.routing.failed.items():
            log.warning("router directory %s is not served (requests for it answer 503): %s", path, error)
        if self.logs is not None:
            self.logs.start()
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False
        self.routing.close()
        await self.pool.aclose()
        if self.logs is not None:
            await anyio.to_thread.run_sync(self.logs.close)
        await self.counters.aclose()
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
    ) -> tuple[Decision, BudgetState | None]:
        budget = (
            await self.budgets.check(principal.tenant) if self.budgets.has_budget(principal.tenant) else None
        )
        target = self._resolve(principal.tenant, model)
        allowed = None
        if needs is not None and target.synthetic:
            allowed = [m for m in target.candidates if misfit(self.pool.spec(m), needs) is None] or None
        fraction = budget.fraction_left if budget is not None else None
        if target.synthetic and target.router is not None:
            start = time.perf_counter()
            scores = await self.routing.batcher(target.router).predict(text)
            decision = self.routing.decide(
                target,
                text,
                fraction_left=fraction,
                allowed=allowed,
                scores=scores,
                request=_request(routing),
            )
            decision.routing_ms = (time.perf_counter() - start) * 1000.0
            self.metrics.routing_latency.labels(model).observe(decision.routing_ms / 1000.0)
        else:
            decision = self.routing.decide(target, text)
        if budget is not None and budget.usd_left is not None:
            self.metrics.budget_left.labels(principal.tenant).set(budget.usd_left)
        return decision, budget

    def _resolve(self, tenant: str, model: str) -> Any:
        """``routing.resolve``; a router directory that cannot be loaded answers 503 naming the router."""
        try:
            return self.routing.resolve(tenant, model)
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
            decision, budget = await self._decide(principal, model, text, None, routing)
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
                    exp = _jsonable(await loop.run_in_executor(executor, router.explain, text))
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
                principal, req.model, text, RequestNeeds.of(chat), req.routing
            )
        except BaseException as exc:
            self.metrics.requests.labels(req.model, "", str(error_code(exc))).inc()
            await self._finish_log(log, started, status=error_code(exc), error=str(exc))
            raise
        _log_decision(log, decision)
        return Prepared(request_id, principal, req, chat, decision, budget, started, log)

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
            self._record_attempts(prep, attempts)
            self.metrics.requests.labels(prep.request.model, prep.decision.model, str(status)).inc()
            prep.logged = True
            await self._finish_log(prep.log, prep.started, status=status, error=error, wait=status != 499)

    async def open_stream(self, prep: Prepared) -> ChainStream:
        """Start the upstream stream (falls back until the first content arrives)."""
        try:
            return await self.pool.open_stream(prep.decision.chain, prep.chat)
        except BaseException as exc:
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
            await self.budgets.record(prep.principal.tenant, cost)

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
        entry.status = status
        entry.error = error
        entry.total_ms = (time.perf_counter() - started) * 1000.0
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
