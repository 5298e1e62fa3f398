"""Routing benchmark: Pulze v1 results scored strictly (``--pulze-score strict``: 1 only when the answer's
option is the gold answer), 5 folds grouped by prompt text, 285 MMLU-style prompts over 57 subjects.

Pulze v1 records no costs, so the run is binary: the best model by mean strict score
(anthropic/claude-sonnet-4-5) as strong and the weakest (xai/grok-4-fast) as weak — the question is when
the fast model is enough. Every available router family, against the trivial baselines.

Run: ``.venv/bin/python benchmarks/bench_routing_pulze.py`` → ``benchmarks/results/bench_routing_pulze.{json,md}``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, baseline_target, best_router, latency_target, parse_args, run

STRONG, WEAK = "anthropic/claude-sonnet-4-5", "xai/grok-4-fast"


def targets(doc: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    name, apgr = best_router(doc, "apgr")
    return [
        (
            "APGR above random (best router)",
            f"{apgr:.3f} ({name})" if apgr is not None else "—",
            f"random {doc['routers']['random']['apgr']:.3f}; oracle {doc['routers']['oracle']['apgr']:.3f}",
            None if apgr is None else apgr > doc["routers"]["random"]["apgr"],
        ),
        baseline_target(doc, "apgr"),
        latency_target(doc),
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    run(
        "bench_routing_pulze",
        "Routing on Pulze v1 (strict scores) — 5 folds grouped by prompt, claude-sonnet-4-5 vs grok-4-fast",
        {"pulze-v1-strict": DATA / "pulze-v1" / "results"},
        {"data": "pulze-v1-strict", "folds": 5, "strong": STRONG, "weak": WEAK},
        args,
        targets,
        "python benchmarks/bench_routing_pulze.py",
        read_options={"pulze-v1-strict": {"fmt": "pulze-jsonl", "pulze_score": "strict"}},
    )


if __name__ == "__main__":
    main()
