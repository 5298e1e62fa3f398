"""From out-of-fold predictions to the results document of :func:`routerforge.evaluate.harness.run_bench`:
which rows are evaluated (and which are dropped, by reason), the trivial baselines' predictions, the binary
and N-model metrics of every router and baseline through the decision engine, and each router's paired-
bootstrap comparison with the baselines. Definitions: docs/evaluation.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routerforge.data.matrix import ScoreMatrix
from routerforge.errors import ValidationError
from routerforge.evaluate import baselines as B
from routerforge.evaluate import metrics as M
from routerforge.evaluate.splits import Fold
from routerforge.policy.choice import lambda_grid
from routerforge.policy.engine import DecisionEngine, Policy
from routerforge.policy.pricing import PriceEstimator


@dataclass
class Predictions:
    fit_s: list[float] = field(default_factory=list)
    parts: list[np.ndarray] = field(default_factory=list)  # per fold, (n_test, m)
    latency: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalFold:
    name: str
    train: np.ndarray
    test: np.ndarray
    unscored_train: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    missing_score: int = 0  # held-out rows without a score for every model
    missing_cost: int = 0  # held-out rows (scores complete) without a cost for every model (N-model)


def eval_fold(fold: Fold, train_m: ScoreMatrix, test_m: ScoreMatrix, binary: bool) -> EvalFold:
    """Training rows: at least one score. Test rows: every score known (and every cost, for N-model)."""
    all_train = np.asarray(fold.train, dtype=np.int64)
    scored = ~np.isnan(train_m.scores[all_train]).all(axis=1)
    train = all_train[scored]
    test = np.asarray(fold.test, dtype=np.int64)
    ok = ~np.isnan(test_m.scores[test]).any(axis=1)
    n_scored = int(ok.sum())
    if not binary:
        ok &= np.isfinite(test_m.costs[test]).all(axis=1)
        if not ok.any():
            raise ValidationError(
                f"Dataset {test_m.name!r} has no held-out prompts with a known cost for every model.",
                hint="N-model benchmarks need per-query costs; give --strong/--weak for a binary benchmark.",
            )
    return EvalFold(
        fold.name,
        train,
        test[ok],
        unscored_train=all_train[~scored],
        missing_score=int(test.size - n_scored),
        missing_cost=int(n_scored - ok.sum()),
    )


def dropped_rows(split: dict[str, int], folds: list[EvalFold], binary: bool) -> dict[str, int]:
    """Every row the run left out, by reason (see docs/evaluation.md): the split's own drops plus held-out
    rows without every score (or cost) and training rows without any score."""
    unscored = np.unique(np.concatenate([f.unscored_train for f in folds])) if folds else np.zeros(0)
    out = dict(split)
    out["heldout_missing_score"] = sum(f.missing_score for f in folds)
    if not binary:
        out["heldout_missing_cost"] = sum(f.missing_cost for f in folds)
    out["train_without_score"] = int(unscored.size)
    return out


# ---------------------------------------------------------------------------------------- baselines
def baseline_parts(
    folds: list[EvalFold], train_m: ScoreMatrix, test_m: ScoreMatrix
) -> dict[str, list[np.ndarray]]:
    """Per baseline, its predicted scores on each fold's held-out rows (fitted on that fold's training rows)."""
    names = [n for n in B.BASELINE_NAMES if n != "category" or B.has_categories(train_m.categories)]
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for f in folds:
        scores = train_m.scores[f.train]
        out["best_single"].append(B.predict_best_single(scores, f.test.size))
        out["length"].append(
            B.predict_length(
                [train_m.prompts[i] for i in f.train], scores, [test_m.prompts[i] for i in f.test]
            )
        )
        if "category" in out:
            out["category"].append(
                B.predict_category(
                    [train_m.categories[i] for i in f.train],
                    scores,
                    [test_m.categories[i] for i in f.test],
                )
            )
    return out


@dataclass
class Baselines:
    """What the results functions need to report the baselines and compare the routers with them."""

    parts: dict[str, list[np.ndarray]]
    resamples: int
    seed: int
    groups: np.ndarray  # text group of every row of the test matrix

    def weights(self, rows: np.ndarray) -> np.ndarray:
        return M.bootstrap_weights(self.groups[rows], self.resamples, self.seed)

    def finish(
        self,
        metric: str,
        entries: dict[str, dict[str, Any]],
        routers: list[str],
        resampled: Callable[[str, np.ndarray], np.ndarray],
        rows: np.ndarray,
    ) -> dict[str, Any]:
        """Add ``vs_baseline`` to every router entry; returns the ``bootstrap`` section of the results."""
        t0 = time.perf_counter()
        names = [*routers, *self.parts]
        values: dict[str, np.ndarray] | None = None
        if self.resamples > 0:
            weights = self.weights(rows)
            values = {n: resampled(n, weights) for n in names}
        point = {n: entries[n][metric] for n in names}
        best = B.strongest({b: point[b] for b in self.parts})
        for name in routers:
            each = {b: B.compare(point, values, name, b) for b in self.parts}
            entries[name]["vs_baseline"] = each[best]
            entries[name]["vs_baselines"] = {
                b: {k: v for k, v in e.items() if k != "baseline"} for b, e in each.items()
            }
        return {
            "metric": metric,
            "resamples": self.resamples,
            "seed": self.seed,
            "groups": int(np.unique(self.groups[rows]).size),
            "undefined": {n: int((~np.isfinite(v)).sum()) for n, v in (values or {}).items()},
            "seconds": time.perf_counter() - t0,
        }


# ------------------------------------------------------------------------------------------ binary
def binary_results(
    engine: DecisionEngine,
    folds: list[EvalFold],
    test_m: ScoreMatrix,
    results: dict[str, Predictions],
    seed: int,
    base: Baselines,
    outcomes: list[Any] | None = None,
) -> dict[str, Any]:
    strong, weak = engine.pair()
    si, wi = engine.models.index(strong), engine.models.index(weak)
    forced = _forced_binary(outcomes, engine.models, si, wi)
    rng = np.random.default_rng(seed)
    truth = [test_m.scores[f.test] for f in folds]
    named: dict[str, list[np.ndarray]] = {key: r.parts for key, r in results.items()}
    named["random"] = [rng.random(t.shape) for t in truth]
    named["oracle"] = truth
    named.update(base.parts)
    entries: dict[str, Any] = {}
    all_truth = np.concatenate(truth)
    for key, parts in named.items():
        # Metrics on the pooled out-of-fold predictions (every held-out prompt once); per-fold APGR is
        # reported too, as None for a fold where the two models happen to tie.
        pooled = np.concatenate(parts)
        p_strong = engine.p_strong(pooled)
        if forced is not None and key != "oracle":  # rules route these prompts whatever the threshold
            p_strong = np.where(np.isnan(forced), p_strong, forced)
        agg = M.binary_metrics(p_strong, all_truth[:, si], all_truth[:, wi])
        entry: dict[str, Any] = {
            "apgr": agg.apgr,
            "apgr_101": agg.apgr_101,
            "cpt50": agg.cpt50,
            "cpt80": agg.cpt80,
            "curve": [[c, q] for c, q in agg.curve],
            "apgr_folds": [_fold_apgr(engine, p, t) for p, t in zip(parts, truth, strict=True)],
        }
        entry.update(_timing(results.get(key)))
        entries[key] = entry

    def resampled(key: str, weights: np.ndarray) -> np.ndarray:
        p = engine.p_strong(np.concatenate(named[key]))
        if forced is not None and key != "oracle":
            p = np.where(np.isnan(forced), p, forced)
        return M.resampled_apgr(p, all_truth[:, si], all_truth[:, wi], weights)

    rows = np.concatenate([f.test for f in folds])
    bootstrap = base.finish("apgr", entries, list(results), resampled, rows)
    return {
        "mode": "binary",
        "strong": strong,
        "weak": weak,
        "routers": {k: v for k, v in entries.items() if k not in base.parts},
        "baselines": {k: entries[k] for k in base.parts},
        "bootstrap": bootstrap,
        "single_models": {
            strong: {"quality": float(all_truth[:, si].mean())},
            weak: {"quality": float(all_truth[:, wi].mean())},
        },
    }


def _fold_apgr(engine: DecisionEngine, pred: np.ndarray, truth: np.ndarray) -> float | None:
    strong, weak = engine.pair()
    si, wi = engine.models.index(strong), engine.models.index(weak)
    if abs(truth[:, si].mean() - truth[:, wi].mean()) < 1e-12:
        return None
    return M.apgr(engine.p_strong(pred), truth[:, si], truth[:, wi])


def _timing(pred: Predictions | None) -> dict[str, Any]:
    if pred is None:
        return {"fit_s": None, "predict_ms_p50": None, "predict_ms_p99": None, "predict_cpu_ms_p50": None}
    out: dict[str, Any] = {"fit_s": float(np.mean(pred.fit_s)) if pred.fit_s else None}
    out["predict_ms_p50"] = pred.latency.get("predict_ms_p50")
    out["predict_ms_p99"] = pred.latency.get("predict_ms_p99")
    out["predict_cpu_ms_p50"] = pred.latency.get("predict_cpu_ms_p50")
    return out


# ------------------------------------------------------------------------------------------ N models
def nmodel_results(
    folds: list[EvalFold],
    train_m: ScoreMatrix,
    test_m: ScoreMatrix,
    results: dict[str, Predictions],
    seed: int,
    train_dense: np.ndarray,
    test_dense: np.ndarray,
    catalog: dict[str, Any] | None,
    base: Baselines,
    outcomes: list[Any] | None = None,
) -> dict[str, Any]:
    models = list(test_m.models)
    scores = np.concatenate([test_m.scores[f.test] for f in folds])
    true_cost = np.concatenate([test_m.costs[f.test] for f in folds])
    # Decision prices: known before the call, so never the recorded cost of the held-out query itself — the
    # PriceEstimator that `train` fits (cost model on the fold's training prompts, registered prices × tokens,
    # mean training cost), fitted per fold on training prompts only.
    decision = np.concatenate(
        [
            PriceEstimator.fit(models, train_dense[f.train], train_m.costs[f.train], catalog).estimate(
                [test_m.prompts[i] for i in f.test], test_dense[f.test]
            )
            for f in folds
        ]
    )
    singles = M.single_models(models, scores, true_cost)
    lambdas = lambda_grid(decision)
    rng = np.random.default_rng(seed)
    routers: dict[str, Any] = {}
    chosen: dict[str, np.ndarray] = {}
    predicted = {key: np.concatenate(res.parts) for key, res in results.items()}
    predicted.update({key: np.concatenate(parts) for key, parts in base.parts.items()})
    for key, pred in predicted.items():
        chosen[key] = _choices(pred, decision, lambdas, models, outcomes)
        pts = _points(chosen[key], scores, true_cost)
        routers[key] = {**_cq(pts, singles), **_timing(results.get(key))}
    baselines = {key: routers.pop(key) for key in base.parts}
    rows = np.arange(scores.shape[0])

    def resampled(key: str, weights: np.ndarray) -> np.ndarray:
        return M.resampled_quality_at_best_cost(
            true_cost[rows, chosen[key]], scores[rows, chosen[key]], scores, true_cost, weights
        )

    bootstrap = base.finish(
        "quality_at_best_cost",
        {**routers, **baselines},
        list(results),
        resampled,
        np.concatenate([f.test for f in folds]),
    )
    oracle_pts = _sweep(scores, true_cost, scores, true_cost, lambda_grid(true_cost))
    oracle_choice = M.oracle_choice(scores, true_cost)
    routers["oracle"] = {
        **_cq(oracle_pts, singles),
        "cheapest_correct": list(M.point(oracle_choice, scores, true_cost)),
        **_timing(None),
    }
    random_pts = _sweep(rng.random(scores.shape), decision, scores, true_cost, lambdas)
    mixes = M.upper_hull([[s.cost, s.quality] for s in singles.values()])
    routers["random"] = {
        **_cq(mixes, singles),
        "random_scores_pareto": [list(p) for p in M.pareto_frontier(random_pts)],
        **_timing(None),
    }
    best = M.best_single(singles)
    return {
        "mode": "nmodel",
        "routers": routers,
        "baselines": baselines,
        "bootstrap": bootstrap,
        "single_models": {m: {"quality": s.quality, "cost": s.cost} for m, s in singles.items()},
        "best_single": best,
    }


def _choices(
    pred: np.ndarray,
    prices: np.ndarray,
    lambdas: np.ndarray,
    models: list[str] | None = None,
    outcomes: list[Any] | None = None,
) -> np.ndarray:
    """``(L, n)``: the model the decision engine chooses for every prompt at every λ (willingness to pay),
    after the rules' outcomes (``RuleSet.apply`` per prompt) when given."""
    engine = DecisionEngine(models or [str(j) for j in range(pred.shape[1])])
    return np.array(
        [engine.choose_ruled(pred, prices, Policy("wtp", float(lam), "sweep"), outcomes) for lam in lambdas]
    )


def _forced_binary(outcomes: list[Any] | None, models: list[str], si: int, wi: int) -> np.ndarray | None:
    """P(strong needed) forced by the rules: 2 (strong at every threshold ≤ 1) or −1 (weak), NaN elsewhere.
    A rule that leaves only one of the pair counts as routing there; rule policies/knobs do not apply to a
    threshold sweep."""
    if not outcomes:
        return None
    out = np.full(len(outcomes), np.nan)
    for i, o in enumerate(outcomes):
        target = o.model
        if target is None and o.candidates is not None and len(o.candidates) == 1:
            target = o.candidates[0]
        if target == models[si]:
            out[i] = 2.0
        elif target == models[wi]:
            out[i] = -1.0
    return out if np.isfinite(out).any() else None


def _points(choices: np.ndarray, scores: np.ndarray, true_cost: np.ndarray) -> np.ndarray:
    """(cost, quality) of each row of :func:`_choices`."""
    return np.array([M.point(c, scores, true_cost) for c in choices])


def _sweep(
    pred: np.ndarray, prices: np.ndarray, scores: np.ndarray, true_cost: np.ndarray, lambdas: np.ndarray
) -> np.ndarray:
    """(cost, quality) of the willingness-to-pay decisions at every λ, through the decision engine."""
    return _points(_choices(pred, prices, lambdas), scores, true_cost)


def _cq(points: np.ndarray, singles: dict[str, M.SingleModel]) -> dict[str, Any]:
    cq = M.cost_quality_metrics(points, singles)
    return {
        "aiq": cq.aiq,
        "quality_at_best_cost": cq.quality_at_best_cost,
        "cost_share_at_best_quality": cq.cost_share_at_best_quality,
        "pareto": [list(p) for p in cq.pareto],
    }
