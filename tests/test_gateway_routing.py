"""Synthetic models: router-<router>-<threshold> and named ones, /v1/route, budget shift, router isolation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.config import Settings, load_settings
from routerforge.gateway.app import create_app
from routerforge.gateway.config import parse_gateway_config
from routerforge.gateway.routing import LoadedRouter
from routerforge.policy import DecisionEngine, PriceEstimator

MODELS = ["small", "large"]


class StubRouter:
    """Stands in for a trained router: 'hard' prompts need the large model."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = directory.name
        self.models = list(MODELS)
        prices = PriceEstimator(MODELS, list_prices={"small": (1.0, 1.0), "large": (30.0, 60.0)})
        self.engine = DecisionEngine(MODELS, mean_scores={"small": 0.6, "large": 0.9}, prices=prices)

    def predict(self, text: str) -> np.ndarray:
        return np.array([0.2, 0.9]) if "hard" in text else np.array([0.8, 0.85])

    def predict_many(self, texts: list[str], metadata: Any = None) -> np.ndarray:
        pred = np.stack([self.predict(t) for t in texts])
        return np.hstack([pred, self.engine.prices.estimate(texts)])

    split = LoadedRouter.split

    def explain(self, text: str, metadata: Any = None) -> dict[str, Any]:
        return {
            "router": "stub",
            "reason": "stub",
            "details": {"neighbours": [{"text": "n1", "similarity": 0.9}]},
        }


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def settings_for(home: Path) -> Settings:
    return load_settings(overrides={"home": home, "embed": {"provider": "hash"}})


def raw_config(up: FakeUpstream, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "models": [
            {"id": "small", "base_url": up.base_url, "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0},
            {"id": "large", "base_url": up.base_url, "input_usd_per_mtok": 30.0, "output_usd_per_mtok": 60.0},
        ],
        "tenants": [{"name": "acme", "daily_usd": 1.0}, {"name": "globex"}],
    }
    raw.update(extra)
    return raw


def router_dir(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    (base / "router.json").write_text(json.dumps({"type": "stub"}))
    return base


def stub_app(settings: Settings, raw: dict[str, Any], dirs: list[Path]) -> Any:
    app = create_app(settings, parse_gateway_config(raw))
    routing = app.state.service.routing
    for d in dirs:
        routing._routers[d.resolve()] = StubRouter(d)
    return app


def test_threshold_synthetic_model_and_route_only(rf_home: Path, upstream: FakeUpstream) -> None:
    settings = settings_for(rf_home)
    d = router_dir(settings.routers_dir / "stub")
    app = stub_app(settings, raw_config(upstream), [d])
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        hard = client.chat.completions.with_raw_response.create(
            model="router-stub-0.6", messages=[{"role": "user", "content": "a hard question"}]
        )
        easy = client.chat.completions.with_raw_response.create(
            model="router-stub-0.6", messages=[{"role": "user", "content": "an easy one"}]
        )
        assert hard.headers["x-routerforge-model"] == "large"
        assert easy.headers["x-routerforge-model"] == "small"
        assert "router-stub" in [m.id for m in client.models.list().data]
        r = httpx.post(
            server.url + "/v1/route",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "router-stub-0.6", "messages": [{"role": "user", "content": "hard"}]},
        ).json()
        unknown = httpx.post(
            server.url + "/v1/route",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "router-nosuch-0.5", "messages": [{"role": "user", "content": "hard"}]},
        )
        assert unknown.status_code == 404
        assert r["model"] == "large" and r["policy"] == "threshold" and r["knob"] == pytest.approx(0.6)
        assert r["predicted"] == {"small": 0.2, "large": 0.9}
        assert "P(strong needed) = 0.850" in r["reason"]
        assert r["neighbours"] == [{"text": "n1", "similarity": 0.9}]
        assert upstream.count() == 2  # route-only made no upstream call
        app.state.service.logs.flush()
        entry = httpx.get(
            server.url + f"/v1/logs/{hard.headers['x-routerforge-request-id']}",
            headers={"authorization": f"Bearer {key}"},
        ).json()
        routed = httpx.get(
            server.url + f"/v1/logs/{r['request_id']}", headers={"authorization": f"Bearer {key}"}
        ).json()
        refused = httpx.get(
            server.url + f"/v1/logs/{unknown.headers['x-routerforge-request-id']}",
            headers={"authorization": f"Bearer {key}"},
        )
    # route-only requests are logged too, with the decision and no upstream attempt
    assert routed["endpoint"] == "route" and routed["status"] == 200
    assert routed["chosen_model"] == "large" and routed["predicted"] == {"small": 0.2, "large": 0.9}
    assert routed["attempts"] == []
    assert refused.status_code == 200 and refused.json()["status"] == 404
    assert entry["synthetic_model"] == "router-stub-0.6"
    assert entry["predicted"] == {"small": 0.2, "large": 0.9}
    assert entry["knob"] == pytest.approx(0.6) and "threshold" in entry["reason"]
    assert entry["routing_ms"] is not None


def test_budget_low_shifts_to_cheaper_model(rf_home: Path, upstream: FakeUpstream) -> None:
    settings = settings_for(rf_home)
    d = router_dir(settings.routers_dir / "stub")
    app = stub_app(settings, raw_config(upstream), [d])
    svc = app.state.service
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        auth = {"authorization": f"Bearer {key}"}
        body = {"model": "router-stub-0.6", "messages": [{"role": "user", "content": "hard"}]}
        assert httpx.post(server.url + "/v1/route", headers=auth, json=body).json()["model"] == "large"
        asyncio.run(svc.budgets.record("acme", 0.95))  # 5 % of the daily budget left (< 20 %)
        r = httpx.post(server.url + "/v1/route", headers=auth, json=body).json()
        assert r["model"] == "small" and r["budget_shift"] > 0.5 and "budget low" in r["reason"]
        asyncio.run(svc.budgets.record("acme", 0.1))  # used up: refused
        r2 = httpx.post(server.url + "/v1/chat/completions", headers=auth, json=body)
        assert r2.status_code == 429 and r2.json()["error"]["type"] == "insufficient_quota"


def test_tenants_use_only_their_own_routers(rf_home: Path, upstream: FakeUpstream) -> None:
    settings = settings_for(rf_home)
    private = router_dir(settings.routers_dir / "tenants" / "globex" / "secret")
    named = router_dir(rf_home / "elsewhere" / "named")
    raw = raw_config(
        upstream,
        synthetic_models=[
            {
                "name": "globex-smart",
                "router": str(named),
                "policy": {"kind": "wtp", "knob": 0.0},
                "tenant": "globex",
            },
            {"name": "frugal", "router": str(named), "policy": {"kind": "tolerance", "knob": 0.1}},
        ],
    )
    app = stub_app(settings, raw, [private, named])
    with LoopbackServer(app) as server:
        ka, _ = app.state.keys.create("acme")
        kg, _ = app.state.keys.create("globex")
        msg = [{"role": "user", "content": "hard"}]
        for model, status in (("router-secret-0.5", 404), ("globex-smart", 403)):
            r = httpx.post(
                server.url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {ka}"},
                json={"model": model, "messages": msg},
            )
            assert r.status_code == status, r.text
            assert "error" in r.json()
        a_models = {
            m["id"]
            for m in httpx.get(server.url + "/v1/models", headers={"authorization": f"Bearer {ka}"}).json()[
                "data"
            ]
        }
        assert "globex-smart" not in a_models and "router-secret" not in a_models and "frugal" in a_models
        client = openai.OpenAI(base_url=server.base_url, api_key=kg, max_retries=0)
        raw_resp = client.chat.completions.with_raw_response.create(model="router-secret-0.5", messages=msg)
        assert raw_resp.headers["x-routerforge-model"] == "large"
        wtp = client.chat.completions.with_raw_response.create(model="globex-smart", messages=msg)
        assert wtp.headers["x-routerforge-model"] == "large"  # λ = 0: best predicted model
        easy = [{"role": "user", "content": "easy"}]
        tol = client.chat.completions.with_raw_response.create(model="frugal", messages=easy)
        assert tol.headers["x-routerforge-model"] == "small"  # 0.8 within 0.1 of 0.85, and cheaper


def test_trained_knn_router_end_to_end(rf_home: Path, upstream: FakeUpstream) -> None:
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.policy import trained as pipeline

    settings = settings_for(rf_home)
    rng = np.random.default_rng(0)
    prompts = [f"math question number {i} about algebra" for i in range(30)] + [
        f"say hello to friend {i}" for i in range(30)
    ]
    scores = np.array([[0.0, 1.0]] * 30 + [[1.0, 1.0]] * 30) + rng.normal(0, 0.01, (60, 2))
    matrix = ScoreMatrix(
        name="tiny",
        keys=[str(i) for i in range(60)],
        prompts=prompts,
        models=list(MODELS),
        scores=np.clip(scores, 0, 1),
        costs=np.full((60, 2), np.nan),
    )
    out = settings.routers_dir / "knn"
    pipeline.train_router("knn", matrix, np.arange(60), settings.embed, out, k=5)
    app = create_app(settings, parse_gateway_config(raw_config(upstream)))
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        hard = client.chat.completions.with_raw_response.create(
            model="router-knn-0.6",
            messages=[{"role": "user", "content": "math question number 3 about algebra"}],
        )
        easy = client.chat.completions.with_raw_response.create(
            model="router-knn-0.6", messages=[{"role": "user", "content": "say hello to friend 3"}]
        )
        assert hard.headers["x-routerforge-model"] == "large"
        assert easy.headers["x-routerforge-model"] == "small"
        r = httpx.post(
            server.url + "/v1/route",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "router-knn-0.6", "prompt": "math question number 7 about algebra"},
        ).json()
        assert r["model"] == "large" and r["neighbours"]


def test_concurrent_predictions_are_batched() -> None:
    from routerforge.gateway.batching import PredictBatcher

    calls: list[int] = []

    def predict_many(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        if "boom" in texts:
            raise ValueError("boom")
        return np.array([[len(t), 0.0] for t in texts])

    batcher = PredictBatcher(predict_many, max_batch=8)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.predict("x" * i) for i in range(20)))

    rows = asyncio.run(run())
    assert [r[0] for r in rows] == list(range(20))
    assert sum(calls) == 20 and len(calls) < 20 and max(calls) <= 8
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(batcher.predict("boom"))
    batcher.close()


def test_synthetic_model_rules_and_bad_rules(rf_home: Path, upstream: FakeUpstream) -> None:
    from routerforge.errors import ConfigError

    settings = settings_for(rf_home)
    named = router_dir(rf_home / "elsewhere" / "ruled")
    rules = [
        {"name": "greeting", "when": {"keywords": ["hello"]}, "then": {"model": "small"}},
        {"name": "code", "when": {"code": True}, "then": {"model": "large"}},
    ]
    raw = raw_config(upstream, synthetic_models=[{"name": "ruled", "router": str(named), "rules": rules}])
    app = stub_app(settings, raw, [named])
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        auth = {"authorization": f"Bearer {key}"}
        r = httpx.post(
            server.url + "/v1/route", headers=auth, json={"model": "ruled", "prompt": "hello, a hard one"}
        )
        assert r.json()["model"] == "small" and "greeting" in r.json()["reason"], r.json()
        r = httpx.post(
            server.url + "/v1/route", headers=auth, json={"model": "ruled", "prompt": "a hard one"}
        )
        assert r.json()["model"] == "large" and r.json()["details"].get("rules") is None
    bad = raw_config(
        upstream,
        synthetic_models=[
            {
                "name": "x",
                "router": str(named),
                "models": ["small"],
                "rules": [{"name": "r", "when": {"code": True}, "then": {"model": "large"}}],
            }
        ],
    )
    with pytest.raises(ConfigError, match="unknown model"):
        parse_gateway_config(bad)


def test_per_request_routing_parameters_and_decision_log(rf_home: Path, upstream: FakeUpstream) -> None:
    settings = settings_for(rf_home)
    d = router_dir(settings.routers_dir / "stub")
    app = stub_app(settings, raw_config(upstream), [d])
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("globex")
        auth = {"authorization": f"Bearer {key}"}
        hard = [{"role": "user", "content": "a hard question"}]

        def route(**routing: Any) -> httpx.Response:
            body = {"model": "router-stub", "messages": hard, "routing": routing}
            return httpx.post(server.url + "/v1/route", headers=auth, json=body)

        assert route().json()["model"] == "large"
        only_small = route(models=["small"]).json()
        assert only_small["model"] == "small" and only_small["details"]["candidates"] == ["small"]
        cheap = route(max_cost_usd=0.001).json()
        assert cheap["model"] == "small" and "large" in cheap["details"]["excluded"]
        wtp = route(willingness_to_pay=1e6).json()
        assert (
            wtp["model"] == "small" and wtp["policy"] == "wtp" and wtp["details"]["knob_source"] == "request"
        )
        for bad in ({"models": ["gpt-9"]}, {"max_cost_usd": -1}, {"nope": 1}, {"max_cost_usd": 1e-12}):
            r = route(**bad)
            assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
        chat = httpx.post(
            server.url + "/v1/chat/completions",
            headers=auth,
            json={"model": "router-stub", "messages": hard, "routing": {"models": ["small"]}},
        )
        assert chat.status_code == 200 and chat.headers["x-routerforge-model"] == "small"
        assert "routing" not in upstream.calls[-1].body  # never sent upstream
        entry = httpx.get(
            server.url + f"/v1/logs/{chat.headers['x-routerforge-request-id']}", headers=auth
        ).json()
    assert entry["policy"] == "threshold" and entry["decision"]["candidates"] == ["small"]
    assert entry["decision"]["request_routing"] == {"models": ["small"]}
    assert entry["decision"]["prices_usd"]["small"] > 0


def test_gateway_latency_updates_the_mean_latency_the_policies_use(
    rf_home: Path, upstream: FakeUpstream
) -> None:
    from routerforge.gateway.routing import LATENCY_EWMA

    settings = settings_for(rf_home)
    d = router_dir(settings.routers_dir / "stub")
    app = stub_app(settings, raw_config(upstream), [d])
    stub = app.state.service.routing._routers[d.resolve()]
    stub.engine.latency_ms = {"large": 100.0}
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("globex")
        auth = {"authorization": f"Bearer {key}"}
        body = {"model": "router-stub", "messages": [{"role": "user", "content": "a hard one"}]}
        assert httpx.post(server.url + "/v1/chat/completions", headers=auth, json=body).status_code == 200
    large = stub.engine.latency_ms["large"]
    assert large != 100.0 and abs(large - 100.0) <= LATENCY_EWMA * 60_000  # moved toward the observed call
    assert "small" not in stub.engine.latency_ms  # only models that answered
    app.state.service.routing.observe_latency("small", 250.0)
    assert stub.engine.latency_ms["small"] == 250.0  # the first observation starts the mean
