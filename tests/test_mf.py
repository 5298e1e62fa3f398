from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import NotFittedError, ValidationError
from routerforge.routers.mf import MfRouter, mf_logits, pair_targets, pairwise_to_scores
from routerforge.routers.registry import create_router, load_router
from synth_routing import MODELS, assert_learns_topics, make_data, split

FAST = {"dim": 8, "max_epochs": 60, "batch_size": 32, "patience": 6}


@pytest.fixture(scope="module")
def data():
    return split(*make_data(), n_train=180)


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_both_modes_learn_the_signal(data, mode):
    Xtr, Str, Xte, topic = data
    r = MfRouter(**FAST, mode=mode).fit(Xtr, Str, MODELS)
    assert_learns_topics(r.predict_scores(Xte), topic)


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_deterministic_and_save_load(data, mode, tmp_path: Path):
    Xtr, Str, Xte, _ = data
    a = create_router("mf", **FAST, mode=mode, tie_weight=0.5).fit(Xtr, Str, MODELS)
    b = create_router("mf", **FAST, mode=mode, tie_weight=0.5).fit(Xtr, Str, MODELS)
    np.testing.assert_array_equal(a.predict_scores(Xte), b.predict_scores(Xte))
    a.save(tmp_path / "mf")
    loaded = load_router(tmp_path / "mf")
    assert isinstance(loaded, MfRouter)
    np.testing.assert_array_equal(loaded.predict_scores(Xte), a.predict_scores(Xte))
    exp = loaded.explain(Xte)
    assert set(exp.details["delta"]) == set(MODELS)


def test_delta_formula():
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.normal(size=(4, 3)),
        "b": rng.normal(size=3),
        "V": rng.normal(size=(2, 3)),
        "w2": rng.normal(size=3),
    }
    q = rng.normal(size=(1, 4))
    got = mf_logits(q, params)[0]
    for m in range(2):
        want = params["w2"] @ (params["V"][m] * (params["W1"].T @ q[0] + params["b"]))
        assert got[m] == pytest.approx(want)


def test_pair_targets_and_ties():
    S = np.array([[1.0, 0.0, 1.0], [0.5, np.nan, 0.5]])
    iu, ju, T, W = pair_targets(S, tie_weight=0.5)
    pairs = list(zip(iu.tolist(), ju.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (1, 2)]
    np.testing.assert_array_equal(T[0], [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(W[0], [1.0, 0.5, 1.0])
    np.testing.assert_array_equal(W[1], [0.0, 0.5, 0.0])  # pairs with a missing cell never count


def test_pairwise_to_scores_two_models():
    delta = np.array([[0.0, 0.0], [2.0, -2.0]])
    s = pairwise_to_scores(delta, 0.5)
    np.testing.assert_allclose(s[0], [0.5, 0.5])
    assert s[1, 0] > 0.5 > s[1, 1]
    assert s[1, 0] + s[1, 1] == pytest.approx(1.0)


def test_errors(data):
    Xtr, Str, Xte, _ = data
    with pytest.raises(NotFittedError):
        MfRouter().predict_scores(Xte)
    with pytest.raises(ValidationError):
        MfRouter(mode="listwise").fit(Xtr, Str, MODELS)
    with pytest.raises(ValidationError):
        MfRouter(tie_weight=2.0).fit(Xtr, Str, MODELS)
