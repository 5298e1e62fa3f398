"""Admin endpoints of the gateway (admin API keys only): promote, roll back, see the hot-reload state.

- ``GET  /v1/admin/state`` — the state version this process serves, the config hash, the last reload error,
  every promotion in force and the last audit rows.
- ``POST /v1/admin/promote`` ``{"model": "smart", "router": "knn-v2", "knob": 0.4, "kind": "wtp"}`` (kind and
  knob optional) — gateway/promote.py validates and records it; this process reloads at once, the others
  within ``reload.interval_s``.
- ``POST /v1/admin/rollback`` ``{"model": "smart"}``.
- ``POST /v1/admin/reload`` — poll now (after editing gateway.yaml, instead of waiting for the interval).

The dashboard's review page (gateway/ui/review.py) calls the same functions behind its CSRF-checked form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from routerforge.errors import PermissionDeniedError, ValidationError
from routerforge.gateway.assignments import Assignments
from routerforge.gateway.config import GatewayConfig, PolicyKind

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.gateway.auth import Principal
    from routerforge.gateway.service import GatewayService


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    router: str = Field(min_length=1, max_length=4096)
    kind: PolicyKind | None = None
    knob: float | None = Field(default=None, ge=0)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)


def base_config(svc: GatewayService) -> GatewayConfig:
    """gateway.yaml as this process last read it (before promotions)."""
    return svc.reloader.base if svc.reloader is not None else svc.config


def actor_of(principal: Principal) -> str:
    return f"key:{principal.key_id}" if principal.key_id else f"tenant:{principal.tenant}"


async def reload_now(svc: GatewayService) -> dict[str, Any] | None:
    if svc.reloader is None:
        return None
    await svc.reloader.check()
    return svc.reloader.status(detail=True)


def register(
    app: Any,
    svc: GatewayService,
    settings: Settings,
    identify: Callable[[Request], Awaitable[Principal]],
    parse_body: Callable[..., Awaitable[Any]],
) -> None:
    router = APIRouter()

    async def admin(request: Request) -> Principal:
        principal = await identify(request)
        if not principal.is_admin:
            raise PermissionDeniedError("This endpoint needs an admin API key.")
        return principal

    def engine() -> Any:
        if svc.db is None:
            raise ValidationError("This gateway runs without a store: promotions need one.")
        return svc.db.engine

    @router.get("/v1/admin/state")
    async def state(request: Request) -> JSONResponse:
        await admin(request)

        def read() -> dict[str, Any]:
            store = Assignments(engine()) if svc.db is not None else None
            return {
                "reload": svc.reloader.status(detail=True) if svc.reloader is not None else None,
                "assignments": {k: v.to_dict() for k, v in (store.all() if store else {}).items()},
                "audit": store.audit(limit=20) if store else [],
                "routers_loaded": svc.routing.loaded,
            }

        return JSONResponse(await anyio.to_thread.run_sync(read))

    @router.post("/v1/admin/promote")
    async def promote(request: Request) -> JSONResponse:
        from routerforge.gateway.promote import promote as do_promote

        principal = await admin(request)
        body: PromoteBody = await parse_body(request, PromoteBody, svc.config.limits)
        out = await anyio.to_thread.run_sync(
            lambda: do_promote(
                settings,
                base_config(svc),
                engine(),
                body.model,
                body.router,
                kind=body.kind,
                knob=body.knob,
                actor=actor_of(principal),
            )
        )
        out["reload"] = await reload_now(svc)
        return JSONResponse(out)

    @router.post("/v1/admin/rollback")
    async def rollback(request: Request) -> JSONResponse:
        from routerforge.gateway.promote import rollback as do_rollback

        principal = await admin(request)
        body: RollbackBody = await parse_body(request, RollbackBody, svc.config.limits)
        out = await anyio.to_thread.run_sync(
            lambda: do_rollback(base_config(svc), engine(), body.model, actor=actor_of(principal))
        )
        out["reload"] = await reload_now(svc)
        return JSONResponse(out)

    @router.post("/v1/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        await admin(request)
        return JSONResponse({"reload": await reload_now(svc)})

    app.include_router(router)
