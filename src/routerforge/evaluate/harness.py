"""The benchmark harness: train on training prompts only, predict the held-out ones, sweep the policy knob,
compute the metrics of :mod:`routerforge.evaluate.metrics`, and time fitting and per-prompt prediction.

The dataset is embedded once per run (``encode`` is called once per matrix; the embedder cache makes repeat
runs cheap), never once per fold. Every fold is checked for leakage before any router sees it.

Every choice is made by :class:`~routerforge.policy.engine.DecisionEngine` — the same code that ``route``,
``calibrate`` and the gateway use — with the same strong/weak definition (higher mean score) and the same
per-prompt price estimate (:class:`~routerforge.policy.pricing.PriceEstimator`, fitted on each fold's
training prompts exactly as ``train`` fits it). Without recorded costs, registered model prices
(``routerforge models add``) × estimated tokens stand in for the true costs too.

Baselines are always included: every single model, ``random`` (uniform random predicted scores from a
fixed seed; in the N-model case, random mixes of single models = their upper convex hull) and ``oracle``
(the true scores; in the N-model case the cheapest correct model, swept with λ on true costs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from routerforge.data.matrix import ScoreMatrix
from routerforge.embed.base import SparseVector
from routerforge.errors import ValidationError
from routerforge.evaluate import metrics as M
from routerforge.evaluate.splits import Fold, check_no_leakage
from routerforge.evaluate.timing import measure_latency, sample_texts
from routerforge.policy.choice import lambda_grid
from routerforge.policy.engine import DecisionEngine, Policy, strong_weak
from routerforge.policy.pricing import PriceEstimator, mean_costs, query_prices
from routerforge.routers.base import PromptBatch, Router


class Encoder(Protocol):
    """Turns texts into the vectors of a :class:`PromptBatch` (the harness calls it once per matrix)."""

    def dense(self, texts: Sequence[str]) -> np.ndarray: ...

    def sparse(self, texts: Sequence[str], kind: str) -> list[SparseVector] | None:
        """BM25 vectors; ``kind`` is ``"document"`` (training prompts) or ``"query"`` (held-out prompts)."""
        ...


class EmbedderEncoder:
    """The default :class:`Encoder`, mirroring ``policy.trained.train_router``: a boilerplate stripper and
    a BM25 encoder fitted (label-free) on the training prompts by :meth:`fit`, then dense vectors from the
    embedder and BM25 document (training) or query (held-out) vectors of the stripped texts."""

    def __init__(
        self, embedder: Any, *, sparse: bool = True, strip: bool = True, progress: bool = False
    ) -> None:
        self.embedder = embedder
        self.use_sparse = sparse
        self.strip = strip
        self.progress = progress
        self.stripper: Any = None
        self.bm25: Any = None

    def fit(self, texts: Sequence[str]) -> None:
        from routerforge.embed.sparse import Bm25Encoder
        from routerforge.embed.text import BoilerplateStripper

        self.stripper = BoilerplateStripper().fit(texts) if self.strip else None
        self.bm25 = Bm25Encoder().fit(texts) if self.use_sparse else None

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        return self.stripper.apply_many(texts) if self.stripper is not None else list(texts)

    def dense(self, texts: Sequence[str]) -> np.ndarray:
        from routerforge.embed.encode import encode

        vectors, _ = encode(
            list(texts), self.embedder, sparse=False, progress=self.progress, stripper=self.stripper
        )
        return vectors

    def sparse(self, texts: Sequence[str], kind: str) -> list[SparseVector] | None:
        if not self.use_sparse:
            return None
        from routerforge.embed.sparse import Bm25Encoder

        bm25 = self.bm25 or Bm25Encoder()
        prepared = self._prepare(texts)
        return bm25.encode_queries(prepared) if kind == "query" else bm25.encode_documents(prepared)

    def trained(self, router: Router, embedder: Any) -> Any:
        """The fitted ``router`` as a ``policy.trained.TrainedRouter`` with this preprocessing and ``embedder``."""
        from routerforge.policy.trained import TrainedRouter

        return TrainedRouter(router, embedder, stripper=self.stripper, bm25=self.bm25)


# Given a fitted router, a function that routes one prompt text end to end (embedding included).
LatencyFactory = Callable[[Router], Callable[[str], object]]
BASELINES = ("random", "oracle")


@dataclass
class RouterSpec:
    """A router to benchmark: registry ``name``, constructor ``params`` and the label used in results."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass
class BenchSetup:
    """What to evaluate: the training matrix, the folds and (for transfer) a separate test matrix.

    With ``strong``/``weak`` set (or exactly two models) the run is binary; otherwise N-model with costs.
    """

    matrix: ScoreMatrix
    folds: list[Fold]
    test_matrix: ScoreMatrix | None = None
    strong: str | None = None
    weak: str | None = None
    split_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    catalog: dict[str, Any] = field(default_factory=dict)  # model id -> CandidateModel (registered prices)

    @property
    def test(self) -> ScoreMatrix:
        return self.test_matrix if self.test_matrix is not None else self.matrix


@dataclass
class _Predictions:
    fit_s: list[float] = field(default_factory=list)
    parts: list[np.ndarray] = field(default_factory=list)  # per fold, (n_test, m)
    latency: dict[str, float] = field(default_factory=dict)


def registry_factory(spec: RouterSpec) -> Router:
    """A new, unfitted router from the registry."""
    from routerforge.routers.registry import create_router

    return create_router(spec.name, **spec.params)


def resolve_pair(matrix: ScoreMatrix, strong: str | None, weak: str | None) -> tuple[str, str] | None:
    """The (strong, weak) pair of a binary run, or ``None`` for an N-model run.

    With two models and no pair given, :func:`routerforge.policy.engine.strong_weak` decides: the model with
    the higher mean score is strong (the definition every other command uses).
    """
    if matrix.n_models < 2:
        raise ValidationError(
            f"Dataset {matrix.name!r} has only {matrix.n_models} model(s); routing needs at least two.",
            hint="Import results for more models.",
        )
    if (strong is None) != (weak is None):
        raise ValidationError("Give both --strong and --weak, or neither.")
    if strong is not None and weak is not None:
        matrix.model_index(strong), matrix.model_index(weak)
        if strong == weak:
            raise ValidationError("--strong and --weak must name different models.")
        return strong, weak
    if matrix.n_models == 2:
        return strong_weak(matrix.models, mean_scores(matrix), mean_costs(matrix.models, matrix.costs))
    return None


def mean_scores(matrix: ScoreMatrix) -> dict[str, float]:
    """Mean score of each model over the prompts where it has one."""
    with np.errstate(all="ignore"):
        means = np.nanmean(matrix.scores, axis=0)
    return {m: float(v) for m, v in zip(matrix.models, means, strict=True) if np.isfinite(v)}


def true_costs(matrix: ScoreMatrix, catalog: dict[str, Any] | None) -> np.ndarray:
    """What each query cost: the record's cost, else registered list price × estimated tokens."""
    if not catalog:
        return matrix.costs
    return query_prices(matrix.prompts, matrix.models, matrix.costs, catalog)


def run_bench(
    setup: BenchSetup,
    specs: Sequence[RouterSpec],
    encoder: Encoder,
    *,
    latency: LatencyFactory | None = None,
    latency_sample: int = 200,
    seed: int = 0,
    progress: Any = None,
    factory: Callable[[RouterSpec], Router] | None = None,
    keep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every router over every fold and return the results document (see docs/evaluation.md).

    ``progress`` is an optional ``rich.progress.Progress`` (already started) for bars while training and
    predicting; ``latency`` builds a single-prompt routing function from a fitted router (embedding
    included) — it is measured on ``latency_sample`` held-out prompts of the last fold. ``factory`` makes a
    new unfitted router for a spec (default: the router registry). ``keep``, when given, receives the
    out-of-fold predictions (``predicted[key]``, rows ``rows`` of the test matrix, columns ``models``).
    """
    make = factory or registry_factory

    pair = resolve_pair(setup.matrix, setup.strong, setup.weak)
    models = list(pair) if pair else list(setup.matrix.models)
    train_m = setup.matrix.select_models(models)
    test_m = setup.test.select_models(models) if setup.test_matrix is not None else train_m
    if setup.catalog:  # registered prices stand in for costs the records lack
        train_m.costs = true_costs(train_m, setup.catalog)
        if test_m is not train_m:
            test_m.costs = true_costs(test_m, setup.catalog)
    if not setup.folds:
        raise ValidationError("No folds to evaluate.")

    fit_encoder = getattr(encoder, "fit", None)
    if fit_encoder is not None:  # label-free preprocessing learnt from prompts that are training prompts
        trained_rows = np.unique(np.concatenate([np.asarray(f.train, dtype=np.int64) for f in setup.folds]))
        fit_encoder([train_m.prompts[i] for i in trained_rows])
    train_dense = encoder.dense(train_m.prompts)
    train_batch = PromptBatch(list(train_m.prompts), train_dense, encoder.sparse(train_m.prompts, "document"))
    test_dense = train_dense if setup.test_matrix is None else encoder.dense(test_m.prompts)
    test_batch = PromptBatch(list(test_m.prompts), test_dense, encoder.sparse(test_m.prompts, "query"))

    folds = [_eval_fold(f, train_m, test_m, pair is not None) for f in setup.folds]
    for fold in folds:
        check_no_leakage(
            (train_m.prompts[i] for i in fold.train), (test_m.prompts[i] for i in fold.test), what=fold.name
        )
        if fold.test.size == 0:
            raise ValidationError(f"{fold.name} has no held-out prompts with complete scores.")

    results: dict[str, _Predictions] = {}
    for spec in specs:
        if spec.key in BASELINES and spec.name in BASELINES:
            continue  # always computed exactly below
        pred = results.setdefault(spec.key, _Predictions())
        task = progress.add_task(f"{spec.key}", total=2 * len(folds)) if progress is not None else None
        router: Router | None = None
        for k, fold in enumerate(folds):
            if progress is not None:
                progress.update(task, description=f"{spec.key}: fit {fold.name} ({k + 1}/{len(folds)})")
            router = make(spec)
            t0 = time.perf_counter()
            router.fit(train_batch.take(fold.train), train_m.scores[fold.train], models)
            pred.fit_s.append(time.perf_counter() - t0)
            if progress is not None:
                progress.update(task, advance=1, description=f"{spec.key}: predict {fold.name}")
            pred.parts.append(router.predict_scores(test_batch.take(fold.test)))
            if progress is not None:
                progress.advance(task)
        if latency is not None and router is not None:
            sample = sample_texts([test_m.prompts[i] for i in folds[-1].test], latency_sample, seed=seed)
            pred.latency = measure_latency(latency(router), sample)

    doc: dict[str, Any] = {
        "data": setup.matrix.name,
        "test_data": test_m.name if setup.test_matrix is not None else None,
        "split": setup.split_name,
        "folds": len(folds),
        "n_prompts": int(sum(f.test.size for f in folds)),
        "n_train_mean": float(np.mean([f.train.size for f in folds])),
        "models": models,
        **setup.extra,
    }
    if pair is not None:
        engine = DecisionEngine(models, mean_scores={pair[0]: 1.0, pair[1]: 0.0})
        doc.update(_binary_results(engine, folds, test_m, results, seed))
    else:
        doc.update(
            _nmodel_results(
                folds, train_m, test_m, results, seed, train_batch.dense, test_batch.dense, setup.catalog
            )
        )
    if keep is not None:
        keep["models"] = models
        keep["rows"] = np.concatenate([f.test for f in folds])
        keep["predicted"] = {key: np.concatenate(r.parts) for key, r in results.items()}
    return doc


@dataclass
class _EvalFold:
    name: str
    train: np.ndarray
    test: np.ndarray


def _eval_fold(fold: Fold, train_m: ScoreMatrix, test_m: ScoreMatrix, binary: bool) -> _EvalFold:
    """Training rows: at least one score. Test rows: every score known (and every cost, for N-model)."""
    train = np.asarray(fold.train, dtype=np.int64)
    train = train[~np.isnan(train_m.scores[train]).all(axis=1)]
    test = np.asarray(fold.test, dtype=np.int64)
    ok = ~np.isnan(test_m.scores[test]).any(axis=1)
    if not binary:
        ok &= np.isfinite(test_m.costs[test]).all(axis=1)
        if not ok.any():
            raise ValidationError(
                f"Dataset {test_m.name!r} has no held-out prompts with a known cost for every model.",
                hint="N-model benchmarks need per-query costs; give --strong/--weak for a binary benchmark.",
            )
    return _EvalFold(fold.name, train, test[ok])


# ------------------------------------------------------------------------------------------ binary
def _binary_results(
    engine: DecisionEngine,
    folds: list[_EvalFold],
    test_m: ScoreMatrix,
    results: dict[str, _Predictions],
    seed: int,
) -> dict[str, Any]:
    strong, weak = engine.pair()
    si, wi = engine.models.index(strong), engine.models.index(weak)
    rng = np.random.default_rng(seed)
    truth = [test_m.scores[f.test] for f in folds]
    named: dict[str, list[np.ndarray]] = {key: r.parts for key, r in results.items()}
    named["random"] = [rng.random(t.shape) for t in truth]
    named["oracle"] = truth
    routers: dict[str, Any] = {}
    all_truth = np.concatenate(truth)
    for key, parts in named.items():
        # Metrics on the pooled out-of-fold predictions (every held-out prompt once); per-fold APGR is
        # reported too, as None for a fold where the two models happen to tie.
        pooled = np.concatenate(parts)
        agg = M.binary_metrics(engine.p_strong(pooled), all_truth[:, si], all_truth[:, wi])
        entry: dict[str, Any] = {
            "apgr": agg.apgr,
            "apgr_101": agg.apgr_101,
            "cpt50": agg.cpt50,
            "cpt80": agg.cpt80,
            "curve": [[c, q] for c, q in agg.curve],
            "apgr_folds": [_fold_apgr(engine, p, t) for p, t in zip(parts, truth, strict=True)],
        }
        entry.update(_timing(results.get(key)))
        routers[key] = entry
    return {
        "mode": "binary",
        "strong": strong,
        "weak": weak,
        "routers": routers,
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


def _timing(pred: _Predictions | None) -> dict[str, Any]:
    if pred is None:
        return {"fit_s": None, "predict_ms_p50": None, "predict_ms_p99": None}
    out: dict[str, Any] = {"fit_s": float(np.mean(pred.fit_s)) if pred.fit_s else None}
    out["predict_ms_p50"] = pred.latency.get("predict_ms_p50")
    out["predict_ms_p99"] = pred.latency.get("predict_ms_p99")
    out["predict_cpu_ms_p50"] = pred.latency.get("predict_cpu_ms_p50")
    return out


# ------------------------------------------------------------------------------------------ N models
def _nmodel_results(
    folds: list[_EvalFold],
    train_m: ScoreMatrix,
    test_m: ScoreMatrix,
    results: dict[str, _Predictions],
    seed: int,
    train_dense: np.ndarray,
    test_dense: np.ndarray,
    catalog: dict[str, Any] | None = None,
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
    for key, res in results.items():
        pred = np.concatenate(res.parts)
        pts = _sweep(pred, decision, scores, true_cost, lambdas)
        routers[key] = {**_cq(pts, singles), **_timing(res)}
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
        "single_models": {m: {"quality": s.quality, "cost": s.cost} for m, s in singles.items()},
        "best_single": best,
    }


def _sweep(
    pred: np.ndarray, prices: np.ndarray, scores: np.ndarray, true_cost: np.ndarray, lambdas: np.ndarray
) -> np.ndarray:
    """(cost, quality) of the willingness-to-pay decisions at every λ, through the decision engine."""
    engine = DecisionEngine([str(j) for j in range(pred.shape[1])])
    return np.array(
        [
            M.point(engine.choose(pred, prices, Policy("wtp", float(lam), "sweep")), scores, true_cost)
            for lam in lambdas
        ]
    )


def _cq(points: np.ndarray, singles: dict[str, M.SingleModel]) -> dict[str, Any]:
    cq = M.cost_quality_metrics(points, singles)
    return {
        "aiq": cq.aiq,
        "quality_at_best_cost": cq.quality_at_best_cost,
        "cost_share_at_best_quality": cq.cost_share_at_best_quality,
        "pareto": [list(p) for p in cq.pareto],
    }
