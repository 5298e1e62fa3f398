"""Contract tests over EVERY registered router: shapes, fitted checks, save/load, seeds, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from routerforge.embed.base import SparseVector
from routerforge.embed.hashing import HashEmbedder
from routerforge.embed.sparse import Bm25Encoder
from routerforge.errors import ArtifactError, ConfigError, NotFittedError, UnknownRouterError, ValidationError
from routerforge.routers.base import ROUTER_FORMAT_VERSION, Explanation, PromptBatch, Router
from routerforge.routers.registry import available_routers, create_router, load_router, router_class

MODELS = ["tiny", "small", "medium", "large"]
TOPICS = ["algebra", "poetry", "chemistry", "history"]
# The shipped families; routers other test modules register for their own checks are named ``test-…``.
ROUTERS = [name for name in available_routers() if not name.startswith("test-")]


def _dataset(n: int = 60, seed: int = 0) -> tuple[PromptBatch, np.ndarray]:
    """``n`` prompts on four topics; model j is good at topic j (plus the large model is good overall)."""
    rng = np.random.default_rng(seed)
    texts, rows = [], []
    for i in range(n):
        topic = i % len(TOPICS)
        texts.append(f"question {i} about {TOPICS[topic]}: explain {TOPICS[topic]} case number {i * 7 % 13}")
        p = np.full(len(MODELS), 0.2)
        p[topic] = 0.9
        p[-1] = max(p[-1], 0.7)
        rows.append((rng.random(len(MODELS)) < p).astype(float))
    return _batch(texts), np.array(rows)


def _batch(texts: list[str], *, sparse: bool = True) -> PromptBatch:
    dense = HashEmbedder(dim=32).embed(texts)
    vectors: list[SparseVector] | None = Bm25Encoder().encode_documents(texts) if sparse else None
    return PromptBatch(texts=texts, dense=dense, sparse=vectors)


def _held_out() -> PromptBatch:
    return _batch([f"new question about {t}, part {j}" for j in range(3) for t in TOPICS])


def _queries(name: str, X: PromptBatch) -> PromptBatch:
    """Prompts to predict: held-out ones, except for the oracle which only knows its training prompts."""
    return X.take(range(0, 12)) if name == "oracle" else _held_out()


@pytest.fixture(scope="module", autouse=True)
def _llm_policy_answers_without_a_model() -> Iterator[None]:
    """llm-policy answers by keyword here; its llama.cpp path is tested in test_llm_policy.py."""
    from routerforge.routers.llm_policy import LlmPolicyRouter

    def stub(messages: list[dict[str, str]]) -> str:
        query = messages[-1]["content"]
        return "[DECISION] Complex_Query" if "algebra" in query else "[REASONING] easy [DECISION] Standard"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LlmPolicyRouter, "_llama_generator", lambda self: stub)
        yield


@pytest.fixture(scope="module")
def data() -> tuple[PromptBatch, np.ndarray]:
    return _dataset()


@pytest.fixture(scope="module")
def fitted(data: tuple[PromptBatch, np.ndarray]) -> dict[str, Router]:
    X, scores = data
    return {name: create_router(name, random_state=0).fit(X, scores, MODELS) for name in ROUTERS}


def test_the_core_families_are_registered() -> None:
    assert {"random", "oracle", "knn"} <= set(ROUTERS)


@pytest.mark.parametrize("name", ROUTERS)
def test_fit_returns_self_and_predicts_the_right_shape(
    name: str, data: tuple[PromptBatch, np.ndarray]
) -> None:
    X, scores = data
    router = create_router(name)
    assert router.name == name
    assert router.fit(X, scores, MODELS) is router
    assert router.models == MODELS
    Q = _queries(name, X)
    pred = router.predict_scores(Q)
    assert pred.shape == (len(Q), len(MODELS))
    assert pred.dtype == np.float64
    assert np.isfinite(pred).all()
    assert (pred >= 0).all()
    assert (pred <= 1).all()
    assert router.predict_scores(Q.take([])).shape == (0, len(MODELS))


@pytest.mark.parametrize("name", ROUTERS)
def test_predict_and_explain_before_fit_raise(name: str, data: tuple[PromptBatch, np.ndarray]) -> None:
    router = create_router(name)
    X, _ = data
    with pytest.raises(NotFittedError):
        router.predict_scores(X)
    with pytest.raises(NotFittedError):
        router.explain(X)
    with pytest.raises(NotFittedError):
        router.save("unused")


@pytest.mark.parametrize("name", ROUTERS)
def test_save_load_gives_identical_predictions(
    name: str, fitted: dict[str, Router], tmp_path: Path, data: tuple[PromptBatch, np.ndarray]
) -> None:
    router = fitted[name]
    Q = _queries(name, data[0])
    before = router.predict_scores(Q)
    router.save(tmp_path / "r")
    doc = json.loads((tmp_path / "r" / "router.json").read_text())
    assert doc["format_version"] == ROUTER_FORMAT_VERSION
    assert doc["type"] == name
    assert doc["models"] == MODELS
    assert doc["n_train"] == 60
    assert len(doc["fingerprint"]) == 32
    for npy in (tmp_path / "r").glob("*.npy"):
        np.load(npy, allow_pickle=False)  # no pickled objects anywhere
    loaded = load_router(tmp_path / "r")
    assert type(loaded) is type(router)
    assert loaded.get_params() == router.get_params()
    np.testing.assert_array_equal(loaded.predict_scores(Q), before)
    again = router_class(name).load(tmp_path / "r")  # loading twice at once works too
    np.testing.assert_array_equal(again.predict_scores(Q), before)
    assert type(load_router(tmp_path / "r")) is type(router)  # the registry dispatches on router.json


@pytest.mark.parametrize("name", ROUTERS)
def test_same_seed_same_predictions(name: str, data: tuple[PromptBatch, np.ndarray]) -> None:
    X, scores = data
    Q = _queries(name, X)
    a = create_router(name, random_state=7).fit(X, scores, MODELS).predict_scores(Q)
    b = create_router(name, random_state=7).fit(X, scores, MODELS).predict_scores(Q)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ROUTERS)
def test_prediction_does_not_depend_on_the_batch(
    name: str, fitted: dict[str, Router], data: tuple[PromptBatch, np.ndarray]
) -> None:
    router = fitted[name]
    Q = _queries(name, data[0])
    full = router.predict_scores(Q)
    for i in (0, 5):
        np.testing.assert_allclose(router.predict_scores(Q.take([i]))[0], full[i], atol=1e-6)


@pytest.mark.parametrize("name", ROUTERS)
def test_explain_describes_the_first_prompt(
    name: str, fitted: dict[str, Router], data: tuple[PromptBatch, np.ndarray]
) -> None:
    explanation = fitted[name].explain(_queries(name, data[0]))
    assert isinstance(explanation, Explanation)
    assert explanation.router == name
    assert explanation.reason
    json.dumps(explanation.details)  # plain JSON for the CLI / gateway


@pytest.mark.parametrize("name", ROUTERS)
def test_missing_cells_and_dense_only_batches_are_fine(
    name: str, data: tuple[PromptBatch, np.ndarray]
) -> None:
    X, scores = data
    holes = scores.copy()
    holes[::3, 1] = np.nan
    holes[1::5, 2] = np.nan
    dense_only = PromptBatch(texts=X.texts, dense=X.dense, sparse=None)
    router = create_router(name).fit(dense_only, holes, MODELS)
    Q = _queries(name, X)
    pred = router.predict_scores(PromptBatch(texts=Q.texts, dense=Q.dense, sparse=None))
    assert pred.shape == (len(Q), len(MODELS))
    assert np.isfinite(pred).all()


@pytest.mark.parametrize("name", ROUTERS)
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("one_model", "at least 2"),
        ("wrong_shape", "shape"),
        ("out_of_range", r"\[0, 1\]"),
        ("infinite", "infinite"),
        ("empty_model", "No training scores"),
        ("duplicate_models", "unique"),
        ("dense_mismatch", "dense"),
    ],
)
def test_bad_training_input_is_a_clear_error(
    name: str, case: str, message: str, data: tuple[PromptBatch, np.ndarray]
) -> None:
    X, scores = data
    models = list(MODELS)
    if case == "one_model":
        scores, models = scores[:, :1], models[:1]
    elif case == "wrong_shape":
        scores = scores[:-1]
    elif case == "out_of_range":
        scores = scores * 5
    elif case == "infinite":
        scores = scores.copy()
        scores[0, 0] = np.inf
    elif case == "empty_model":
        scores = scores.copy()
        scores[:, 2] = np.nan
    elif case == "duplicate_models":
        models = ["a", "a", "b", "c"]
    elif case == "dense_mismatch":
        if not router_class(name)._requires_dense:
            pytest.skip(f"{name} does not read dense vectors")
        X = PromptBatch(texts=X.texts, dense=X.dense[:-1], sparse=None)
    with pytest.raises(ValidationError, match=message):
        create_router(name).fit(X, scores, models)


@pytest.mark.parametrize("name", ROUTERS)
def test_predicting_with_another_embedding_size_fails(name: str, fitted: dict[str, Router]) -> None:
    if not router_class(name)._requires_dense:
        pytest.skip(f"{name} does not read dense vectors")
    wrong = PromptBatch(texts=["x"], dense=np.ones((1, 8), dtype=np.float32) / np.sqrt(8))
    with pytest.raises(ValidationError, match="dimensional"):
        fitted[name].predict_scores(wrong)


def test_registry_errors(tmp_path: Path, fitted: dict[str, Router]) -> None:
    with pytest.raises(UnknownRouterError, match="knnn"):
        create_router("knnn")
    with pytest.raises(ConfigError, match="no parameter"):
        create_router("knn", kk=3)
    with pytest.raises(ArtifactError, match=r"router\.json is missing"):
        load_router(tmp_path)


def test_artifact_mismatches_name_both_sides(tmp_path: Path, fitted: dict[str, Router]) -> None:
    fitted["random"].save(tmp_path / "r")
    with pytest.raises(ArtifactError, match="'random' router, not a 'oracle'"):
        router_class("oracle").load(tmp_path / "r")
    path = tmp_path / "r" / "router.json"
    doc = json.loads(path.read_text())
    doc["format_version"] = ROUTER_FORMAT_VERSION + 1
    path.write_text(json.dumps(doc))
    with pytest.raises(
        ArtifactError, match=f"version {ROUTER_FORMAT_VERSION + 1}.*version {ROUTER_FORMAT_VERSION}"
    ):
        load_router(tmp_path / "r")
    doc["format_version"] = ROUTER_FORMAT_VERSION
    doc["type"] = "no-such-router"
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="no-such-router"):
        load_router(tmp_path / "r")


def test_oracle_refuses_unseen_prompts(fitted: dict[str, Router]) -> None:
    with pytest.raises(ValidationError, match="no true scores"):
        fitted["oracle"].predict_scores(_held_out())


def test_random_is_a_function_of_text_and_seed(data: tuple[PromptBatch, np.ndarray]) -> None:
    X, scores = data
    a = create_router("random", random_state=1).fit(X, scores, MODELS)
    b = create_router("random", random_state=2).fit(X, scores, MODELS)
    Q = _held_out()
    assert not np.array_equal(a.predict_scores(Q), b.predict_scores(Q))
    twice = _batch([Q.texts[0], Q.texts[0]])
    p = a.predict_scores(twice)
    np.testing.assert_array_equal(p[0], p[1])
