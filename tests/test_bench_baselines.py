"""Trivial baselines, the paired bootstrap against them and the dropped-row counts of `bench`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routerforge.data.matrix import ScoreMatrix
from routerforge.evaluate import baselines as B
from routerforge.evaluate import metrics as M
from routerforge.evaluate.harness import BenchSetup, RouterSpec, run_bench
from routerforge.evaluate.report import table_rows, write_report
from routerforge.evaluate.splits import prompt_folds
from routerforge.routers.base import PromptBatch, Router

TOPICS = ["algebra", "history", "poetry", "chemistry"]


def make_matrix(n: int = 400, *, seed: int = 0, categories: bool = True) -> ScoreMatrix:
    """Four topics (the weak model fails algebra) and, inside every topic, 'tricky' prompts the weak model
    fails and 'simple' ones it solves (same length): a per-prompt signal the category cannot see."""
    rng = np.random.default_rng(seed)
    topic = np.arange(n) % 4
    tricky = rng.random(n) < 0.5
    prompts = [
        f"{TOPICS[t]} question {i}: a {'tricky' if k else 'simple'} item"
        for i, (t, k) in enumerate(zip(topic, tricky, strict=True))
    ]
    strong = (rng.random(n) < 0.9) * 1.0
    p_weak = np.where(topic == 0, 0.2, np.where(tricky, 0.15, 0.95))
    weak = (rng.random(n) < p_weak) * 1.0
    tiny = (rng.random(n) < 0.4) * 1.0
    costs = np.tile([0.01, 0.001, 0.0001], (n, 1)) * (1 + 0.1 * rng.random((n, 1)))
    return ScoreMatrix(
        name="toy",
        keys=[f"k{i}" for i in range(n)],
        prompts=prompts,
        models=["strong", "weak", "tiny"],
        scores=np.c_[strong, weak, tiny],
        costs=costs,
        splits=["test" if i % 5 == 0 else "train" for i in range(n)],
        categories=[TOPICS[t] for t in topic] if categories else [],
    )


class CategoryCopy(Router):
    """The category baseline itself, as a router (the category is the prompt's first word)."""

    name = "category-copy"
    _requires_dense = False

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        self.words_ = [t.split()[0] for t in X.texts]
        self.scores_ = np.array(scores)

    def _predict(self, X: PromptBatch) -> np.ndarray:
        return B.predict_category(self.words_, self.scores_, [t.split()[0] for t in X.texts])


class Keyword(Router):
    """Category means, split by the word 'tricky': sees the per-prompt signal."""

    name = "keyword"
    _requires_dense = False

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def _key(self, text: str) -> str:
        return f"{text.split()[0]}-{'tricky' in text}"

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        self.keys_ = [self._key(t) for t in X.texts]
        self.scores_ = np.array(scores)

    def _predict(self, X: PromptBatch) -> np.ndarray:
        return B.predict_category(self.keys_, self.scores_, [self._key(t) for t in X.texts])


class FakeEncoder:
    def dense(self, texts: Any) -> np.ndarray:
        return np.ones((len(texts), 4), dtype=np.float32)

    def sparse(self, texts: Any, kind: str) -> None:
        return None


ROUTERS = {"category-copy": CategoryCopy, "keyword": Keyword}


def _run(setup: BenchSetup, **kw: Any) -> dict[str, Any]:
    specs = [RouterSpec(name) for name in kw.pop("routers", ROUTERS)]
    return run_bench(setup, specs, FakeEncoder(), factory=lambda s: ROUTERS[s.name](), **kw)


# ------------------------------------------------------------------------------------- resampled metrics
def test_resampled_apgr_equals_apgr_on_every_resample() -> None:
    rng = np.random.default_rng(0)
    for trial in range(15):
        n = int(rng.integers(5, 50))
        p = rng.integers(0, 5, n) / 4.0  # many ties
        ss, sw = (rng.random(n) < 0.7) * 1.0, (rng.random(n) < 0.4) * 1.0
        weights = M.bootstrap_weights(rng.integers(0, n, n), 40, seed=trial)
        got = M.resampled_apgr(p, ss, sw, weights)
        for b in range(weights.shape[0]):
            idx = np.repeat(np.arange(n), weights[b])
            if abs(ss[idx].mean() - sw[idx].mean()) < 1e-12:
                assert np.isnan(got[b])  # the two models tie on this resample: undefined
            else:
                assert got[b] == pytest.approx(M.apgr(p[idx], ss[idx], sw[idx]), abs=1e-12)
        if abs(ss.mean() - sw.mean()) > 1e-12:
            ones = np.ones((1, n), dtype=np.int32)
            assert M.resampled_apgr(p, ss, sw, ones)[0] == pytest.approx(M.apgr(p, ss, sw), abs=1e-12)


def test_resampled_quality_at_best_cost_equals_the_metric() -> None:
    rng = np.random.default_rng(1)
    for trial in range(10):
        n, m, lams = 30, 3, 9
        scores = (rng.random((n, m)) < [0.8, 0.6, 0.3]) * 1.0
        costs = np.array([1.0, 0.3, 0.05]) * (1 + rng.random((n, m)))
        chosen = rng.integers(0, m, (lams, n))
        weights = M.bootstrap_weights(rng.integers(0, 20, n), 15, trial)
        rows = np.arange(n)
        got = M.resampled_quality_at_best_cost(
            costs[rows, chosen], scores[rows, chosen], scores, costs, weights
        )
        for b in range(weights.shape[0]):
            idx = np.repeat(rows, weights[b])
            s, c = scores[idx], costs[idx]
            points = np.array([M.point(x[idx], s, c) for x in chosen])
            expected = M.cost_quality_metrics(points, M.single_models(["a", "b", "c"], s, c))
            if expected.quality_at_best_cost is None:  # below the cheapest point: undefined
                assert np.isnan(got[b])
            else:
                assert got[b] == pytest.approx(expected.quality_at_best_cost, abs=1e-12)
    # below the cheapest point the frontier is undefined: NaN, like frontier_quality's None
    assert np.isnan(M.frontier_quality_rows(np.array([[1.0, 2.0]]), np.array([[0.5, 0.6]]), np.array([0.5])))[
        0
    ]


def test_identical_texts_are_resampled_together_and_seeded() -> None:
    groups = np.array([0, 1, 1, 2, 2, 2, 3])
    w = M.bootstrap_weights(groups, 300, seed=5)
    assert w.shape == (300, 7) and (w[:, 1] == w[:, 2]).all() and (w[:, 3] == w[:, 5]).all()
    assert (w[:, [0, 1, 3, 6]].sum(axis=1) == 4).all()  # as many group draws as groups
    assert (M.bootstrap_weights(groups, 300, seed=5) == w).all()
    assert not (M.bootstrap_weights(groups, 300, seed=6) == w).all()


def test_apgr_bootstrap_is_fast_on_mmlu_size() -> None:
    rng = np.random.default_rng(0)
    n = 14_000
    p, ss, sw = rng.random(n), (rng.random(n) < 0.8) * 1.0, (rng.random(n) < 0.65) * 1.0
    t0 = time.perf_counter()
    values = M.resampled_apgr(p, ss, sw, M.bootstrap_weights(np.arange(n), 1000, 0))
    assert time.perf_counter() - t0 < 30  # ~2 s on a quiet 2-core machine; minutes if not vectorised
    assert np.isfinite(values).all() and 0.45 < np.median(values) < 0.55


# ---------------------------------------------------------------------------------------------- harness
def test_copy_of_the_category_baseline_is_not_significant_and_a_better_router_is() -> None:
    matrix = make_matrix()
    doc = _run(BenchSetup(matrix, prompt_folds(matrix, 5), strong="strong", weak="weak"), bootstrap=500)
    assert set(doc["baselines"]) == {"best_single", "length", "category"}
    for entry in doc["baselines"].values():
        assert set(doc["routers"]["keyword"]) - {"vs_baseline", "vs_baselines"} == set(
            entry
        )  # same metric keys
    assert doc["baselines"]["best_single"]["apgr"] == pytest.approx(0.5)  # a constant P(strong needed)
    copy, better = doc["routers"]["category-copy"], doc["routers"]["keyword"]
    assert copy["apgr"] == doc["baselines"]["category"]["apgr"]
    assert copy["vs_baseline"] == {
        "baseline": "category",
        "diff": 0.0,
        "ci95": [0.0, 0.0],
        "significant": False,
    }
    vs = better["vs_baseline"]
    assert vs["baseline"] == "category" and vs["significant"] is True
    assert 0 < vs["ci95"][0] <= vs["diff"] <= vs["ci95"][1]
    assert set(better["vs_baselines"]) == set(doc["baselines"])  # and against every baseline
    assert all(v["significant"] and v["ci95"][0] > 0 for v in better["vs_baselines"].values())
    assert "random" not in doc["baselines"] and "vs_baseline" not in doc["routers"]["oracle"]
    assert doc["bootstrap"]["resamples"] == 500 and doc["bootstrap"]["groups"] == 400
    json.dumps(doc)
    header, rows = table_rows(doc)
    cells = {r[0]: r[header.index("vs best baseline")] for r in rows}
    assert cells["category-copy"].endswith("n.s.") and cells["keyword"].endswith("better")
    assert cells["category (baseline)"] == "strongest baseline" and "length (baseline)" in cells


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    matrix = make_matrix(200)
    setup = BenchSetup(matrix, prompt_folds(matrix, 4), strong="strong", weak="weak")
    first = _run(setup, bootstrap=200, seed=3, routers=["keyword"])
    again = _run(setup, bootstrap=200, seed=3, routers=["keyword"])
    other = _run(
        BenchSetup(matrix, prompt_folds(matrix, 4), strong="strong", weak="weak"),
        bootstrap=200,
        seed=4,
        routers=["keyword"],
    )
    assert first["routers"]["keyword"]["vs_baseline"] == again["routers"]["keyword"]["vs_baseline"]
    assert (
        first["routers"]["keyword"]["vs_baseline"]["ci95"]
        != other["routers"]["keyword"]["vs_baseline"]["ci95"]
    )
    none = _run(setup, bootstrap=0, routers=["keyword"])["routers"]["keyword"]["vs_baseline"]
    assert none["ci95"] is None and none["significant"] is None and none["diff"] is not None


def test_no_category_baseline_without_categories() -> None:
    matrix = make_matrix(200, categories=False)
    doc = _run(BenchSetup(matrix, prompt_folds(matrix, 4), strong="strong", weak="weak"), bootstrap=100)
    assert set(doc["baselines"]) == {"best_single", "length"}
    assert doc["routers"]["keyword"]["vs_baseline"]["baseline"] in ("best_single", "length")


def test_length_baseline_learns_length() -> None:
    texts = ["short"] * 50 + ["a much longer prompt with many more words in it, really"] * 50
    scores = np.c_[np.r_[np.zeros(50), np.ones(50)], np.full(100, 0.5)]
    pred = B.predict_length(texts[::2], scores[::2], texts[1::2])
    assert (pred[25:, 0] > 0.8).all() and (pred[:25, 0] < 0.2).all()
    assert np.allclose(pred[:, 1], 0.5)


def test_nmodel_baselines_dropped_rows_and_report(tmp_path: Path) -> None:
    matrix = make_matrix(240)
    matrix.prompts[1] = matrix.prompts[0]  # row 0 is a test prompt; row 1, its twin, is in train
    matrix.costs[5, 2] = np.nan  # a held-out row without every cost
    matrix.scores[10, 1] = np.nan  # a held-out row without every score
    matrix.scores[2] = np.nan  # a training row without any score
    from routerforge.evaluate.setup import build_setup

    setup = build_setup(lambda name: matrix, "toy", split="test")
    doc = _run(setup, bootstrap=200)
    assert doc["mode"] == "nmodel" and set(doc["baselines"]) == {"best_single", "length", "category"}
    assert doc["dropped"] == {
        "test_text_in_train": 1,
        "heldout_missing_score": 1,
        "heldout_missing_cost": 1,
        "train_without_score": 1,
    }
    assert doc["n_prompts"] == 48 - 3
    assert doc["bootstrap"]["metric"] == "quality_at_best_cost"
    for name in ("keyword", "category-copy"):
        vs = doc["routers"][name]["vs_baseline"]
        assert vs["baseline"] in doc["baselines"] and len(vs["ci95"]) == 2
        assert vs["diff"] == pytest.approx(
            doc["routers"][name]["quality_at_best_cost"]
            - doc["baselines"][vs["baseline"]]["quality_at_best_cost"]
        )
    copy, category = doc["routers"]["category-copy"], doc["baselines"]["category"]
    assert copy["pareto"] == category["pareto"] and copy["aiq"] == category["aiq"]
    page = write_report(doc, tmp_path / "r").read_text()
    assert "length (baseline)" in page and "vs best baseline" in page and "Rows dropped" in page
