"""What is measured is what is served: `route`, `/v1/route`, the SDK and `bench` make the same decisions.

The data is built so that every rule the three old code paths used for "strong" disagrees: the stronger
model (higher mean score) is listed second and is the cheaper one. The only rule is the decision engine's:
strong = higher mean training score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway_server import LoopbackServer
from routerforge.cli.main import main
from routerforge.data.records import EvalRecord

WEAK, STRONG = "a-pricey", "b-strong"  # sorted order: the weak, expensive model comes first
TOPICS = ["algebra", "history", "poetry", "chemistry"]


def _records(n: int = 120) -> list[EvalRecord]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        topic = TOPICS[i % 4]
        text = f"{topic} question {i}: explain {topic} item {i * 7 % 13}"
        p = {STRONG: 0.9, WEAK: 0.2 if topic in ("algebra", "chemistry") else 0.8}
        cost = {STRONG: 0.001, WEAK: 0.01}
        for m in (WEAK, STRONG):
            out.append(
                EvalRecord(
                    prompt_key=f"q{i}",
                    prompt=text,
                    model=m,
                    score=float(rng.random() < p[m]),
                    cost_usd=cost[m],
                    split="test" if i % 4 == 1 or i % 6 == 0 else "train",
                    category=topic,
                )
            )
    return out


def _cli_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> Any:
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture
def trained(rf_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("agree", _records())
    store.close()
    out = load_settings().routers_dir / "agree"
    info = _cli_json(capsys, ["train", "knn", "--data", "agree", "--out", str(out), "-p", "k=7", "--json"])
    assert (info["strong"], info["weak"]) == (STRONG, WEAK)
    return out


def test_route_gateway_sdk_and_bench_agree(
    trained: Path, rf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from routerforge.config import load_settings
    from routerforge.data.store import Store
    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import EmbedderEncoder, RouterSpec, run_bench
    from routerforge.evaluate.setup import build_setup
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config
    from routerforge.policy import Policy
    from routerforge.policy.trained import TrainedRouter

    calib = _cli_json(
        capsys,
        ["calibrate", str(trained), "--data", "agree", "--target", "strong-share=0.5", "--json"],
    )
    knob = calib["knob"]["threshold"]
    assert calib["policy"] == "threshold" and 0 < knob < 1

    settings = load_settings()
    store = Store.from_settings(settings)
    matrix = store.load_matrix("agree")
    store.close()
    setup = build_setup(lambda _name: matrix, "agree", split="test")
    keep: dict[str, Any] = {}
    embedder = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    doc = run_bench(setup, [RouterSpec("knn", {"k": 7})], EmbedderEncoder(embedder), keep=keep)
    assert doc["strong"] == STRONG and doc["weak"] == WEAK
    prompts = [matrix.prompts[i] for i in keep["rows"]]
    assert len(prompts) >= 20
    router = TrainedRouter.load(trained, settings)
    cols = [keep["models"].index(m) for m in router.models]  # bench orders columns [strong, weak]
    bench_pred = keep["predicted"]["knn"][:, cols]
    np.testing.assert_allclose(bench_pred, router.predict(prompts), atol=1e-9)
    bench_choice = [
        router.models[j] for j in router.engine.choose(bench_pred, None, Policy("threshold", knob, "bench"))
    ]
    assert len(set(bench_choice)) == 2  # a test where every prompt goes one way would prove nothing

    raw = {
        "models": [
            {"id": WEAK, "base_url": "http://127.0.0.1:9/v1", "input_usd_per_mtok": 10.0},
            {"id": STRONG, "base_url": "http://127.0.0.1:9/v1", "input_usd_per_mtok": 1.0},
        ],
        "require_auth": False,
    }
    app = create_app(settings, parse_gateway_config(raw))
    with LoopbackServer(app) as server:
        for text, expected in zip(prompts, bench_choice, strict=True):
            cli = _cli_json(capsys, ["route", str(trained), text, "--json"])
            served = httpx.post(
                server.url + "/v1/route", json={"model": f"router-{trained.name}", "prompt": text}
            ).json()
            named = httpx.post(
                server.url + "/v1/route", json={"model": f"router-{trained.name}-0.5", "prompt": text}
            ).json()
            cli_half = _cli_json(capsys, ["route", str(trained), text, "--threshold", "0.5", "--json"])
            assert cli["model"] == served["model"] == expected, text
            assert cli["knob"] == pytest.approx(knob) and served["knob"] == pytest.approx(knob)
            assert served["details"]["knob_source"] == "calibration"
            assert cli["details"]["p_strong"] == pytest.approx(served["details"]["p_strong"])
            assert cli["details"]["strong"] == served["details"]["strong"] == STRONG
            assert cli_half["model"] == named["model"]


def test_issue_example_cheap_first_pricey_second(tmp_path: Path) -> None:
    """[cheap-model, pricey-model], predictions [0.8, 0.9], threshold 0.7: one answer everywhere."""
    from routerforge.policy import DecisionEngine, PriceEstimator

    models = ["cheap-model", "pricey-model"]
    prices = PriceEstimator(models, list_prices={"cheap-model": (0.1, 0.1), "pricey-model": (10.0, 30.0)})
    for means in ({"cheap-model": 0.6, "pricey-model": 0.8}, {"cheap-model": 0.8, "pricey-model": 0.6}):
        engine = DecisionEngine(models, mean_scores=means, prices=prices)
        strong = max(means, key=lambda m: means[m])
        d = engine.decide(np.array([0.8, 0.9]), prices.estimate(["q"])[0], kind="threshold", knob=0.7)
        assert d.details["strong"] == strong
        p = 0.5 + ((0.9 - 0.8) if strong == "pricey-model" else (0.8 - 0.9)) / 2
        assert d.details["p_strong"] == pytest.approx(p)
        assert d.model == (strong if p >= 0.7 else next(m for m in models if m != strong))
