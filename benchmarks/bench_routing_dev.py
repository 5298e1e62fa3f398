"""Development protocol for routing: inner cross-validation inside the *training* part of one outer split.

The outer benchmarks (``bench_routing_mmlu.py``, ``bench_routing_routerbench.py``) report held-out numbers;
choosing a default or a hyper-parameter by looking at them would tune on held-out prompts. This script
rebuilds exactly the outer split of such a benchmark (same data, dropped prompts and seed), keeps only the
training rows of one outer fold (``--outer-fold``, default 0; RouterBench: its ``train`` split), and runs the
same harness (same metrics, baselines and paired bootstrap) over ``--inner-folds`` folds of those rows
grouped by prompt text. The outer held-out rows are removed before anything else happens: no router, no
baseline and no metric ever sees them (``tests/test_bench_dev.py`` checks it).

``--keep FILE.npz`` also stores every router's out-of-fold predictions on the dev rows (and the true scores)
so that ways of combining routers can be compared without refitting them.

Run: ``.venv/bin/python benchmarks/bench_routing_dev.py --data mmlu --router knn --router sw`` →
``benchmarks/results/dev_routing_<data>.{json,md}`` (``--merge`` keeps the other routers of that file).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_routing_common import DATA, parse_args, run

# the outer benchmarks this protocol develops for: dataset, import path, outer split
OUTER: dict[str, dict[str, Any]] = {
    "mmlu": {
        "data": "routellm-mmlu",
        "path": DATA / "routellm-mmlu",
        "setup": {
            "folds": 5,
            "strong": "gpt-4-1106-preview",
            "weak": "mistralai/Mixtral-8x7B-Instruct-v0.1",
            "drop_prompts": DATA / "routellm-mmlu" / "contaminated_prompts.jsonl",
        },
    },
    "routerbench": {
        "data": "routerbench-subset",
        "path": DATA / "routerbench-subset",
        "setup": {"split": "test"},
    },
}


def dev_setup(outer: Any, outer_fold: int, inner_folds: int, seed: int) -> Any:
    """The dev :class:`BenchSetup`: the training rows of ``outer.folds[outer_fold]`` only, split into
    ``inner_folds`` folds grouped by prompt text. Nothing of the outer held-out rows is kept."""
    from routerforge.evaluate.harness import BenchSetup
    from routerforge.evaluate.splits import prompt_folds

    fold = outer.folds[outer_fold]
    train_rows = np.asarray(fold.train, dtype=np.int64)
    held = {outer.matrix.prompts[i].strip() for i in fold.test}
    sub = outer.matrix.take(train_rows)
    assert not held & {p.strip() for p in sub.prompts}, "an outer held-out prompt reached the dev rows"
    folds = prompt_folds(sub, inner_folds, seed=seed)
    return BenchSetup(
        sub,
        folds,
        None,
        outer.strong,
        outer.weak,
        f"dev: {inner_folds} inner folds of outer {fold.name}'s training rows ({sub.n_prompts} prompts)",
        {"dev": {"outer_fold": fold.name, "inner_folds": inner_folds, "n_dev": sub.n_prompts}},
    )


def main(argv: list[str] | None = None) -> None:
    extra = [a for a in (argv if argv is not None else sys.argv[1:])]
    # own options first, the shared ones (--router, --param, --label, --merge, …) are parsed by parse_args
    data, outer_fold, inner, keep = "mmlu", 0, 5, None
    rest: list[str] = []
    it = iter(extra)
    for a in it:
        if a == "--data":
            data = next(it)
        elif a == "--outer-fold":
            outer_fold = int(next(it))
        elif a == "--inner-folds":
            inner = int(next(it))
        elif a == "--keep":
            keep = Path(next(it))
        else:
            rest.append(a)
    if data not in OUTER:
        sys.exit(f"--data must be one of {', '.join(OUTER)}")
    args = parse_args(__doc__ or "", rest)
    args.argv_text = " ".join(extra)
    spec = OUTER[data]
    kept: dict[str, Any] = {}

    def make(build: Any, settings: Any, seed: int, **kw: Any) -> Any:
        return dev_setup(build(settings, seed=seed, **kw), outer_fold, inner, seed)

    run(
        f"dev_routing_{data}",
        f"Dev protocol ({data}): {inner} inner folds inside the training rows of one outer split",
        {spec["data"]: spec["path"]},
        {"data": spec["data"], **spec["setup"]},
        args,
        lambda doc: [],
        "python benchmarks/bench_routing_dev.py",
        setup_builder=make,
        keep=kept if keep is not None else None,
    )
    if keep is not None and kept:
        keep.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(keep, **kept)
        print(f"wrote out-of-fold predictions to {keep}")


if __name__ == "__main__":
    main()
