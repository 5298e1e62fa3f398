"""Metric functions: hand-computed small cases and Hypothesis properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from routerforge.errors import ValidationError
from routerforge.evaluate import metrics as M
from routerforge.policy.binary import strong_probability
from routerforge.policy.choice import choose_wtp, lambda_grid

# ------------------------------------------------------------------------------- hand-computed binary
P4 = np.array([0.9, 0.7, 0.5, 0.1])
SS4 = np.array([1.0, 1.0, 0.0, 1.0])
SW4 = np.array([0.0, 1.0, 0.0, 0.0])
# gains in rank order: 1, 0, 0, 1 → G = 0, 1, 1, 1, 2; r_weak = 0.25, r_strong = 0.75
PGR4 = [0.0, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.8, 1.0]


def test_gain_curve_by_hand() -> None:
    assert M.gain_curve(P4, SS4, SW4).tolist() == [0.0, 1.0, 1.0, 1.0, 2.0]


def test_pgr_apgr_cpt_by_hand() -> None:
    np.testing.assert_allclose(M.pgr_at(P4, SS4, SW4, M.SHARES_11), PGR4, atol=1e-12)
    assert M.apgr(P4, SS4, SW4) == pytest.approx(0.1 * (sum(PGR4) - 0.5))  # trapezoid = 0.5
    assert M.apgr(P4, SS4, SW4) == pytest.approx(0.5)
    # PGR at k/n: 0, .5, .5, .5, 1 → 50 % reached at k = 1 (c = .25); 80 %: between k=3 (.5) and k=4 (1)
    assert M.cpt(P4, SS4, SW4, 0.5) == pytest.approx(0.25)
    assert M.cpt(P4, SS4, SW4, 0.8) == pytest.approx((3 + 0.6) / 4)
    bm = M.binary_metrics(P4, SS4, SW4)
    assert (bm.apgr, bm.cpt50, bm.cpt80) == pytest.approx((0.5, 0.25, 0.9))
    assert bm.r_strong == 0.75 and bm.r_weak == 0.25
    assert bm.curve[0] == (0.0, 0.25) and bm.curve[-1] == pytest.approx((1.0, 0.75))
    np.testing.assert_allclose(M.quality_at(P4, SS4, SW4, [0.5]), [0.25 + 1.0 / 4])


def test_tied_predictions_are_averaged_not_ordered() -> None:
    # a tie block of two prompts with gains 1 and 0: one strong call in it is worth 0.5 in expectation
    p = np.array([1.0, 0.5, 0.5, 0.0])
    ss, sw = np.array([1.0, 1.0, 0.0, 0.0]), np.zeros(4)
    np.testing.assert_allclose(M.gain_curve(p, ss, sw), [0, 1, 1.5, 2, 2])
    # reversing the input order (which would flip an order-based tie-break) changes nothing
    np.testing.assert_allclose(M.gain_curve(p[::-1], ss[::-1], sw[::-1]), [0, 1, 1.5, 2, 2])


def test_constant_router_gets_exactly_half() -> None:
    rng = np.random.default_rng(3)
    ss, sw = (rng.random(500) < 0.8) * 1.0, (rng.random(500) < 0.6) * 1.0
    bm = M.binary_metrics(np.full(500, 0.5), ss, sw)
    assert bm.apgr == pytest.approx(0.5) and bm.apgr_101 == pytest.approx(0.5)
    assert bm.cpt50 == pytest.approx(0.5) and bm.cpt80 == pytest.approx(0.8)


def test_random_routing_averages_half() -> None:
    rng = np.random.default_rng(0)
    n = 300
    ss, sw = (rng.random(n) < 0.8) * 1.0, (rng.random(n) < 0.5) * 1.0
    values = [M.apgr(rng.random(n), ss, sw) for _ in range(300)]
    assert np.mean(values) == pytest.approx(0.5, abs=0.02)


def test_equal_models_make_pgr_undefined() -> None:
    with pytest.raises(ValidationError, match="same mean score"):
        M.apgr(np.arange(3.0), np.ones(3), np.ones(3))


def test_missing_scores_are_rejected() -> None:
    with pytest.raises(ValidationError, match="finite"):
        M.binary_metrics(np.zeros(2), np.array([1.0, np.nan]), np.zeros(2))


def test_fold_means_are_weighted_by_size() -> None:
    a = M.binary_metrics(P4, SS4, SW4)
    b = M.binary_metrics(np.zeros(4), SS4, SW4)
    both = M.mean_binary_metrics([a, a, b])
    assert both.apgr == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    assert both.cpt50 == pytest.approx((0.25 * 2 + 0.5) / 3)
    assert both.n == 12


# ----------------------------------------------------------------------------- hand-computed N models
PTS = [(1.0, 0.5), (2.0, 0.4), (3.0, 0.8), (3.0, 0.7), (4.0, 0.8)]


def test_pareto_frontier_by_hand() -> None:
    np.testing.assert_allclose(M.pareto_frontier(PTS), [[1.0, 0.5], [3.0, 0.8]])


def test_aiq_and_reach_by_hand() -> None:
    front = M.pareto_frontier(PTS)
    assert M.aiq(front, 1.0, 3.0) == pytest.approx((0.5 + 0.8) / 2)
    # over [0, 4]: nothing below cost 1, (0.5+0.8)/2·2 over [1, 3], flat 0.8 over [3, 4]
    assert M.aiq(front, 0.0, 4.0) == pytest.approx((1.3 + 0.8) / 4)
    assert M.frontier_quality(front, 2.0) == pytest.approx(0.65)
    assert M.frontier_quality(front, 0.5) is None
    assert M.frontier_quality(front, 10.0) == pytest.approx(0.8)
    assert M.cost_to_reach(front, 0.65) == pytest.approx(2.0)
    assert M.cost_to_reach(front, 0.3) == pytest.approx(1.0)
    assert M.cost_to_reach(front, 0.9) is None


def test_upper_hull_is_reachable_by_mixing() -> None:
    hull = M.upper_hull([(0.0, 0.0), (1.0, 0.2), (2.0, 1.0)])
    np.testing.assert_allclose(hull, [[0.0, 0.0], [2.0, 1.0]])  # (1, 0.2) lies below the mix


def test_cost_quality_metrics_by_hand() -> None:
    singles = {"a": M.SingleModel(0.5, 1.0), "b": M.SingleModel(0.8, 4.0)}
    assert M.best_single(singles) == "b"
    cq = M.cost_quality_metrics(np.array(PTS), singles)
    assert cq.quality_at_best_cost == pytest.approx(0.8)
    assert cq.cost_share_at_best_quality == pytest.approx(3.0 / 4.0)
    assert cq.aiq == pytest.approx((1.3 + 0.8) / 3)


def test_oracle_choice_is_cheapest_correct() -> None:
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    prices = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    assert M.oracle_choice(scores, prices).tolist() == [1, 2, 2]


# ------------------------------------------------------------------------------------------ properties
def _binary_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 40))
    ss = draw(arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 1.0])))
    sw = draw(arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 1.0])))
    p = draw(arrays(np.float64, n, elements=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])))
    return p, ss, sw


binary_cases = st.composite(_binary_case)()


@settings(max_examples=60, deadline=None)
@given(binary_cases)
def test_shuffling_prompts_changes_nothing(case: tuple[np.ndarray, ...]) -> None:
    p, ss, sw = case
    if abs(ss.mean() - sw.mean()) < 1e-9:
        return
    perm = np.random.default_rng(7).permutation(p.size)
    a, b = M.binary_metrics(p, ss, sw), M.binary_metrics(p[perm], ss[perm], sw[perm])
    assert (
        a.apgr == pytest.approx(b.apgr)
        and a.cpt50 == pytest.approx(b.cpt50)
        and a.cpt80 == pytest.approx(b.cpt80)
    )


@settings(max_examples=60, deadline=None)
@given(binary_cases)
def test_binary_curve_lies_between_worst_and_oracle(case: tuple[np.ndarray, ...]) -> None:
    p, ss, sw = case
    q = M.quality_at(p, ss, sw, M.SHARES_101)
    worst, best = np.minimum(ss, sw).mean(), np.maximum(ss, sw).mean()
    assert (q >= worst - 1e-9).all() and (q <= best + 1e-9).all()
    oracle_p = strong_probability(np.c_[ss, sw], 0, 1)
    assert (M.quality_at(oracle_p, ss, sw, M.SHARES_101) >= q - 1e-9).all()  # the oracle is never below


@settings(max_examples=60, deadline=None)
@given(binary_cases)
def test_always_one_model_reproduces_that_model(case: tuple[np.ndarray, ...]) -> None:
    p, ss, sw = case
    q0, q1 = M.quality_at(p, ss, sw, [0.0, 1.0])
    assert q0 == pytest.approx(sw.mean()) and q1 == pytest.approx(ss.mean())


def _nmodel_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, m = draw(st.integers(1, 15)), draw(st.integers(2, 4))
    scores = draw(arrays(np.float64, (n, m), elements=st.sampled_from([0.0, 0.5, 1.0])))
    pred = draw(arrays(np.float64, (n, m), elements=st.floats(0, 1)))
    prices = draw(arrays(np.float64, (n, m), elements=st.floats(1e-4, 1.0)))
    return pred, scores, prices


nmodel_cases = st.composite(_nmodel_case)()


@settings(max_examples=60, deadline=None)
@given(nmodel_cases)
def test_cost_never_rises_as_lambda_grows(case: tuple[np.ndarray, ...]) -> None:
    pred, scores, prices = case
    costs = [M.point(choose_wtp(pred, prices, lam), scores, prices)[0] for lam in lambda_grid(prices, n=30)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(costs))


@settings(max_examples=60, deadline=None)
@given(nmodel_cases)
def test_every_point_between_worst_and_oracle(case: tuple[np.ndarray, ...]) -> None:
    pred, scores, prices = case
    worst, best = scores.min(axis=1).mean(), scores.max(axis=1).mean()
    for lam in lambda_grid(prices, n=10):
        _, q = M.point(choose_wtp(pred, prices, lam), scores, prices)
        assert worst - 1e-12 <= q <= best + 1e-12
    oracle = M.point(M.oracle_choice(scores, prices), scores, prices)
    assert oracle[1] == pytest.approx(best)


@settings(max_examples=40, deadline=None)
@given(nmodel_cases, st.integers(0, 3))
def test_one_model_policy_reproduces_single_model(case: tuple[np.ndarray, ...], j: int) -> None:
    _, scores, prices = case
    j = j % scores.shape[1]
    singles = M.single_models([f"m{k}" for k in range(scores.shape[1])], scores, prices)
    cost, quality = M.point(np.full(scores.shape[0], j), scores, prices)
    assert (cost, quality) == pytest.approx((singles[f"m{j}"].cost, singles[f"m{j}"].quality))


@settings(max_examples=40, deadline=None)
@given(nmodel_cases)
def test_aiq_of_the_frontier_is_bounded(case: tuple[np.ndarray, ...]) -> None:
    pred, scores, prices = case
    pts = np.array(
        [M.point(choose_wtp(pred, prices, lam), scores, prices) for lam in lambda_grid(prices, n=20)]
    )
    singles = M.single_models([f"m{k}" for k in range(scores.shape[1])], scores, prices)
    cq = M.cost_quality_metrics(pts, singles)
    assert 0.0 <= cq.aiq <= scores.max(axis=1).mean() + 1e-9
    front = np.array(cq.pareto)
    assert (np.diff(front[:, 0]) >= 0).all() and (np.diff(front[:, 1]) > 0).all()
