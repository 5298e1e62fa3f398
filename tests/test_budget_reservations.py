"""Budget reservations: atomic on every ledger (memory, SQLite, PostgreSQL, Redis), all-or-nothing across
windows, leases that expire, the key/tenant/organisation hierarchy and tokens per minute, and bursts through
two gateway instances sharing PostgreSQL or Redis (the multi-host version: tests/test_replicas_netns.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_upstream import FakeUpstream, Fault
from gateway_server import LoopbackServer
from routerforge.backends.spec import ModelSpec
from routerforge.config import load_settings
from routerforge.errors import BudgetExceededError, ConfigError, RateLimitError
from routerforge.gateway.app import create_app
from routerforge.gateway.auth import Principal
from routerforge.gateway.budgets import Budgets, Estimate, estimate_request
from routerforge.gateway.config import parse_gateway_config
from routerforge.gateway.db import GatewayDB
from routerforge.gateway.ledger import MemoryLedger, RedisLedger, SqlLedger, Window, build_ledger

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> str:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")
    return "rftest-" + secrets.token_hex(4)


def _window(key: str, limit: float, amount: float, unit: str = "usd") -> Window:
    return Window(key, limit, amount, 3600.0, f"test {key}", unit)


# -- the ledgers ---------------------------------------------------------------------------------------
def _two_ledgers(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[Any]:
    """Two ledgers on one store, as two replicas would hold them (separate engines / clients)."""
    if kind == "memory":
        one = MemoryLedger()
        return [one, one]
    if kind == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        return [RedisLedger(REDIS_URL, prefix), RedisLedger(REDIS_URL, prefix)]
    url = request.getfixturevalue("pg_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 'l.db'}"
    return [SqlLedger(GatewayDB(url)), SqlLedger(GatewayDB(url))]


LEDGERS = ["memory", "sqlite", "postgresql", "redis"]


async def _burst(ledgers: list[Any], windows: list[Window], n: int) -> list[str]:
    """``n`` concurrent reservations alternating over ``ledgers``; the lease ids that were granted."""

    async def one(i: int) -> str | None:
        granted = await ledgers[i % len(ledgers)].reserve(f"lease{i}", windows, 60.0) is None
        return f"lease{i}" if granted else None

    return [lid for lid in await asyncio.gather(*(one(i) for i in range(n))) if lid]


@pytest.mark.parametrize("kind", LEDGERS)
def test_concurrent_reservations_never_exceed_the_limit(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ledgers = _two_ledgers(kind, tmp_path, request)

    async def run() -> None:
        windows = [_window("day", 2.5, 1.0)]
        granted = await _burst(ledgers, windows, 20)
        assert len(granted) == 2  # 2 × 1.0 ≤ 2.5 < 3 × 1.0
        spent, reserved = (await ledgers[0].usage(["day"]))[0]
        assert spent == 0.0 and reserved == pytest.approx(2.0)
        await ledgers[1].settle(granted[0], windows, [0.7])  # the actual cost, lower than reserved
        assert (await ledgers[0].usage(["day"]))[0] == pytest.approx((0.7, 1.0))
        await ledgers[1].settle(granted[0], windows, [0.0])  # settling twice frees nothing twice
        assert (await ledgers[0].usage(["day"]))[0] == pytest.approx((0.7, 1.0))
        fits = [_window("day", 2.5, 0.8)]
        assert await ledgers[0].reserve("again", fits, 60.0) is None  # 0.7 + 1.0 + 0.8 ≤ 2.5
        refusal = await ledgers[1].reserve("over", windows, 60.0)
        assert refusal is not None and refusal.spent == pytest.approx(0.7)
        assert refusal.reserved == pytest.approx(1.8)
        for ledger in {id(x): x for x in ledgers}.values():
            await ledger.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("kind", LEDGERS)
def test_reservation_is_all_or_nothing_and_leases_expire(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ledgers = _two_ledgers(kind, tmp_path, request)

    async def run() -> None:
        roomy, tight = _window("org", 10.0, 2.0), _window("key", 1.0, 2.0)
        refusal = await ledgers[0].reserve("a", [roomy, tight], 60.0)
        assert refusal is not None and refusal.window.key == "key"
        assert await ledgers[1].usage(["org", "key"]) == [(0.0, 0.0), (0.0, 0.0)]  # nothing held
        # a replica reserves and dies: its lease expires and the budget comes back
        assert await ledgers[0].reserve("dead", [roomy], 0.3) is None
        assert (await ledgers[1].usage(["org"]))[0][1] == pytest.approx(2.0)
        time.sleep(1.1)  # the SQL and Redis clocks count in ms / µs; SQLite datetimes in µs
        big = _window("org", 10.0, 9.0)
        assert await ledgers[1].reserve("alive", [big], 60.0) is None  # only possible once 'dead' expired
        assert (await ledgers[0].usage(["org"]))[0][1] == pytest.approx(9.0)
        await ledgers[0].settle("dead", [roomy], [1.5])  # a late settlement still counts its spend
        assert (await ledgers[0].usage(["org"]))[0] == pytest.approx((1.5, 9.0))
        for ledger in {id(x): x for x in ledgers}.values():
            await ledger.aclose()

    asyncio.run(run())


def test_sql_reservations_from_threads_and_engines(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The synchronous SQL path under real thread concurrency, two engines (two replicas) on PostgreSQL."""
    a, b = _two_ledgers("postgresql", tmp_path, request)
    windows = [_window("t", 5.0, 0.5), _window("o", 3.2, 0.5)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda i: (a if i % 2 else b).reserve_sync(f"l{i}", windows, 60.0) is None, range(40))
        )
    assert sum(results) == 6  # the organisation's 3.2 holds 6 × 0.5
    assert a.usage_sync(["t", "o"]) == [pytest.approx((0.0, 3.0)), pytest.approx((0.0, 3.0))]


# -- the estimate and the hierarchy ------------------------------------------------------------------------
def test_estimate_takes_the_dearest_model_of_the_chain() -> None:
    cheap = ModelSpec(id="cheap", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)
    dear = ModelSpec(id="dear", input_usd_per_mtok=10.0, output_usd_per_mtok=30.0, max_output_tokens=100)
    est = estimate_request([cheap, dear], 4000, None, default_output_tokens=256)
    # 1000 prompt tokens; output: 256 for cheap, min(256, 100) for dear
    assert est.tokens_in == 1000 and est.tokens_out == 256
    assert est.usd == pytest.approx(max(1000 * 1 + 256 * 2, 1000 * 10 + 100 * 30) / 1e6)
    est = estimate_request([cheap, dear], 4000, 50, default_output_tokens=256, n=2, cascade=True)
    assert est.usd == pytest.approx((1000 * 1 + 100 * 2 + 1000 * 10 + 100 * 30) / 1e6)
    unpriced = estimate_request([ModelSpec(id="free")], 40, 10, default_output_tokens=256)
    assert unpriced.usd == 0.0 and unpriced.tokens == 20


def _config(**extra: Any) -> Any:
    raw: dict[str, Any] = {
        "tenants": [
            {"name": "acme", "daily_usd": 5.0, "organisation": "corp", "tokens_per_minute": 1000},
            {"name": "globex", "monthly_usd": 100.0},
        ],
        "organisations": [{"name": "corp", "daily_usd": 3.0, "tenants": ["globex"]}],
    }
    raw.update(extra)
    return parse_gateway_config(raw)


def test_every_level_is_enforced_by_one_reservation() -> None:
    cfg = _config()
    budgets = Budgets(cfg, MemoryLedger())
    key = Principal(tenant="acme", key_id="key_a", daily_usd=2.0, tokens_per_minute=500)
    other = Principal(tenant="globex", key_id="key_g")
    assert cfg.organisation_of("acme").name == "corp" and cfg.organisation_of("globex").name == "corp"
    labels = [w.label for w in budgets.windows_for(key, Estimate(1.0, 10, 10))]
    assert labels == [
        "key 'key_a' daily budget",
        "tenant 'acme' daily budget",
        "organisation 'corp' daily budget",
        "key 'key_a'",
        "tenant 'acme'",
    ]

    async def run() -> None:
        r1 = await budgets.reserve(key, Estimate(1.5, 10, 10))
        with pytest.raises(BudgetExceededError, match="key 'key_a' daily budget of \\$2"):
            await budgets.reserve(key, Estimate(1.0, 10, 10))  # the key's own 2 USD
        await budgets.reserve(other, Estimate(1.0, 10, 10))  # globex: the organisation is at 2.5 of 3
        with pytest.raises(BudgetExceededError, match="organisation 'corp' daily budget"):
            await budgets.reserve(other, Estimate(1.0, 10, 10))
        assert r1 is not None
        await budgets.settle(r1, 0.2, 5, 5)  # actual 0.2 USD: 1.3 USD of the organisation comes back
        await budgets.reserve(other, Estimate(1.0, 10, 10))
        st = await budgets.state(key)
        assert [round(lv.left, 6) for lv in st.levels] == [1.8, 4.8, 0.8]
        assert st.fraction_left == pytest.approx(0.8 / 3.0)
        with pytest.raises(RateLimitError, match="tokens per minute"):  # the key's 500 tokens/minute
            await budgets.reserve(key, Estimate(0.0, 400, 100))
        big = Principal(tenant="acme", key_id="key_b")  # no own tpm: the tenant's 1000 still counts
        await budgets.reserve(big, Estimate(0.0, 900, 80))
        with pytest.raises(RateLimitError, match="tenant 'acme' limit of 1000 tokens per minute"):
            await budgets.reserve(big, Estimate(0.0, 100, 0))

    asyncio.run(run())


def test_organisation_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="unknown organisation 'nope'"):
        parse_gateway_config({"tenants": [{"name": "a", "organisation": "nope"}]})
    with pytest.raises(ConfigError, match="tenant 'a' is in two organisations"):
        parse_gateway_config(
            {"organisations": [{"name": "x", "tenants": ["a"]}, {"name": "y", "tenants": ["a"]}]}
        )
    with pytest.raises(ConfigError, match="listed under 'x'"):
        parse_gateway_config(
            {
                "tenants": [{"name": "a", "organisation": "y"}],
                "organisations": [{"name": "x", "tenants": ["a"]}, {"name": "y"}],
            }
        )


# -- two gateway instances, one burst ----------------------------------------------------------------
def _gateway_raw(up: FakeUpstream, counters: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": [
            {  # 10,000 USD per million prompt tokens: a 400-character prompt costs 1.00 USD
                "id": "dollar",
                "base_url": up.base_url,
                "input_usd_per_mtok": 10_000.0,
                "output_usd_per_mtok": 0.0,
                "max_retries": 0,
            }
        ],
        "tenants": [{"name": "acme", "daily_usd": 2.5, "requests_per_minute": 1000}],
        "counters": counters,
        "limits": {"requests_per_minute": 1000},
    }


def _burst_through(apps: list[Any], up: FakeUpstream, n: int = 20) -> tuple[list[int], float]:
    up.inject(Fault("slow", delay_s=0.4, times=None))  # every call in flight together
    with LoopbackServer(apps[0]) as s0, LoopbackServer(apps[1]) as s1:
        key, _ = apps[0].state.keys.create("acme")
        body = {"model": "dollar", "messages": [{"role": "user", "content": "y" * 400}]}

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                calls = [
                    client.post(
                        (s0, s1)[i % 2].url + "/v1/chat/completions",
                        headers={"authorization": f"Bearer {key}"},
                        json=body,
                    )
                    for i in range(n)
                ]
                return list(await asyncio.gather(*calls))

        responses = asyncio.run(fire())
        spent = asyncio.run(_spent(apps[1].state.service, "acme"))
    codes = [r.status_code for r in responses]
    refused = [r.json()["error"] for r in responses if r.status_code == 429]
    assert all(e["type"] == "insufficient_quota" and "reserved" in e["message"] for e in refused)
    return codes, spent


async def _spent(svc: Any, tenant: str) -> float:
    """The tenant's settled spend today, read through a ledger of this event loop (a Redis client belongs
    to the loop that opened it: the server's is another thread's)."""
    ledger = build_ledger(svc.config.counters, svc.db)
    try:
        return (await Budgets(svc.config, ledger).state(tenant)).spent_day_usd
    finally:
        await ledger.aclose()


@pytest.fixture
def slow_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def test_burst_through_two_gateways_on_postgresql(
    tmp_path: Path, slow_upstream: FakeUpstream, pg_url: str
) -> None:
    settings = load_settings(overrides={"home": tmp_path, "data": {"store_url": pg_url}})
    raw = _gateway_raw(slow_upstream, {"backend": "auto"})
    apps = [create_app(settings, parse_gateway_config(raw)) for _ in range(2)]
    codes, spent = _burst_through(apps, slow_upstream)
    assert codes.count(200) == 2 and codes.count(429) == 18  # without reservations: 20 answered
    assert spent == pytest.approx(2.02) and slow_upstream.count("dollar") == 2  # 101 tokens each


def test_burst_through_two_gateways_on_redis(
    tmp_path: Path, slow_upstream: FakeUpstream, redis_prefix: str
) -> None:
    settings = load_settings(
        overrides={"home": tmp_path, "data": {"store_url": f"sqlite:///{tmp_path / 's.db'}"}}
    )
    raw = _gateway_raw(slow_upstream, {"backend": "redis", "prefix": redis_prefix})
    apps = [create_app(settings, parse_gateway_config(raw)) for _ in range(2)]
    codes, spent = _burst_through(apps, slow_upstream)
    assert codes.count(200) == 2 and codes.count(429) == 18
    assert spent == pytest.approx(2.02)


def test_failed_upstream_call_releases_its_reservation(tmp_path: Path, slow_upstream: FakeUpstream) -> None:
    settings = load_settings(overrides={"home": tmp_path})
    app = create_app(settings, parse_gateway_config(_gateway_raw(slow_upstream, {"backend": "auto"})))
    slow_upstream.inject(Fault("status", status=500, times=1))
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme", daily_usd=1.5)
        auth = {"authorization": f"Bearer {key}"}
        body = {"model": "dollar", "messages": [{"role": "user", "content": "y" * 400}]}
        failed = httpx.post(server.url + "/v1/chat/completions", headers=auth, json=body)
        assert failed.status_code == 502
        budgets = app.state.service.budgets
        st = asyncio.run(budgets.state(Principal("acme", app.state.keys.db.list_keys("acme")[0].id)))
        assert all(lv.reserved == pytest.approx(0.0) and lv.spent == 0.0 for lv in st.levels)
        ok = httpx.post(server.url + "/v1/chat/completions", headers=auth, json=body)
        assert ok.status_code == 200, ok.text
        # the key's own 1.5 USD: 1.00 spent, the next estimate (1.08) does not fit
        again = httpx.post(server.url + "/v1/chat/completions", headers=auth, json=body)
        assert again.status_code == 429 and "key 'key_" in again.json()["error"]["message"]


def test_revoked_key_is_refused_by_every_instance_within_the_cache_ttl(
    tmp_path: Path, slow_upstream: FakeUpstream
) -> None:
    settings = load_settings(overrides={"home": tmp_path})
    raw = _gateway_raw(slow_upstream, {"backend": "auto"})
    raw["reload"] = {"enabled": False}  # the cache TTL alone is the bound (hot reload is faster still)
    a, b = (create_app(settings, parse_gateway_config(raw)) for _ in range(2))
    for app in (a, b):
        app.state.keys.ttl_s = 1.0  # the bound is keys' cache TTL (5 s by default)
    with LoopbackServer(a) as sa, LoopbackServer(b) as sb:
        key, info = a.state.keys.create("acme")
        auth = {"authorization": f"Bearer {key}"}
        assert [httpx.get(s.url + "/v1/models", headers=auth).status_code for s in (sa, sb)] == [200, 200]
        a.state.keys.revoke(info.id)  # clears a's cache at once; b holds the key until its entry expires
        assert httpx.get(sa.url + "/v1/models", headers=auth).status_code == 401
        revoked_at = time.monotonic()
        while httpx.get(sb.url + "/v1/models", headers=auth).status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "b still accepts a revoked key after its cache TTL"
            time.sleep(0.05)


def test_keys_cli_sets_a_key_s_own_budget_and_limits(
    rf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from routerforge.cli.main import main

    args = ["keys", "create", "--tenant", "acme", "--daily-usd", "2.5", "--tpm", "1000", "--json"]
    assert main(args) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["daily_usd"], created["monthly_usd"], created["tpm"]) == (2.5, None, 1000)
    assert main(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["daily_usd"] == 2.5 and listed[0]["tpm"] == 1000
    assert main(["keys", "create", "--tenant", "acme", "--monthly-usd", "-1"]) != 0
    err = capsys.readouterr().err
    assert "--monthly-usd must be a finite number ≥ 0" in err and "Traceback" not in err
    assert main(["keys", "create", "--tenant", "acme", "--tpm", "0"]) != 0
    assert "--tpm must be at least 1" in capsys.readouterr().err
