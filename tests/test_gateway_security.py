"""Gateway hardening that lives outside the request path: /metrics access and label bounds, counters that
survive a restart, private files, unpredictable request ids, redacted upstream errors end to end."""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fake_upstream import FakeUpstream, Fault
from gateway_server import LoopbackServer
from routerforge.config import Settings, load_settings
from routerforge.gateway.app import create_app
from routerforge.gateway.config import GatewayConfig, parse_gateway_config
from routerforge.gateway.metrics import MetricLabels
from routerforge.gateway.service import new_request_id

UPSTREAM_KEY = "sk-live-Hq3vN8xT2bR6yW0zK4mJ"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def make_config(up: FakeUpstream, **extra: Any) -> GatewayConfig:
    raw: dict[str, Any] = {
        "models": [
            {
                "id": "small",
                "base_url": up.base_url,
                "api_key_env": "RF_TEST_UPSTREAM_KEY",
                "input_usd_per_mtok": 100.0,
                "output_usd_per_mtok": 200.0,
                "max_retries": 0,
            }
        ],
        "tenants": [{"name": "acme"}],
        "logging": {"flush_interval_s": 0.02},
    }
    raw.update(extra)
    return parse_gateway_config(raw)


@pytest.fixture
def settings(rf_home: Path, monkeypatch: pytest.MonkeyPatch, upstream: FakeUpstream) -> Settings:
    upstream.reset()
    monkeypatch.setenv("RF_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    return load_settings(overrides={"home": rf_home, "embed": {"provider": "hash"}})


def _chat(server: LoopbackServer, key: str, model: str = "small") -> httpx.Response:
    return httpx.post(
        server.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hello there"}]},
        timeout=30,
    )


# -- /metrics ----------------------------------------------------------------------------------------
def test_metrics_need_an_admin_key_or_the_metrics_token(
    settings: Settings, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RF_METRICS_TOKEN", "scrape-token-7d1e")
    app = create_app(settings, make_config(upstream, metrics={"token_env": "RF_METRICS_TOKEN"}))
    with LoopbackServer(app) as server:
        tenant_key, _ = app.state.keys.create("acme")
        admin_key, _ = app.state.keys.create("ops", admin=True)

        def get(token: str | None) -> httpx.Response:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return httpx.get(server.url + "/metrics", headers=headers)

        anonymous = get(None)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
        assert get("not-the-token").status_code == 401
        refused = get(tenant_key)
        assert (
            refused.status_code == 403
            and "admin key or the metrics token" in refused.json()["error"]["message"]
        )
        assert get(admin_key).status_code == 200
        ok = get("scrape-token-7d1e")
        assert ok.status_code == 200 and "routerforge_requests" in ok.text


def test_metrics_can_be_opened_on_purpose(settings: Settings, upstream: FakeUpstream) -> None:
    app = create_app(settings, make_config(upstream, metrics={"access": "open"}))
    with LoopbackServer(app) as server:
        assert httpx.get(server.url + "/metrics").status_code == 200


def test_metric_labels_are_bounded(settings: Settings, upstream: FakeUpstream) -> None:
    app = create_app(settings, make_config(upstream, metrics={"access": "open"}))
    with LoopbackServer(app) as server:
        outsider, _ = app.state.keys.create("zeta")  # a tenant gateway.yaml does not list
        member, _ = app.state.keys.create("acme")
        names = [f"made-up-{i}" for i in range(40)] + ["sk-live-AAAAAAAAAAAAAAAA", "router-nothere-0.5"]
        for name in names:
            assert _chat(server, member, name).status_code == 404
        assert _chat(server, outsider).status_code == 200
        assert _chat(server, member).status_code == 200
        text = httpx.get(server.url + "/metrics").text
    assert "made-up" not in text and "sk-live" not in text and "nothere" not in text and "zeta" not in text
    assert re.search(
        r'routerforge_requests_total\{chosen_model="",status="404",synthetic_model="other"\} 42', text
    )
    assert 'routerforge_cost_usd_total{model="small",tenant="other"}' in text
    assert 'routerforge_cost_usd_total{model="small",tenant="acme"}' in text
    requested = set(re.findall(r'routerforge_requests_total\{[^}]*synthetic_model="([^"]*)"', text))
    assert requested == {"other", "small"}, requested  # 42 unknown names: one series, not 42


def test_metric_labels_of_router_names() -> None:
    labels = MetricLabels(["small", "smart"], ["acme"], routers=lambda: [Path("/r/routers/knn")])
    assert labels.model("small") == "small" and labels.model("smart") == "smart" and labels.model("") == ""
    assert labels.model("router-knn-0.5") == "router-knn-0.5"
    assert labels.model("router-knn-0.123456789") == "router-knn-0.12"  # rounded: at most 101 per router
    assert labels.model("router-knn-7") == "router-knn-1"
    assert labels.model("router-knn") == "router-knn"
    assert labels.model("router-mlp-0.5") == "other"  # not loaded
    assert labels.model("x" * 10_000) == "other"
    assert labels.tenant("acme") == "acme" and labels.tenant("zeta") == "other"


# -- budgets and rate limits survive a restart ---------------------------------------------------------
def test_budget_and_rate_limit_counters_survive_a_restart(settings: Settings, upstream: FakeUpstream) -> None:
    # reserved ~0.0027 USD (11 prompt tokens: the messages as JSON / 4, + 8 output tokens assumed),
    # ~0.0011 USD spent of 0.003
    budgets = {"default_output_tokens": 8}
    config = make_config(upstream, tenants=[{"name": "acme", "daily_usd": 0.003}], budgets=budgets)
    app = create_app(settings, config)
    with LoopbackServer(app) as server:
        svc = app.state.service
        assert svc.counters.kind == "sql"  # the default (auto) with the default SQLite store
        key, info = app.state.keys.create("acme")
        assert _chat(server, key).status_code == 200  # what is left no longer holds a reservation
        spent = asyncio.run(svc.budgets.state("acme")).spent_day_usd
        assert spent > 0.0005
    restarted = create_app(settings, config)  # a new service on the same database
    with LoopbackServer(restarted) as server:
        svc = restarted.state.service
        assert asyncio.run(svc.budgets.state("acme")).spent_day_usd == pytest.approx(spent)
        refused = _chat(server, key)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "insufficient_quota"
        minute_keys = [k for k in _counter_keys(svc) if k.startswith(f"rl:{info.id}:")]
        assert sum(asyncio.run(svc.counters.get(minute_keys))) == 2  # one request before, one after


def _counter_keys(svc: Any) -> list[str]:
    from sqlalchemy import text

    with svc.db.engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT key FROM gw_counters"))]


# -- private files ------------------------------------------------------------------------------------
def test_database_pepper_cache_and_shard_files_are_private(
    settings: Settings, upstream: FakeUpstream, tmp_path: Path
) -> None:
    from routerforge.embed.cache import CACHE_FILE, CachedEmbedder
    from routerforge.embed.hashing import HashEmbedder
    from routerforge.index.edge import EdgeIndex, copy_shard

    old = os.umask(0o022)  # a usual umask: without care, files come out 0644
    try:
        app = create_app(settings, make_config(upstream))
        with LoopbackServer(app) as server:
            key, _ = app.state.keys.create("acme")
            assert _chat(server, key).status_code == 200
            app.state.service.logs.flush()
        home = settings.home
        for name in ("routerforge.db", "routerforge.db-wal", "gateway_pepper"):
            if (home / name).exists() or name != "routerforge.db-wal":
                assert _mode(home / name) == 0o600, name
        fresh = tmp_path / "newhome" / "store.db"
        from routerforge.data.store import Store

        Store(f"sqlite:///{fresh}").close()
        assert _mode(fresh) == 0o600 and _mode(fresh.parent) == 0o700

        cached = CachedEmbedder(HashEmbedder(), tmp_path / "cache")
        cached.embed(["a prompt"])
        cached.close()
        assert _mode(tmp_path / "cache") == 0o700 and _mode(tmp_path / "cache" / CACHE_FILE) == 0o600

        index = EdgeIndex(tmp_path / "shard", 4)
        index.close()
        assert _mode(tmp_path / "shard") == 0o700
        copy_shard(tmp_path / "shard", tmp_path / "copy")
        assert {_mode(p) for p in (tmp_path / "copy").rglob("*")} <= {0o600, 0o700}
        assert _mode(tmp_path / "copy") == 0o700
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- request ids ----------------------------------------------------------------------------------------
def _untemper(y: int) -> int:
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    t = y
    for _ in range(5):
        t = y ^ ((t << 7) & 0x9D2C5680)
    y = t & 0xFFFFFFFF
    t = y
    for _ in range(3):
        t = y ^ (t >> 11)
    return t & 0xFFFFFFFF


def _predict_next(ids: list[str]) -> str:
    """The next id if ``ids`` came from a Mersenne Twister's getrandbits(96): 208 ids = its 624 state words."""
    words = [(int(i, 16) >> (32 * k)) & 0xFFFFFFFF for i in ids[-208:] for k in range(3)]
    clone = random.Random()
    clone.setstate((3, (*(_untemper(w) for w in words), 624), None))
    return f"{clone.getrandbits(96):024x}"


def test_request_ids_are_unpredictable() -> None:
    twister = random.Random(secrets.randbits(128))  # how ids were made before: fast but predictable
    seen = [f"{twister.getrandbits(96):024x}" for _ in range(208)]
    assert _predict_next(seen) == f"{twister.getrandbits(96):024x}"  # the attack works on that generator
    ids = [new_request_id() for _ in range(208)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids) and len(set(ids)) == 208
    assert new_request_id() != _predict_next(ids)


# -- upstream errors end to end ----------------------------------------------------------------------
def test_upstream_echo_of_the_key_reaches_neither_client_nor_log(
    settings: Settings, upstream: FakeUpstream
) -> None:
    app = create_app(settings, make_config(upstream))
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        upstream.inject(Fault("echo_headers", status=401))
        resp = _chat(server, key)
        assert resp.status_code == 502 and "headers were" in resp.text
        rid = resp.headers["x-routerforge-request-id"]
        app.state.service.logs.flush()
        entry = httpx.get(f"{server.base_url}/logs/{rid}", headers={"authorization": f"Bearer {key}"}).json()
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        upstream.inject(Fault("echo_headers", status=500))
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
    assert UPSTREAM_KEY not in resp.text and UPSTREAM_KEY not in str(info.value.body)
    assert entry["attempts"] and all(UPSTREAM_KEY not in (a["error"] or "") for a in entry["attempts"])
    assert UPSTREAM_KEY not in str(entry)
