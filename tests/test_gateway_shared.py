"""Rate limits and budgets hold across two gateway instances sharing PostgreSQL, or sharing Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.config import load_settings
from routerforge.gateway.app import create_app
from routerforge.gateway.config import parse_gateway_config

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def redis_prefix() -> str:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")
    return "rftest-" + secrets.token_hex(4)


def config(up: FakeUpstream, counters: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": [
            {
                "id": "pricey",
                "base_url": up.base_url,
                "input_usd_per_mtok": 1000.0,
                "output_usd_per_mtok": 1000.0,
            }
        ],
        "tenants": [{"name": "acme", "daily_usd": 0.15}],
        "counters": counters,
    }


def two_gateways(home: Path, store_url: str, raw: dict[str, Any]) -> tuple[Any, Any]:
    settings = load_settings(overrides={"home": home, "data": {"store_url": store_url}})
    a = create_app(settings, parse_gateway_config(raw))
    b = create_app(settings, parse_gateway_config(raw))
    return a, b


def check_shared_limits(a: Any, b: Any) -> None:
    with LoopbackServer(a) as sa, LoopbackServer(b) as sb:
        key, _ = a.state.keys.create("acme", requests_per_minute=3)
        auth = {"authorization": f"Bearer {key}"}
        codes = [httpx.get(s.url + "/v1/models", headers=auth).status_code for s in (sa, sb, sa, sb)]
        assert codes == [200, 200, 200, 429]  # the key's 3/minute is shared by both instances

        spender, _ = b.state.keys.create("acme")
        auth = {"authorization": f"Bearer {spender}"}
        body = {"model": "pricey", "messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 10}
        # each call reserves ~0.12 USD and costs ~0.1 USD of the 0.15 USD budget: the first passes, then
        # both instances refuse (the spend is shared)
        first = httpx.post(sa.url + "/v1/chat/completions", headers=auth, json=body)
        assert first.status_code == 200, first.text
        for s in (sb, sa):
            r = httpx.post(s.url + "/v1/chat/completions", headers=auth, json=body)
            assert r.status_code == 429
            assert r.json()["error"]["type"] == "insufficient_quota"


def test_limits_and_budgets_shared_through_postgresql(
    tmp_path: Path, upstream: FakeUpstream, pg_url: str
) -> None:
    a, b = two_gateways(tmp_path, pg_url, config(upstream, {"backend": "auto"}))
    assert a.state.service.counters.kind == "sql"
    check_shared_limits(a, b)


def test_limits_and_budgets_shared_through_redis(
    tmp_path: Path, upstream: FakeUpstream, redis_prefix: str
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = two_gateways(tmp_path, url, config(upstream, {"backend": "redis", "prefix": redis_prefix}))
    assert a.state.service.counters.kind == "redis"
    check_shared_limits(a, b)
