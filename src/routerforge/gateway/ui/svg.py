"""Server-side SVG charts (no JavaScript, no CDN): horizontal bars, columns over time, lines, a frontier.

Each function returns an ``<svg>`` element as a string; every label goes through :func:`layout.esc`.
Colours are presentation attributes (allowed by the pages' Content-Security-Policy, unlike inline styles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from routerforge.gateway.ui.layout import esc

PALETTE = ["#2f6fdf", "#e8772e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.1f}"
    if a >= 0.01:
        return f"{v:.2f}"
    return f"{v:.1e}"


def _nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{esc(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def hbars(
    items: Sequence[tuple[str, float]],
    *,
    label: str,
    width: int = 560,
    bar_h: int = 18,
    fmt: str = "{:,.0f}",
    limit: float | None = None,
) -> str:
    """Horizontal bars, one per ``(label, value)``; ``limit`` draws a budget line at that value."""
    if not items:
        return '<p class="muted">No data in this window.</p>'
    left, right = 190, 80
    top = 4
    h = top + len(items) * (bar_h + 6) + 4
    vmax = _nice_max(max([v for _l, v in items] + ([limit] if limit else [])))
    span = width - left - right
    parts = []
    for i, (name, value) in enumerate(items):
        y = top + i * (bar_h + 6)
        w = 0 if vmax <= 0 else max(0.0, value) / vmax * span
        short = name if len(name) <= 28 else name[:27] + "…"
        parts.append(
            f'<text x="{left - 6}" y="{y + bar_h - 5}" text-anchor="end" class="lbl">{esc(short)}'
            f"<title>{esc(name)}</title></text>"
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color(i)}" rx="2"/>'
            f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 5}" class="val">{esc(fmt.format(value))}</text>'
        )
    if limit:
        x = left + limit / vmax * span
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{h}" stroke="#d62728" stroke-dasharray="4 3"/>'
        )
    return _svg(width, h, "".join(parts), label)


def columns(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    label: str,
    width: int = 720,
    height: int = 200,
) -> str:
    """Columns over time: ``series`` drawn over each other (e.g. requests, then errors on top)."""
    n = len(labels)
    if n == 0 or not series:
        return '<p class="muted">No data in this window.</p>'
    left, bottom, top = 48, 24, 10
    vmax = _nice_max(max((max(vals) if vals else 0) for _n, vals in series))
    span_w = width - left - 8
    span_h = height - bottom - top
    cw = span_w / n
    parts = [_y_axis(left, top, span_h, width, vmax)]
    for s, (_name, vals) in enumerate(series):
        for i, v in enumerate(vals):
            bh = 0 if vmax <= 0 else v / vmax * span_h
            parts.append(
                f'<rect x="{left + i * cw + 1:.1f}" y="{top + span_h - bh:.1f}" width="{max(cw - 2, 1):.1f}" '
                f'height="{bh:.1f}" fill="{color(3 if s else 0)}"><title>{esc(labels[i])}: '
                f"{esc(_num(v))}</title></rect>"
            )
    parts.append(_x_labels(labels, left, cw, height))
    parts.append(_legend([name for name, _v in series], width, [0, 3]))
    return _svg(width, height, "".join(parts), label)


def lines(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    unit: str = "ms",
    width: int = 720,
    height: int = 220,
) -> str:
    """Lines over time (``None`` leaves a gap), e.g. latency p50/p95/p99 per bucket."""
    n = len(labels)
    values = [v for _n, vals in series for v in vals if v is not None and math.isfinite(v)]
    if n == 0 or not values:
        return '<p class="muted">No latency data in this window.</p>'
    left, bottom, top = 56, 24, 10
    vmax = _nice_max(max(values))
    span_w = width - left - 8
    span_h = height - bottom - top
    cw = span_w / n
    parts = [_y_axis(left, top, span_h, width, vmax, unit)]
    for s, (name, vals) in enumerate(series):
        path: list[str] = []
        pen_up = True
        for i, v in enumerate(vals):
            if v is None or not math.isfinite(v):
                pen_up = True
                continue
            x = left + (i + 0.5) * cw
            y = top + span_h - v / vmax * span_h
            path.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
            pen_up = False
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color(s)}"><title>{esc(name)} '
                f"{esc(labels[i])}: {esc(_num(v))} {esc(unit)}</title></circle>"
            )
        if path:
            parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color(s)}" stroke-width="2"/>')
    parts.append(_x_labels(labels, left, cw, height))
    parts.append(_legend([name for name, _v in series], width, list(range(len(series)))))
    return _svg(width, height, "".join(parts), label)


def frontier(
    curves: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    points: Sequence[tuple[str, float, float]] = (),
    *,
    label: str,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 320,
) -> str:
    """Cost–quality curves (one per router) and single-model points, on shared axes."""
    xs = [x for _n, c in curves for x, _y in c] + [x for _n, x, _y in points]
    ys = [y for _n, c in curves for _x, y in c] + [y for _n, _x, y in points]
    xs = [x for x in xs if math.isfinite(x)]
    ys = [y for y in ys if math.isfinite(y)]
    if not xs or not ys:
        return '<p class="muted">No curve in these results.</p>'
    left, bottom, top, right = 56, 40, 10, 12
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    pad_y = (y1 - y0) * 0.05
    y0, y1 = y0 - pad_y, y1 + pad_y
    sw, sh = width - left - right, height - bottom - top

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * sw

    def py(y: float) -> float:
        return top + sh - (y - y0) / (y1 - y0) * sh

    parts = [
        f'<rect x="{left}" y="{top}" width="{sw}" height="{sh}" fill="none" stroke="#ccc"/>',
        f'<text x="{left + sw / 2:.0f}" y="{height - 6}" text-anchor="middle" class="lbl">{esc(x_label)}</text>',
        f'<text x="12" y="{top + sh / 2:.0f}" text-anchor="middle" class="lbl" '
        f'transform="rotate(-90 12 {top + sh / 2:.0f})">{esc(y_label)}</text>',
    ]
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        xv = x0 + (x1 - x0) * k / 4
        parts.append(
            f'<text x="{left - 4}" y="{py(yv) + 4:.1f}" text-anchor="end" class="tick">{_num(yv)}</text>'
        )
        parts.append(
            f'<text x="{px(xv):.1f}" y="{top + sh + 14}" text-anchor="middle" class="tick">{_num(xv)}</text>'
        )
    for s, (name, curve) in enumerate(curves):
        pts = sorted((x, y) for x, y in curve if math.isfinite(x) and math.isfinite(y))
        if not pts:
            continue
        d = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(pts))
        parts.append(
            f'<path d="{d}" fill="none" stroke="{color(s)}" stroke-width="2"><title>{esc(name)}</title></path>'
        )
    for name, x, y in points:
        if math.isfinite(x) and math.isfinite(y):
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="#444"><title>{esc(name)}: '
                f"{_num(x)}, {_num(y)}</title></circle>"
            )
    parts.append(
        _legend([n for n, _c in curves], width, list(range(len(curves))), y=top + 12, right=right + 4)
    )
    return _svg(width, height, "".join(parts), label)


def _y_axis(left: int, top: int, span_h: float, width: int, vmax: float, unit: str = "") -> str:
    out = []
    for k in range(5):
        v = vmax * k / 4
        y = top + span_h - span_h * k / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">{esc(_num(v))}'
            f"{esc(unit) if k == 4 and unit else ''}</text>"
        )
    return "".join(out)


def _x_labels(labels: Sequence[str], left: int, cw: float, height: int) -> str:
    n = len(labels)
    step = max(1, math.ceil(n / 6))
    return "".join(
        f'<text x="{left + (i + 0.5) * cw:.1f}" y="{height - 6}" text-anchor="middle" class="tick">'
        f"{esc(labels[i])}</text>"
        for i in range(0, n, step)
    )


def _legend(names: Sequence[str], width: int, colors: Sequence[int], *, y: int = 12, right: int = 12) -> str:
    out = []
    x = width - right
    for name, c in reversed(list(zip(names, colors, strict=False))):
        short = name if len(name) <= 24 else name[:23] + "…"
        w = 14 + 7 * len(short)
        x -= w
        out.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color(c)}"/>'
            f'<text x="{x + 13}" y="{y}" class="lbl">{esc(short)}</text>'
        )
    return "".join(out)
