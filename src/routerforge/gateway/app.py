"""The FastAPI app: ``create_app(settings, gateway_config)``.

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``POST /v1/route``,
``POST /v1/feedback``, ``GET /v1/logs`` and ``GET /v1/logs/{id}`` (own tenant; admin keys: any),
``GET /healthz``, ``GET /readyz``, ``GET /metrics``; the dashboard under ``/ui`` (``gateway/ui``, admin keys);
``/v1/admin/promote|rollback|reload|state`` (``gateway/admin.py``, admin keys); ``GET /v1/admin/drift``
(``gateway/drift.py``, admin keys).

Errors become responses in one place, :func:`error_response`: a ``RouterForgeError`` answers with its
``http_status`` / ``error_type`` (looked up along the class's MRO, so subclasses inherit them) and an
OpenAI-style ``{"error": {"message", "type", "param", "code"}}`` body; malformed requests answer 400 the
same way. Request bodies are parsed by hand (not by FastAPI's 422 machinery) so every error looks alike,
under the ``limits`` of ``gateway/limits.py`` (body size, read deadline, JSON depth, message count); FastAPI's
own 404/405/422 answers are given the same shape.

A non-streaming chat request whose client disconnects cancels its upstream call and is logged 499.

Chat and route requests get a request id first; a refusal before routing (401, 429, 400) is logged under it
(:func:`admit`), the rest by the service. Streams are framed by ``gateway/sse.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from routerforge import __version__
from routerforge.config import Settings
from routerforge.errors import AuthError, ClientDisconnectedError, RouterForgeError, ValidationError
from routerforge.gateway.auth import KeyStore, Principal, bearer_token, load_pepper, principal_of
from routerforge.gateway.config import GatewayConfig, LimitsConfig
from routerforge.gateway.limits import (
    LIMITS_STATE,
    check_body,
    check_name,
    check_request_id,
    parse_json,
    read_body,
)
from routerforge.gateway.metrics import CONTENT_TYPE
from routerforge.gateway.requestlog import parse_since
from routerforge.gateway.schemas import (
    ChatCompletionRequest,
    FeedbackRequest,
    RouteRequest,
    error_body,
    json_chars,
)
from routerforge.gateway.service import GatewayService, new_request_id
from routerforge.gateway.sse import sse_bytes

log = logging.getLogger("routerforge.gateway")

MODEL_HEADER = "x-routerforge-model"
REQUEST_ID_HEADER = "x-routerforge-request-id"
ANONYMOUS = Principal(tenant="default", key_id=None)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def error_response(exc: BaseException, request_id: str | None = None) -> JSONResponse:
    """The one mapping from an exception to an HTTP response with an OpenAI-style error body."""
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    if isinstance(exc, RouterForgeError):
        status = exc.http_status
        body = error_body(str(exc), exc.error_type, param=exc.param, code=exc.code)
        if status in (408, 413):  # the rest of the body is not read: the connection cannot be reused
            headers = {**(headers or {}), "connection": "close"}
        if status == 429:
            headers = {
                **(headers or {}),
                "retry-after": "60" if exc.error_type == "rate_limit_error" else "3600",
            }
        return JSONResponse(body, status_code=status, headers=headers)
    if isinstance(exc, StarletteHTTPException):  # unknown path (404), wrong method (405, with Allow)
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        headers = {**(headers or {}), **(exc.headers or {})}
        return JSONResponse(error_body(str(exc.detail), type_), status_code=exc.status_code, headers=headers)
    if isinstance(exc, RequestValidationError):  # a query or path parameter of the wrong type
        errs = exc.errors()
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errs[:5]]
        param = str(errs[0]["loc"][-1]) if errs and errs[0]["loc"] else None
        body = error_body("Invalid request: " + "; ".join(parts), "invalid_request_error", param=param)
        return JSONResponse(body, status_code=400, headers=headers)
    log.exception("unhandled error in request %s", request_id, exc_info=exc)
    return JSONResponse(
        error_body("Internal error in the gateway.", "server_error", code="internal_error"),
        status_code=500,
        headers=headers,
    )


def _pydantic_message(exc: PydanticValidationError) -> tuple[str, str | None]:
    errs = exc.errors()
    first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(p) for p in first["loc"]) or None
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errs[:5]]
    return "Invalid request body: " + "; ".join(parts), param


async def parse_body(request: Request, model: type[M], limits: LimitsConfig) -> M:
    """Read (size cap, deadline), parse (depth cap, normalised strings) and validate a JSON body."""
    raw = await read_body(request, limits)
    payload = check_body(parse_json(raw, limits) if raw else None, limits)
    try:
        return model.model_validate(payload)
    except PydanticValidationError as exc:
        message, param = _pydantic_message(exc)
        raise ValidationError(message, param=param) from exc


async def _until_disconnected(request: Request) -> None:
    """Returns when the client has gone away (the body has been read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.01)  # never spin, whatever the server sends


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` while watching the connection: when the client leaves first, ``work`` is cancelled
    (the upstream call stops) and :class:`ClientDisconnectedError` (499) is raised."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnectedError("The client disconnected before the answer was ready.")
    return task.result()


def create_app(
    settings: Settings,
    gateway_config: GatewayConfig,
    *,
    service: GatewayService | None = None,
    store: bool = True,
    config_path: str | Path | None = None,
) -> FastAPI:
    """The gateway app. ``service`` may be passed in (tests, the SDK); else it is built from the settings."""
    svc = service or GatewayService.from_settings(settings, gateway_config, store=store)
    keys: KeyStore | None = None
    if svc.db is not None:
        keys = KeyStore(svc.db, load_pepper(settings.home, gateway_config.key_pepper_env))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await svc.start()
        try:
            yield {LIMITS_STATE: gateway_config.limits}  # read by gateway/server.py's HTTP protocol
        finally:
            await svc.aclose()

    app = FastAPI(
        title="routerforge gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = svc
    app.state.keys = keys
    if gateway_config.reload.enabled and svc.reloader is None:  # hot reload (gateway/reload.py)
        from routerforge.gateway.reload import Reloader

        svc.reloader = Reloader(svc, config_path, base_config=gateway_config, keys=keys)
    limits = gateway_config.limits

    @app.exception_handler(RouterForgeError)
    async def _rf_error(request: Request, exc: RouterForgeError) -> JSONResponse:
        return error_response(exc, getattr(request.state, "request_id", None))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc, getattr(request.state, "request_id", None))

    @app.exception_handler(RequestValidationError)
    async def _query_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(exc, getattr(request.state, "request_id", None))

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, getattr(request.state, "request_id", None))

    async def authenticate(request: Request) -> Principal:
        principal = await identify(request)
        await limit(principal)
        return principal

    async def limit(principal: Principal) -> None:
        tenant_rpm = gateway_config.tenant(principal.tenant).requests_per_minute  # all the tenant's keys
        await svc.limiter.check(
            principal.key_id or principal.tenant,
            principal.requests_per_minute,
            tenant=principal.tenant,
            tenant_per_minute=tenant_rpm,
        )

    async def identify(request: Request) -> Principal:
        """The caller of a valid key. Without ``require_auth`` any other token (the openai client always
        sends one), or none, is the tenant ``default``."""
        token = bearer_token(request.headers.get("authorization"))
        info = None
        if token is not None and keys is not None:
            found, info = keys.cached(token)
            if not found:
                info = await anyio.to_thread.run_sync(keys.lookup, token)
        if info is not None:
            return principal_of(info)
        if not gateway_config.require_auth:
            return ANONYMOUS
        if token is None:
            raise AuthError(
                "Missing API key.",
                hint="Send 'Authorization: Bearer rf-…' (create one with `routerforge keys create`).",
            )
        if keys is None:
            raise AuthError("This gateway has no key store.")
        raise AuthError("Invalid or revoked API key.")

    async def admit(request: Request, request_id: str, endpoint: str, body: type[M]) -> tuple[Principal, M]:
        """Identify the caller, apply the rate limit and parse the body. A refusal (401, 429, 400) is
        logged under ``request_id`` before it propagates: every request id has its log row."""
        request.state.request_id = request_id
        if svc.telemetry is not None:  # a caller's W3C trace context: the request span joins its trace
            svc.telemetry.remote_parent(request.headers.get("traceparent"), request.headers.get("tracestate"))
        principal: Principal | None = None
        try:
            principal = await identify(request)
            await limit(principal)
            return principal, await parse_body(request, body, limits)
        except Exception as exc:  # logged here, answered by the one error handler
            await svc.log_refusal(principal, request_id, endpoint, exc)
            raise

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        request_id = new_request_id()
        principal, req = await admit(request, request_id, "chat", ChatCompletionRequest)
        prep = await svc.prepare(principal, req, request_id)
        if not req.stream:
            body = await unless_disconnected(request, svc.complete(prep))
            headers = {MODEL_HEADER: body["model"], REQUEST_ID_HEADER: request_id}
            return Response(
                json.dumps(body, separators=(",", ":")), media_type="application/json", headers=headers
            )
        stream = await svc.open_stream(prep)
        headers = {MODEL_HEADER: stream.model.id, REQUEST_ID_HEADER: request_id, "cache-control": "no-cache"}
        return StreamingResponse(
            sse_bytes(svc.stream_bodies(prep, stream)),
            media_type="text/event-stream",
            headers=headers,
            background=BackgroundTask(svc.finish_abandoned, prep, stream),
        )

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        principal = await authenticate(request)
        return JSONResponse({"object": "list", "data": svc.list_models(principal)})

    @app.post("/v1/route")
    async def route(request: Request) -> JSONResponse:
        request_id = new_request_id()
        principal, body = await admit(request, request_id, "route", RouteRequest)
        try:
            text = body.text()
        except ValueError as exc:
            err = ValidationError(str(exc), param="prompt")
            await svc.log_refusal(principal, request_id, "route", err)
            raise err from exc
        out = await svc.route(
            principal, body.model, text, explain=body.explain, request_id=request_id, routing=body.routing
        )
        out["request_id"] = request_id
        return JSONResponse(out, headers={MODEL_HEADER: out["model"], REQUEST_ID_HEADER: request_id})

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> JSONResponse:
        principal = await authenticate(request)
        body = await parse_body(request, FeedbackRequest, limits)
        check_request_id(body.request_id)
        if body.labels and json_chars(body.labels) > limits.max_feedback_labels_chars:
            raise ValidationError(
                f"labels hold {json_chars(body.labels)} characters as JSON; this gateway accepts at most "
                f"{limits.max_feedback_labels_chars}.",
                param="labels",
            )
        if body.comment is not None and len(body.comment) > limits.max_feedback_comment_chars:
            raise ValidationError(
                f"comment has {len(body.comment)} characters; this gateway accepts at most "
                f"{limits.max_feedback_comment_chars}.",
                param="comment",
            )
        out = await anyio.to_thread.run_sync(svc.request_log.rate_for, principal, body)
        return JSONResponse(out)

    @app.get("/v1/logs")
    async def logs(
        request: Request, tenant: str | None = None, since: str | None = None, limit: int = 100
    ) -> JSONResponse:
        principal = await authenticate(request)
        if limit < 1:
            raise ValidationError(f"limit must be at least 1, got {limit}.", param="limit")
        since_dt = parse_since(since)
        if tenant is not None:
            check_name(tenant, "tenant")
        rows = await anyio.to_thread.run_sync(
            lambda: svc.request_log.list_for(principal, tenant=tenant, since=since_dt, limit=min(limit, 1000))
        )
        return JSONResponse({"object": "list", "data": json.loads(json.dumps(rows, default=str))})

    @app.get("/v1/logs/{request_id}")
    async def log_entry(request: Request, request_id: str) -> JSONResponse:
        principal = await authenticate(request)
        check_request_id(request_id)
        row = await anyio.to_thread.run_sync(svc.request_log.find_for, principal, request_id)
        return JSONResponse(json.loads(json.dumps(row, default=str)))

    from routerforge.gateway.admin import register as register_admin

    register_admin(app, svc, settings, identify, parse_body)  # /v1/admin/*: promote, rollback, reload

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        body: dict[str, Any] = {
            "ready": svc.ready,
            "routers_loaded": len(svc.routing.loaded),
            "routers_failed": len(svc.routing.failed),  # named in the gateway's log, not to anonymous callers
            "models": len(gateway_config.models),
            "breakers": svc.pool.breaker_states(),
            "state": svc.reloader.status() if svc.reloader is not None else None,  # hot reload
        }
        return JSONResponse(body, status_code=200 if svc.ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        access = gateway_config.metrics  # tenants, models and spend: admin keys or the metrics token
        token = bearer_token(request.headers.get("authorization"))
        if access.access != "open" and not access.token_matches(token):
            from routerforge.errors import PermissionDeniedError

            if not (await identify(request)).is_admin:
                raise PermissionDeniedError(
                    "/metrics needs an admin key or the metrics token.",
                    hint="Send 'Authorization: Bearer <admin key or metrics token>' "
                    "(gateway.yaml metrics: {token_env: NAME}), or set metrics: {access: open}.",
                )
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/admin/drift")
    async def drift(request: Request, model: str | None = None, refresh: bool = False) -> JSONResponse:
        """Drift and quality alerts per synthetic model (gateway/drift.py): the cached reports, or fresh
        ones with ``refresh=true``. Admin keys only."""
        from routerforge.errors import PermissionDeniedError

        if not (await authenticate(request)).is_admin:
            raise PermissionDeniedError("Drift reports need an admin key.")
        monitor = svc.drift
        if monitor is None:
            raise ValidationError("This gateway runs without a store: no request log to compare.")
        if model is not None:
            check_name(model, "model")
            if model not in monitor.names:
                from routerforge.errors import NotFoundError

                raise NotFoundError(
                    f"No synthetic model {model!r} in the gateway config.",
                    hint=f"Named synthetic models: {', '.join(monitor.names) or 'none'}.",
                )
        names = [model] if model is not None else monitor.names
        if refresh or any(n not in monitor.reports for n in names):
            await anyio.to_thread.run_sync(lambda: monitor.refresh([model] if model else None))
        body = {
            "object": "drift",
            "data": [monitor.reports[n].to_dict() for n in names if n in monitor.reports],
            "errors": {n: e for n, e in monitor.errors.items() if n in names},
        }
        return JSONResponse(body)

    # the dashboard (gateway/ui): admin keys only. Included after the API routes: routes are matched in
    # order, so a /v1 request does not first try every /ui route (measured: ≈ 2 % of a request's CPU)
    if keys is not None and svc.db is not None:
        from routerforge.gateway.ui import UIContext, build_router

        app.include_router(build_router(UIContext(settings, gateway_config, svc.db, keys, svc)), prefix="/ui")
    return app


def app_from_environment() -> FastAPI:
    """``uvicorn --factory`` entry used by ``routerforge serve --workers N``: every worker process builds its
    app from ``ROUTERFORGE_*`` variables (``serve`` sets them from its flags before starting the workers)."""
    from routerforge.config import load_settings
    from routerforge.gateway.config import load_gateway_config

    settings = load_settings()
    path = settings.gateway.config_file
    return create_app(settings, load_gateway_config(path), config_path=path)
