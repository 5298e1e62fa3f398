from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import NotFittedError, ValidationError
from routerforge.routers.registry import create_router, load_router
from routerforge.routers.sw import (
    SwRouter,
    fit_bradley_terry,
    similarity_weights,
    strengths_to_scores,
    win_matrix,
)
from synth_routing import MODELS, assert_learns_topics, make_battles, make_data, split


@pytest.fixture(scope="module")
def data():
    return split(*make_data(), n_train=180)


@pytest.mark.parametrize("params", [{}, {"top_k": None}, {"top_k": 20, "sharpness": 3.0}])
def test_learns_the_signal(data, params):
    Xtr, Str, Xte, topic = data
    r = SwRouter(**params).fit(Xtr, Str, MODELS)
    assert_learns_topics(r.predict_scores(Xte), topic)


def test_deterministic_save_load_and_explain(data, tmp_path: Path):
    Xtr, Str, Xte, _ = data
    r = create_router("sw", top_k=30).fit(Xtr, Str, MODELS)
    np.testing.assert_array_equal(
        r.predict_scores(Xte), create_router("sw", top_k=30).fit(Xtr, Str, MODELS).predict_scores(Xte)
    )
    r.save(tmp_path / "sw")
    loaded = load_router(tmp_path / "sw")
    np.testing.assert_array_equal(loaded.predict_scores(Xte), r.predict_scores(Xte))
    exp = loaded.explain(Xte)
    assert exp.router == "sw"
    assert len(exp.details["neighbours"]) == 5
    assert exp.details["neighbours"][0]["similarity"] >= exp.details["neighbours"][-1]["similarity"]


def test_batch_equals_single_prompts(data):
    Xtr, Str, Xte, _ = data
    r = SwRouter().fit(Xtr, Str, MODELS)
    batch = r.predict_scores(Xte)
    one = np.vstack([r.predict_scores(Xte.take([i])) for i in range(5)])
    np.testing.assert_allclose(one, batch[:5], rtol=0, atol=1e-6)


def test_routellm_weights():
    sims = np.array([[0.2, 0.5, 1.0, 0.0]])
    w = similarity_weights(sims, gamma=10.0, sharpness=1.0, top_k=None)
    raw = 10.0 ** (1.0 + sims[0] / sims[0].max())  # RouteLLM: 10 * 10 ** (s / max s)
    np.testing.assert_allclose(w[0] / w[0].sum(), raw / raw.sum())
    ess = raw.sum() ** 2 / (raw**2).sum()
    assert w.sum() == pytest.approx(ess)
    top = similarity_weights(sims, gamma=10.0, sharpness=1.0, top_k=2)
    assert (top[0] > 0).tolist() == [False, True, True, False]


def test_bradley_terry_recovers_known_strengths():
    wins = np.zeros((1, 3, 3))
    # P(0 beats 1) = 3/4, P(1 beats 2) = 3/4, P(0 beats 2) = 9/10  → strengths 9 : 3 : 1
    for a, b, p in [(0, 1, 0.75), (1, 2, 0.75), (0, 2, 0.9)]:
        wins[0, a, b] = 1000 * p
        wins[0, b, a] = 1000 * (1 - p)
    counts = wins + wins.transpose(0, 2, 1)
    theta = fit_bradley_terry(wins, counts, prior=0.0, max_iter=2000)
    np.testing.assert_allclose(theta[0] - theta[0, 2], np.log([9.0, 3.0, 1.0]), atol=1e-3)


def test_win_matrix_dense_and_sparse_and_scores():
    S = np.array([[1.0, 0.0, np.nan], [1.0, 1.0, 0.0]])
    flat = win_matrix(S, tie_weight=1.0)
    assert isinstance(flat, np.ndarray)
    wins = flat.reshape(2, 3, 3)
    counts = wins + wins.transpose(0, 2, 1)
    assert wins[0, 0, 1] == 1 and wins[0, 1, 0] == 0 and counts[0, 0, 2] == 0
    assert wins[1, 0, 1] == 0.5 and wins[1, 1, 0] == 0.5 and counts[1, 0, 1] == 1
    sparse = win_matrix(S, tie_weight=1.0, max_dense_cells=0)
    assert not isinstance(sparse, np.ndarray)
    np.testing.assert_array_equal(sparse.toarray(), flat)
    s = strengths_to_scores(np.array([[0.0, 0.0]]), np.array([0.6]))
    np.testing.assert_allclose(s, [[0.6, 0.6]])


def test_errors(data):
    Xtr, Str, Xte, _ = data
    with pytest.raises(NotFittedError):
        SwRouter().predict_scores(Xte)
    with pytest.raises(ValidationError):
        SwRouter(gamma=1.0).fit(Xtr, Str, MODELS)
    with pytest.raises(ValidationError):
        SwRouter(top_k=0).fit(Xtr, Str, MODELS)


def test_battles_with_many_models_use_the_sparse_table():
    """Battle-shaped data (two scored models per row) whose table of wins exceeds the dense limit: the
    sparse path is taken and the topic's strong model is ranked first."""
    X, S, topic = make_battles(1200)
    S = np.hstack([S, np.full((1200, 80), np.nan)])  # 85 models: 1,100 rows x 85² > 4M cells
    S[0, 5:] = 0.5  # the 80 extra models are scored (a tie) on one training prompt only
    models = [f"m{j}" for j in range(85)]
    r = SwRouter(top_k=50).fit(X.take(range(1100)), S[:1100], models)
    assert not isinstance(r._wins_flat, np.ndarray)
    pred = r.predict_scores(X.take(range(1100, 1200)))
    assert np.mean(pred[:, :5].argmax(axis=1) == topic[1100:]) >= 0.9
