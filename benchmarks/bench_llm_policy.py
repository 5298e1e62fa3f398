"""llm-policy: prompted vs SFT vs SFT+DPO SmolLM2-135M on one held-out set of RouteLLM MMLU.

Medium = Mixtral-8x7B, large = GPT-4-1106 (their recorded 0/1 scores); oracle labels from the 9-cell matrix
(MMLU records carry no "don't know" verdicts, so the labels are Standard / Complex / Ambiguous from
correct/incorrect only). One SFT run (then DPO on top of it) on ``--train`` prompts; every stage is
served by llama.cpp from its GGUF through the same router and answers ``--test`` held-out prompts.
Reported per stage: policy accuracy against the oracle labels, the parse fallbacks, the policies it
picks, and the cost/quality of routing with ``Standard_Query → Mixtral``, ``Complex/Ambiguous → GPT-4``
(``evaluate.metrics.point``), next to always-Mixtral, always-GPT-4, the oracle policy and ``knn`` on the same
held-out prompts (trained on every other MMLU prompt, and on the SFT examples only): knn's policy is the oracle
table applied to its predicted outcomes, and its strong/weak ranking is read at each stage's GPT-4 share.
Intervals: 95 % bootstrap over the held-out prompts. Wall and CPU time of every phase are recorded.

One thread for torch and llama.cpp (``--threads``): on a machine shared by many jobs two spin-waiting
threads were 4–10× slower than one (measured: SFT step 3.9–4.9 s with 1 thread, 16–41 s with 2).

Run: ``.venv/bin/python benchmarks/bench_llm_policy.py`` → ``benchmarks/results/llm_policy.{json,md}``
(CPU-bound: about an hour on 2 cores shared with other jobs, with the defaults).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, RESULTS, ensure_dataset, settings_for

LARGE, MEDIUM = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
# list prices (USD per million tokens: input, output) for the cost axis when the data has no costs
PRICES = {LARGE: (10.0, 30.0), MEDIUM: (0.6, 0.6)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "routerforge-bench")
    parser.add_argument("--train", type=int, default=128, help="SFT examples.")
    parser.add_argument("--dpo-pairs", type=int, default=32, help="DPO pairs (from the first SFT examples).")
    parser.add_argument("--test", type=int, default=160, help="Held-out prompts.")
    parser.add_argument(
        "--holdout-offset",
        type=int,
        default=128,
        help="The held-out prompts start at this position of the seeded permutation (after the SFT examples; "
        "fixed so that runs with fewer SFT examples keep the same held-out set and its answer cache).",
    )
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lora-layers", type=int, default=10, help="Top layers that get LoRA.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and llama.cpp threads (1: no spin-waiting on a busy machine).",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the intervals.")
    parser.add_argument("--skip-knn", action="store_true", help="No knn comparison (no embedding).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> Any:
    from routerforge.data.store import Store

    settings = settings_for(args.home)
    ensure_dataset(settings, "routellm-mmlu", DATA / "routellm-mmlu")
    store = Store.from_settings(settings)
    try:
        return store.load_matrix("routellm-mmlu", models=[MEDIUM, LARGE]), settings
    finally:
        store.close()


def prices_for(matrix: Any, rows: np.ndarray) -> np.ndarray:
    """USD per query: recorded costs where present, else list prices × (prompt chars / 4, 1 output token)."""
    costs = matrix.costs[rows].copy()
    for j, model in enumerate(matrix.models):
        pin, pout = PRICES[model]
        est = np.array([(len(matrix.prompts[i]) / 4 * pin + pout) / 1e6 for i in rows])
        costs[:, j] = np.where(np.isnan(costs[:, j]), est, costs[:, j])
    return costs


def bootstrap_ci(values: np.ndarray, n: int, seed: int) -> list[float] | None:
    """95 % percentile interval of the mean of ``values`` (per-prompt 0/1 or scores) over ``n`` resamples."""
    if n <= 0 or values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n, values.size))
    means = values[idx].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def summarise(
    predicted: list[str],
    labels: list[str],
    choice: np.ndarray,
    scores: np.ndarray,
    prices: np.ndarray,
    large: int,
    medium: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Policy accuracy and cost/quality of one way of choosing, with bootstrap intervals; ``vs_medium`` is
    the paired quality difference to always-medium."""
    from routerforge.evaluate.metrics import point

    hits = np.array([p == t for p, t in zip(predicted, labels, strict=True)], dtype=float)
    rows = np.arange(choice.size)
    got = scores[rows, choice]
    cost, quality = point(choice, scores, prices)
    return {
        "policy_accuracy": float(hits.mean()),
        "policy_accuracy_ci95": bootstrap_ci(hits, args.bootstrap, args.seed),
        "policies": dict(Counter(predicted)),
        "quality": quality,
        "quality_ci95": bootstrap_ci(got, args.bootstrap, args.seed),
        "quality_vs_always_medium": float((got - scores[:, medium]).mean()),
        "quality_vs_always_medium_ci95": bootstrap_ci(got - scores[:, medium], args.bootstrap, args.seed),
        "mean_cost_usd": cost,
        "large_share": float(np.mean(choice == large)),
    }


def evaluate_stage(
    router: Any,
    texts: list[str],
    labels: list[str],
    scores: np.ndarray,
    prices: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    predicted: list[str] = []
    seconds: list[float] = []
    examples: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for text in texts:
        start = time.perf_counter()
        parsed = router.decide_policy(text)
        seconds.append(time.perf_counter() - start)
        predicted.append(parsed.policy)
        if len(examples) < 3:
            examples.append(
                {"query": text[:80], "answer": router.answer(text)[0][:200], "policy": parsed.policy}
            )
    models = list(router.models_)
    choice = np.array([models.index(router.policy_models_[p]) for p in predicted])
    out = summarise(
        predicted, labels, choice, scores, prices, models.index(LARGE), models.index(MEDIUM), args
    )
    out.update(
        {
            "fallbacks": dict(router.fallbacks_),
            "decision_ms_p50": float(np.median(seconds) * 1000),
            "eval_wall_s": time.perf_counter() - t0,
            "examples": examples,
        }
    )
    return out


def knn_rows(
    matrix: Any, settings: Any, train_rows: np.ndarray, test_rows: np.ndarray, sft_rows: np.ndarray
) -> dict[str, np.ndarray]:
    """knn's predicted (medium, large) scores on the held-out prompts: trained on every other MMLU prompt
    (the learned router's usual regime), and on the SFT examples only (the LLM's data)."""
    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import EmbedderEncoder
    from routerforge.routers.base import PromptBatch
    from routerforge.routers.registry import create_router

    encoder = EmbedderEncoder(build_embedder(settings.embed, cache_dir=settings.cache_dir), sparse=False)
    encoder.fit([matrix.prompts[i] for i in train_rows])
    out = {}
    test_texts = [matrix.prompts[i] for i in test_rows]
    test_dense = encoder.dense(test_texts)
    for name, rows in (("knn (all other prompts)", train_rows), ("knn (the SFT examples)", sft_rows)):
        texts = [matrix.prompts[i] for i in rows]
        router = create_router("knn", k=min(100, len(rows))).fit(
            PromptBatch(texts, encoder.dense(texts)), matrix.scores[rows], list(matrix.models)
        )
        out[name] = router.predict_scores(PromptBatch(test_texts, test_dense))
    return out


def main(argv: list[str] | None = None) -> None:
    import torch

    from routerforge.judges.oracle import oracle_labels
    from routerforge.routers.base import PromptBatch
    from routerforge.routers.llm_policy import LlmPolicyRouter, outcomes_from_scores
    from routerforge.routers.llm_policy_text import DEFAULT_POLICIES, DEFAULT_REASONING
    from routerforge.routers.llm_policy_train import train_policy_model

    args = parse_args(argv)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    torch.set_num_threads(args.threads)
    matrix, settings = load(args)
    rng = np.random.default_rng(args.seed)
    complete = np.flatnonzero(~np.isnan(matrix.scores).any(axis=1))
    order = rng.permutation(complete)
    if args.train > args.holdout_offset:
        sys.exit("--train must be at most --holdout-offset (the SFT examples come before the held-out ones)")
    sft_rows = order[: args.train]
    test_rows = order[args.holdout_offset : args.holdout_offset + args.test]
    test_texts_set = {matrix.prompts[i] for i in test_rows}
    other_rows = np.array([i for i in complete if matrix.prompts[i] not in test_texts_set])
    models = list(matrix.models)
    medium_j, large_j = models.index(MEDIUM), models.index(LARGE)

    def router_for(model: str) -> LlmPolicyRouter:
        rows = sft_rows
        X = PromptBatch(texts=[matrix.prompts[i] for i in rows], dense=np.zeros((len(rows), 0)))
        return LlmPolicyRouter(
            model=model,
            medium=MEDIUM,
            large=LARGE,
            cache_dir=str(settings.cache_dir / "llm-policy"),
            n_threads=args.threads,
        ).fit(X, matrix.scores[rows], models)

    base = router_for("smollm2-135m")
    train_labels = base.labels_for(matrix.scores[sft_rows])
    test_labels = [str(x) for x in base.labels_for(matrix.scores[test_rows])]
    texts = [matrix.prompts[i] for i in test_rows]
    scores, prices = matrix.scores[test_rows], prices_for(matrix, test_rows)

    work = args.home / "llm-policy"
    work.mkdir(parents=True, exist_ok=True)
    examples = [(matrix.prompts[i], str(lab)) for i, lab in zip(sft_rows, train_labels, strict=True)]
    pairs = examples[: args.dpo_pairs]
    n = len(texts)
    baselines = {}
    majority = Counter(test_labels).most_common(1)[0][0]
    for name, choice, policy in (
        ("always " + MEDIUM, np.full(n, medium_j), "Standard_Query"),
        ("always " + LARGE, np.full(n, large_j), "Complex_Query"),
        (
            "oracle policy",
            np.array([models.index(base.policy_models_[lab]) for lab in test_labels]),
            None,
        ),
    ):
        predicted = test_labels if policy is None else [policy] * n
        baselines[name] = summarise(predicted, test_labels, choice, scores, prices, large_j, medium_j, args)
    doc: dict[str, Any] = {
        "data": "routellm-mmlu",
        "medium": MEDIUM,
        "large": LARGE,
        "n_train": len(examples),
        "n_dpo_pairs": len(pairs),
        "n_test": n,
        "train_labels": dict(Counter(str(x) for x in train_labels)),
        "test_labels": dict(Counter(test_labels)),
        "majority_label": majority,
        "majority_label_accuracy": Counter(test_labels)[majority] / n,
        "training": {"threads": args.threads, "lora_rank": args.lora_rank, "lora_layers": args.lora_layers},
        "stages": {},
        "baselines": baselines,
        "knn": {},
        "command": "python benchmarks/bench_llm_policy.py"
        + "".join(
            f" --{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k in ("train", "dpo_pairs", "test", "holdout_offset", "lora_rank", "lora_layers", "threads")
        ),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }

    def write() -> None:  # after every stage: a stopped run keeps what it measured
        doc["wall_s"] = time.perf_counter() - wall0
        doc["cpu_s"] = time.process_time() - cpu0
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "llm_policy.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        (args.out / "llm_policy.md").write_text(markdown(doc), encoding="utf-8")
        print(markdown(doc), flush=True)

    train_kw = {
        "base_model": "smollm2-135m",
        "seed": args.seed,
        "lora_rank": args.lora_rank,
        "top_layers": args.lora_layers,
    }
    doc["stages"]["prompted"] = evaluate_stage(base, texts, test_labels, scores, prices, args)
    write()
    sft_path, dpo_path = work / "sft.gguf", work / "dpo.gguf"
    log: dict[str, Any] = {}
    t0 = time.perf_counter()
    train_policy_model(
        examples, DEFAULT_POLICIES, DEFAULT_REASONING, out_path=sft_path, dpo=False, log=log, **train_kw
    )
    doc["training"]["sft"] = {**log, "wall_s_with_load_and_export": time.perf_counter() - t0}
    doc["stages"]["sft"] = evaluate_stage(router_for(str(sft_path)), texts, test_labels, scores, prices, args)
    write()
    log = {}
    t0 = time.perf_counter()
    train_policy_model(  # DPO on top of the SFT model (its GGUF is the base and the frozen reference)
        pairs,
        DEFAULT_POLICIES,
        DEFAULT_REASONING,
        out_path=dpo_path,
        dpo=True,
        sft=False,
        log=log,
        **{**train_kw, "base_model": str(sft_path)},
    )
    doc["training"]["dpo"] = {**log, "wall_s_with_load_and_export": time.perf_counter() - t0}
    doc["stages"]["sft+dpo"] = evaluate_stage(
        router_for(str(dpo_path)), texts, test_labels, scores, prices, args
    )
    write()
    if args.skip_knn:
        return
    t0 = time.perf_counter()
    for name, pred in knn_rows(matrix, settings, other_rows, test_rows, sft_rows).items():
        threshold = float(base.correct_threshold)
        predicted = oracle_labels(
            outcomes_from_scores(pred[:, medium_j], threshold),
            outcomes_from_scores(pred[:, large_j], threshold),
        )
        choice = np.array([models.index(base.policy_models_[p]) for p in predicted])
        entry = summarise(predicted, test_labels, choice, scores, prices, large_j, medium_j, args)
        # the same router as a strong/weak ranking: quality when it sends each LLM stage's share to the large
        # model (the prompts with the highest predicted advantage of the large model)
        advantage = pred[:, large_j] - pred[:, medium_j]
        ranked = np.argsort(-advantage, kind="stable")
        at_share = {}
        for stage, s in doc["stages"].items():
            k = round(s["large_share"] * n)
            pick = np.full(n, medium_j)
            pick[ranked[:k]] = large_j
            at_share[stage] = {
                "large_share": k / n,
                "quality": float(scores[np.arange(n), pick].mean()),
                "mean_cost_usd": float(prices[np.arange(n), pick].mean()),
            }
        entry["at_stage_large_share"] = at_share
        doc["knn"][name] = entry
    doc["knn_wall_s"] = time.perf_counter() - t0
    write()


def _ci(v: list[float] | None) -> str:
    return "" if not v else f" [{v[0]:.3f}, {v[1]:.3f}]"


def markdown(doc: dict[str, Any]) -> str:
    tr = doc["training"]
    lines = [
        "# llm-policy: prompted vs SFT vs SFT+DPO (SmolLM2-135M, RouteLLM MMLU)",
        "",
        f"`{doc['command']}` — {doc.get('date_utc', '')} UTC; wall {doc.get('wall_s', 0):.0f} s, process CPU "
        f"{doc.get('cpu_s', 0):.0f} s.",
        "",
        f"Medium {doc['medium']}, large {doc['large']}; {doc['n_train']} SFT examples {doc['train_labels']}, "
        f"{doc['n_dpo_pairs']} DPO pairs, {doc['n_test']} held-out prompts {doc['test_labels']} (majority "
        f"label {doc['majority_label']}: accuracy {doc['majority_label_accuracy']:.3f}). LoRA rank "
        f"{tr['lora_rank']} on the top {tr['lora_layers']} layers, {tr['threads']} CPU threads shared with other "
        'jobs. Labels: the 9-cell oracle table (MMLU has no "don\'t know" verdicts: the 2 × 2 corner). Cost '
        "axis: list prices × prompt length. Intervals: 95 % bootstrap over the held-out prompts.",
        "",
    ]
    for stage in ("sft", "dpo"):
        if stage in tr:
            lines.append(
                f"- {stage} training: "
                + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in tr[stage].items()
                )
            )
    lines += [
        "",
        "| way of choosing | policy accuracy | quality | quality − always-medium | mean cost (USD) | large share | fallbacks | decision p50 (ms, uncached) |",
        "| --- | --- | --- | --- | ---: | ---: | --- | ---: |",
    ]

    def row(name: str, s: dict[str, Any], extra: str = "| |") -> str:
        return (
            f"| {name} | {s['policy_accuracy']:.3f}{_ci(s.get('policy_accuracy_ci95'))} | "
            f"{s['quality']:.3f}{_ci(s.get('quality_ci95'))} | {s['quality_vs_always_medium']:+.3f}"
            f"{_ci(s.get('quality_vs_always_medium_ci95'))} | {s['mean_cost_usd']:.6f} | {s['large_share']:.2f} {extra}"
        )

    for name, s in doc["stages"].items():
        lines.append(row(name, s, f"| {s['fallbacks'] or '—'} | {s['decision_ms_p50']:.0f} |"))
    for name, s in doc.get("knn", {}).items():
        lines.append(row(name + ", labels from predicted outcomes", s))
    for name, s in doc["baselines"].items():
        lines.append(row(name, s))
    knn = doc.get("knn", {})
    if knn:
        lines += [
            "",
            "knn as a strong/weak ranking at each LLM stage's large share (same held-out prompts):",
            "",
        ]
        lines += [
            "| knn | stage | large share | quality | mean cost (USD) |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for name, s in knn.items():
            for stage, p in s["at_stage_large_share"].items():
                lines.append(
                    f"| {name} | {stage} | {p['large_share']:.2f} | {p['quality']:.3f} | {p['mean_cost_usd']:.6f} |"
                )
    lines += [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
