from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import ValidationError
from routerforge.routers.cluster import ClusterRouter, kmeans
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
