from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import ValidationError
from routerforge.routers.base import PromptBatch
from routerforge.routers.cluster import ClusterRouter, kmeans, silhouette
from routerforge.routers.registry import load_router
from synth_routing import MODELS, assert_learns_topics, make_data, split


@pytest.fixture(scope="module")
def data():
    return split(*make_data(), n_train=180)


@pytest.mark.parametrize("params", [{"n_clusters": 4}, {"n_clusters": 6, "temperature": 0.1}])
def test_learns_round_trips_and_is_deterministic(data, params, tmp_path: Path):
    Xtr, Str, Xte, topic = data
    r = ClusterRouter(**params).fit(Xtr, Str, MODELS)
    pred = r.predict_scores(Xte)
    assert_learns_topics(pred, topic)
    np.testing.assert_array_equal(ClusterRouter(**params).fit(Xtr, Str, MODELS).predict_scores(Xte), pred)
    r.save(tmp_path / "c")
    np.testing.assert_array_equal(load_router(tmp_path / "c").predict_scores(Xte), pred)
    assert r.explain(Xte).details["clusters"]


def test_partial_fit_moves_predictions(data):
    Xtr, Str, Xte, _ = data
    r = ClusterRouter(n_clusters=2, shrinkage=0.0).fit(Xtr, Str, MODELS)
    before = r.predict_scores(Xte.take([0]))
    flipped = np.where(np.isnan(Str), np.nan, 1.0 - np.nan_to_num(Str))
    for _ in range(5):
        r.partial_fit(Xtr, flipped)
    after = r.predict_scores(Xte.take([0]))
    assert abs(after[0, 2] - 0.5) < 0.2
    assert np.sign(after[0, 0] - after[0, 1]) != np.sign(before[0, 0] - before[0, 1])
    assert r.n_train_ == 6 * len(Xtr)


def test_kmeans_finds_two_blobs():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal([5, 0], 0.1, (20, 2)), rng.normal([0, 5], 0.1, (20, 2))])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    centres = kmeans(X, 2, rng=np.random.default_rng(0))
    labels = np.argmax(X @ centres.T, axis=1)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[-1]


def test_bad_params(data):
    Xtr, Str, _, _ = data
    with pytest.raises(ValidationError):
        ClusterRouter(n_clusters=0).fit(Xtr, Str, MODELS)
    with pytest.raises(ValidationError):
        ClusterRouter(temperature=0.0).fit(Xtr, Str, MODELS)


def test_auto_k_by_silhouette_finds_the_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 5
    X = np.vstack([c + rng.normal(0, 0.3, (30, 8)) for c in centres])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    assert silhouette(X, np.repeat([0, 1, 2], 30)) > 0.5 > silhouette(X, rng.integers(0, 3, 90))
    batch = PromptBatch(texts=[f"p{i}" for i in range(90)], dense=X.astype(np.float32))
    scores = rng.random((90, 3)).round()
    r = ClusterRouter(n_clusters="auto", k_candidates=[2, 3, 5, 8]).fit(batch, scores, MODELS)
    assert len(r.centres_) == 3 and set(r.silhouette_) == {2, 3, 5, 8}


def test_weights_trade_quality_for_latency_and_cost(data, tmp_path: Path):
    Xtr, Str, Xte, topic = data
    latency = np.tile([100.0, 100.0, 10.0], (len(Xtr), 1))  # model c is fast
    costs = np.tile([1.0, 1.0, 0.01], (len(Xtr), 1))  # ... and cheap
    quality_only = ClusterRouter(n_clusters=4)
    quality_only.set_model_outcomes(costs, latency)
    assert_learns_topics(quality_only.fit(Xtr, Str, MODELS).predict_scores(Xte), topic)
    fast = ClusterRouter(n_clusters=4, weights={"quality": 0.2, "latency": 1.0, "cost": 1.0})
    fast.set_model_outcomes(costs, latency)
    pred = fast.fit(Xtr, Str, MODELS).predict_scores(Xte)
    assert (np.argmax(pred, axis=1) == 2).all()  # the fast, cheap coin-flip model wins everywhere
    fast.save(tmp_path / "w")
    np.testing.assert_array_equal(load_router(tmp_path / "w").predict_scores(Xte), pred)
    with pytest.raises(ValidationError, match="no latency"):
        ClusterRouter(n_clusters=4, weights={"latency": 1.0}).fit(Xtr, Str, MODELS)
    with pytest.raises(ValidationError, match="weights must map"):
        ClusterRouter(n_clusters=4, weights={"speed": 1.0}).fit(Xtr, Str, MODELS)
