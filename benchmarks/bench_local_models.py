"""Local models and the quickstart's routing result.

1. Answers per second of each packaged local GGUF model (llama.cpp, n_threads=1, temperature 0, one call
   at a time) on prompts of the built-in task suite, plus load time and tokens per second.
2. The quickstart end to end (in a temporary home): its routing result on held-out prompts (5 folds) —
   APGR of the knn router, and the share of strong calls and the cost (nominal prices) at which it reaches
   the stronger model's quality — and the time of each step.

    .venv/bin/python benchmarks/bench_local_models.py [--prompts 40] [--size 300] [--skip-quickstart] [--home DIR]

Writes benchmarks/results/local_models.json and local_models.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


async def speed(model_id: str, prompts: list[str], cache_dir: Path, max_tokens: int) -> dict[str, Any]:
    from routerforge.backends.base import ChatRequest
    from routerforge.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(model_id, cache_dir=cache_dir, default_max_tokens=max_tokens)
    t0 = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - t0
    tokens_out = 0
    latencies: list[float] = []
    t0 = time.perf_counter()
    for text in prompts:
        result = await backend.complete(
            ChatRequest(model=model_id, messages=[{"role": "user", "content": text}])
        )
        tokens_out += result.tokens_out or 0
        latencies.append(result.latency_ms or 0.0)
    elapsed = time.perf_counter() - t0
    await backend.aclose()
    latencies.sort()
    return {
        "model": model_id,
        "prompts": len(prompts),
        "max_tokens": max_tokens,
        "load_s": round(load_s, 2),
        "answers_per_s": round(len(prompts) / elapsed, 2),
        "tokens_out_per_s": round(tokens_out / elapsed, 1),
        "latency_ms_p50": round(latencies[len(latencies) // 2], 1),
        "latency_ms_max": round(latencies[-1], 1),
    }


def quickstart(size: int, home: Path | None) -> dict[str, Any]:
    """The quickstart in ``home`` (a temporary one by default; a kept home resumes its eval set)."""
    from rich.console import Console

    from routerforge.cli.quickstart import run_quickstart
    from routerforge.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        where = home or Path(tmp) / "home"
        settings = load_settings(overrides={"home": str(where)}, environ={})
        summary = run_quickstart(
            settings, where / "out", size=size, seed=0, k=10, console=Console(stderr=True)
        )
    for key in ("router_dir", "report", "gateway_config"):
        summary.pop(key, None)
    return summary


def _f(value: Any, pct: bool = False) -> str:
    return "n/a" if value is None else (f"{100 * value:.0f} %" if pct else f"{value:.3f}")


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Local models and the quickstart",
        "",
        f"Command: `{doc['command']}` on {doc['machine']} ({doc['date']}); 1-minute load average at the start: "
        f"{doc.get('load_average', 'n/a')} (2 cores: above 2 means other jobs were competing and the speeds are low).",
        "",
        "## Answers per second (llama.cpp, 1 thread, temperature 0, one call at a time)",
        "",
        "| model | prompts | max tokens | load s | answers/s | output tokens/s | latency p50 ms | latency max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in doc["speed"]:
        lines.append(
            f"| {row['model']} | {row['prompts']} | {row['max_tokens']} | {row['load_s']} | {row['answers_per_s']} | "
            f"{row['tokens_out_per_s']} | {row['latency_ms_p50']} | {row['latency_ms_max']} |"
        )
    qs = doc.get("quickstart")
    if qs:
        r = qs.get("routing", {})
        cheaper = (
            "; here the stronger model is also the cheaper one, so a router cannot save money against it: its "
            "gain can only be quality above the stronger model, where the weaker one is right (compare "
            "the best routed quality in the table with the stronger model's quality)."
            if r.get("strong_is_cheaper")
            else "."
        )
        costs = ", ".join(
            f"{m} {qs['mean_score'][m]:.3f} / ${qs['mean_cost_usd'][m]:.2e}" for m in qs["mean_score"]
        )
        lines += [
            "",
            f"## Quickstart routing result ({qs['prompts']} task prompts, held out by 5-fold CV, nominal prices)",
            "",
            "| strong | weak | strong quality | weak quality | knn APGR | knn CPT(50%) | random APGR | oracle APGR "
            "| best routed quality (strong calls) | strong calls at strong quality "
            "| cost at strong quality (share of always-strong) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {r.get('strong')} | {r.get('weak')} | {_f(r.get('strong_quality'))} | {_f(r.get('weak_quality'))} "
            f"| {_f(r.get('apgr'))} | {_f(r.get('cpt50'), True)} | {_f(r.get('random_apgr'))} "
            f"| {_f(r.get('oracle_apgr'))} | {_f(r.get('best_quality'))} "
            f"({_f(r.get('best_quality_strong_share'), True)}) | {_f(r.get('strong_share_at_strong_quality'), True)} "
            f"| {_f(r.get('cost_share_at_strong_quality'), True)} |",
            "",
            f"Mean score / nominal cost per query: {costs}. Nominal prices (local models are free): "
            f"{qs['nominal_prices']['rule']}{cheaper}",
            "",
            "Step times (s): " + ", ".join(f"{k} {v}" for k, v in qs["timings_s"].items()),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    load_average = round(os.getloadavg()[0], 2)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=40, help="prompts per model for the speed test")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--size", type=int, default=300, help="quickstart task suite size")
    parser.add_argument("--skip-quickstart", action="store_true")
    parser.add_argument("--home", type=Path, default=None, help="keep the quickstart's home here (resumable)")
    args = parser.parse_args()

    from routerforge.backends.llamacpp import installed_local_models
    from routerforge.tasks import generate_tasks

    prompts = [item.text for item in generate_tasks(args.prompts, seed=123)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            asyncio.run(speed(spec.id, prompts, Path(tmp), args.max_tokens))
            for spec in installed_local_models()
        ]
    doc: dict[str, Any] = {
        "command": "python benchmarks/bench_local_models.py "
        + f"--prompts {args.prompts} --max-tokens {args.max_tokens} --size {args.size}"
        + (" --skip-quickstart" if args.skip_quickstart else "")
        + (f" --home {args.home}" if args.home else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": load_average,
        "speed": rows,
    }
    if not args.skip_quickstart:
        doc["quickstart"] = quickstart(args.size, args.home)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "local_models.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "local_models.md").write_text(markdown(doc), encoding="utf-8")
    print(markdown(doc))


if __name__ == "__main__":
    main()
