"""Routing benchmark: RouteLLM MMLU (GPT-4-1106 vs Mixtral-8x7B), 5 folds grouped by prompt text, the 5
contaminated prompts dropped, every available router family side by side with fit time and latency.

Run: ``.venv/bin/python benchmarks/bench_routing_mmlu.py`` → ``benchmarks/results/bench_routing_mmlu.{json,md}``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, baseline_target, best_router, latency_target, parse_args, run

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def targets(doc: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    name, apgr = best_router(doc, "apgr")
    cpt_name, cpt50 = best_router(doc, "cpt50", higher=False)
    out = [
        (
            "APGR ≥ 0.70 (best router)",
            f"{apgr:.3f} ({name})" if apgr is not None else "—",
            "RouteLLM best 0.603; per-subject mean 0.674; kNN-100 0.667",
            None if apgr is None else apgr >= 0.70,
        ),
        (
            "CPT(50%) ≤ 25 % (best router)",
            f"{cpt50:.1%} ({cpt_name})" if cpt50 is not None else "—",
            "RouteLLM 35.4 %; per-subject mean 27.3 %; oracle 6.3 %",
            None if cpt50 is None else cpt50 <= 0.25,
        ),
    ]
    out.append(baseline_target(doc, "apgr"))
    out.append(latency_target(doc))
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    run(
        "bench_routing_mmlu",
        "Routing on RouteLLM MMLU — 5 folds grouped by prompt, contaminated prompts dropped",
        {"routellm-mmlu": DATA / "routellm-mmlu"},
        {
            "data": "routellm-mmlu",
            "folds": 5,
            "strong": STRONG,
            "weak": WEAK,
            "drop_prompts": DATA / "routellm-mmlu" / "contaminated_prompts.jsonl",
        },
        args,
        targets,
        "python benchmarks/bench_routing_mmlu.py",
    )


if __name__ == "__main__":
    main()
