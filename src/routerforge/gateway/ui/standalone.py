"""The dashboard without a gateway: ``create_ui_app`` (used by ``routerforge ui``) serves ``/ui`` from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from routerforge import __version__
from routerforge.config import Settings
from routerforge.gateway.auth import KeyStore, load_pepper
from routerforge.gateway.config import GatewayConfig
from routerforge.gateway.db import GatewayDB
from routerforge.gateway.ui.context import UIContext
from routerforge.gateway.ui.routes import build_router


def create_ui_app(
    settings: Settings, gateway_config: GatewayConfig, *, db: GatewayDB | None = None
) -> FastAPI:
    """An app serving only the dashboard pages (and ``/`` → ``/ui``), reading the store at ``settings``."""
    own_db = db is None
    gdb = db or GatewayDB(settings.store_url)
    keys = KeyStore(gdb, load_pepper(settings.home, gateway_config.key_pepper_env))
    ctx = UIContext(settings, gateway_config, gdb, keys)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx.close()
            if own_db:
                gdb.close()

    app = FastAPI(
        title="routerforge dashboard",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ui = ctx
    app.include_router(build_router(ctx), prefix="/ui")

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        return RedirectResponse("/ui", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
