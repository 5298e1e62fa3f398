"""Policies: binary threshold, willingness to pay, tolerance, hard constraints, prices, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.data.records import CandidateModel
from routerforge.errors import UnknownModelError, ValidationError
from routerforge.evaluate.calibration import Target, calibrate_binary, calibrate_wtp, parse_target
from routerforge.policy import (
    DecisionEngine,
    Policy,
    PriceEstimator,
    choose_tolerance,
    choose_wtp,
    constraint_mask,
    estimate_tokens,
    lambda_grid,
    mean_costs,
    parse_router_model,
    query_prices,
    router_model_name,
    strong_probability,
    strong_weak,
    threshold_for_share,
)

MODELS = ["big", "mid", "small"]
PRED = np.array([[0.9, 0.85, 0.2], [0.6, 0.59, 0.58], [0.3, 0.5, 0.4]])
PRICES = np.array([[10.0, 1.0, 0.1]] * 3)


def test_strong_probability_definition() -> None:
    p = strong_probability(np.array([[0.9, 0.1], [0.5, 0.5], [0.0, 1.0], [0.7, 0.6]]), 0, 1)
    np.testing.assert_allclose(p, [0.9, 0.5, 0.0, 0.55])


def test_threshold_policy_through_the_engine() -> None:
    pred = np.array([[0.9, 0.1], [0.55, 0.5], [0.2, 0.8]])  # p = 0.9, 0.525, 0.2
    engine = DecisionEngine(["s", "w"], mean_scores={"s": 0.8, "w": 0.6})
    assert engine.pair() == ("s", "w")
    for knob, want in ((0.5, ["s", "s", "w"]), (0.6, ["s", "w", "w"]), (0.0, ["s"] * 3)):
        idx = engine.choose(pred, None, Policy("threshold", knob, "test"))
        assert [engine.models[i] for i in idx] == want
    swapped = DecisionEngine(["w", "s"], mean_scores={"s": 0.8, "w": 0.6})  # roles, not columns
    idx = swapped.choose(pred[:, ::-1], None, Policy("threshold", 0.5, "test"))
    assert [swapped.models[i] for i in idx] == ["s", "s", "w"]
    with pytest.raises(UnknownModelError):
        engine.choose(pred, None, Policy("threshold", 0.5, "test"), candidates=["x", "w"])


def test_strong_is_the_higher_mean_score_whatever_the_order_or_price() -> None:
    # the case: [cheap-model, pricey-model], predictions [0.8, 0.9], threshold 0.7
    means = {"cheap-model": 0.7, "pricey-model": 0.9}
    assert strong_weak(["cheap-model", "pricey-model"], means) == ("pricey-model", "cheap-model")
    assert strong_weak(["pricey-model", "cheap-model"], means) == ("pricey-model", "cheap-model")
    # a stronger model that is cheaper is still the strong one; ties go to the pricier model
    assert strong_weak(["a", "b"], {"a": 0.9, "b": 0.5}, {"a": 0.001, "b": 1.0}) == ("a", "b")
    assert strong_weak(["a", "b"], {"a": 0.5, "b": 0.5}, {"a": 2.0, "b": 1.0}) == ("a", "b")
    engine = DecisionEngine(["cheap-model", "pricey-model"], mean_scores=means)
    d = engine.decide(np.array([0.8, 0.9]), None, kind="threshold", knob=0.7)
    # p(strong needed) = 0.5 + (0.9 - 0.8) / 2 = 0.55 < 0.7 → the weak (cheap) model
    assert d.model == "cheap-model" and d.details["p_strong"] == pytest.approx(0.55)


def test_threshold_for_share() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert (p >= threshold_for_share(p, 0.4)).sum() == 2
    assert (p >= threshold_for_share(p, 0.0)).sum() == 0
    assert (p >= threshold_for_share(p, 1.0)).sum() == 5


def test_synthetic_model_names() -> None:
    assert parse_router_model("router-knn-0.35") == [("knn", 0.35), ("knn-0.35", None)]
    assert parse_router_model("router-mf-1")[0] == ("mf", 1.0)
    assert parse_router_model("router-mmlu-ensemble") == [("mmlu-ensemble", None)]
    assert parse_router_model("gpt-4") == []
    assert parse_router_model("router-" + "a" * 300) == []  # router names are bounded
    assert parse_router_model(router_model_name("sw", 0.125))[0] == ("sw", 0.125)
    assert router_model_name("knn") == "router-knn"


def test_wtp_extremes_and_ties() -> None:
    assert choose_wtp(PRED, PRICES, 0.0).tolist() == [0, 0, 1]  # best predicted
    assert choose_wtp(PRED, PRICES, np.inf).tolist() == [2, 2, 2]  # cheapest
    assert choose_wtp(PRED, PRICES, 0.01).tolist() == [1, 1, 1]  # 0.9-0.1 < 0.85-0.01
    tied = np.array([[0.5, 0.5, 0.5]])
    assert choose_wtp(tied, PRICES[:1], 0.0).tolist() == [2]  # tie → cheaper


def test_tolerance_policy() -> None:
    assert choose_tolerance(PRED, PRICES, 0.0).tolist() == [0, 0, 1]
    assert choose_tolerance(PRED, PRICES, 0.05).tolist() == [1, 2, 1]
    assert choose_tolerance(PRED, PRICES, 1.0).tolist() == [2, 2, 2]
    with pytest.raises(ValidationError):
        choose_tolerance(PRED, PRICES, -0.1)


def test_hard_constraints() -> None:
    prompts = ["short", "x" * 4000]  # ~2 and 1000 estimated tokens
    mask = constraint_mask(prompts, MODELS, allowed=["big", "small"], context_windows={"small": 500})
    assert mask.tolist() == [[True, False, True], [True, False, False]]
    pred = np.array([[0.1, 0.9, 0.5], [0.1, 0.9, 0.5]])
    assert choose_wtp(pred, PRICES[:2], 0.0, mask).tolist() == [2, 0]
    with pytest.raises(UnknownModelError):
        constraint_mask(prompts, MODELS, allowed=["nope"])
    with pytest.raises(ValidationError, match="No candidate"):
        choose_wtp(pred, PRICES[:2], 0.0, np.zeros((2, 3), dtype=bool))


def test_unknown_prices_are_refused() -> None:
    prices = PRICES.copy()
    prices[0, 1] = np.nan
    with pytest.raises(ValidationError, match="prices are unknown"):
        choose_wtp(PRED, prices, 1.0)
    mask = np.ones((3, 3), dtype=bool)
    mask[0, 1] = False  # an unknown price of a disallowed model does not matter
    assert choose_wtp(PRED, prices, 0.0, mask)[0] == 0


def test_query_prices_rules() -> None:
    prompts = ["a" * 400, "b" * 40]  # 100 and 10 tokens
    assert estimate_tokens(prompts[0]) == 100 and estimate_tokens("") == 1
    records = np.array([[0.5, np.nan, np.nan], [np.nan, np.nan, np.nan]])
    catalog = {"mid": CandidateModel("mid", input_usd_per_mtok=1000.0, output_usd_per_mtok=2000.0)}
    prices = query_prices(prompts, MODELS, records, catalog, output_tokens=100)
    assert prices[0, 0] == 0.5  # the record's own cost
    assert prices[1, 0] == 0.5  # the model's mean recorded cost
    assert prices[0, 1] == pytest.approx((100 * 1000 + 100 * 2000) / 1e6)  # list price × tokens
    assert prices[1, 1] == pytest.approx((10 * 1000 + 100 * 2000) / 1e6)
    assert np.isnan(prices[:, 2]).all()  # nothing known
    fallback = query_prices(prompts, MODELS, None, fallback_mean_usd={"small": 0.01})
    assert (fallback[:, 2] == 0.01).all()
    assert mean_costs(MODELS, records) == {"big": 0.5}


def test_lambda_grid_spans_extremes() -> None:
    grid = lambda_grid(PRICES)
    assert grid[0] == 0.0 and np.isinf(grid[-1]) and (np.diff(grid) > 0).all()


# ------------------------------------------------------------------------------------------ calibration
def test_parse_target() -> None:
    assert parse_target("strong-share=0.3") == Target("strong-share", 0.3)
    assert parse_target("cost_per_1k=2.5") == Target("cost-per-1k", 2.5)
    assert parse_target("quality=95%") == Target("quality", 0.95)
    for bad in ("speed=3", "quality", "quality=abc", "strong-share=2"):
        with pytest.raises(ValidationError):
            parse_target(bad)


def _binary_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 400
    ss, sw = (rng.random(n) < 0.8) * 1.0, (rng.random(n) < 0.5) * 1.0
    p = np.clip(0.5 + (ss - sw) / 2 + rng.normal(0, 0.3, n), 0, 1)
    return p, ss, sw


def test_calibrate_binary_share_and_quality() -> None:
    p, ss, sw = _binary_data()
    res = calibrate_binary(p, ss, sw, Target("strong-share", 0.3))
    assert res.expected["strong_share"] == pytest.approx(0.3, abs=0.01)
    assert (p >= res.knob["threshold"]).mean() == pytest.approx(res.expected["strong_share"])
    chosen = np.where(p >= res.knob["threshold"], ss, sw)
    assert chosen.mean() == pytest.approx(res.expected["quality"])
    res_q = calibrate_binary(p, ss, sw, Target("quality", 0.75))
    assert res_q.reached and res_q.expected["quality"] >= 0.75
    assert calibrate_binary(p, ss, sw, Target("quality", 0.999)).reached is False


def test_calibrate_binary_cost_target() -> None:
    p, ss, sw = _binary_data()
    cs, cw = np.full(p.size, 0.01), np.full(p.size, 0.001)
    res = calibrate_binary(p, ss, sw, Target("cost-per-1k", 4.0), cost_strong=cs, cost_weak=cw)
    assert res.reached and res.expected["cost_per_1k"] <= 4.0 + 1e-9
    share = (p >= res.knob["threshold"]).mean()
    assert 1000 * (share * 0.01 + (1 - share) * 0.001) == pytest.approx(res.expected["cost_per_1k"])
    with pytest.raises(ValidationError, match="costs"):
        calibrate_binary(p, ss, sw, Target("cost-per-1k", 4.0))


def test_calibrate_wtp() -> None:
    rng = np.random.default_rng(1)
    scores = (rng.random((200, 3)) < [0.9, 0.7, 0.4]) * 1.0
    pred = np.clip(scores * 0.6 + 0.2 + rng.normal(0, 0.1, scores.shape), 0, 1)
    prices = np.tile([0.01, 0.002, 0.0001], (200, 1))
    res = calibrate_wtp(pred, prices, scores, prices, Target("cost-per-1k", 3.0))
    assert res.reached and res.expected["cost_per_1k"] <= 3.0
    chosen = choose_wtp(pred, prices, res.knob["lambda"])
    assert 1000 * prices[np.arange(200), chosen].mean() == pytest.approx(res.expected["cost_per_1k"])
    with pytest.raises(ValidationError, match="strong/weak"):
        calibrate_wtp(pred, prices, scores, prices, Target("strong-share", 0.3))


def test_decide_uses_calibration_and_explicit_knobs() -> None:
    models = ["s", "w"]
    pred = np.array([0.8, 0.6])  # p(strong needed) = 0.6
    means = {"s": 0.9, "w": 0.5}
    assert DecisionEngine(models, mean_scores=means).decide(pred, None).model == "s"  # default 0.5
    calib = {"policy": "threshold", "knob": {"threshold": 0.7}, "strong": "s", "weak": "w"}
    engine = DecisionEngine(models, mean_scores=means, calibration=calib)
    d = engine.decide(pred, None)
    assert (d.model, d.policy, d.knob) == ("w", "threshold", 0.7) and "0.600" in d.reason
    assert d.details["knob_source"] == "calibration"
    assert engine.decide(pred, None, kind="threshold", knob=0.55).model == "s"
    old_spelling = DecisionEngine(models, mean_scores=means, calibration=calib | {"policy": "binary"})
    assert old_spelling.decide(pred, None).knob == 0.7
    three = ["a", "b", "c"]
    prices = PriceEstimator(three, mean_cost_usd={"a": 0.01, "b": 0.001, "c": 0.0001})
    e3 = DecisionEngine(three, mean_scores={"a": 0.9, "b": 0.8, "c": 0.1}, prices=prices)
    pred3 = np.array([0.9, 0.85, 0.1])
    row = prices.estimate(["q"])[0]
    assert e3.decide(pred3, row).model == "a"  # λ = 0
    assert e3.decide(pred3, row, kind="wtp", knob=50.0).model == "b"
    calibrated = DecisionEngine(
        three, prices=prices, calibration={"policy": "wtp", "knob": {"lambda": 1e6}, "models": three}
    )
    assert calibrated.decide(pred3, row).model == "c"
    assert calibrated.decide(pred3, row, candidates=["a", "b"]).details["knob_source"] == "default"
    assert e3.decide(pred3, row, kind="tolerance", knob=0.1).model == "b"
    assert e3.decide(pred3, row, allowed=["b", "c"]).model == "b"
    assert e3.decide(pred3, row, kind="threshold").details["strong"] == "a"  # a pair among three
    with pytest.raises(ValidationError, match="needs a price"):
        DecisionEngine(three).decide(pred3, np.full(3, np.nan))
    with pytest.raises(ValidationError, match="No candidate"):
        e3.decide(pred3, row, allowed=["zzz"])


def test_budget_shift_moves_the_knob_toward_cheaper_models() -> None:
    from routerforge.policy import shift_amount, shift_knob

    assert shift_amount(None, 0.2) == 0.0 and shift_amount(0.5, 0.2) == 0.0
    assert shift_amount(0.1, 0.2) == pytest.approx(0.5) and shift_amount(0.0, 0.2) == 1.0
    prices = np.array([0.001, 0.01])
    assert shift_knob("threshold", 0.4, 0.5, prices) == pytest.approx(0.7)
    assert shift_knob("wtp", 0.0, 0.5, prices) == pytest.approx(500.0)
    assert shift_knob("tolerance", 0.0, 1.0, prices) == pytest.approx(1.0)
    engine = DecisionEngine(["s", "w"], mean_scores={"s": 0.9, "w": 0.5})
    d = engine.decide(np.array([0.9, 0.5]), None, budget_fraction_left=0.0)
    assert d.model == "w" and d.details["budget_shift"] == 1.0 and "budget low" in d.reason


def test_price_estimator_uses_costs_then_list_prices_then_means(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(50, 4))
    costs = np.c_[np.exp(dense[:, 0] - 6.0), np.full(50, np.nan), np.full(50, np.nan)]
    catalog = {"b": CandidateModel("b", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)}
    est = PriceEstimator.fit(["a", "b", "c"], dense, costs, catalog)
    assert not est.has_prices()  # c has no price at all
    out = est.estimate(["x" * 400], dense[:1])
    assert np.isfinite(out[0, 0]) and out[0, 1] == pytest.approx((100 * 1.0 + 256 * 2.0) / 1e6)
    assert np.isnan(out[0, 2])
    filled = est.with_list_prices({"c": (0.5, 0.5), "b": (9.0, 9.0)})  # fills c only, never overrides b
    assert filled.has_prices() and filled.estimate(["x" * 400])[0, 1] == out[0, 1]
    est.save(tmp_path)
    again = PriceEstimator.from_dict(est.to_dict(), tmp_path)
    np.testing.assert_allclose(again.estimate(["x" * 400], dense[:1]), out)


def test_cost_model_learns_prompt_dependent_prices(tmp_path: Path) -> None:
    from routerforge.policy.pricing import CostModel

    rng = np.random.default_rng(0)
    dense = rng.normal(size=(200, 8))
    true = np.exp(np.c_[dense[:, 0] - 5.0, 0.5 * dense[:, 1] - 8.0])
    costs = np.c_[true, np.full(200, np.nan)]
    model = CostModel(alpha=1e-3).fit(dense, costs)
    est = model.predict(dense[:5])
    np.testing.assert_allclose(est[:, :2], true[:5], rtol=1e-3)
    assert np.isnan(est[:, 2]).all()  # no recorded cost for the third model
    model.save(tmp_path)
    again = CostModel.load(tmp_path)
    assert again is not None and np.allclose(again.predict(dense[:5])[:, :2], est[:, :2])
    assert CostModel.load(tmp_path / "nothing") is None
    prices = PriceEstimator(["a", "b", "c"], mean_cost_usd={"c": 0.5}, cost_model=model).estimate(
        ["p"] * 5, dense[:5]
    )
    assert np.allclose(prices[:, :2], est[:, :2]) and (prices[:, 2] == 0.5).all()
