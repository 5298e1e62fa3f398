"""``/ui/routers``: every trained router, its training data, calibration and benchmark results;
``?a=NAME`` shows one, ``?a=NAME&b=OTHER`` two side by side."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter

from routerforge.errors import NotFoundError
from routerforge.gateway.ui import badges, layout, svg
from routerforge.gateway.ui.context import UIContext
from routerforge.gateway.ui.layout import esc, fmt_num
from routerforge.gateway.ui.routers_info import RouterInfo, list_routers, read_router
from routerforge.gateway.ui.routes import PageRequest, ui_page

log = logging.getLogger("routerforge.ui")
BENCH_KEYS = (
    "apgr",
    "cpt50",
    "cpt80",
    "aiq",
    "quality_at_best_cost",
    "cost_share_at_best_quality",
    "fit_s",
    "predict_ms_p50",
    "predict_ms_p99",
)


def _badges(ctx: UIContext, info: RouterInfo) -> str:
    try:
        return " ".join(badges.router_badges(ctx, info.key, info.directory))
    except Exception:  # a badge must never break the page
        log.exception("router badges failed for %s", info.key)
        return layout.badge("badge unavailable", "info")


def _synthetic_users(ctx: UIContext, directory: Path) -> list[str]:
    out = []
    for s in ctx.gateway_config.synthetic_models:
        p = Path(s.router).expanduser()
        d = p if p.is_absolute() else ctx.routers_dir / p
        try:
            if d.resolve() == directory.resolve():
                out.append(s.name)
        except OSError:
            continue
    return out


def _headline(info: RouterInfo) -> str:
    if not info.bench:
        return "–"
    res = info.bench[0][1]
    if "apgr" in res:
        return f"APGR {fmt_num(res['apgr'], 3)}"
    if "aiq" in res:
        return f"AIQ {fmt_num(res['aiq'], 3)}"
    return "–"


def _knob(info: RouterInfo) -> str:
    """``policy knob`` from calibration.json (``{"policy": …, "knob": {name: value}}``), else a mark."""
    cal = info.calibration or {}
    if not cal:
        return "–"
    knob = cal.get("knob")
    if isinstance(knob, dict) and knob:
        values = ", ".join(f"{k}={fmt_num(v, 4)}" for k, v in knob.items() if isinstance(v, int | float))
        return f"{cal.get('policy', '')} {values}".strip()
    if isinstance(knob, int | float):
        return f"{cal.get('policy', '')} {fmt_num(knob, 4)}".strip()
    return "calibrated"


def render_list(ctx: UIContext, infos: list[RouterInfo]) -> str:
    if not infos:
        return (
            f"<h1>Routers</h1><p class='muted'>No trained router under {esc(ctx.routers_dir)}. Train one with "
            "<code>routerforge train … --out DIR</code>.</p>"
        )
    rows = []
    for info in infos:
        link = f'<a href="/ui/routers?{layout.attr(urlencode({"a": info.key}))}">{esc(info.key)}</a>'
        rows.append(
            [
                link + " " + _badges(ctx, info),
                esc(info.family),
                fmt_num(len(info.models)),
                esc(info.manifest.get("dataset")),
                fmt_num(info.manifest.get("n_train")),
                esc(info.trained_at or "–"),
                esc(_knob(info)),
                esc(_headline(info)),
                "error: " + esc(info.error) if info.error else "",
            ]
        )
    keys = [i.key for i in infos]
    options = "".join(f'<option value="{layout.attr(k)}">{esc(k)}</option>' for k in keys)
    second = "".join(
        f'<option value="{layout.attr(k)}"{" selected" if i == 1 else ""}>{esc(k)}</option>'
        for i, k in enumerate(keys)
    )
    compare = (
        '<form method="get" action="/ui/routers" class="inline compare"><span>Compare</span>'
        f'<select name="a">{options}</select><span>with</span><select name="b">{second}</select>'
        '<button type="submit">Side by side</button></form>'
    )
    return "<h1>Routers</h1>" + layout.card(
        f"{len(infos)} trained routers in {ctx.routers_dir}",
        layout.table(
            [
                "router",
                "family",
                "models",
                "trained on",
                "prompts",
                "trained at",
                "calibrated",
                "benchmark",
                "",
            ],
            rows,
        )
        + compare,
    )


def _facts(ctx: UIContext, info: RouterInfo) -> str:
    m = info.manifest
    training = info.training or {}
    loaded = ctx.service is not None and ctx.loaded_router(info.directory) is not None
    used_by = _synthetic_users(ctx, info.directory)
    rows = [
        ("family", esc(info.family)),
        ("models", "<br>".join(esc(x) for x in info.models)),
        ("training data", esc(m.get("dataset"))),
        ("split", esc(m.get("split"))),
        ("training prompts", fmt_num(m.get("n_train"))),
        (
            "training prompt hashes",
            f"{fmt_num(training.get('n'))} · sha256 {esc(training.get('fingerprint'))}" if training else "–",
        ),
        ("trained at", esc(info.trained_at or "–")),
        ("embedder", f"{esc(info.embedder.get('id'))} ({esc(info.embedder.get('dim'))} dims)"),
        ("parameters", esc(", ".join(f"{k}={v}" for k, v in (m.get("params") or {}).items()) or "–")),
        ("synthetic models", esc(", ".join(used_by) or "none in gateway.yaml")),
        ("in the running gateway", "loaded" if loaded else ("–" if ctx.service is None else "not loaded")),
    ]
    return layout.table(["", ""], [[esc(k), v] for k, v in rows], cls="kv")


def _calibration(info: RouterInfo) -> str:
    cal = info.calibration
    if not cal:
        return '<p class="muted">Not calibrated (<code>routerforge calibrate</code> writes calibration.json).</p>'
    rows = []
    for k, v in sorted(cal.items()):
        if isinstance(v, int | float | str | bool) or v is None:
            rows.append([esc(k), fmt_num(v, 4) if isinstance(v, float) else esc(v)])
        elif isinstance(v, dict) and len(v) <= 12:
            rows.append([esc(k), esc(", ".join(f"{a}: {b}" for a, b in v.items()))])
        else:
            rows.append([esc(k), f'<span class="muted">{esc(type(v).__name__)} of {len(v)}</span>'])
    return layout.table(["", ""], rows, cls="kv")


def _curve(source: str, result: dict[str, Any], doc: dict[str, Any]) -> tuple[list[Any], list[Any], str, str]:
    """(curve points, single-model points, x label, y label) of one benchmark result."""
    if "pareto" in result:
        pts = [(float(x), float(y)) for x, y in result["pareto"]]
        singles = [
            (name, float(v["cost"]), float(v["quality"]))
            for name, v in (doc.get("single_models") or {}).items()
            if isinstance(v, dict) and v.get("cost") is not None and v.get("quality") is not None
        ]
        return pts, singles, "cost per prompt (USD)", "quality"
    pts = [(float(x), float(y)) for x, y in result.get("curve") or []]
    singles = []
    sm = doc.get("single_models") or {}
    for name, x in ((doc.get("weak"), 0.0), (doc.get("strong"), 1.0)):
        v = sm.get(name) if name else None
        if isinstance(v, dict) and v.get("quality") is not None:
            singles.append((str(name), x, float(v["quality"])))
    return pts, singles, "share of calls to the strong model", "quality"


def _bench(info: RouterInfo) -> str:
    if not info.bench:
        return (
            '<p class="muted">No benchmark results. Write them with <code>routerforge bench … --json '
            f"{esc(info.directory)}/bench.json</code> (or into the routers dir's <code>bench/</code>).</p>"
        )
    out = []
    for (source, result), (_s, doc) in zip(info.bench, info.bench_docs, strict=True):
        rows = [[esc(k), fmt_num(result[k], 4)] for k in BENCH_KEYS if isinstance(result.get(k), int | float)]
        vs = result.get("vs_baseline")
        if isinstance(vs, dict):
            ci = vs.get("ci95") or [None, None]
            rows.append(
                [
                    esc(f"vs {vs.get('baseline')}"),
                    f"{fmt_num(vs.get('diff'), 4)} [{fmt_num(ci[0], 4)}, {fmt_num(ci[1], 4)}]"
                    + (" " + layout.badge("significant", "ok") if vs.get("significant") else ""),
                ]
            )
        pts, singles, xl, yl = _curve(source, result, doc)
        chart = svg.frontier(
            [(info.family or "router", pts)], singles, label=f"{info.key} {source}", x_label=xl, y_label=yl
        )
        out.append(
            f"<h3>{esc(source)} <span class='muted'>data {esc(doc.get('data'))}, "
            f"{fmt_num(doc.get('n_prompts'))} held-out prompts</span></h3>"
            + layout.table(["metric", "value"], rows, cls="kv")
            + chart
        )
    return "".join(out)


def render_detail(ctx: UIContext, info: RouterInfo) -> str:
    scores = info.manifest.get("mean_scores") or {}
    bars = svg.hbars(
        [(str(k), float(v)) for k, v in sorted(scores.items(), key=lambda kv: -float(kv[1]))][:20],
        label="mean training score per model",
        fmt="{:.3f}",
    )
    return (
        f'<div class="router-col"><h2>{esc(info.key)} {_badges(ctx, info)}</h2>'
        + layout.card("Router", _facts(ctx, info))
        + layout.card("Mean training score per model", bars)
        + layout.card("Calibration", _calibration(info))
        + layout.card("Benchmark", _bench(info))
        + "</div>"
    )


def _overlay(a: RouterInfo, b: RouterInfo) -> str:
    """Both routers' curves on one plot when their benchmarks share data and kind."""
    if not a.bench or not b.bench:
        return ""
    (sa, ra), (_x, da) = a.bench[0], a.bench_docs[0]
    (sb, rb), (_y, db) = b.bench[0], b.bench_docs[0]
    if da.get("data") != db.get("data") or ("pareto" in ra) != ("pareto" in rb):
        return ""
    pa, singles, xl, yl = _curve(sa, ra, da)
    pb, _s, _xl, _yl = _curve(sb, rb, db)
    chart = svg.frontier(
        [(a.key, pa), (b.key, pb)], singles, label="both routers", x_label=xl, y_label=yl, width=720
    )
    return layout.card(f"Both on {da.get('data')}", chart)


def register(router: APIRouter, ctx: UIContext) -> None:
    @ui_page(router, ctx, "/routers", title="Routers", active="routers")
    def routers(req: PageRequest) -> str | layout.Page:
        found = list_routers(ctx.routers_dir)
        picks = [req.query.get("a", ""), req.query.get("b", "")]
        picks = [p for p in picks if p]
        if not picks:
            return render_list(ctx, [read_router(k, d, ctx.routers_dir) for k, d in found.items()])
        infos = []
        for key in picks:
            if key not in found:
                raise NotFoundError(
                    f"No trained router {key[:100]!r} under the routers directory.",
                    hint="Pick one from /ui/routers.",
                )
            infos.append(read_router(key, found[key], ctx.routers_dir))
        title = " vs ".join(i.key for i in infos)
        body = f'<h1>Routers: {esc(title)}</h1><p><a href="/ui/routers">← all routers</a></p>'
        if len(infos) == 2:
            body += _overlay(infos[0], infos[1])
        body += f'<div class="side{len(infos)}">' + "".join(render_detail(ctx, i) for i in infos) + "</div>"
        return layout.Page(title=f"Router {title}", body=body)
