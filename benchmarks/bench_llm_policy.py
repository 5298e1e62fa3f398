"""llm-policy: prompted vs SFT vs SFT+DPO SmolLM2-135M on one held-out set of RouteLLM MMLU.

Medium = Mixtral-8x7B, large = GPT-4-1106 (their recorded 0/1 scores); oracle labels from the 9-cell matrix
(MMLU records carry no "don't know" verdicts, so the labels are Standard / Complex / Ambiguous from
correct/incorrect only). One SFT run (then DPO on top of it) on ``--train`` prompts; every stage is
served by llama.cpp from its GGUF through the same router and answers ``--test`` held-out prompts.
Reported per stage: policy accuracy against the oracle labels, the parse fallbacks, the policies it
picks, and the cost/quality of routing with ``Standard_Query → Mixtral``, ``Complex/Ambiguous → GPT-4``
(``evaluate.metrics.point``), next to always-Mixtral, always-GPT-4 and the oracle policy.

Run: ``.venv/bin/python benchmarks/bench_llm_policy.py`` → ``benchmarks/results/llm_policy.{json,md}``
(CPU-bound: 30–40 minutes on 2 cores shared with other jobs, with the defaults).
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
    parser.add_argument("--train", type=int, default=32, help="SFT examples.")
    parser.add_argument("--dpo-pairs", type=int, default=8, help="DPO pairs (from the first SFT examples).")
    parser.add_argument("--test", type=int, default=24, help="Held-out prompts.")
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


def evaluate_stage(
    router: Any, texts: list[str], labels: list[str], scores: np.ndarray, prices: np.ndarray
) -> dict[str, Any]:
    from routerforge.evaluate.metrics import point
    from routerforge.routers.llm_policy import policy_accuracy

    predicted, seconds, examples = [], [], []
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
    cost, quality = point(choice, scores, prices)
    return {
        "policy_accuracy": policy_accuracy(predicted, labels),
        "fallbacks": dict(router.fallbacks_),
        "policies": dict(Counter(predicted)),
        "mean_cost_usd": cost,
        "quality": quality,
        "large_share": float(np.mean(choice == models.index(LARGE))),
        "decision_ms_p50": float(np.median(seconds) * 1000),
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> None:
    import torch

    from routerforge.evaluate.metrics import point
    from routerforge.routers.base import PromptBatch
    from routerforge.routers.llm_policy import LlmPolicyRouter
    from routerforge.routers.llm_policy_text import DEFAULT_POLICIES, DEFAULT_REASONING
    from routerforge.routers.llm_policy_train import train_policy_model

    args = parse_args(argv)
    torch.set_num_threads(2)
    matrix, settings = load(args)
    rng = np.random.default_rng(args.seed)
    complete = np.flatnonzero(~np.isnan(matrix.scores).any(axis=1))
    order = rng.permutation(complete)
    train_rows, test_rows = order[: args.train], order[args.train : args.train + args.test]
    models = list(matrix.models)

    def router_for(model: str) -> LlmPolicyRouter:
        rows = train_rows
        X = PromptBatch(texts=[matrix.prompts[i] for i in rows], dense=np.zeros((len(rows), 0)))
        return LlmPolicyRouter(
            model=model,
            medium=MEDIUM,
            large=LARGE,
            cache_dir=str(settings.cache_dir / "llm-policy"),
            n_threads=2,
        ).fit(X, matrix.scores[rows], models)

    base = router_for("smollm2-135m")
    train_labels = base.labels_for(matrix.scores[train_rows])
    test_labels = [str(x) for x in base.labels_for(matrix.scores[test_rows])]
    texts = [matrix.prompts[i] for i in test_rows]
    scores, prices = matrix.scores[test_rows], prices_for(matrix, test_rows)

    work = args.home / "llm-policy"
    work.mkdir(parents=True, exist_ok=True)
    examples = [(matrix.prompts[i], str(lab)) for i, lab in zip(train_rows, train_labels, strict=True)]
    pairs = examples[: args.dpo_pairs]
    baselines = {}
    for name, choice in {
        "always " + MEDIUM: np.full(len(texts), models.index(MEDIUM)),
        "always " + LARGE: np.full(len(texts), models.index(LARGE)),
        "oracle policy": np.array([models.index(base.policy_models_[lab]) for lab in test_labels]),
    }.items():
        cost, quality = point(choice, scores, prices)
        baselines[name] = {"mean_cost_usd": cost, "quality": quality}
    majority = Counter(test_labels).most_common(1)[0]
    doc: dict[str, Any] = {
        "data": "routellm-mmlu",
        "medium": MEDIUM,
        "large": LARGE,
        "n_train": len(examples),
        "n_dpo_pairs": len(pairs),
        "n_test": len(texts),
        "train_labels": dict(Counter(str(x) for x in train_labels)),
        "test_labels": dict(Counter(test_labels)),
        "majority_label_accuracy": majority[1] / len(test_labels),
        "training": {"threads": 2},
        "stages": {},
        "baselines": baselines,
        "command": "python benchmarks/bench_llm_policy.py",
    }

    def write() -> None:  # after every stage: a stopped run keeps what it measured
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "llm_policy.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        (args.out / "llm_policy.md").write_text(markdown(doc), encoding="utf-8")
        print(markdown(doc), flush=True)

    doc["stages"]["prompted"] = evaluate_stage(base, texts, test_labels, scores, prices)
    write()
    sft_path, dpo_path = work / "sft.gguf", work / "dpo.gguf"
    log: dict[str, Any] = {}
    train_policy_model(
        examples,
        DEFAULT_POLICIES,
        DEFAULT_REASONING,
        out_path=sft_path,
        base_model="smollm2-135m",
        dpo=False,
        seed=args.seed,
        log=log,
    )
    doc["training"]["sft"] = dict(log)
    doc["stages"]["sft"] = evaluate_stage(router_for(str(sft_path)), texts, test_labels, scores, prices)
    write()
    log = {}
    train_policy_model(  # DPO on top of the SFT model (its GGUF is the base and the frozen reference)
        pairs,
        DEFAULT_POLICIES,
        DEFAULT_REASONING,
        out_path=dpo_path,
        base_model=str(sft_path),
        dpo=True,
        sft=False,
        seed=args.seed,
        log=log,
    )
    doc["training"]["dpo"] = dict(log)
    doc["stages"]["sft+dpo"] = evaluate_stage(router_for(str(dpo_path)), texts, test_labels, scores, prices)
    write()


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# llm-policy: prompted vs SFT vs SFT+DPO (SmolLM2-135M, RouteLLM MMLU)",
        "",
        f"Medium {doc['medium']}, large {doc['large']}; {doc['n_train']} SFT examples, {doc['n_dpo_pairs']} DPO "
        f"pairs, {doc['n_test']} held-out prompts. Test labels {doc['test_labels']} (majority-label accuracy "
        f"{doc['majority_label_accuracy']:.3f}). Training on {doc['training']['threads']} CPU threads shared with "
        f"other jobs: {json.dumps({k: v for k, v in doc['training'].items() if k != 'threads'})}.",
        "",
        "| stage | policy accuracy | fallbacks | policies chosen | quality | mean cost (USD) | large share | decision p50 (ms, uncached) |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in doc["stages"].items():
        lines.append(
            f"| {name} | {s['policy_accuracy']:.3f} | {s['fallbacks'] or '—'} | {s['policies']} | "
            f"{s['quality']:.3f} | {s['mean_cost_usd']:.6f} | {s['large_share']:.2f} | {s['decision_ms_p50']:.0f} |"
        )
    for name, b in doc["baselines"].items():
        lines.append(f"| {name} | | | | {b['quality']:.3f} | {b['mean_cost_usd']:.6f} | | |")
    lines += ["", f"Run: `{doc['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
