"""The web dashboard: server-rendered HTML pages under ``/ui`` (no CDN, no JS framework, SVG charts).

Served two ways, same pages, same code:

* by the gateway (``gateway/app.py`` includes :func:`build_router` under ``/ui``), with the live service
  (``UIContext.service`` is the live service; ``ctx.routing`` its loaded routers, so the drill-down can
  ``explain`` on demand);
* by ``routerforge ui --port P`` (``cli/ui.py``), straight from the store without a running gateway
  (``UIContext.service`` is ``None``; ``ctx.routing`` is a private ``Routing`` whose routers load lazily,
  only when a page asks ``ctx.router(directory)``).

Every page needs an **admin** API key: ``Authorization: Bearer rf-…`` or the login form (``/ui/login``),
which sets an HttpOnly, SameSite=Strict session cookie signed with a per-process secret (the cookie holds the
key *id* and an expiry, never the key). Forms are POST with a CSRF token bound to the session
(:mod:`routerforge.gateway.ui.auth`). Non-admin keys get a 403 page.

Modules
-------
``context``   :class:`UIContext` — settings, gateway config, ``GatewayDB``, ``KeyStore``, optional live
              ``GatewayService``; ``ctx.routing``, ``ctx.router(dir)`` (load), ``ctx.loaded_router(dir)``.
``layout``    :func:`layout.page` (title, body_html, active=nav id) → full HTML; :func:`layout.esc` escapes
              every user-supplied string (prompts are hostile input); small HTML helpers (tables, forms).
``svg``       server-side SVG charts: bars, latency lines over time, cost–quality frontier.
``queries``   every dashboard SQL query (SQLAlchemy Core, SQLite + PostgreSQL, aggregated in SQL, bounded).
``rollup``    hourly (and daily) roll-ups of the request log for the traffic page (tables of 0110_ui_rollups).
``routers_info`` what a router directory's files say (manifest, calibration, training hashes, bench results).
``standalone`` ``create_ui_app``: the app ``routerforge ui`` serves (the pages without a gateway).
``auth``      sessions, login/logout, CSRF, the admin check.
``routes``    :func:`ui_page` — the decorator that registers a page (auth + CSRF + error page + layout).
``pages_*``   the traffic, routers and requests pages (owned by the dashboard engineer).
``review``    the pre-release review page ``/ui/review`` — **owned by engineer B** (replay, shadow/canary,
              promote/rollback). It starts as a placeholder; B edits only that file.
``badges``    per-router badges on the routers page — **the drift badge is engineer C's**:
              implement ``router_badges(ctx, name, directory) -> list[str]`` there (HTML snippets, already
              escaped; ``layout.badge(text, level)`` makes one). The routers page shows whatever it returns.

Extension points (how to add a page)
------------------------------------
A module with ``register(router: APIRouter, ctx: UIContext) -> None`` is called by :func:`build_router`;
``review.register`` and any module listed in ``EXTRA_PAGE_MODULES`` are. Inside, register pages with::

    from routerforge.gateway.ui.routes import PageRequest, ui_page
    from routerforge.gateway.ui import layout

    def register(router, ctx):
        @ui_page(router, ctx, "/review", title="Review", active="review", methods=("GET", "POST"))
        def review(req: PageRequest) -> str:          # runs in a worker thread: blocking DB calls are fine
            name = req.query.get("candidate", "")      # query string (str → str)
            if req.method == "POST":                   # CSRF already checked for POST
                ...req.form...                         # parsed form fields (str → str)
            return "<h1>Review</h1>" + layout.esc(name)  # body HTML → wrapped by layout.page

A handler returns body HTML (a ``str``), a :class:`layout.Page` (to set the title), or any starlette
``Response`` (a redirect after a POST). Raise a ``RouterForgeError`` for a clean error page with its HTTP
status (ValidationError → 400, NotFoundError → 404). Forms must carry ``layout.csrf_field(req)``.
The nav entries are ``layout.NAV`` (id, path, label); ``active`` picks the highlighted one.
"""

from __future__ import annotations

from routerforge.gateway.ui.context import UIContext
from routerforge.gateway.ui.routes import build_router

__all__ = ["UIContext", "build_router"]
