"""Registering pages: :func:`ui_page` (auth, CSRF, error page, layout) and :func:`build_router`."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from routerforge.errors import RouterForgeError
from routerforge.gateway.auth import Principal
from routerforge.gateway.ui import auth, layout
from routerforge.gateway.ui.context import UIContext

log = logging.getLogger("routerforge.ui")

# modules whose ``register(router, ctx)`` adds pages; ``review`` is engineer B's.
PAGE_MODULES: tuple[str, ...] = (
    "routerforge.gateway.ui.pages_traffic",
    "routerforge.gateway.ui.pages_routers",
    "routerforge.gateway.ui.pages_requests",
    "routerforge.gateway.ui.review",
)
EXTRA_PAGE_MODULES: list[str] = []
STATIC_FILES = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


@dataclass
class PageRequest:
    """What a page handler sees: parsed query and form, path parameters, the admin, the CSRF token."""

    request: Request
    method: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    path_params: Mapping[str, str]
    principal: Principal
    csrf: str
    ctx: UIContext


Handler = Callable[[PageRequest], "str | layout.Page | Response"]


def error_page(exc: RouterForgeError) -> Response:
    status = exc.http_status if 400 <= exc.http_status < 600 else 400
    return auth.message_page(status, "Cannot show this page", str(exc), getattr(exc, "hint", None))


def ui_page(
    router: APIRouter,
    ctx: UIContext,
    path: str,
    *,
    title: str,
    active: str | None = None,
    methods: Sequence[str] = ("GET",),
) -> Callable[[Handler], Handler]:
    """Register ``handler`` at ``/ui{path}``. It runs in a worker thread, after the admin check (and, for
    POST, the CSRF check); its ``str`` result is wrapped by :func:`layout.page`."""

    def deco(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            viewer = await auth.identify(ctx, request)
            if isinstance(viewer, Response):
                return viewer
            token = auth.csrf_token(ctx, viewer)
            form: Mapping[str, str] = {}
            if request.method == "POST":
                parsed = await auth.read_form(request)
                if parsed is None or not auth.csrf_ok(ctx, viewer, parsed.get("csrf")):
                    return auth.message_page(
                        403, "Form refused", "The form's CSRF token is missing or wrong; reload the page."
                    )
                form = parsed
            req = PageRequest(
                request=request,
                method=request.method,
                query=dict(request.query_params),
                form=form,
                path_params=dict(request.path_params),
                principal=viewer.principal,
                csrf=token,
                ctx=ctx,
            )
            try:
                out = await anyio.to_thread.run_sync(handler, req)
            except RouterForgeError as exc:
                return error_page(exc)
            except Exception:
                log.exception("dashboard page %s failed", request.url.path)
                return auth.message_page(500, "Internal error", "This page failed; the log has the details.")
            if isinstance(out, Response):
                for k, v in auth.SECURITY_HEADERS.items():
                    out.headers.setdefault(k, v)
                return out
            page_title, body = (out.title, out.body) if isinstance(out, layout.Page) else (title, out)
            html = layout.page(page_title, body, active=active, user=viewer.label, csrf=token)
            return auth.html_response(html)

        endpoint.__name__ = f"ui_{handler.__name__}"
        router.add_api_route(path, endpoint, methods=list(methods), include_in_schema=False)
        return handler

    return deco


def _static(name: str) -> Response:
    ctype = STATIC_FILES.get(name)
    if ctype is None:
        return Response("not found", status_code=404, media_type="text/plain")
    data = resources.files("routerforge.gateway.ui").joinpath("static", name).read_bytes()
    return Response(
        data,
        media_type=ctype,
        headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
    )


def build_router(ctx: UIContext) -> APIRouter:
    """The dashboard's routes, to be included under ``/ui``."""
    router = APIRouter()

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/traffic", status_code=303)

    async def static(name: str) -> Response:
        return _static(name)

    async def login_get(request: Request) -> Response:
        return await auth.login_get(ctx, request)

    async def login_post(request: Request) -> Response:
        return await auth.login_post(ctx, request)

    async def logout(request: Request) -> Response:
        viewer = await auth.identify(ctx, request)
        if isinstance(viewer, Response):
            return auth.logout_response()
        form = await auth.read_form(request)
        if form is None or not auth.csrf_ok(ctx, viewer, form.get("csrf")):
            return auth.message_page(403, "Form refused", "The form's CSRF token is missing or wrong.")
        return auth.logout_response()

    router.add_api_route("", root, methods=["GET"], include_in_schema=False)
    router.add_api_route("/", root, methods=["GET"], include_in_schema=False)
    router.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)
    router.add_api_route("/login", login_get, methods=["GET"], include_in_schema=False)
    router.add_api_route("/login", login_post, methods=["POST"], include_in_schema=False)
    router.add_api_route("/logout", logout, methods=["POST"], include_in_schema=False)
    for name in (*PAGE_MODULES, *EXTRA_PAGE_MODULES):
        module: Any = importlib.import_module(name)
        module.register(router, ctx)
    return router
