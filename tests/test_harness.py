"""The benchmark harness: splits, leakage, result schemas, baselines, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from routerforge.data.matrix import ScoreMatrix
from routerforge.errors import UnknownModelError, ValidationError
from routerforge.evaluate.harness import BenchSetup, EmbedderEncoder, RouterSpec, resolve_pair, run_bench
from routerforge.evaluate.report import markdown_table, table_rows, write_report
from routerforge.evaluate.splits import (
    Fold,
    category_folds,
    check_no_leakage,
    dataset_split,
    drop_prompts,
    prompt_folds,
    read_prompt_list,
    transfer_split,
)
from routerforge.routers.base import PromptBatch, Router

TOPICS = ["algebra", "history", "poetry", "chemistry"]
MODELS = ["strong", "weak", "tiny"]


def make_matrix(n: int = 120, *, seed: int = 0, name: str = "toy", duplicates: int = 10) -> ScoreMatrix:
    """Prompts on 4 topics; the weak model fails algebra; the last ``duplicates`` rows repeat earlier texts."""
    rng = np.random.default_rng(seed)
    topic = np.arange(n) % len(TOPICS)
    prompts = [
        f"{TOPICS[t]} question {i}: explain {TOPICS[t]} item {i * 7 % 13}" for i, t in enumerate(topic)
    ]
    for d in range(duplicates):
        prompts[n - 1 - d] = prompts[d]
        topic[n - 1 - d] = topic[d]
    strong = (rng.random(n) < 0.9) * 1.0
    weak = np.where(topic == 0, rng.random(n) < 0.2, rng.random(n) < 0.8) * 1.0
    tiny = (rng.random(n) < 0.4) * 1.0
    costs = np.tile([0.01, 0.001, 0.0001], (n, 1)) * (1 + 0.1 * rng.random((n, 1)))
    return ScoreMatrix(
        name=name,
        keys=[f"k{i}" for i in range(n)],
        prompts=prompts,
        models=MODELS,
        scores=np.c_[strong, weak, tiny],
        costs=costs,
        splits=["test" if i % 4 == 0 else "train" for i in range(n)],
        categories=[TOPICS[t] for t in topic],
    )


class TopicRouter(Router):
    """Tiny stand-in: per-model mean score over training prompts sharing the first word."""

    name = "topic"
    _requires_dense = False
    fitted: ClassVar[list[list[str]]] = []
    asked: ClassVar[list[list[str]]] = []

    def __init__(self, *, constant: bool = False, random_state: int = 0) -> None:
        self.constant = constant
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        TopicRouter.fitted.append(list(X.texts))
        self.table_: dict[str, np.ndarray] = {}
        words = [t.split()[0] for t in X.texts]
        for w in set(words):
            rows = [i for i, x in enumerate(words) if x == w]
            self.table_[w] = np.nanmean(scores[rows], axis=0)
        self.mean_ = np.nanmean(scores, axis=0)

    def _predict(self, X: PromptBatch) -> np.ndarray:
        TopicRouter.asked.append(list(X.texts))
        if self.constant:
            return np.full((len(X), len(self.mean_)), 0.5)
        return np.array([self.table_.get(t.split()[0], self.mean_) for t in X.texts])


class FakeEncoder:
    def dense(self, texts: Any) -> np.ndarray:
        out = np.zeros((len(texts), 4), dtype=np.float32)
        out[:, 0] = 1.0
        return out

    def sparse(self, texts: Any, kind: str) -> None:
        return None


def topic_factory(spec: RouterSpec) -> Router:
    return TopicRouter(**spec.params)


@pytest.fixture(autouse=True)
def _reset_spy() -> None:
    TopicRouter.fitted.clear()
    TopicRouter.asked.clear()


def _run(setup: BenchSetup, **kw: Any) -> dict[str, Any]:
    specs = kw.pop("specs", [RouterSpec("topic")])
    return run_bench(setup, specs, FakeEncoder(), factory=topic_factory, **kw)


# ------------------------------------------------------------------------------------------- leakage
def test_no_held_out_prompt_reaches_training_kfold() -> None:
    matrix = make_matrix()
    matrix, matched, removed = drop_prompts(matrix, [matrix.prompts[5] + "  \n", "not in the data"])
    assert (matched, removed) == (1, 2)  # the text occurs twice
    folds = prompt_folds(matrix, 5)
    _run(BenchSetup(matrix, folds, strong="strong", weak="weak"))
    assert len(TopicRouter.fitted) == len(TopicRouter.asked) == 5
    predicted_all: list[str] = []
    for train_texts, test_texts in zip(TopicRouter.fitted, TopicRouter.asked, strict=True):
        assert not set(train_texts) & set(test_texts)
        predicted_all += test_texts
    # every row is held out exactly once (duplicate texts travel together) and dropped prompts never appear
    assert sorted(predicted_all) == sorted(matrix.prompts)
    dropped = make_matrix().prompts[5]
    assert all(dropped not in t for t in TopicRouter.fitted + TopicRouter.asked)


def test_whole_categories_are_held_out() -> None:
    matrix = make_matrix(duplicates=0)
    folds = category_folds(matrix, 4)
    for fold in folds:
        train_cats = {matrix.categories[i] for i in fold.train}
        test_cats = {matrix.categories[i] for i in fold.test}
        assert not train_cats & test_cats and len(test_cats) == 1
    _run(BenchSetup(matrix, folds, strong="strong", weak="weak"))
    for train_texts, test_texts in zip(TopicRouter.fitted, TopicRouter.asked, strict=True):
        assert not {t.split()[0] for t in train_texts} & {t.split()[0] for t in test_texts}


def test_own_split_and_transfer_drop_overlapping_texts() -> None:
    matrix = make_matrix()
    (fold,) = dataset_split(matrix)
    train_texts = {matrix.prompts[i] for i in fold.train}
    assert not any(matrix.prompts[i] in train_texts for i in fold.test)
    other = make_matrix(40, seed=1, name="other", duplicates=0)
    other.prompts[10:] = [
        p + " (variant)" for p in other.prompts[10:]
    ]  # the first 10 texts also occur in toy
    tfold, keep = transfer_split(matrix, other)
    assert keep.tolist() == list(range(10, 40))
    doc = _run(BenchSetup(matrix, [tfold], test_matrix=other, strong="strong", weak="weak"))
    assert doc["test_data"] == "other"
    assert not set(TopicRouter.fitted[0]) & set(TopicRouter.asked[0])


def test_a_leaky_fold_is_refused() -> None:
    matrix = make_matrix()
    leaky = Fold("leaky", np.arange(0, 80), np.arange(60, 120))
    with pytest.raises(ValidationError, match="also appear in training"):
        _run(BenchSetup(matrix, [leaky], strong="strong", weak="weak"))
    assert TopicRouter.fitted == []  # refused before any router saw data
    with pytest.raises(ValidationError):
        check_no_leakage(["a b "], [" a b"])


def test_grouped_folds_keep_identical_texts_together() -> None:
    matrix = make_matrix()
    for fold in prompt_folds(matrix, 5, seed=3):
        test_texts = {matrix.prompts[i] for i in fold.test}
        assert not any(matrix.prompts[i] in test_texts for i in fold.train)
        assert len(fold.train) + len(fold.test) == matrix.n_prompts


# ------------------------------------------------------------------------------------------- results
def test_binary_results_schema_and_baselines(tmp_path: Path) -> None:
    matrix = make_matrix(200)
    specs = [RouterSpec("topic"), RouterSpec("topic", {"constant": True}, label="constant")]
    doc = _run(BenchSetup(matrix, prompt_folds(matrix, 5), strong="strong", weak="weak"), specs=specs)
    assert doc["mode"] == "binary" and doc["folds"] == 5 and doc["n_prompts"] == 200
    assert (doc["strong"], doc["weak"]) == ("strong", "weak")
    assert set(doc["routers"]) == {"topic", "constant", "random", "oracle"}
    for entry in doc["routers"].values():
        assert {
            "apgr",
            "apgr_101",
            "cpt50",
            "cpt80",
            "curve",
            "fit_s",
            "predict_ms_p50",
            "predict_ms_p99",
        } <= set(entry)
        assert 0.0 <= entry["cpt50"] <= entry["cpt80"] <= 1.0 and len(entry["curve"]) == 11
    r = doc["routers"]
    assert r["constant"]["apgr"] == pytest.approx(0.5)  # ties averaged, no ordering artefact
    assert r["oracle"]["apgr"] > r["topic"]["apgr"] > 0.6  # the topic signal is real
    assert r["topic"]["fit_s"] is not None and r["random"]["fit_s"] is None
    assert set(doc["single_models"]) == {"strong", "weak"}
    json.dumps(doc)  # plain JSON
    page = write_report(doc, tmp_path / "report")
    assert page.is_file() and (tmp_path / "report" / "quality_vs_strong_share.png").stat().st_size > 1000
    assert "APGR" in page.read_text() and "| topic |" in markdown_table(*table_rows(doc))


def test_nmodel_results_schema(tmp_path: Path) -> None:
    matrix = make_matrix(200)
    doc = _run(BenchSetup(matrix, dataset_split(matrix)))
    assert doc["mode"] == "nmodel" and doc["best_single"] == "strong"
    assert set(doc["single_models"]) == set(MODELS)
    for name in ("topic", "random", "oracle"):
        entry = doc["routers"][name]
        assert {"aiq", "quality_at_best_cost", "cost_share_at_best_quality", "pareto"} <= set(entry)
    oracle, topic = doc["routers"]["oracle"], doc["routers"]["topic"]
    assert oracle["aiq"] >= topic["aiq"] and oracle["cost_share_at_best_quality"] < 1.0
    costs = [c for c, _ in topic["pareto"]]
    assert costs == sorted(costs)
    json.dumps(doc)
    write_report(doc, tmp_path / "r")
    assert (tmp_path / "r" / "cost_quality.png").is_file()


def test_latency_is_measured_through_the_given_path() -> None:
    matrix = make_matrix()
    calls: list[str] = []

    def latency(router: Router) -> Any:
        def one(text: str) -> object:
            calls.append(text)
            return router.predict_scores(PromptBatch([text], np.zeros((1, 4), dtype=np.float32)))

        return one

    doc = _run(
        BenchSetup(matrix, prompt_folds(matrix, 3), strong="strong", weak="weak"),
        latency=latency,
        latency_sample=7,
    )
    assert len(calls) == 7 + 3  # three warm-up calls
    assert doc["routers"]["topic"]["predict_ms_p50"] is not None


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_gives_clear_errors(tmp_path: Path) -> None:
    matrix = make_matrix()
    single = matrix.select_models(["strong"])
    with pytest.raises(ValidationError, match="only 1 model"):
        resolve_pair(single, None, None)
    with pytest.raises(UnknownModelError, match="No model named 'gpt-9'"):
        resolve_pair(matrix, "gpt-9", "weak")
    with pytest.raises(ValidationError, match="both --strong and --weak"):
        resolve_pair(matrix, "strong", None)
    with pytest.raises(ValidationError, match="no categories"):
        category_folds(
            ScoreMatrix("c", ["a", "b"], ["x", "y"], ["m1", "m2"], np.ones((2, 2)), np.ones((2, 2)))
        )
    with pytest.raises(ValidationError, match="no 'train'/'test' split"):
        dataset_split(matrix.take(np.arange(0, 120, 4)))
    with pytest.raises(ValidationError, match="distinct groups"):
        prompt_folds(matrix.take([0, 1]), 5)
    no_cost = ScoreMatrix(
        "nc", ["a", "b", "c", "d"], list("abcd"), ["m1", "m2", "m3"], np.eye(4, 3), np.full((4, 3), np.nan)
    )
    with pytest.raises(ValidationError, match="known cost"):
        _run(BenchSetup(no_cost, [Fold("f", np.arange(2), np.arange(2, 4))]))


def test_prompt_list_formats(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"eval_prompt": "What is 2+2?", "train_prompt": "x"}\n{"prompt": "Name a color."}\n')
    assert read_prompt_list(jsonl) == ["What is 2+2?", "Name a color."]
    plain = tmp_path / "p.txt"
    plain.write_text("first prompt\n\nsecond prompt\n")
    assert read_prompt_list(plain) == ["first prompt", "second prompt"]


# ------------------------------------------------------------------------------------ real routers
def test_registry_routers_run_through_the_harness() -> None:
    from routerforge.embed.hashing import HashEmbedder
    from routerforge.routers.registry import available_routers

    names = [n for n in ("random", "mlp", "knn", "mf", "sw") if n in available_routers()]
    matrix = make_matrix(100)
    specs = [RouterSpec(n) for n in names]
    doc = run_bench(
        BenchSetup(matrix, prompt_folds(matrix, 2), strong="strong", weak="weak"),
        specs,
        EmbedderEncoder(HashEmbedder(32), sparse=False),
    )
    assert set(names) | {"random", "oracle"} == set(doc["routers"])
