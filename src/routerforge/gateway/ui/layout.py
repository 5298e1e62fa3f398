"""HTML building blocks: :func:`page` wraps a body in the dashboard chrome; :func:`esc` escapes text.

Every string that comes from a request, the log or a file goes through :func:`esc` (or :func:`attr`)
before it reaches HTML: prompts and answers are hostile input. The pages load only ``/ui/static/ui.css``
and ``/ui/static/ui.js`` (shipped in the package); the Content-Security-Policy set by ``routes`` forbids
inline scripts, so even a missed escape cannot run a script.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NAV: list[tuple[str, str, str]] = [
    ("traffic", "/ui/traffic", "Traffic"),
    ("routers", "/ui/routers", "Routers"),
    ("requests", "/ui/requests", "Requests"),
    ("review", "/ui/review", "Review"),
]


@dataclass
class Page:
    """A handler's result when it sets its own title."""

    title: str
    body: str


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes (``None`` → empty)."""
    if value is None:
        return ""
    return html.escape(str(value), quote=True)


attr = esc


def fmt_num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if f != f:
        return "–"
    if abs(f) >= 1000:
        return f"{f:,.0f}"
    return f"{f:.{digits}f}"


def fmt_usd(value: Any) -> str:
    if value is None:
        return "–"
    f = float(value)
    return f"${f:,.4f}" if abs(f) < 1 else f"${f:,.2f}"


def json_block(value: Any) -> str:
    """Pretty JSON in a ``<pre>`` (escaped)."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return f'<pre class="json">{esc(text)}</pre>'


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "grid", empty: str = ""
) -> str:
    """A table; ``headers`` are plain text (escaped here), cells are HTML (escape them before)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not body and empty:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{esc(empty)}</td></tr>'
    return f'<table class="{attr(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def badge(text: str, level: str = "info") -> str:
    """A small coloured label; ``level`` is one of ok, info, warn, bad."""
    lvl = level if level in ("ok", "info", "warn", "bad") else "info"
    return f'<span class="badge badge-{lvl}">{esc(text)}</span>'


def csrf_field(req: Any) -> str:
    """The hidden CSRF input every POST form must carry (``req`` is the handler's ``PageRequest``)."""
    return f'<input type="hidden" name="csrf" value="{attr(req.csrf)}">'


def card(title: str, body: str, *, cls: str = "") -> str:
    return f'<section class="card {attr(cls)}"><h2>{esc(title)}</h2>{body}</section>'


def page(
    title: str, body_html: str, *, active: str | None = None, user: str | None = None, csrf: str = ""
) -> str:
    """The full HTML document of one dashboard page."""
    active_cls = ' class="active"'
    nav = "".join(
        f'<a href="{attr(path)}"{active_cls if nid == active else ""}>{esc(label)}</a>'
        for nid, path, label in NAV
    )
    who = ""
    if user is not None:
        who = (
            f'<form method="post" action="/ui/logout" class="logout"><span class="muted">{esc(user)}</span>'
            f'<input type="hidden" name="csrf" value="{attr(csrf)}"><button type="submit">Log out</button></form>'
        )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · routerforge</title>"
        '<link rel="stylesheet" href="/ui/static/ui.css">'
        '<script src="/ui/static/ui.js" defer></script>'
        "</head><body>"
        f'<header><a class="brand" href="/ui">routerforge</a><nav>{nav}</nav>{who}</header>'
        f"<main>{body_html}</main>"
        "</body></html>"
    )
