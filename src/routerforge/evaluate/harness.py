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
(the true scores; in the N-model case the cheapest correct model, swept with λ on true costs). The trivial
baselines of :mod:`routerforge.evaluate.baselines` (best single model, prompt length, category) go through
the same engine, and each router's difference to the strongest of them gets a paired-bootstrap interval.
Every row left out (held-out text also in training, a missing score or cost) is counted in ``dropped``.
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
from routerforge.evaluate.results import (
    Baselines,
    Predictions,
    baseline_parts,
    binary_results,
    dropped_rows,
    eval_fold,
    nmodel_results,
)
from routerforge.evaluate.splits import Fold, check_no_leakage
from routerforge.evaluate.timing import measure_latency, sample_texts
from routerforge.policy.engine import DecisionEngine, strong_weak
from routerforge.policy.pricing import mean_costs, query_prices
from routerforge.policy.rules import RuleSet
from routerforge.routers.base import PromptBatch, Router
from routerforge.routers.metadata import batch_meta


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
    dropped: dict[str, int] = field(default_factory=dict)  # rows the split left out, by reason

    @property
    def test(self) -> ScoreMatrix:
        return self.test_matrix if self.test_matrix is not None else self.matrix


# A new unfitted router for a spec and one fold: (spec, the fold's training rows, the training matrix with
# the run's models) — for routers built from training-prompt data (semantic routes from categories).
FoldFactory = Callable[[RouterSpec, np.ndarray, ScoreMatrix], Router]


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
    bootstrap: int = 1000,
    rules: RuleSet | None = None,
    test_metadata: bool = True,
    fold_factory: FoldFactory | None = None,
) -> dict[str, Any]:
    """Run every router over every fold and return the results document (see docs/evaluation.md).

    ``progress`` is an optional ``rich.progress.Progress`` (already started) for bars while training and
    predicting; ``latency`` builds a single-prompt routing function from a fitted router (embedding
    included) — it is measured on ``latency_sample`` held-out prompts of the last fold. ``factory`` makes a
    new unfitted router for a spec (default: the router registry). ``keep``, when given, receives the
    out-of-fold predictions (``predicted[key]``, rows ``rows`` of the test matrix, columns ``models``).
    ``bootstrap`` resamples (seeded by ``seed``; 0: no intervals) give each router's interval against the
    strongest trivial baseline. Routers see each prompt's metadata (``routers.metadata.batch_meta``: the
    category column and routing-time keys of the records) at fit and predict; ``test_metadata=False`` hides
    it from the held-out prompts (routing without metadata). ``fold_factory``, when given, replaces
    ``factory``: it also receives the fold's training rows and the training matrix, never the held-out rows
    (``evaluate.semantic_routes.SemanticFoldFactory``: routes files and routes from the category column).
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
    train_batch = PromptBatch(
        list(train_m.prompts),
        train_dense,
        encoder.sparse(train_m.prompts, "document"),
        meta=batch_meta(train_m.categories, train_m.metadata),
    )
    test_dense = train_dense if setup.test_matrix is None else encoder.dense(test_m.prompts)
    test_batch = PromptBatch(
        list(test_m.prompts),
        test_dense,
        encoder.sparse(test_m.prompts, "query"),
        meta=batch_meta(test_m.categories, test_m.metadata) if test_metadata else None,
    )

    folds = [eval_fold(f, train_m, test_m, pair is not None) for f in setup.folds]
    for fold in folds:
        check_no_leakage(
            (train_m.prompts[i] for i in fold.train), (test_m.prompts[i] for i in fold.test), what=fold.name
        )
        if fold.test.size == 0:
            raise ValidationError(f"{fold.name} has no held-out prompts with complete scores.")
    parts = baseline_parts(folds, train_m, test_m)

    results: dict[str, Predictions] = {}
    for spec in specs:
        if spec.key in BASELINES and spec.name in BASELINES:
            continue  # always computed exactly below
        pred = results.setdefault(spec.key, Predictions())
        task = progress.add_task(f"{spec.key}", total=2 * len(folds)) if progress is not None else None
        router: Router | None = None
        for k, fold in enumerate(folds):
            if progress is not None:
                progress.update(task, description=f"{spec.key}: fit {fold.name} ({k + 1}/{len(folds)})")
            router = make(spec) if fold_factory is None else fold_factory(spec, fold.train, train_m)
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
        "dropped": dropped_rows(setup.dropped, folds, pair is not None),
    }
    base = Baselines(parts, bootstrap, seed, test_m.text_groups())
    outcomes = None
    if rules is not None and len(rules):  # the rule mapper, applied to every held-out prompt (pooled order)
        rules.check_models(models)
        outcomes = [rules.apply(test_m.prompts[i], models) for f in folds for i in f.test]
        fired: dict[str, int] = {}
        for out in outcomes:
            for name in out.fired:
                fired[name] = fired.get(name, 0) + 1
        doc["rules"] = {
            "n_rules": len(rules),
            "fired": fired,
            "prompts_with_a_rule": sum(bool(o.fired) for o in outcomes),
        }
    if pair is not None:
        engine = DecisionEngine(models, mean_scores={pair[0]: 1.0, pair[1]: 0.0})
        doc.update(binary_results(engine, folds, test_m, results, seed, base, outcomes))
    else:
        doc.update(
            nmodel_results(
                folds,
                train_m,
                test_m,
                results,
                seed,
                train_batch.dense,
                test_batch.dense,
                setup.catalog,
                base,
                outcomes,
            )
        )
    if keep is not None:
        keep["models"] = models
        keep["rows"] = np.concatenate([f.test for f in folds])
        keep["predicted"] = {key: np.concatenate(r.parts) for key, r in results.items()}
    return doc
