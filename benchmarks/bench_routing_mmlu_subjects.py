"""Routing benchmark: RouteLLM MMLU with whole subjects held out (5 folds over the 57 subjects, the 5
contaminated prompts dropped): routing to domains never seen in training.

Run: ``.venv/bin/python benchmarks/bench_routing_mmlu_subjects.py`` →
``benchmarks/results/bench_routing_mmlu_subjects.{json,md}``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, baseline_target, best_router, latency_target, parse_args, run
from bench_routing_mmlu import STRONG, WEAK


def targets(doc: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    name, apgr = best_router(doc, "apgr")
    return [
        (
            "APGR ≥ 0.60 with subjects held out (best router)",
            f"{apgr:.3f} ({name})" if apgr is not None else "—",
            "random 0.50",
            None if apgr is None else apgr >= 0.60,
        ),
        baseline_target(doc, "apgr"),
        latency_target(doc),
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    run(
        "bench_routing_mmlu_subjects",
        "Routing on RouteLLM MMLU — whole subjects held out (5 folds over subjects)",
        {"routellm-mmlu": DATA / "routellm-mmlu"},
        {
            "data": "routellm-mmlu",
            "folds": 5,
            "group_by": "category",
            "strong": STRONG,
            "weak": WEAK,
            "drop_prompts": DATA / "routellm-mmlu" / "contaminated_prompts.jsonl",
        },
        args,
        targets,
        "python benchmarks/bench_routing_mmlu_subjects.py",
    )


if __name__ == "__main__":
    main()
