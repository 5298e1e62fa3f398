"""Load balancing across deployments of one model (backends/balance.py) through a real gateway on loopback:
several fake upstreams, the official ``openai`` client; weights, cooldowns, least-busy, latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fake_upstream import FakeUpstream, Fault
from gateway_server import LoopbackServer
from routerforge.backends.balance import BalancedBackend
from routerforge.config import load_settings
from routerforge.errors import ConfigError
from routerforge.gateway.app import create_app
from routerforge.gateway.config import parse_gateway_config


@pytest.fixture
def ups() -> Iterator[list[FakeUpstream]]:
    servers = [FakeUpstream(record=False).start() for _ in range(3)]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


def gateway(home: Path, deployments: list[dict[str, Any]], balance: dict[str, Any], **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "models": [
            {
                "id": "small",
                "deployments": deployments,
                "balance": balance,
                "input_usd_per_mtok": 1.0,
                "output_usd_per_mtok": 1.0,
                "max_retries": 0,
                **extra,
            }
        ],
        "require_auth": False,
        "limits": {"requests_per_minute": 1_000_000},
        "metrics": {"access": "open"},
    }
    if "fallbacks" in extra:
        raw["models"].append({"id": "large", "base_url": deployments[0]["base_url"], "max_retries": 0})
    settings = load_settings(overrides={"home": home, "embed": {"provider": "hash"}})
    return create_app(settings, parse_gateway_config(raw))


def balanced(app: Any) -> BalancedBackend:
    backend = app.state.service.pool.backend("small")
    assert isinstance(backend, BalancedBackend)
    return backend


def ask(client: openai.OpenAI, n: int, stream: bool = False) -> list[str]:
    out = []
    for i in range(n):
        if stream:
            parts = client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": f"q{i}"}], stream=True
            )
            out.append("".join(c.choices[0].delta.content or "" for c in parts if c.choices))
        else:
            r = client.chat.completions.create(model="small", messages=[{"role": "user", "content": f"q{i}"}])
            out.append(r.model)
    return out


def test_weights_are_respected(rf_home: Path, ups: list[FakeUpstream]) -> None:
    a, b, _ = ups
    app = gateway(rf_home, [{"base_url": a.base_url, "weight": 3}, {"base_url": b.base_url, "weight": 1}], {})
    n = 300
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert set(ask(client, n)) == {"small"}
    # Binomial(300, 0.75): mean 225, sd 7.5; ±4 sd
    assert a.count() + b.count() == n
    assert abs(a.count() - 225) <= 30, (a.count(), b.count())


def test_failing_deployment_cools_down_and_comes_back(rf_home: Path, ups: list[FakeUpstream]) -> None:
    a, b, _ = ups
    b.inject(Fault("status", status=503, times=None))
    app = gateway(
        rf_home,
        [{"base_url": a.base_url, "name": "a"}, {"base_url": b.base_url, "name": "b"}],
        {"strategy": "weighted", "cooldown_s": 3.0, "allowed_fails": 1},
    )
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert ask(client, 20) == ["small"] * 20  # every answer arrives: the failure fails over at once
        assert b.count() == 1  # then b cools down and gets no traffic
        assert a.count() == 20
        stats = {s["name"]: s for s in balanced(app).stats()}
        assert stats["b"]["cooldowns"] == 1 and stats["b"]["cooldown_left_s"] > 0
        assert app.state.service.pool.breaker_states()["small"] == "closed"
        scrape = httpx.get(server.url + "/metrics").text
        assert 'routerforge_deployment_cooldowns_total{deployment="b",model="small"} 1.0' in scrape
        assert 'routerforge_deployment_cooling{deployment="b",model="small"} 1.0' in scrape
        assert (
            'routerforge_deployment_requests_total{deployment="a",model="small",outcome="ok"} 20.0' in scrape
        )
        assert (
            'routerforge_deployment_requests_total{deployment="b",model="small",outcome="error"} 1.0'
            in scrape
        )
        b.clear_faults()
        time.sleep(max(0.0, stats["b"]["cooldown_left_s"]) + 0.2)  # cooldown over: b takes traffic again
        assert ask(client, 40, stream=True)[0].startswith("small says")
        assert b.count() > 5, b.count()


def test_all_deployments_cooling_falls_back_to_another_model(rf_home: Path, ups: list[FakeUpstream]) -> None:
    a, b, _ = ups
    for up in (a, b):
        up.inject(Fault("status", status=500, model="small", times=None))
    app = gateway(
        rf_home,
        [{"base_url": a.base_url}, {"base_url": b.base_url}],
        {"cooldown_s": 60},
        fallbacks=["large"],
    )
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert ask(client, 3) == ["large"] * 3
    assert a.count("small") == 1 and b.count("small") == 1  # each tried once, then cooling


def test_least_busy_avoids_the_slow_deployment(rf_home: Path, ups: list[FakeUpstream]) -> None:
    slow, fast, _ = ups
    slow.inject(Fault("slow", delay_s=0.25, times=None))

    async def burst(url: str, n: int) -> None:
        client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with sem:
                await client.chat.completions.create(
                    model="small", messages=[{"role": "user", "content": f"q{i}"}]
                )

        await asyncio.gather(*(one(i) for i in range(n)))
        await client.close()

    shares = {}
    for strategy in ("least-busy", "weighted"):
        slow.reset()
        slow.inject(Fault("slow", delay_s=0.25, times=None))
        fast.reset()
        home = rf_home / strategy
        home.mkdir()
        app = gateway(
            home, [{"base_url": slow.base_url}, {"base_url": fast.base_url}], {"strategy": strategy}
        )
        with LoopbackServer(app) as server:
            asyncio.run(burst(server.base_url, 60))
        assert slow.count() + fast.count() == 60
        shares[strategy] = slow.count() / 60
    assert shares["least-busy"] < 0.25, shares  # few requests wait on the slow one
    assert shares["weighted"] > 0.3, shares  # the control: an even split sends it about half


def test_latency_strategy_prefers_the_faster(rf_home: Path, ups: list[FakeUpstream]) -> None:
    slow, fast, _ = ups
    slow.inject(Fault("slow", delay_s=0.08, times=None))
    app = gateway(
        rf_home,
        [{"base_url": slow.base_url, "name": "slow"}, {"base_url": fast.base_url, "name": "fast"}],
        {"strategy": "latency"},
    )
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        ask(client, 30)
        stats = {s["name"]: s for s in balanced(app).stats()}
    assert slow.count() <= 4 and fast.count() >= 26, (slow.count(), fast.count())  # ≤ 4: load spikes
    assert stats["slow"]["latency_ms"] > stats["fast"]["latency_ms"]


def test_each_deployment_uses_its_own_key(
    rf_home: Path, monkeypatch: pytest.MonkeyPatch, ups: list[FakeUpstream]
) -> None:
    a = FakeUpstream(api_key="key-a", record=False).start()
    b = FakeUpstream(api_key="key-b", record=False).start()
    try:
        monkeypatch.setenv("RF_TEST_KEY_A", "key-a")
        monkeypatch.setenv("RF_TEST_KEY_B", "key-b")
        app = gateway(
            rf_home,
            [
                {"base_url": a.base_url, "api_key_env": "RF_TEST_KEY_A"},
                {"base_url": b.base_url, "api_key_env": "RF_TEST_KEY_B"},
            ],
            {"strategy": "least-busy"},
        )
        with LoopbackServer(app) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
            assert ask(client, 20) == ["small"] * 20
        assert a.count() > 0 and b.count() > 0  # both authenticated (a wrong key answers 401)
        assert all(s["failed"] == 0 for s in balanced(app).stats())
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"base_url": "http://127.0.0.1:1/v1", "deployments": [{"base_url": "http://x/v1"}]}, "not both"),
        ({"deployments": [{"base_url": "http://x/v1", "weight": 0}]}, "weight"),
        ({"deployments": [{"base_url": "http://x/v1"}], "balance": {"strategy": "fastest"}}, "strategy"),
        ({"deployments": [{"base_url": "http://x/v1", "api_key": "sk-inline"}]}, "api_key"),
    ],
)
def test_bad_deployment_config_is_refused(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_gateway_config({"models": [{"id": "small", **model}]})
