"""``/ui/traffic``: requests, model distribution, cost against budgets, latency, errors, feedback."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter

from routerforge.gateway.ui import badges, layout, svg
from routerforge.gateway.ui.context import UIContext
from routerforge.gateway.ui.layout import esc, fmt_num, fmt_usd
from routerforge.gateway.ui.queries import WINDOWS, DashboardQueries, Window, parse_window
from routerforge.gateway.ui.routes import PageRequest, ui_page

log = logging.getLogger("routerforge.gateway.ui")


def window_of(query: Mapping[str, str]) -> Window:
    return parse_window(query.get("window"), query.get("start"), query.get("end"))


def window_form(path: str, w: Window, extra: Mapping[str, str] | None = None) -> str:
    """The window picker: one link per preset, and a custom start/end form (GET)."""
    keep = {k: v for k, v in (extra or {}).items() if v}
    links = []
    for name in WINDOWS:
        cls = ' class="active"' if w.name == name else ""
        links.append(
            f'<a{cls} href="{layout.attr(path + "?" + urlencode({**keep, "window": name}))}">{name}</a>'
        )
    hidden = "".join(
        f'<input type="hidden" name="{layout.attr(k)}" value="{layout.attr(v)}">' for k, v in keep.items()
    )
    start = w.since.strftime("%Y-%m-%dT%H:%M")
    end = w.until.strftime("%Y-%m-%dT%H:%M")
    return (
        f'<div class="window"><span class="muted">Window:</span> {" ".join(links)}'
        f'<form method="get" action="{layout.attr(path)}" class="inline">{hidden}'
        '<input type="hidden" name="window" value="custom">'
        f'<label>from <input type="datetime-local" name="start" value="{start}"></label>'
        f'<label>to <input type="datetime-local" name="end" value="{end}"></label>'
        '<button type="submit">Apply</button></form>'
        f'<span class="muted">{esc(w.since.strftime("%Y-%m-%d %H:%M"))} → '
        f"{esc(w.until.strftime('%Y-%m-%d %H:%M'))} UTC</span></div>"
    )


def time_label(t: dt.datetime, w: Window) -> str:
    if w.seconds <= 2 * 86400:
        return t.strftime("%H:%M")
    if w.seconds <= 8 * 86400:
        return t.strftime("%m-%d %Hh")
    return t.strftime("%m-%d")


def _stat(label: str, value: str, sub: str = "") -> str:
    s = f'<div class="sub">{sub}</div>' if sub else ""
    return f'<div class="stat"><div class="label">{esc(label)}</div><div class="value">{value}</div>{s}</div>'


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "–"


def render(ctx: UIContext, w: Window, data: dict[str, Any]) -> str:
    s = data["summary"]
    total = s["requests"]
    out = [f"<h1>Traffic</h1>{window_form('/ui/traffic', w)}"]
    out.append(
        '<div class="stats">'
        + _stat("Requests", fmt_num(total))
        + _stat("Errors", fmt_num(s["errors"]), _share(s["errors"], total))
        + _stat("Client aborts (499)", fmt_num(s["aborted"]))
        + _stat("Fallbacks", fmt_num(s["fallbacks"]), _share(s["fallbacks"], total))
        + _stat("Cost", fmt_usd(s["cost_usd"]))
        + _stat(
            "Routing p95",
            fmt_num(data["latency"]["routing_ms"]["p95"]) + " ms",
        )
        + "</div>"
    )
    vol = data["volume"]
    labels = [time_label(b["start"], w) for b in vol]
    out.append(
        layout.card(
            "Requests over time",
            svg.columns(
                labels,
                [("requests", [b["requests"] for b in vol]), ("errors", [b["errors"] for b in vol])],
                label="requests and errors per interval",
            ),
        )
    )
    if not data["complete"]:
        out.append(
            '<p class="error">This window holds more distinct (model, status, tenant) groups than the page '
            "reads; the tables below are partial. Pick a shorter window.</p>"
        )
    out.append(layout.card("Models per synthetic model", _models(data["models"], ctx)))
    out.append(layout.card("Cost against tenant budgets", _tenants(ctx, data["tenants"], data["budgets"])))
    out.append(layout.card("Latency", _latency(w, data["latency"])))
    out.append(
        '<div class="two">'
        + layout.card("Status codes", _status(data["status"]))
        + layout.card("Fallbacks (chosen → answered)", _fallbacks(data["fallbacks"]))
        + "</div>"
    )
    out.append(layout.card("Latest errors", _errors(data["errors"])))
    out.append(
        '<div class="two">'
        + layout.card("Feedback by model", _feedback(data["feedback_model"], "model"))
        + layout.card("Feedback by policy", _feedback(data["feedback_policy"], "policy"))
        + "</div>"
    )
    return "".join(out)


def _models(rows: list[dict[str, Any]], ctx: UIContext | None = None) -> str:
    if not rows:
        return '<p class="muted">No requests in this window.</p>'
    drift = _drift_reports(ctx)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["synthetic_model"], []).append(r)
    out = []
    for syn, items in groups.items():
        n = sum(int(i["requests"]) for i in items)
        cost = sum(float(i["cost_usd"]) for i in items)
        bars = svg.hbars(
            [(str(i["model"]), float(i["requests"])) for i in items[:12]],
            label=f"models answering {syn}",
        )
        table = layout.table(
            ["model", "requests", "share", "errors", "cost"],
            [
                [
                    esc(i["model"]),
                    fmt_num(int(i["requests"])),
                    _share(int(i["requests"]), n),
                    fmt_num(int(i["errors"])),
                    fmt_usd(i["cost_usd"]),
                ]
                for i in items
            ],
        )
        named = ctx is not None and any(s.name == syn for s in ctx.gateway_config.synthetic_models)
        flag = " " + badges.drift_badge(ctx, syn, drift) if ctx is not None and named else ""
        out.append(
            f'<div class="group"><h3>{esc(syn)} <span class="muted">{fmt_num(n)} requests · '
            f"{fmt_usd(cost)}</span>{flag}</h3>{bars}{table}</div>"
        )
    return "".join(out)


def _drift_reports(ctx: UIContext | None) -> dict[str, dict[str, Any]]:
    """The drift badges' reports (read once per page; a failure shows no badge, never breaks the page)."""
    if ctx is None:
        return {}
    try:
        return badges.drift_reports(ctx)
    except Exception:
        log.exception("drift reports unavailable")
        return {}


def _meter(spent: float, budget: float | None) -> str:
    if budget is None:
        return "<span class='muted'>no budget</span>"
    pct = 100.0 * spent / budget if budget > 0 else 100.0
    level = "bad" if pct >= 100 else "warn" if pct >= 80 else "ok"
    return (
        f'<meter min="0" max="{budget:.6f}" low="{0.8 * budget:.6f}" high="{0.99 * budget:.6f}" '
        f'optimum="0" value="{min(spent, budget):.6f}"></meter> {fmt_usd(spent)} / {fmt_usd(budget)} '
        f"{layout.badge(f'{pct:.0f}%', level)}"
    )


def budget_tenants(ctx: UIContext) -> list[str]:
    return [
        t.name for t in ctx.gateway_config.tenants if t.daily_usd is not None or t.monthly_usd is not None
    ]


def _tenants(ctx: UIContext, rows: list[dict[str, Any]], budgets: dict[str, dict[str, Any]]) -> str:
    by_name = {r["tenant"]: r for r in rows}
    configured = {t.name: t for t in ctx.gateway_config.tenants}
    names = list(by_name) + [n for n in budgets if n not in by_name]
    if not names:
        return '<p class="muted">No tenant spent anything in this window; no budgets configured.</p>'
    table_rows = []
    for name in names[:100]:
        r = by_name.get(name, {"window_usd": 0.0, "requests": 0})
        t = configured.get(name)
        b = budgets.get(name)
        table_rows.append(
            [
                esc(name),
                fmt_num(int(r["requests"] or 0)),
                fmt_usd(r["window_usd"]),
                _meter(b["day_usd"], t.daily_usd) if b and t else "<span class='muted'>no budget</span>",
                _meter(b["month_usd"], t.monthly_usd) if b and t else "<span class='muted'>no budget</span>",
            ]
        )
    note = (
        '<p class="muted">Today and this month are UTC days and months, summed from the request log\'s costs '
        "(what the gateway charged each request).</p>"
    )
    return (
        layout.table(
            ["tenant", "requests", "cost (window)", "today vs daily", "month vs monthly"], table_rows
        )
        + note
    )


def _latency(w: Window, lat: dict[str, Any]) -> str:
    rows = []
    for key, name in (("routing_ms", "routing"), ("upstream_ms", "upstream")):
        p = lat[key]
        rows.append([esc(name), fmt_num(p["p50"]), fmt_num(p["p95"]), fmt_num(p["p99"])])
    table = layout.table(["latency (ms)", "p50", "p95", "p99"], rows)
    labels = [time_label(b["start"], w) for b in lat["buckets"]]
    charts = ""
    for key, name in (("routing_ms", "Routing latency"), ("upstream_ms", "Upstream latency")):
        series = [(q, [b[key][q] for b in lat["buckets"]]) for q in ("p50", "p95", "p99")]
        charts += f"<h3>{esc(name)}</h3>" + svg.lines(labels, series, label=f"{name} percentiles over time")
    note = (
        f'<p class="muted">Percentiles over a stratified sample of {fmt_num(lat["sampled"])} requests '
        "(the latest 250 of each 1/24 of the window; exact when a slice holds fewer).</p>"
    )
    return table + charts + note


def _status(rows: list[dict[str, Any]]) -> str:
    return layout.table(
        ["status", "requests"],
        [
            [
                layout.badge(str(r["status"]), "ok" if r["status"] < 400 else "bad"),
                fmt_num(int(r["requests"])),
            ]
            for r in rows
        ],
        empty="No requests.",
    )


def _fallbacks(rows: list[dict[str, Any]]) -> str:
    return layout.table(
        ["chosen", "answered", "requests"],
        [[esc(r["chosen_model"]), esc(r["answered_model"]), fmt_num(int(r["requests"]))] for r in rows],
        empty="No fallbacks in this window.",
    )


def _errors(rows: list[dict[str, Any]]) -> str:
    return layout.table(
        ["time (UTC)", "request", "tenant", "model", "status", "error"],
        [
            [
                esc(r["created_at"].strftime("%m-%d %H:%M:%S")),
                f'<a href="/ui/requests/{layout.attr(r["id"])}">{esc(r["id"][:12])}</a>',
                esc(r["tenant"]),
                esc(r["requested_model"]),
                layout.badge(str(r["status"]), "bad"),
                f'<span class="clip">{esc(r["error"])}</span>',
            ]
            for r in rows
        ],
        empty="No errors in this window.",
    )


def _feedback(rows: list[dict[str, Any]], what: str) -> str:
    if not rows:
        return '<p class="muted">No feedback in this window.</p>'
    bars = svg.hbars(
        [(str(r["key"]), float(r["mean_rating"] or 0.0)) for r in rows[:12]],
        label=f"mean rating by {what}",
        fmt="{:.2f}",
    )
    table = layout.table(
        [what, "ratings", "mean rating"],
        [[esc(r["key"]), fmt_num(int(r["ratings"])), fmt_num(r["mean_rating"], 3)] for r in rows],
    )
    return bars + table


def register(router: APIRouter, ctx: UIContext) -> None:
    queries = DashboardQueries(ctx.db.engine)

    @ui_page(router, ctx, "/traffic", title="Traffic", active="traffic")
    def traffic(req: PageRequest) -> str:
        w = window_of(req.query)
        ctx.flush()
        return render(ctx, w, queries.traffic(w, budget_tenants(ctx)))
