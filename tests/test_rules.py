"""The rule mapper, per-request constraints and latency in the decision engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import ConfigError, ValidationError
from routerforge.policy import DecisionEngine, Policy, PriceEstimator
from routerforge.policy.rules import RuleSet

MODELS = ["small", "mid", "large"]
RULES = [
    {"name": "code", "when": {"code": True}, "then": {"model": "large"}},
    {
        "name": "greeting",
        "when": {"keywords": ["hello", "thanks"], "max_chars": 80},
        "then": {"model": "small"},
    },
    {"name": "no-large-for-short", "when": {"max_chars": 30}, "then": {"exclude": ["large"]}},
    {"name": "math-frugal", "when": {"math": True}, "then": {"policy": "tolerance", "knob": 0.5}},
]


def is_long(text: str) -> bool:  # a custom rule function, imported by dotted path
    return len(text.split()) > 5


def _engine() -> tuple[DecisionEngine, np.ndarray]:
    prices = PriceEstimator(
        MODELS, list_prices={"small": (0.1, 0.1), "mid": (1.0, 1.0), "large": (10.0, 30.0)}
    )
    engine = DecisionEngine(
        MODELS,
        mean_scores={"small": 0.5, "mid": 0.7, "large": 0.9},
        prices=prices,
        latency_ms={"small": 200.0, "mid": 900.0, "large": 4000.0},
    )
    return engine, prices.estimate(["q"])[0]


def test_rule_conditions_and_order() -> None:
    rules = RuleSet.parse(RULES)
    assert rules.apply("```python\ndef f(): pass\n```", MODELS).model == "large"
    assert rules.apply("hello there, thanks!", MODELS).model == "small"
    out = rules.apply("what is 12 * 7?", MODELS)
    assert out.fired == ["no-large-for-short", "math-frugal"] and out.model is None
    assert out.candidates == ["small", "mid"] and (out.policy, out.knob) == ("tolerance", 0.5)
    assert rules.apply("Tell me a story about a dragon who likes gardens a lot.", MODELS).fired == []
    assert rules.apply("Shellotheria", MODELS).model is None  # keywords match whole words only
    custom = RuleSet.parse(
        [{"name": "long", "when": {"custom": "test_rules:is_long"}, "then": {"model": "mid"}}]
    )
    assert custom.apply("one two three four five six", MODELS).model == "mid"
    assert custom.apply("short", MODELS).model is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"name": "x", "when": {}, "then": {"model": "a"}}], "at least one condition"),
        ([{"name": "x", "when": {"code": True}, "then": {}}], "needs an action"),
        ([{"name": "x", "when": {"regex": "("}, "then": {"model": "a"}}], "invalid regex"),
        ([{"name": "x", "when": {"code": True}, "then": {"knob": 0.2}}], "needs 'policy'"),
        ([{"name": "x", "when": {"custom": "os.system"}, "then": {"model": "a"}}], "package.module:function"),
        ([{"name": "x", "when": {"code": True}, "then": {"model": "a"}, "extra": 1}], "extra"),
        ("not a list", "must be a list"),
    ],
)
def test_bad_rules_give_clear_errors(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RuleSet.parse(raw)


def test_rules_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RuleSet.from_file(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules: [{name: a, when: {code: true}, then: {model: a}}, {name: a, when: {math: true}, then: {model: b}}]"
    )
    with pytest.raises(ConfigError, match="Duplicate rule names: a"):
        RuleSet.from_file(bad)
    rules = RuleSet.parse(RULES)
    with pytest.raises(ConfigError, match="unknown model"):
        rules.check_models(["small", "mid"])
    with pytest.raises(ConfigError, match="cannot be imported"):
        RuleSet.parse([{"name": "c", "when": {"custom": "no_such_module:f"}, "then": {"model": "a"}}])


def test_engine_applies_rules_constraints_and_latency() -> None:
    engine, prices = _engine()
    rules = RuleSet.parse(RULES)
    pred = np.array([0.3, 0.6, 0.95])
    d = engine.decide(pred, prices, text="def f(x): return x", rules=rules)
    assert d.model == "large" and d.policy == "rule" and "code" in d.reason and d.to_dict()["knob"] is None
    d = engine.decide(pred, prices, text="what is 3 + 4?", rules=rules)
    assert d.model in ("small", "mid") and d.policy == "tolerance" and d.details["rules"][-1] == "math-frugal"
    d = engine.decide(pred, prices, kind="wtp", knob=0.0)  # λ = 0: best predicted
    assert d.model == "large"
    d = engine.decide(pred, prices, kind="wtp", knob=0.0, max_cost_usd=float(prices[1]))
    assert d.model == "mid" and "large" in d.details["excluded"]
    d = engine.decide(pred, prices, kind="wtp", knob=0.0, max_latency_ms=1000)
    assert d.model == "mid" and "mean latency" in d.details["excluded"]["large"]
    d = engine.decide(pred, prices, kind="wtp", knob=0.0, latency_weight=0.2)  # 4 s costs 0.8 points
    assert d.model == "mid"
    with pytest.raises(ValidationError, match="constraints"):
        engine.decide(pred, prices, max_cost_usd=1e-12)


def test_choose_ruled_groups_rows() -> None:
    engine, prices = _engine()
    rules = RuleSet.parse(RULES)
    texts = ["def f(): pass", "hello friend", "a long question about history and art in europe", "2 + 2 = ?"]
    pred = np.tile([0.3, 0.6, 0.95], (4, 1))
    price = np.tile(prices, (4, 1))
    outcomes = [rules.apply(t, MODELS) for t in texts]
    idx = engine.choose_ruled(pred, price, Policy("wtp", 0.0, "sweep"), outcomes)
    assert [MODELS[i] for i in idx] == ["large", "small", "large", "small"]
    expected = [
        engine.decide(p, c, kind="wtp", knob=0.0, text=t, rules=rules).model
        for p, c, t in zip(pred, price, texts, strict=True)
    ]
    assert [MODELS[i] for i in idx] == expected  # the vectorised path agrees with one-by-one decisions


def test_bench_applies_rules_to_held_out_prompts(
    rf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from routerforge.cli.main import main
    from routerforge.config import load_settings
    from routerforge.data.store import Store
    from test_cli_routing import FAST, _records

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("toy", _records())
    store.import_records("pair", [r for r in _records(seed=1) if r.model in ("strong", "weak")])
    store.close()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {name: algebra-strong, when: {keywords: [algebra]}, then: {model: strong}}\n"
    )
    base = ["-r", "mlp", *FAST, "--folds", "3", "--latency-sample", "2", "--bootstrap", "0"]
    docs = {}
    for data in ("pair", "toy"):
        for label, extra in (("plain", []), ("ruled", ["--rules", str(rules)])):
            out = tmp_path / f"{data}-{label}.json"
            assert main(["bench", "--data", data, *base, *extra, "--json", str(out)]) == 0, (
                capsys.readouterr().err
            )
            docs[data, label] = json.loads(out.read_text())
    ruled = docs["toy", "ruled"]
    assert (
        ruled["rules"]["fired"] == {"algebra-strong": ruled["rules"]["prompts_with_a_rule"]}
        and ruled["rules"]["prompts_with_a_rule"] > 0
    )
    # algebra is where the weak models fail: forcing it to the strong model cannot lower quality at any cost
    plain_cheapest = docs["toy", "plain"]["routers"]["mlp"]["pareto"][0]
    ruled_cheapest = ruled["routers"]["mlp"]["pareto"][0]
    assert (
        ruled_cheapest[0] > plain_cheapest[0]
    )  # the cheapest point now pays for the strong model on algebra
    assert docs["pair", "ruled"]["routers"]["mlp"]["apgr"] != docs["pair", "plain"]["routers"]["mlp"]["apgr"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, when: {code: true}, then: {model: gpt-9}}\n")
    assert main(["bench", "--data", "toy", *base, "--rules", str(bad)]) == 2
    assert "unknown model" in capsys.readouterr().err
