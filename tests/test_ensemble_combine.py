"""``ensemble`` with ``combine="logit"`` (members' logits weighed and calibrated by a non-negative logistic
regression on inner out-of-fold predictions) and the development protocol of ``benchmarks/bench_routing_dev.py``
(inner folds of one outer training part: the outer held-out rows never reach it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import ValidationError
from routerforge.routers.base import PromptBatch
from routerforge.routers.registry import create_router, load_router

MODELS = ["a", "b"]


def _data(n: int, seed: int = 0) -> tuple[PromptBatch, np.ndarray, np.ndarray]:
    """Scores driven by the category; texts name nothing, embeddings are noise."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, 8, n)
    p = np.random.default_rng(7).uniform(0.1, 0.9, size=(8, 2))
    scores = (rng.random((n, 2)) < p[cats]).astype(np.float64)
    dense = rng.normal(size=(n, 8))
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    texts = [f"q{seed}-{i} " + " ".join(rng.choice([f"w{k}" for k in range(50)], 5)) for i in range(n)]
    meta = [{"category": f"c{c}"} for c in cats]
    return PromptBatch(texts, dense.astype(np.float32), meta=meta), scores, p[cats]


MEMBERS = [{"name": "prior", "params": {"residual": None}}, {"name": "random"}]


def test_logit_stacking_trusts_the_informative_member_and_calibrates() -> None:
    batch, scores, _ = _data(500)
    router = create_router("ensemble", members=MEMBERS, combine="logit", stack_folds=4)
    router.fit(batch, scores, MODELS)
    coef = router.stack_coef_
    assert coef.shape == (2, 2) and np.all(coef >= 0) and np.all(coef[0] > 5 * coef[1])
    test, _, truth = _data(300, seed=1)
    pred = router.predict_scores(test)
    assert np.all((pred > 0) & (pred < 1))  # a logistic output: no clipped ties
    mean = create_router("ensemble", members=MEMBERS).fit(batch, scores, MODELS).predict_scores(test)
    assert np.mean((pred - truth) ** 2) < np.mean((mean - truth) ** 2)


def test_logit_stacking_round_trips_and_rejects_bad_params(tmp_path: Path) -> None:
    batch, scores, _ = _data(200)
    router = create_router("ensemble", members=MEMBERS, combine="logit", stack_folds=3, stack_l2=5.0)
    router.fit(batch, scores, MODELS)
    router.save(tmp_path / "r")
    again = load_router(tmp_path / "r")
    test, _, _ = _data(50, seed=2)
    np.testing.assert_allclose(again.predict_scores(test), router.predict_scores(test))
    with pytest.raises(ValidationError, match="stack_l2"):
        create_router("ensemble", members=MEMBERS, combine="logit", stack_l2=-1).fit(batch, scores, MODELS)
    with pytest.raises(ValidationError, match="logit"):
        create_router("ensemble", combine="vote").fit(batch, scores, MODELS)


def test_dev_protocol_keeps_only_the_outer_training_rows() -> None:
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.evaluate.harness import BenchSetup
    from routerforge.evaluate.splits import prompt_folds

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_routing_dev import dev_setup

    batch, scores, _ = _data(120)
    matrix = ScoreMatrix(
        name="dev",
        keys=[f"k{i}" for i in range(120)],
        prompts=batch.texts,
        models=MODELS,
        scores=scores,
        costs=np.full_like(scores, np.nan),
        categories=[m["category"] for m in batch.meta or []],
    )
    outer = BenchSetup(matrix, prompt_folds(matrix, 4, seed=0), strong="a", weak="b")
    dev = dev_setup(outer, 1, 3, seed=0)
    held = {batch.texts[i] for i in outer.folds[1].test}
    assert dev.matrix.n_prompts == outer.folds[1].train.size
    assert not held & set(dev.matrix.prompts)
    rows = np.concatenate([f.test for f in dev.folds])
    assert sorted(rows.tolist()) == list(range(dev.matrix.n_prompts)) and len(dev.folds) == 3


def test_members_preset_diverse_and_unknown_preset() -> None:
    batch, scores, _ = _data(160)
    router = create_router("ensemble", members="diverse").fit(batch, scores, MODELS)
    assert [r.name for r in router.routers_] == ["prior", "lexical", "mlp"]
    assert np.allclose(router.weights_, 1 / 3)
    assert router.predict_scores(batch.take(range(5))).shape == (5, 2)
    with pytest.raises(ValidationError, match="preset"):
        create_router("ensemble", members="everything").fit(batch, scores, MODELS)
