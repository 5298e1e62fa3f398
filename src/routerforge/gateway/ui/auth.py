"""Who may see the dashboard: admin API keys, as a bearer token or through a login session.

* ``Authorization: Bearer rf-…`` with an admin key: every page (scripts, tests).
* The login form (``/ui/login``) takes an admin key once and sets the cookie ``rf_ui_session`` =
  ``<key id>.<expiry>.<HMAC>`` — HttpOnly, SameSite=Strict, Secure over HTTPS, signed with the process's
  :attr:`UIContext.secret`. It never holds the key; each request checks that the key id is still an
  active admin key, so revoking the key ends its sessions.
* CSRF: every POST carries a ``csrf`` field, an HMAC of the session (or, for bearer callers, of the key id)
  under the same secret; the login form's own token is bound to a random pre-login cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

import anyio.to_thread
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from routerforge.gateway.auth import Principal, bearer_token, principal_of
from routerforge.gateway.db import GwApiKey, KeyInfo, _key_info
from routerforge.gateway.ui import layout
from routerforge.gateway.ui.context import UIContext

SESSION_COOKIE = "rf_ui_session"
LOGIN_COOKIE = "rf_ui_login"
MAX_FORM_BYTES = 256 * 1024
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


@dataclass(frozen=True)
class Viewer:
    """An authenticated admin: the principal plus how they came in (``bearer`` or ``session``)."""

    principal: Principal
    label: str
    via: str
    session: str = ""


def _sign(ctx: UIContext, message: str) -> str:
    return hmac.new(ctx.secret, message.encode(), hashlib.sha256).hexdigest()


def make_session(ctx: UIContext, key_id: str, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + ctx.session_ttl_s)
    body = f"{key_id}.{expires}"
    return f"{body}.{_sign(ctx, 'session.' + body)}"


def read_session(ctx: UIContext, value: str | None, now: float | None = None) -> str | None:
    """The key id of a valid, unexpired session cookie, else ``None``."""
    if not value or len(value) > 200:
        return None
    parts = value.split(".")
    if len(parts) != 3:
        return None
    key_id, expires, sig = parts
    if not hmac.compare_digest(sig, _sign(ctx, f"session.{key_id}.{expires}")):
        return None
    if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
        return None
    return key_id


def csrf_token(ctx: UIContext, viewer: Viewer) -> str:
    basis = viewer.session if viewer.via == "session" else f"bearer.{viewer.principal.key_id}"
    return _sign(ctx, "csrf." + basis)[:40]


def csrf_ok(ctx: UIContext, viewer: Viewer, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(str(token), csrf_token(ctx, viewer))


def _key_by_id(ctx: UIContext, key_id: str) -> KeyInfo | None:
    table = GwApiKey.__table__
    with ctx.db.engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.id == key_id)).mappings().first()
    return None if row is None else _key_info(row)


def _label(info: KeyInfo) -> str:
    return f"{info.name or info.id} ({info.tenant})"


async def identify(ctx: UIContext, request: Request) -> Viewer | Response:
    """The admin viewing the page, or the response to send instead (login redirect, 401 or 403 page)."""
    token = bearer_token(request.headers.get("authorization"))
    if token is not None:
        info = await anyio.to_thread.run_sync(ctx.keys.lookup, token)
        if info is None:
            return message_page(401, "Invalid or revoked API key", "The bearer token is not an active key.")
        if not info.is_admin:
            return forbidden_page()
        return Viewer(principal_of(info), _label(info), "bearer")
    cookie = request.cookies.get(SESSION_COOKIE)
    key_id = read_session(ctx, cookie)
    if key_id is not None:
        info = await anyio.to_thread.run_sync(_key_by_id, ctx, key_id)
        if info is not None and info.revoked_at is None and info.is_admin:
            return Viewer(principal_of(info), _label(info), "session", session=cookie or "")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        return message_page(401, "Not logged in", "Log in at /ui/login and submit the form again.")
    return RedirectResponse("/ui/login?next=" + quote(target, safe=""), status_code=303)


def safe_next(value: str | None) -> str:
    """Only a local dashboard path may be a post-login target (no open redirect)."""
    if not value or not value.startswith("/ui") or value.startswith("//") or "\\" in value:
        return "/ui/traffic"
    if any(ord(c) < 32 for c in value):
        return "/ui/traffic"
    return value


def html_response(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def message_page(status: int, title: str, text: str, hint: str | None = None) -> HTMLResponse:
    body = f'<section class="card message"><h1>{layout.esc(title)}</h1><p>{layout.esc(text)}</p>'
    if hint:
        body += f'<p class="muted">{layout.esc(hint)}</p>'
    body += '<p><a href="/ui/login">Log in</a></p></section>'
    return html_response(layout.page(title, body), status)


def forbidden_page() -> HTMLResponse:
    return message_page(
        403,
        "Admin key required",
        "This key is valid but is not an admin key; the dashboard shows every tenant's traffic.",
        hint="Create one with `routerforge keys create --tenant NAME --admin`.",
    )


async def read_form(request: Request) -> dict[str, str] | None:
    """An ``application/x-www-form-urlencoded`` body (at most :data:`MAX_FORM_BYTES`), or ``None``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_FORM_BYTES:
            return None
    try:
        pairs = parse_qsl(data.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(pairs)


def _login_form(next_path: str, token: str, error: str | None = None) -> str:
    err = f'<p class="error">{layout.esc(error)}</p>' if error else ""
    return (
        '<section class="card login"><h1>routerforge dashboard</h1>'
        "<p>Log in with an <strong>admin</strong> API key. The key is checked once; the session cookie "
        "holds only its id.</p>"
        f"{err}"
        '<form method="post" action="/ui/login">'
        f'<input type="hidden" name="csrf" value="{layout.attr(token)}">'
        f'<input type="hidden" name="next" value="{layout.attr(next_path)}">'
        '<label>API key <input type="password" name="key" autocomplete="off" required autofocus></label>'
        '<button type="submit">Log in</button></form></section>'
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def login_get(ctx: UIContext, request: Request) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if len(nonce) != 43:
        nonce = secrets.token_urlsafe(32)
    token = _sign(ctx, "login." + nonce)[:40]
    page = layout.page("Log in", _login_form(safe_next(request.query_params.get("next")), token))
    resp = html_response(page)
    resp.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/ui",
    )
    return resp


async def login_post(ctx: UIContext, request: Request) -> Response:
    form = await read_form(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if form is None or not nonce or not csrf_match(form.get("csrf"), _sign(ctx, "login." + nonce)[:40]):
        return message_page(
            400, "Login form expired", "The form's token does not match; open the login page again."
        )
    next_path = safe_next(form.get("next"))
    key = (form.get("key") or "").strip()
    info = await anyio.to_thread.run_sync(ctx.keys.lookup, key) if key else None
    token = _sign(ctx, "login." + nonce)[:40]
    if info is None:
        page = layout.page("Log in", _login_form(next_path, token, "Invalid or revoked API key."))
        return html_response(page, 401)
    if not info.is_admin:
        return forbidden_page()
    resp = RedirectResponse(next_path, status_code=303, headers=SECURITY_HEADERS)
    resp.set_cookie(
        SESSION_COOKIE,
        make_session(ctx, info.id),
        max_age=int(ctx.session_ttl_s),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/ui",
    )
    resp.delete_cookie(LOGIN_COOKIE, path="/ui")
    return resp


def csrf_match(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given), expected)


def logout_response() -> Response:
    resp = RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
    resp.delete_cookie(SESSION_COOKIE, path="/ui")
    return resp
