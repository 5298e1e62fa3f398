"""Routing benchmark: the RouterBench subset (ARC-challenge, MBPP, Winogrande; 11 models with per-query
cost), trained on its own train split and tested on its test split: AIQ, quality at GPT-4's cost and the
cost to reach GPT-4's accuracy, for every available router family.

Run: ``.venv/bin/python benchmarks/bench_routing_routerbench.py`` →
``benchmarks/results/bench_routing_routerbench.{json,md}``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, baseline_target, best_router, latency_target, parse_args, run


def targets(doc: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    best = doc["best_single"]
    single = doc["single_models"][best]
    share_name, share = best_router(doc, "cost_share_at_best_quality", higher=False)
    q_name, quality = best_router(doc, "quality_at_best_cost")
    return [
        (
            f"reach {best}'s accuracy ({single['quality']:.3f}) at ≤ 50 % of its cost",
            f"{share:.1%} ({share_name})" if share is not None else "never reached",
            "per-task router 76 %",
            None if share is None else share <= 0.5,
        ),
        (
            f"accuracy ≥ 0.90 at {best}'s cost (${single['cost']:.5f}/query)",
            f"{quality:.3f} ({q_name})" if quality is not None else "—",
            f"{best} alone {single['quality']:.3f}; oracle {doc['routers']['oracle']['quality_at_best_cost']:.3f}",
            None if quality is None else quality >= 0.90,
        ),
        baseline_target(doc, "quality_at_best_cost"),
        latency_target(doc),
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    run(
        "bench_routing_routerbench",
        "Routing on the RouterBench subset — own train/test split, 11 models with cost",
        {"routerbench-subset": DATA / "routerbench-subset"},
        {"data": "routerbench-subset", "split": "test"},
        args,
        targets,
        "python benchmarks/bench_routing_routerbench.py",
    )


if __name__ == "__main__":
    main()
