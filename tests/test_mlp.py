from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import NotFittedError, ValidationError
from routerforge.routers.mlp import MlpRouter, pairwise_loss, text_features
from routerforge.routers.optim import masked_bce
from routerforge.routers.registry import create_router, load_router
from synth_routing import MODELS, assert_learns_topics, make_data, split

FAST = {"hidden": 16, "max_epochs": 40, "n_estimators": 2, "patience": 5, "batch_size": 32}


@pytest.fixture(scope="module")
def data():
    return split(*make_data(), n_train=180)


@pytest.fixture(scope="module")
def fitted(data):
    Xtr, Str, _, _ = data
    return MlpRouter(**FAST).fit(Xtr, Str, MODELS)


def test_learns_which_model_is_good_where(fitted, data):
    _, _, Xte, topic = data
    assert_learns_topics(fitted.predict_scores(Xte), topic)


@pytest.mark.parametrize("features", ["dense", "text"])
def test_other_feature_sets(data, features):
    Xtr, Str, Xte, topic = data
    r = MlpRouter(**{**FAST, "features": features}).fit(Xtr, Str, MODELS)
    pred = r.predict_scores(Xte)
    if features == "dense":
        assert_learns_topics(pred, topic)
    assert pred.shape == (len(Xte), 3)


def test_same_seed_same_predictions(fitted, data):
    Xtr, Str, Xte, _ = data
    again = MlpRouter(**FAST).fit(Xtr, Str, MODELS)
    np.testing.assert_array_equal(again.predict_scores(Xte), fitted.predict_scores(Xte))
    other = MlpRouter(**{**FAST, "random_state": 1}).fit(Xtr, Str, MODELS)
    assert not np.array_equal(other.predict_scores(Xte), fitted.predict_scores(Xte))


def test_save_load_identical(fitted, data, tmp_path: Path):
    _, _, Xte, _ = data
    fitted.save(tmp_path / "r")
    assert (tmp_path / "r" / "router.json").is_file()
    for loaded in (MlpRouter.load(tmp_path / "r"), load_router(tmp_path / "r")):
        np.testing.assert_array_equal(loaded.predict_scores(Xte), fitted.predict_scores(Xte))
        assert loaded.models == MODELS
    assert not list((tmp_path / "r").glob("*.pkl"))


def test_pairwise_term_and_explain(data):
    Xtr, Str, Xte, topic = data
    r = create_router("mlp", **FAST, pair_weight=1.0).fit(Xtr, Str, MODELS)
    assert_learns_topics(r.predict_scores(Xte), topic)
    exp = r.explain(Xte)
    assert exp.router == "mlp"
    assert set(exp.details["predicted"]) == set(MODELS)
    assert "text_features" in exp.details


def test_predict_before_fit_and_bad_params(data):
    Xtr, Str, Xte, _ = data
    with pytest.raises(NotFittedError):
        MlpRouter().predict_scores(Xte)
    with pytest.raises(ValidationError):
        MlpRouter(features="pixels").fit(Xtr, Str, MODELS)
    with pytest.raises(ValidationError):
        MlpRouter(hidden=0).fit(Xtr, Str, MODELS)


def _numeric_grad(fn, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        x[idx] += eps
        up = fn(x)
        x[idx] -= 2 * eps
        down = fn(x)
        x[idx] += eps
        g[idx] = (up - down) / (2 * eps)
    return g


def test_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3))
    targets = (rng.random((5, 3)) < 0.5).astype(float)
    mask = (rng.random((5, 3)) < 0.8).astype(float)
    _, g = masked_bce(logits, targets, mask)
    np.testing.assert_allclose(
        g, _numeric_grad(lambda z: masked_bce(z, targets, mask)[0], logits.copy()), atol=1e-6
    )
    _, g = pairwise_loss(logits, targets, mask, tie_weight=0.5)
    num = _numeric_grad(lambda z: pairwise_loss(z, targets, mask, tie_weight=0.5)[0], logits.copy())
    np.testing.assert_allclose(g, num, atol=1e-6)


def test_text_features_shape():
    feats = text_features(["What is 2 + 2?", "", "Line one\nline two"])
    assert feats.shape == (3, 9)
    assert np.all(np.isfinite(feats))
