"""Benchmark reports: PNG plots (matplotlib, Agg backend) and an index.html with the plots and tables.

Input is the results document of :func:`routerforge.evaluate.harness.run_bench`; nothing here computes
metrics.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

_TARGETS = (0.5, 0.8)
_DASHED = ("random", "oracle")


def _curves(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(label, entry, line style) of every router and baseline to plot: routers solid, random and oracle
    dashed, the trivial baselines dotted."""
    out = [(n, e, "--" if n in _DASHED else "-") for n, e in doc["routers"].items()]
    out += [(f"{n} (baseline)", e, ":") for n, e in (doc.get("baselines") or {}).items()]
    return out


def write_report(doc: dict[str, Any], directory: Path) -> Path:
    """Write the plots and ``index.html`` into ``directory``; returns the path of ``index.html``."""
    directory.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    if doc.get("mode") == "binary":
        images.append(_plot_binary(doc, directory / "quality_vs_strong_share.png"))
    else:
        images.append(_plot_nmodel(doc, directory / "cost_quality.png"))
    (directory / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    page = directory / "index.html"
    page.write_text(_html(doc, images), encoding="utf-8")
    return page


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=110)
    return plt, fig, ax


def _plot_binary(doc: dict[str, Any], path: Path) -> str:
    plt, fig, ax = _figure()
    singles = doc["single_models"]
    r_strong, r_weak = singles[doc["strong"]]["quality"], singles[doc["weak"]]["quality"]
    for name, entry, style in _curves(doc):
        xs = [c for c, _ in entry["curve"]]
        ys = [q for _, q in entry["curve"]]
        ax.plot(xs, ys, style, marker="o", ms=3, label=f"{name} (APGR {entry['apgr']:.3f})")
    for frac in _TARGETS:
        level = r_weak + frac * (r_strong - r_weak)
        ax.axhline(level, color="grey", lw=0.8, ls=":")
        ax.text(0.01, level, f"{int(frac * 100)} % PGR", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel(f"share of calls to the strong model ({doc['strong']})")
    ax.set_ylabel("mean score of chosen answers")
    ax.set_title(f"{doc['data']}: quality vs strong share ({doc.get('split', '')})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _plot_nmodel(doc: dict[str, Any], path: Path) -> str:
    plt, fig, ax = _figure()
    for name, entry, style in _curves(doc):
        pts = entry["pareto"]
        if not pts:
            continue
        ax.plot(
            [c for c, _ in pts],
            [q for _, q in pts],
            style,
            marker=".",
            label=f"{name} (AIQ {entry['aiq']:.3f})",
        )
    for model, s in doc["single_models"].items():
        ax.scatter([s["cost"]], [s["quality"]], marker="x", color="black", s=25)
        ax.annotate(model, (s["cost"], s["quality"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per query (USD, log scale)")
    ax.set_ylabel("mean score")
    ax.set_title(f"{doc['data']}: cost-quality frontier ({doc.get('split', '')})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value * 100:.1f} %" if pct else f"{value:.4g}"
    return html.escape(str(value))


TIMING_HEADER = ("fit s", "p50 ms", "p99 ms", "CPU ms")


def _timing_cells(entry: dict[str, Any]) -> list[str]:
    """Fit time and per-prompt predict latency of one router's results, formatted."""
    return [_fmt(entry.get(k)) for k in ("fit_s", "predict_ms_p50", "predict_ms_p99", "predict_cpu_ms_p50")]


VS_HEADER = "vs best baseline"


def vs_cell(vs: dict[str, Any] | None) -> str:
    """``+0.041 [+0.020, +0.062] better`` / ``… n.s.``: a router's difference to the strongest baseline."""
    if not vs or vs.get("diff") is None:
        return "—"
    text = f"{vs['diff']:+.3f}"
    if vs.get("ci95") is None:
        return text
    lo, hi = vs["ci95"]
    verdict = "n.s." if not vs["significant"] else ("better" if lo > 0 else "worse")
    return f"{text} [{lo:+.3f}, {hi:+.3f}] {verdict}"


def _ordered(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(row label, entry, vs cell): the routers, then the trivial baselines, then random and oracle."""
    routers = doc["routers"]
    baselines = doc.get("baselines") or {}
    strongest = next((e["vs_baseline"]["baseline"] for e in routers.values() if "vs_baseline" in e), None)
    rows = [(n, e, vs_cell(e.get("vs_baseline"))) for n, e in routers.items() if n not in _DASHED]
    rows += [
        (f"{n} (baseline)", e, "strongest baseline" if n == strongest else "") for n, e in baselines.items()
    ]
    rows += [(n, e, "") for n, e in routers.items() if n in _DASHED]
    return rows


def table_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main results table (shared by the HTML page, markdown and the terminal)."""
    if doc.get("mode") == "binary":
        header = [
            "router",
            "APGR",
            "APGR (101)",
            "CPT(50%)",
            "CPT(80%)",
            VS_HEADER,
            *TIMING_HEADER,
        ]
        rows = [
            [
                name,
                _fmt(e["apgr"]),
                _fmt(e["apgr_101"]),
                _fmt(e["cpt50"], pct=True),
                _fmt(e["cpt80"], pct=True),
                vs,
                *_timing_cells(e),
            ]
            for name, e, vs in _ordered(doc)
        ]
        return header, rows
    header = [
        "router",
        "AIQ",
        "quality @ best cost",
        "cost share @ best quality",
        VS_HEADER,
        *TIMING_HEADER,
    ]
    rows = [
        [
            name,
            _fmt(e["aiq"]),
            _fmt(e["quality_at_best_cost"]),
            _fmt(e["cost_share_at_best_quality"], pct=True),
            vs,
            *_timing_cells(e),
        ]
        for name, e, vs in _ordered(doc)
    ]
    return header, rows


def comparison_note(doc: dict[str, Any]) -> str:
    """One sentence saying what the "vs best baseline" column compares, or ""."""
    boot = doc.get("bootstrap")
    if not boot:
        return ""
    metric = "APGR" if boot["metric"] == "apgr" else "quality at the best single model's cost"
    if not boot["resamples"]:
        return f"{VS_HEADER}: router − strongest trivial baseline on {metric} (no bootstrap)."
    return (
        f"{VS_HEADER}: router − strongest trivial baseline on {metric}, with the 95 % paired-bootstrap "
        f"interval ({boot['resamples']} resamples of the {boot['groups']} held-out prompt groups, seed "
        f"{boot['seed']}, {boot['seconds']:.1f} s); n.s. = the interval contains 0."
    )


def dropped_note(doc: dict[str, Any]) -> str:
    """The rows the run left out, by reason ("" when none)."""
    labels = {
        "listed_prompts": "listed by --drop-prompts",
        "test_text_in_train": "held out but their text is a training prompt",
        "heldout_missing_score": "held out without a score for every model",
        "heldout_missing_cost": "held out without a cost for every model",
        "train_without_score": "training rows without any score",
    }
    parts = [f"{v:,} {labels.get(k, k)}" for k, v in (doc.get("dropped") or {}).items() if v]
    return ("Rows dropped: " + "; ".join(parts) + ".") if parts else ""


def single_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "quality", "cost / query (USD)"]
    rows = [[m, _fmt(s["quality"]), _fmt(s.get("cost"))] for m, s in doc["single_models"].items()]
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(doc: dict[str, Any], images: list[str]) -> str:
    title = f"routerforge benchmark: {doc['data']}"
    meta = {
        k: doc.get(k)
        for k in ("data", "test_data", "split", "folds", "n_prompts", "strong", "weak", "best_single")
    }
    meta_rows = [[html.escape(k), _fmt(v)] for k, v in meta.items() if v is not None]
    imgs = "".join(f'<p><img src="{html.escape(i)}" alt="{html.escape(i)}"></p>' for i in images)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style>
</head><body><h1>{html.escape(title)}</h1>
{_html_table(["setting", "value"], meta_rows)}
<h2>Routers and baselines</h2>{_html_table(*table_rows(doc))}
<p>{html.escape(comparison_note(doc))} {html.escape(dropped_note(doc))}</p>
<h2>Single models</h2>{_html_table(*single_rows(doc))}
<h2>Plots</h2>{imgs}
<p>Numbers are measured on held-out prompts only; see docs/evaluation.md for the definitions.</p>
</body></html>
"""
