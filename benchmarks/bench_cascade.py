"""Cascades replayed on held-out prompts (``bench --policy cascade``'s replay, ``evaluate/cascade.py``) next to
the routers' cost–quality frontiers on the same prompts: MMLU (Mixtral → GPT-4), RouterBench (Mixtral →
GPT-4, and the chain Mistral-7B → Mixtral → GPT-4) and Pulze v1 strict (grok-4-fast → claude-sonnet-4-5).

The replay uses the recorded answers' scores and costs; no model is called. Verifiers:

* ``router`` — the router's predicted score (out of fold) for the model being tried, swept over thresholds.
  A real signal available before the call, but it does not read the answer: a cascade with it pays for
  every cheaper call a router would have skipped.
* ``judge`` — the recorded score itself. On these data the scores are exact-match checks against a
  reference answer, which no live verifier has: this is an **upper bound** (the cheapest correct model,
  plus the calls made before it), not something a deployed cascade reaches.

What the replay cannot measure: a live verifier reading the answer (numeric/JSON/refusal checks, a judge
model, the weak model's own confidence — the data hold no token probabilities), latency of the extra
calls, and answers to prompts the records do not cover.

Costs: RouterBench records per-query costs. MMLU and Pulze record none: list prices × estimated tokens
(``policy.query_prices``: ceil(chars / 4) input tokens, 256 output tokens) with the prices in
:data:`LIST_PRICES` (USD per million input/output tokens; public list prices, an assumption stated in the
results).

Run: ``.venv/bin/python benchmarks/bench_cascade.py`` → ``benchmarks/results/cascade.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, RESULTS, ensure_dataset, settings_for

GPT4, MIXTRAL_MMLU = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
RB_MIXTRAL, RB_MISTRAL = "mistralai/mixtral-8x7b-chat", "mistralai/mistral-7b-chat"
CLAUDE, GROK = "anthropic/claude-sonnet-4-5", "xai/grok-4-fast"
LIST_PRICES = {  # USD per million tokens (input, output): the cost axis where the records have no costs
    GPT4: (10.0, 30.0),
    MIXTRAL_MMLU: (0.6, 0.6),
    CLAUDE: (3.0, 15.0),
    GROK: (0.2, 0.5),
}
THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
# plus, per router, the thresholds at which the first step escalates about this share of the prompts (the
# predicted scores bunch up, so fixed thresholds alone leave gaps)
ESCALATION_TARGETS = (0.1, 0.2, 0.3, 0.5, 0.7)
NOISY_JUDGE_ACCURACY = (0.9, 0.8)  # simulated verifiers: the recorded verdict flipped with probability 1 − a
RUNS: dict[str, dict[str, Any]] = {
    "mmlu": {
        "setup": {
            "data": "routellm-mmlu",
            "folds": 5,
            "strong": GPT4,
            "weak": MIXTRAL_MMLU,
            "drop_prompts": DATA / "routellm-mmlu" / "contaminated_prompts.jsonl",
        },
        "list_prices": True,
    },
    "routerbench": {
        "setup": {"data": "routerbench-subset", "split": "test", "strong": GPT4, "weak": RB_MIXTRAL},
        "list_prices": False,
    },
    "routerbench-chain3": {
        "setup": {"data": "routerbench-subset", "split": "test"},
        "models": [RB_MISTRAL, RB_MIXTRAL, GPT4],
        "list_prices": False,
    },
    "pulze": {
        "setup": {"data": "pulze-v1-strict", "folds": 5, "strong": CLAUDE, "weak": GROK},
        "list_prices": True,
    },
}


def catalog_for(models: list[str]) -> dict[str, Any]:
    from routerforge.data.records import CandidateModel

    return {
        m: CandidateModel(id=m, input_usd_per_mtok=LIST_PRICES[m][0], output_usd_per_mtok=LIST_PRICES[m][1])
        for m in models
        if m in LIST_PRICES
    }


def frontier(pred: np.ndarray, scores: np.ndarray, costs: np.ndarray, order: list[int]) -> list[list[float]]:
    """(cost, quality) of the router choosing between the cascade's models: for a chain, the prompts are
    ranked by the predicted advantage of the last (largest) model over the cheapest and a share of them sent
    to the largest (two models); for more models, argmax of predicted score − λ·cost over a λ grid."""
    from routerforge.evaluate.metrics import pareto_frontier, point

    n = scores.shape[0]
    pts = []
    if len(order) == 2:
        cheap, big = order
        ranked = np.argsort(-(pred[:, big] - pred[:, cheap]), kind="stable")
        for k in np.linspace(0, n, 41).round().astype(int):
            choice = np.full(n, cheap)
            choice[ranked[:k]] = big
            pts.append(point(choice, scores, costs))
    else:
        scale = float(np.nanmean(costs))
        for lam in np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 60)]) / scale:
            choice = np.argmax(pred - lam * costs, axis=1)
            pts.append(point(choice, scores, costs))
    return [list(map(float, p)) for p in pareto_frontier(np.array(pts))]


def quality_at_cost(front: list[list[float]], cost: float) -> float | None:
    """The router's best quality at or below ``cost`` on its frontier (None below its cheapest point)."""
    ok = [q for c, q in front if c <= cost + 1e-15]
    return max(ok) if ok else None


def run_one(
    name: str, spec: dict[str, Any], settings: Any, encoder: Any, args: argparse.Namespace
) -> dict[str, Any]:
    from routerforge.cli.routing import build_setup
    from routerforge.evaluate.harness import RouterSpec, run_bench, true_costs
    from routerforge.policy.cascade import cascade_order, replay_cascade

    setup = build_setup(settings, seed=args.seed, **spec["setup"])
    if spec.get("models"):
        setup.matrix = setup.matrix.select_models(spec["models"])
    models = list(spec.get("models") or [spec["setup"]["weak"], spec["setup"]["strong"]])
    if spec["list_prices"]:
        setup.catalog = catalog_for(models)
    keep: dict[str, Any] = {}
    t0 = time.perf_counter()
    routers = [RouterSpec(r) for r in args.router]
    doc = run_bench(setup, routers, encoder, seed=args.seed, keep=keep, bootstrap=0)
    test_m = setup.test.select_models(keep["models"])
    rows = keep["rows"]
    scores = test_m.scores[rows]
    costs = np.asarray(true_costs(test_m, setup.catalog))[rows]
    cols = list(keep["models"])
    order = cascade_order(costs)
    out: dict[str, Any] = {
        "setup": {k: str(v) for k, v in spec["setup"].items()},
        "n_prompts": len(rows),
        "models": cols,
        "order": [cols[j] for j in order],
        "costs": "recorded per query"
        if not spec["list_prices"]
        else {m: {"usd_per_mtok_in_out": LIST_PRICES[m]} for m in cols},
        "single_models": {
            cols[j]: {"quality": float(scores[:, j].mean()), "cost": float(costs[:, j].mean())} for j in order
        },
        "judge_upper_bound": replay_cascade(scores, costs, 0.5, order).summary(scores),
        "noisy_judge": {},
        "routers": {},
    }
    rng = np.random.default_rng(args.seed)
    for acc in NOISY_JUDGE_ACCURACY:  # a verifier right with probability acc on each answer (simulation)
        verdict = (scores >= 0.5).astype(float)
        flip = rng.random(verdict.shape) >= acc
        noisy = np.where(flip, 1.0 - verdict, verdict)
        out["noisy_judge"][str(acc)] = replay_cascade(noisy, costs, 0.5, order).summary(scores)
    for key, pred in keep["predicted"].items():
        front = frontier(pred, scores, costs, order)
        points = []
        first = pred[:, order[0]]
        targets = {float(np.quantile(first, e)) for e in ESCALATION_TARGETS}
        for t in sorted(set(THRESHOLDS) | targets):
            s: dict[str, Any] = dict(replay_cascade(pred, costs, t, order).summary(scores))
            s["threshold"] = float(t)
            at = quality_at_cost(front, s["cost"])
            s["router_quality_at_same_cost"] = at
            s["cascade_minus_router"] = None if at is None else s["quality"] - at
            points.append(s)
        out["routers"][key] = {"frontier": front, "cascade": points}
    out["wall_s"] = time.perf_counter() - t0
    out["harness_data"] = doc["data"]
    out["routers_run"] = list(args.router)
    return out


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Cascades (replayed) vs routers on the same held-out prompts",
        "",
        f"`{doc['command']}` — {doc['date_utc']} UTC, embedder {doc['embedder']}, wall {doc.get('wall_s', 0):.0f} s.",
        "",
        "Replay from the recorded scores and costs (no model called). `router` verifier: the router's out-of-fold "
        "predicted score of the model being tried, stop when ≥ T (every call made is paid). `judge` verifier: the "
        "recorded exact-match score — an **upper bound** no live verifier reaches (it needs the reference answer). "
        "Not measurable on replay: answer-reading verifiers (numeric/JSON/refusal checks, a judge model, the weak "
        "model's own confidence), the latency of the extra calls. `Δ vs router` = cascade quality − the same "
        "router's best quality at the same or lower mean cost on its frontier (routing without the cheap call).",
    ]
    for name, run in doc["runs"].items():
        lines += [
            "",
            f"## {name} — {run['n_prompts']} held-out prompts; order {' → '.join(run['order'])}",
            "",
            f"Costs: {run['costs'] if isinstance(run['costs'], str) else 'list prices ' + json.dumps({m: v['usd_per_mtok_in_out'] for m, v in run['costs'].items()}) + ' USD/M tokens × estimated tokens'}.",
            "",
            "| model | quality | mean cost (USD) |",
            "| --- | ---: | ---: |",
        ]
        for m, s in run["single_models"].items():
            lines.append(f"| {m} | {s['quality']:.3f} | {s['cost']:.6f} |")
        j = run["judge_upper_bound"]
        lines += [
            "",
            f"Judge verifier (upper bound): quality {j['quality']:.3f}, cost {j['cost']:.6f}, escalation "
            f"{j['escalation_rate']:.2f}, calls/prompt {j['calls_per_prompt']:.2f}. Simulated verifiers that "
            "are right with probability a on each answer (the recorded verdict flipped otherwise): "
            + "; ".join(
                f"a = {a}: quality {v['quality']:.3f}, cost {v['cost']:.6f}, escalation {v['escalation_rate']:.2f}"
                for a, v in run.get("noisy_judge", {}).items()
            )
            + ".",
            "",
            "| router verifier | T | quality | mean cost (USD) | escalation rate | calls / prompt | router at same cost | Δ vs router |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key, r in run["routers"].items():
            for p in r["cascade"]:
                at = (
                    "—"
                    if p["router_quality_at_same_cost"] is None
                    else f"{p['router_quality_at_same_cost']:.3f}"
                )
                d = "—" if p["cascade_minus_router"] is None else f"{p['cascade_minus_router']:+.3f}"
                lines.append(
                    f"| {key} | {p['threshold']:.3f} | {p['quality']:.3f} | {p['cost']:.6f} | "
                    f"{p['escalation_rate']:.2f} | {p['calls_per_prompt']:.2f} | {at} | {d} |"
                )
        for key, r in run["routers"].items():
            front = r["frontier"]
            picks = [front[int(i)] for i in np.linspace(0, len(front) - 1, min(6, len(front))).round()]
            lines += [
                "",
                f"{key} frontier (cost, quality), {len(front)} points, e.g.: "
                + ", ".join(f"({c:.6f}, {q:.3f})" for c, q in picks),
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "routerforge-bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--router", action="append", help="Routers (default: knn, ensemble).")
    parser.add_argument("--only", action="append", help=f"Runs: {', '.join(RUNS)}.")
    args = parser.parse_args(argv)
    args.router = args.router or ["knn", "ensemble"]
    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import EmbedderEncoder

    settings = settings_for(args.home)
    ensure_dataset(settings, "routellm-mmlu", DATA / "routellm-mmlu")
    ensure_dataset(settings, "routerbench-subset", DATA / "routerbench-subset")
    ensure_dataset(
        settings, "pulze-v1-strict", DATA / "pulze-v1" / "results", fmt="pulze-jsonl", pulze_score="strict"
    )
    embedder = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    encoder = EmbedderEncoder(embedder)
    path = args.out / "cascade.json"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if args.only and path.is_file() else {}
    doc.update(
        {
            "command": "python benchmarks/bench_cascade.py",
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "embedder": getattr(embedder, "id", settings.embed.provider),
            "thresholds": list(THRESHOLDS),
        }
    )
    doc.setdefault("runs", {})
    t0 = time.perf_counter()
    for name, spec in RUNS.items():
        if args.only and name not in args.only:
            continue
        doc["runs"][name] = run_one(name, spec, settings, encoder, args)
        doc["wall_s"] = time.perf_counter() - t0
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        (args.out / "cascade.md").write_text(markdown(doc), encoding="utf-8")
    print(markdown(doc))


if __name__ == "__main__":
    main()
