"""The gateway core: everything between "a caller asked for a chat completion" and the answer.

Shared by the HTTP app (``gateway/app.py``) and the in-process SDK (``routerforge.sdk``): prompt-size
limits, budgets and the budget shift, routing, the upstream fallback chain, cost, metrics and the request
log. HTTP concerns (auth headers, status codes, SSE framing) stay in the app.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from routerforge.backends.base import ChatRequest
from routerforge.backends.fit import RequestNeeds, misfit
from routerforge.backends.reliability import BreakerPolicy, ChainStream, RetryPolicy, UpstreamPool
from routerforge.config import Settings
from routerforge.errors import (
    FallbackExhaustedError,
    NotFoundError,
    PermissionDeniedError,
    RouterForgeError,
    UpstreamError,
    ValidationError,
)
from routerforge.gateway.auth import Principal
from routerforge.gateway.budgets import Budgets, BudgetState
from routerforge.gateway.config import GatewayConfig
from routerforge.gateway.db import GatewayDB, utcnow
from routerforge.gateway.logwriter import LogWriter
from routerforge.gateway.metrics import GatewayMetrics
from routerforge.gateway.ratelimit import Counters, RateLimiter, build_counters
from routerforge.gateway.routing import Decision, Routing
from routerforge.gateway.schemas import (
    ChatCompletionRequest,
    FeedbackRequest,
    chunk_body,
    completion_body,
    content_text,
    error_body,
    prompt_text,
    usage_body,
)

_ids = random.Random(secrets.randbits(128))  # seeded once from the OS; os.urandom per request is slow


def new_request_id() -> str:
    """A 24-hex-digit request id (unique, not secret: access to a request is checked by tenant)."""
    return f"{_ids.getrandbits(96):024x}"


def error_code(exc: BaseException) -> int:
    return int(getattr(exc, "http_status", 500)) if isinstance(exc, RouterForgeError) else 500


def limit_prompt(messages: list[dict[str, Any]], max_chars: int, mode: str) -> list[dict[str, Any]]:
    """Apply the prompt-size limit: reject, or truncate (drop the oldest turns, then cut the last text)."""
    total = sum(len(content_text(m.get("content"))) for m in messages)
    if total <= max_chars:
        return messages
    if mode == "reject":
        err = ValidationError(
            f"The prompt has {total} characters; this gateway accepts at most {max_chars}.",
            hint="Shorten the messages (or ask the operator for limits.oversize: truncate).",
        )
        err.code = "context_length_exceeded"  # type: ignore[attr-defined]
        raise err
    out = [dict(m) for m in messages]
    while total > max_chars:
        droppable = [i for i, m in enumerate(out[:-1]) if m.get("role") != "system"]
        if not droppable:
            break
        total -= len(content_text(out[droppable[0]].get("content")))
        del out[droppable[0]]
    if total > max_chars:
        last = out[-1]
        text = content_text(last.get("content"))
        keep = max(0, len(text) - (total - max_chars))
        last["content"] = text[:keep]
    return out


@dataclass
class Prepared:
    """A validated chat request with its routing decision, ready for the upstream call."""

    request_id: str
    principal: Principal
    request: ChatCompletionRequest
    messages: list[dict[str, Any]]
    chat: ChatRequest
    decision: Decision
    budget: BudgetState | None
    started: float
    log: dict[str, Any] = field(default_factory=dict)


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
        self.metrics = GatewayMetrics()
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
        if db is not None:
            self.logs = LogWriter(
                db,
                batch_size=config.logging.batch_size,
                flush_interval_s=config.logging.flush_interval_s,
                redact_patterns=config.logging.compiled(),
                store_messages=config.logging.store_messages,
            )
        self.ready = False

    @classmethod
    def from_settings(
        cls, settings: Settings, config: GatewayConfig, *, store: bool = True
    ) -> GatewayService:
        db = GatewayDB(settings.store_url) if store else None
        if db is not None:
            for t in config.tenants:
                db.ensure_tenant(t.name, training_opt_out=t.training_opt_out)
        return cls(settings, config, db=db)

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.routing.load_all)
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
            out.append(
                {"id": f"router-{r}-0.5", "object": "model", "created": now, "owned_by": "routerforge"}
            )
        return out

    # -- routing ------------------------------------------------------------------------------------
    async def _decide(
        self, principal: Principal, model: str, text: str, needs: RequestNeeds | None
    ) -> tuple[Decision, BudgetState | None]:
        budget = (
            await self.budgets.check(principal.tenant) if self.budgets.has_budget(principal.tenant) else None
        )
        target = self.routing.resolve(principal.tenant, model)
        allowed = None
        if needs is not None and target.synthetic:
            allowed = [m for m in target.candidates if misfit(self.pool.spec(m), needs) is None] or None
        fraction = budget.fraction_left if budget is not None else None
        if target.synthetic and target.router is not None:
            start = time.perf_counter()
            scores = await self.routing.batcher(target.router).predict(text)
            decision = self.routing.decide(
                target, text, fraction_left=fraction, allowed=allowed, scores=scores
            )
            decision.routing_ms = (time.perf_counter() - start) * 1000.0
            self.metrics.routing_latency.labels(model).observe(decision.routing_ms / 1000.0)
        else:
            decision = self.routing.decide(target, text)
        if budget is not None and budget.usd_left is not None:
            self.metrics.budget_left.labels(principal.tenant).set(budget.usd_left)
        return decision, budget

    async def route(
        self,
        principal: Principal,
        model: str,
        text: str,
        *,
        explain: bool = True,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Route only (``POST /v1/route``): the decision, the predictions and the neighbours; no upstream call.

        With a ``request_id`` the call is written to the request log (endpoint ``route``), refusals included.
        """
        started = time.perf_counter()
        log = None
        if request_id is not None:
            log = self._log_row(request_id, principal, model, "route", prompt=text)
        try:
            decision, budget = await self._decide(principal, model, text, None)
            out = decision.to_dict()
            out["budget_fraction_left"] = budget.fraction_left if budget else None
            out["explanation"] = None
            out["neighbours"] = []
            if explain and decision.synthetic_model is not None:
                target = self.routing.resolve(principal.tenant, model)
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
                self._finish_log(log, started, status=error_code(exc), error=str(exc))
            raise
        if log is not None:
            log.update(
                synthetic_model=decision.synthetic_model,
                chosen_model=decision.model,
                predicted=decision.predicted or None,
                reason=decision.reason,
                knob=out["knob"],
                routing_ms=decision.routing_ms,
            )
            self._finish_log(log, started, status=200, error=None)
        return out

    async def prepare(self, principal: Principal, req: ChatCompletionRequest, request_id: str) -> Prepared:
        """Validate limits, check the budget and route. Refusals are logged before they propagate."""
        started = time.perf_counter()
        raw_messages = req.message_dicts()
        log = self._log_row(
            request_id, principal, req.model, "chat", stream=req.stream, messages=raw_messages
        )
        try:
            messages = limit_prompt(
                raw_messages, self.config.limits.max_prompt_chars, self.config.limits.oversize
            )
            log["messages"] = messages
            extra = req.extra_fields()
            for key in ("top_p", "tool_choice", "user", "max_completion_tokens"):
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
            log["prompt"] = text
            decision, budget = await self._decide(principal, req.model, text, RequestNeeds.of(chat))
        except BaseException as exc:
            self.metrics.requests.labels(req.model, "", str(error_code(exc))).inc()
            self._finish_log(log, started, status=error_code(exc), error=str(exc))
            raise
        log.update(
            synthetic_model=decision.synthetic_model,
            chosen_model=decision.model,
            predicted=decision.predicted or None,
            reason=decision.reason,
            knob=decision.to_dict()["knob"],
            routing_ms=decision.routing_ms,
        )
        return Prepared(request_id, principal, req, messages, chat, decision, budget, started, log)

    # -- chat ---------------------------------------------------------------------------------------
    async def complete(self, prep: Prepared) -> dict[str, Any]:
        """Call the chain; returns the OpenAI ``chat.completion`` body. The log row is written in all cases."""
        status: int = 500
        error: str | None = "cancelled"
        attempts: list[Any] = []
        try:
            try:
                chain = await self.pool.complete(prep.decision.chain, prep.chat)
            except FallbackExhaustedError as exc:
                attempts = exc.attempts
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
            body = completion_body(
                request_id=prep.request_id,
                model=model,
                text=res.text,
                finish_reason=res.finish_reason,
                tokens_in=res.tokens_in,
                tokens_out=res.tokens_out,
                message=message,
            )
            await self._account(prep, model, res.tokens_in, res.tokens_out, res.cost_usd, res.latency_ms)
            prep.log.update(answered_model=model, response_text=res.text)
            status, error = 200, None
            return body
        except BaseException as exc:
            status, error = error_code(exc), str(exc) or type(exc).__name__
            raise
        finally:
            self._record_attempts(prep, attempts)
            self.metrics.requests.labels(prep.request.model, prep.decision.model, str(status)).inc()
            self._finish_log(prep.log, prep.started, status=status, error=error)

    async def open_stream(self, prep: Prepared) -> ChainStream:
        """Start the upstream stream (falls back until the first content arrives)."""
        try:
            return await self.pool.open_stream(prep.decision.chain, prep.chat)
        except BaseException as exc:
            attempts = exc.attempts if isinstance(exc, FallbackExhaustedError) else []
            self._record_attempts(prep, attempts)
            self.metrics.requests.labels(prep.request.model, prep.decision.model, str(error_code(exc))).inc()
            self._finish_log(prep.log, prep.started, status=error_code(exc), error=str(exc))
            raise

    async def sse(self, prep: Prepared, stream: ChainStream) -> AsyncIterator[bytes]:
        """The SSE byte stream for an open upstream stream; ends with an error event on a mid-stream failure."""
        created = int(time.time())
        model = stream.model.id
        include_usage = bool(prep.request.stream_options and prep.request.stream_options.include_usage)
        status: int = 499
        error: str | None = "client disconnected"
        first = True
        try:
            try:
                async for chunk in stream:
                    delta: dict[str, Any] = {}
                    if first:
                        delta["role"] = "assistant"
                        first = False
                    raw_delta = _raw_delta(chunk.raw)
                    if raw_delta:
                        delta.update({k: v for k, v in raw_delta.items() if k != "role"})
                    elif chunk.delta:
                        delta["content"] = chunk.delta
                    if not delta and chunk.finish_reason is None:
                        continue
                    body = chunk_body(
                        request_id=prep.request_id,
                        model=model,
                        created=created,
                        delta=delta,
                        finish_reason=chunk.finish_reason,
                    )
                    yield _sse(body)
                if include_usage:
                    yield _sse(
                        chunk_body(
                            request_id=prep.request_id,
                            model=model,
                            created=created,
                            delta=None,
                            usage=usage_body(stream.tokens_in, stream.tokens_out),
                        )
                    )
                yield b"data: [DONE]\n\n"
                status, error = 200, None
            except UpstreamError as exc:
                status, error = 502, f"mid-stream: {exc}"
                body = error_body(str(exc), exc.error_type, code=str(exc.status_code or "upstream_error"))
                yield _sse(body)
                yield b"data: [DONE]\n\n"
        finally:
            await stream.aclose()
            await self._finish_stream(prep, stream, status, error)

    async def _finish_stream(
        self, prep: Prepared, stream: ChainStream, status: int, error: str | None
    ) -> None:
        if prep.log.get("_done"):
            return
        model = stream.model.id
        prep.log.update(answered_model=model, response_text=stream.text)
        self._record_attempts(prep, stream.attempts)
        try:
            await self._account(prep, model, stream.tokens_in, stream.tokens_out, stream.cost_usd, None)
        finally:
            self.metrics.requests.labels(prep.request.model, prep.decision.model, str(status)).inc()
            self._finish_log(prep.log, prep.started, status=status, error=error)

    async def finish_abandoned(self, prep: Prepared, stream: ChainStream) -> None:
        """Called after the response ended however it ended: logs a stream that never started iterating."""
        if not prep.log.get("_done"):
            await stream.aclose()
            await self._finish_stream(prep, stream, 499, "client disconnected before the stream started")

    # -- accounting and log -------------------------------------------------------------------------
    async def _account(
        self,
        prep: Prepared,
        model: str,
        tokens_in: int | None,
        tokens_out: int | None,
        cost_usd: float | None,
        upstream_ms: float | None,
    ) -> None:
        cost = float(cost_usd or 0.0)
        prep.log.update(tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost_usd)
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
            rows.append(
                {
                    "model": a.model,
                    "status": a.status,
                    "status_code": a.status_code,
                    "latency_ms": a.latency_ms,
                    "error": a.error,
                }
            )
            outcome = a.status if a.error != "circuit open" else "open_circuit"
            self.metrics.upstream_attempts.labels(a.model, outcome).inc()
            if a.status != "skipped":
                upstream_ms += a.latency_ms or 0.0
                self.metrics.upstream_latency.labels(a.model).observe((a.latency_ms or 0.0) / 1000.0)
        prep.log["attempts"] = rows
        prep.log["upstream_ms"] = upstream_ms if rows else None

    def _log_row(
        self,
        request_id: str,
        principal: Principal,
        model: str,
        endpoint: str,
        *,
        stream: bool = False,
        messages: list[dict[str, Any]] | None = None,
        prompt: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": request_id,
            "tenant": principal.tenant,
            "key_id": principal.key_id,
            "created_at": utcnow(),
            "endpoint": endpoint,
            "requested_model": model,
            "stream": stream,
            "messages": messages,
            "prompt": prompt,
            "attempts": [],
        }

    def _finish_log(self, log: dict[str, Any], started: float, *, status: int, error: str | None) -> None:
        if log.get("_done"):
            return
        log["_done"] = True
        row = {k: v for k, v in log.items() if not k.startswith("_")}
        row["status"] = status
        row["error"] = error
        row["total_ms"] = (time.perf_counter() - started) * 1000.0
        if self.logs is not None:
            self.logs.submit(row)
            self.metrics.log_queue_rows.set(self.logs.written)

    def log_failure(self, principal: Principal, request_id: str, model: str, status: int, error: str) -> None:
        """Log a request refused before routing (auth passed; validation, budget or rate limit failed)."""
        log = self._log_row(request_id, principal, model or "", "chat")
        self.metrics.requests.labels(model or "", "", str(status)).inc()
        self._finish_log(log, time.perf_counter(), status=status, error=error)

    # -- feedback and logs --------------------------------------------------------------------------
    def _require_db(self) -> GatewayDB:
        if self.db is None:
            raise ValidationError("This gateway runs without a store: no request log.")
        return self.db

    def find_request(self, principal: Principal, request_id: str) -> dict[str, Any]:
        """A logged request of the caller's tenant (admins: any). Blocking: call from a worker thread."""
        db = self._require_db()
        row = db.get_request(request_id)
        if row is None and self.logs is not None:
            self.logs.flush()
            row = db.get_request(request_id)
        if row is None or (row["tenant"] != principal.tenant and not principal.is_admin):
            raise NotFoundError(f"No request {request_id!r} in this tenant's log.")
        return row

    def add_feedback(self, principal: Principal, fb: FeedbackRequest) -> dict[str, Any]:
        db = self._require_db()
        row = self.find_request(principal, fb.request_id)
        if row["tenant"] != principal.tenant and not principal.is_admin:
            raise PermissionDeniedError("Feedback can only be given on your own tenant's requests.")
        fid = db.add_feedback(
            request_id=fb.request_id,
            tenant=row["tenant"],
            rating=fb.rating,
            labels=fb.labels,
            comment=fb.comment,
        )
        return {"id": fid, "request_id": fb.request_id, "status": "recorded"}

    def list_logs(
        self, principal: Principal, *, tenant: str | None, since: Any, limit: int
    ) -> list[dict[str, Any]]:
        db = self._require_db()
        if self.logs is not None:
            self.logs.flush()
        if tenant is not None and tenant != principal.tenant and not principal.is_admin:
            raise PermissionDeniedError("Only an admin key may read another tenant's log.")
        scope = tenant if tenant is not None else (None if principal.is_admin else principal.tenant)
        return db.list_requests(tenant=scope, since=since, limit=limit)


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


def _raw_delta(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    choices = raw.get("choices") or []
    if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("delta"), dict):
        d = dict(choices[0]["delta"])
        return {k: v for k, v in d.items() if v is not None}
    return None


def _sse(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
