"""Semantic routes benchmark: the built-in task-type routes (``builtin:task_types``) with no eval data, and
the ``semantic`` family against ``knn`` on held-out MMLU / RouterBench prompts through the harness.

1. Task-type accuracy of ``builtin:task_types`` (trained on its own utterances only, thresholds learnt
   leave-one-out; a prompt below every threshold counts as ``other``) on the built-in task suite (its kinds
   map onto task types: :data:`SUITE_TYPES`), on MMLU (subject → ``math`` or ``closed-qa``:
   :data:`MMLU_MATH`) and on RouterBench (``eval_name`` → type: :data:`ROUTERBENCH_TYPES`); accuracy, per-type
   recall, confusion, and the decision latency p50 (onnx MiniLM, uncached, one thread, through
   ``TrainedRouter.score``). Also: the complexity estimate against the suite's difficulty (Spearman) and
   as a predictor of the weak model failing (AUC).
2. Harness runs on MMLU, RouterBench and Pulze (same folds / split, trivial baselines and paired-bootstrap
   intervals as ``bench_routing_*.py``): ``knn`` and ``ensemble`` vs ``semantic`` with routes learnt from the
   scores, routes from the category column (``routes=category``: per fold, the training prompts of each
   category, targeting its best model on them), the same with a ``knn`` fallback, and, on MMLU,
   ``builtin:task_types`` with ``math`` → GPT-4 + ``knn`` fallback. Route sources are resolved per fold by
   ``evaluate.semantic_routes.SemanticFoldFactory`` (what ``routerforge bench -r semantic -p
   semantic.routes=…`` uses), which sees the fold's training rows only.

Run: ``.venv/bin/python benchmarks/bench_semantic.py`` → ``benchmarks/results/semantic.{json,md}``
(``--skip-task-types --only mmlu`` reruns one harness section and keeps the rest of the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, RESULTS, ensure_dataset, settings_for

SUITE_TYPES = {
    "addition": "math",
    "subtraction": "math",
    "multiplication": "math",
    "next_number": "math",
    "compare": "math",
    "unit_conversion": "math",
    "count_letters": "extraction",
    "count_words": "extraction",
    "first_letter": "extraction",
    "reverse": "rewriting",
    "uppercase": "rewriting",
    "capital": "closed-qa",
    "opposite": "closed-qa",
    "longer_word": "classification",
    "category_choice": "classification",
}
MMLU_MATH = {
    "abstract_algebra",
    "college_mathematics",
    "elementary_mathematics",
    "high_school_mathematics",
    "high_school_statistics",
}
ROUTERBENCH_TYPES = {"arc-challenge": "closed-qa", "winogrande": "closed-qa", "mbpp": "code"}
MMLU_STRONG, MMLU_WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
PULZE_STRONG, PULZE_WEAK = "anthropic/claude-sonnet-4-5", "xai/grok-4-fast"


def type_router(settings: Any, out: Path) -> Any:
    """``builtin:task_types`` trained on its utterances alone, one pseudo-model per type."""
    from routerforge.policy.trained import train_router
    from routerforge.routers.routes_file import load_routes, routes_matrix

    routes = load_routes("builtin:task_types")
    routes = routes.with_mapping({name: name for name in routes.names})
    return train_router(
        "semantic",
        routes_matrix(routes),
        None,
        settings.embed,
        out,
        {"routes": routes.to_params()},
        cache_dir=settings.cache_dir,
    )


def classify(trained: Any, texts: list[str]) -> tuple[list[str], list[str]]:
    """(matched type or 'other', best-scoring type ignoring thresholds) per text."""
    batch = trained.batch(texts)
    router = trained.router
    matched = [m or "other" for m in router.match(batch)]
    top = [router.route_names_[j] for j in np.argmax(router.route_scores(batch), axis=1)]
    return matched, top


def accuracy_doc(truth: list[str], pred: list[str], top: list[str]) -> dict[str, Any]:
    t, p = np.array(truth), np.array(pred)
    per_type = {k: float(np.mean(p[t == k] == k)) for k in sorted(set(truth))}
    confusion: dict[str, dict[str, int]] = {}
    for a, b in zip(truth, pred, strict=True):
        confusion.setdefault(a, Counter())[b] += 1  # type: ignore[arg-type]
    return {
        "n": len(truth),
        "accuracy": float(np.mean(t == p)),
        "accuracy_top1_no_threshold": float(np.mean(t == np.array(top))),
        "no_route_share": float(np.mean(p == "other")),
        "recall_per_type": per_type,
        "confusion": {k: dict(v.most_common()) for k, v in confusion.items()},
    }


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1))


def sample_rows(categories: list[Any], per: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    by: dict[Any, list[int]] = {}
    for i, c in enumerate(categories):
        by.setdefault(c, []).append(i)
    rows = [r for c in sorted(by, key=str) for r in rng.permutation(by[c])[:per]]
    return np.array(sorted(rows))


def task_types(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from scipy.stats import spearmanr

    from routerforge.data.store import Store
    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.timing import measure_latency
    from routerforge.policy.trained import TrainedRouter
    from routerforge.routers.complexity import estimate_complexity
    from routerforge.tasks import generate_tasks

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trained = type_router(settings, Path(tmp) / "types")
        out["thresholds"] = dict(
            zip(trained.router.route_names_, trained.router.thresholds_.tolist(), strict=True)
        )
        out["train_f1_leave_one_out"] = dict(
            zip(trained.router.route_names_, np.nan_to_num(trained.router.train_f1_).tolist(), strict=True)
        )
        items = generate_tasks(args.suite_size, seed=args.seed)
        texts = [it.text for it in items]
        truth = [SUITE_TYPES[str(it.category)] for it in items]
        pred, top = classify(trained, texts)
        out["task_suite"] = accuracy_doc(truth, pred, top)
        difficulty = np.array([it.metadata["difficulty"] for it in items])
        cx = np.array([estimate_complexity(t) for t in texts])
        out["task_suite"]["complexity_vs_difficulty_spearman"] = float(spearmanr(cx, difficulty).statistic)

        store = Store.from_settings(settings)
        try:
            mmlu = store.load_matrix("routellm-mmlu")
            rb = store.load_matrix("routerbench-subset")
        finally:
            store.close()
        rows = sample_rows(mmlu.categories, args.per_subject, args.seed)
        texts = [mmlu.prompts[i] for i in rows]
        truth = ["math" if mmlu.categories[i] in MMLU_MATH else "closed-qa" for i in rows]
        pred, top = classify(trained, texts)
        out["mmlu"] = accuracy_doc(truth, pred, top)
        weak_wrong = mmlu.scores[rows, mmlu.models.index(MMLU_WEAK)] < 0.5
        cx = np.array([estimate_complexity(t) for t in texts])
        out["mmlu"]["complexity_auc_weak_wrong"] = auc(cx, weak_wrong)
        out["mmlu"]["complexity_mean"] = float(cx.mean())

        rows = np.array([i for i, s in enumerate(rb.splits) if s == "test"])
        texts = [rb.prompts[i] for i in rows]
        truth = [ROUTERBENCH_TYPES[str(rb.categories[i])] for i in rows]
        pred, top = classify(trained, texts)
        out["routerbench"] = accuracy_doc(truth, pred, top)
        by_eval: dict[str, Counter[str]] = {}
        for i, label in zip(rows, pred, strict=True):
            by_eval.setdefault(str(rb.categories[i]), Counter())[label] += 1
        out["routerbench"]["predicted_by_eval_name"] = {k: dict(v.most_common()) for k, v in by_eval.items()}

        quick = build_embedder(
            settings.embed.model_copy(update={"cache": False, "threads": 1}), cache_dir=None
        )
        served = TrainedRouter(trained.router, quick, stripper=trained.stripper)
        sample = texts[: args.latency_sample]
        # embedding + route scores + prediction + price estimate (the harness's latency definition; the
        # pseudo-models have no prices, so no policy runs)
        out["decision_latency"] = measure_latency(lambda text: served.score([text]), sample)
        out["decision_latency"]["embedder"] = quick.id
        out["decision_latency"]["sample"] = f"{len(sample)} RouterBench test prompts"
    return out


def harness(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    """knn / ensemble vs semantic variants through the harness (same setups, metrics, trivial baselines and
    paired-bootstrap intervals as ``bench_routing_*.py``), route sources resolved per fold on the training
    prompts only by ``evaluate.semantic_routes.SemanticFoldFactory`` — what ``routerforge bench --router
    semantic -p semantic.routes=category|FILE`` runs."""
    from routerforge.cli.routing import build_setup, latency_factory
    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import EmbedderEncoder, RouterSpec, run_bench
    from routerforge.evaluate.semantic_routes import SemanticFoldFactory

    embedder = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    quick = build_embedder(settings.embed.model_copy(update={"cache": False, "threads": 1}), cache_dir=None)
    encoder = EmbedderEncoder(embedder)
    category = RouterSpec("semantic", {"routes": "category"}, "semantic (routes = categories)")
    category_knn = RouterSpec(
        "semantic", {"routes": "category", "fallback": "knn"}, "semantic (routes = categories) + knn fallback"
    )
    common = [
        RouterSpec("knn"),
        RouterSpec("ensemble"),
        RouterSpec("semantic", {}, "semantic (routes from scores)"),
        category,
        category_knn,
    ]
    runs: dict[str, tuple[dict[str, Any], list[Any], list[str]]] = {
        "mmlu": (
            {
                "data": "routellm-mmlu",
                "folds": 5,
                "strong": MMLU_STRONG,
                "weak": MMLU_WEAK,
                "drop_prompts": DATA / "routellm-mmlu" / "contaminated_prompts.jsonl",
            },
            [
                *common,
                RouterSpec(
                    "semantic",
                    {"routes": "builtin:task_types", "map": {"math": MMLU_STRONG}, "fallback": "knn"},
                    "semantic (builtin:task_types, math→gpt-4) + knn fallback",
                ),
            ],
            ["apgr", "cpt50", "cpt80"],
        ),
        "routerbench": (
            {"data": "routerbench-subset", "split": "test"},
            common,
            ["aiq", "quality_at_best_cost", "cost_share_at_best_quality"],
        ),
        "pulze": (
            {"data": "pulze-v1-strict", "folds": 5, "strong": PULZE_STRONG, "weak": PULZE_WEAK},
            common,
            ["apgr", "cpt50", "cpt80"],
        ),
    }
    out: dict[str, Any] = {}
    for name, (setup_kwargs, specs, keys) in runs.items():
        if args.only and name not in args.only:
            continue
        setup = build_setup(settings, seed=args.seed, **setup_kwargs)
        t0 = time.perf_counter()
        doc = run_bench(
            setup,
            specs,
            encoder,
            latency=latency_factory(quick, encoder),
            latency_sample=args.latency_sample,
            seed=args.seed,
            fold_factory=SemanticFoldFactory(encoder),
            bootstrap=args.bootstrap,
        )
        out[name] = {
            "setup": {k: str(v) for k, v in setup_kwargs.items()},
            "n_prompts": doc["n_prompts"],
            "wall_s": time.perf_counter() - t0,
            "bootstrap": doc.get("bootstrap"),
            "routers": {
                key: {
                    **{k: r.get(k) for k in [*keys, "fit_s", "predict_ms_p50"]},
                    "vs_baseline": r.get("vs_baseline"),
                    "vs_baselines": r.get("vs_baselines"),
                }
                for key, r in {**doc["routers"], **doc.get("baselines", {})}.items()
            },
        }
    return out


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# Semantic routes: built-in task types and the `semantic` family", ""]
    lines.append(
        f"`{doc['command']}` — {doc['date_utc']} UTC (task types: {doc.get('task_types_date_utc', doc['date_utc'])} UTC), embedder {doc['embedder']}."
    )
    lines += ["", "## Task-type accuracy of `builtin:task_types` (no eval data)", ""]
    lines.append("| prompts | n | accuracy | top-1 (no threshold) | no-route share |")
    lines.append("| --- | --- | --- | --- | --- |")
    types = doc["task_types"]
    for key in ("task_suite", "mmlu", "routerbench"):
        d = types[key]
        lines.append(
            f"| {key} | {d['n']} | {d['accuracy']:.3f} | {d['accuracy_top1_no_threshold']:.3f} | "
            f"{d['no_route_share']:.3f} |"
        )
    for key in ("task_suite", "mmlu", "routerbench"):
        d = types[key]
        lines += [
            "",
            f"**{key}** recall per type: "
            + ", ".join(f"{k} {v:.2f}" for k, v in d["recall_per_type"].items()),
        ]
        lines.append(
            "confusion (true → predicted counts): "
            + "; ".join(
                f"{t}: " + ", ".join(f"{p} {c}" for p, c in row.items()) for t, row in d["confusion"].items()
            )
        )
    lines.append(
        "RouterBench predictions by eval_name: "
        + "; ".join(
            f"{e}: " + ", ".join(f"{p} {c}" for p, c in row.items())
            for e, row in types["routerbench"]["predicted_by_eval_name"].items()
        )
    )
    lat = types["decision_latency"]
    lines += [
        "",
        f"Decision latency ({lat['sample']}, {lat['embedder']}, uncached, 1 thread): p50 "
        f"{lat['predict_ms_p50']:.1f} ms, p99 {lat['predict_ms_p99']:.1f} ms, CPU time p50 "
        f"{lat['predict_cpu_ms_p50']:.1f} ms (wall time is inflated by the shared machine).",
        "",
        f"Complexity estimate: Spearman with the task suite's difficulty "
        f"{types['task_suite']['complexity_vs_difficulty_spearman']:.3f}; AUC for 'Mixtral wrong' on MMLU "
        f"{types['mmlu']['complexity_auc_weak_wrong']:.3f}.",
    ]
    for name, run in doc["harness"].items():
        lines += ["", f"## Harness: {name} ({', '.join(f'{k}={v}' for k, v in run['setup'].items())})", ""]
        keys = [k for k in next(iter(run["routers"].values())) if k not in ("vs_baseline", "vs_baselines")]
        lines.append("| router | " + " | ".join(keys) + " | vs strongest trivial baseline (95 % CI) |")
        lines.append("| --- |" + " --- |" * (len(keys) + 1))
        for key, r in run["routers"].items():
            cells = [
                "—" if r[k] is None else (f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]))
                for k in keys
            ]
            vs = r.get("vs_baseline") or {}
            ci = vs.get("ci95")
            cmp = (
                f"{vs.get('diff', 0):+.3f} vs {vs.get('baseline')}"
                + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
                if vs
                else ""
            )
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {cmp} |")
        lines.append("")
        lines.append(f"{run.get('n_prompts')} held-out prompts; wall {run.get('wall_s', 0):.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "routerforge-bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite-size", type=int, default=600)
    parser.add_argument("--per-subject", type=int, default=20, help="MMLU prompts per subject.")
    parser.add_argument("--latency-sample", type=int, default=200)
    parser.add_argument("--skip-harness", action="store_true")
    parser.add_argument(
        "--skip-task-types",
        action="store_true",
        help="Keep the task-type section of the existing semantic.json (rerun only the harness).",
    )
    parser.add_argument("--only", action="append", help="Harness runs to do: mmlu, routerbench, pulze.")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Paired-bootstrap resamples.")
    args = parser.parse_args(argv)
    settings = settings_for(args.home)
    ensure_dataset(settings, "routellm-mmlu", DATA / "routellm-mmlu")
    ensure_dataset(settings, "routerbench-subset", DATA / "routerbench-subset")
    ensure_dataset(
        settings, "pulze-v1-strict", DATA / "pulze-v1" / "results", fmt="pulze-jsonl", pulze_score="strict"
    )
    t0 = time.perf_counter()
    previous: dict[str, Any] = {}
    if (args.out / "semantic.json").is_file():
        previous = json.loads((args.out / "semantic.json").read_text(encoding="utf-8"))
    doc: dict[str, Any] = {
        "command": "python benchmarks/bench_semantic.py",
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "embedder": settings.embed.provider,
        "mappings": {
            "suite": SUITE_TYPES,
            "mmlu_math_subjects": sorted(MMLU_MATH),
            "routerbench": ROUTERBENCH_TYPES,
        },
    }
    if args.skip_task_types and "task_types" in previous:
        doc["task_types"] = previous["task_types"]
        doc["task_types_date_utc"] = previous.get("task_types_date_utc", previous.get("date_utc"))
    else:
        doc["task_types"] = task_types(settings, args)
        doc["task_types_date_utc"] = doc["date_utc"]
    harness_runs = {} if args.skip_harness else harness(settings, args)
    doc["harness"] = {**previous.get("harness", {}), **harness_runs} if args.only else harness_runs
    doc["wall_s"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "semantic.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    (args.out / "semantic.md").write_text(markdown(doc), encoding="utf-8")
    print(markdown(doc))


if __name__ == "__main__":
    main()
