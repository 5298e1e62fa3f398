from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import NotFittedError, ValidationError
from routerforge.routers.mf import MfRouter, comparisons, mf_logits, pairwise_to_scores
from routerforge.routers.registry import create_router, load_router
from synth_routing import MODELS, assert_learns_topics, make_battles, make_data, split

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


def test_comparisons_and_ties():
    S = np.array([[1.0, 0.0, 1.0], [0.5, np.nan, 0.5], [np.nan, np.nan, 1.0]])
    c = comparisons(S, tie_weight=0.5)
    got = list(zip(c.rows.tolist(), c.i.tolist(), c.j.tolist(), strict=True))
    assert got == [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 2)]  # pairs with a missing cell never count
    np.testing.assert_array_equal(c.target, [1.0, 0.5, 0.0, 0.5])
    np.testing.assert_array_equal(c.weight, [1.0, 0.5, 1.0, 0.5])
    np.testing.assert_array_equal(c.starts, [0, 3, 4, 4])
    skipped = comparisons(S, tie_weight=0.0)  # ties skipped
    assert list(zip(skipped.rows.tolist(), skipped.i.tolist(), strict=True)) == [(0, 0), (0, 1)]


def test_pairwise_learns_from_battles_alone():
    X, S, topic = make_battles(600)
    r = MfRouter(**FAST, mode="pairwise").fit(X.take(range(500)), S[:500], list("abcde"))
    pred = r.predict_scores(X.take(range(500, 600)))
    best = pred.argmax(axis=1)
    assert np.mean(best == topic[500:]) >= 0.9  # the topic's strong model is ranked first


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
