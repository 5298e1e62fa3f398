"""Two gateway replicas on two "hosts" (network namespaces joined by veth pairs), sharing PostgreSQL (store,
keys, request log) and Redis (rate limits, budget reservations) over the veth network, calling a fake
upstream in a third namespace, driven by a load generator in a fourth (tests/netns_lab.py).

Checks: budget exactness under a concurrent burst through both replicas, rate limits (requests and tokens per
minute) shared, new and revoked keys seen by both, and one replica killed with SIGKILL while traffic flows:
the other keeps serving and every answered request is in the log. Skips (with the reason) when network
namespaces are not permitted. ~30–60 s, most of it starting the replicas.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from netns_lab import Lab, netns_unavailable

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
PEPPER = secrets.token_hex(16)
UPSTREAM_DELAY_S = 0.5  # every upstream call takes this long: a burst is really concurrent
LEASE_S = 3.0  # reservations of a killed replica expire after this


@dataclass
class Cluster:
    lab: Lab
    urls: list[str]
    pg_url: str
    redis_prefix: str
    config: dict[str, Any]

    def keys(self) -> Any:
        from routerforge.gateway.auth import KeyStore
        from routerforge.gateway.db import GatewayDB

        return KeyStore(GatewayDB(self.pg_url), PEPPER.encode())

    def load(self, key: str, *args: str) -> list[dict[str, Any]]:
        urls = [a for u in self.urls for a in ("--url", u)]
        return sorted(self.lab.load([*urls, "--key", key, *args]), key=lambda r: r["i"])


def _services_or_skip() -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")
    engine = sqlalchemy.create_engine(PG_ADMIN_URL)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"multi-host test: {reason}")
    _services_or_skip()
    import sqlalchemy

    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    db = "rf_netns_" + secrets.token_hex(4)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {db}")
    workdir = tmp_path_factory.mktemp("netns")
    lab = Lab(workdir, replicas=2)
    try:
        lab.up()
        upstream = lab.upstream(delay_s=UPSTREAM_DELAY_S)
        prefix = "rfnetns-" + secrets.token_hex(4)
        config = {
            "models": [  # 10,000 USD per million prompt tokens: a 400-character prompt costs 1.00 USD
                {
                    "id": "dollar",
                    "base_url": upstream,
                    "input_usd_per_mtok": 10_000.0,
                    "output_usd_per_mtok": 0.0,
                    "max_retries": 0,
                }
            ],
            "tenants": [
                {"name": "acme", "daily_usd": 2.5},
                {"name": "free"},
                {"name": "kill", "daily_usd": 1000.0},
            ],
            "budgets": {"lease_s": LEASE_S},
            "counters": {
                "backend": "redis",
                "redis_url": f"redis://{lab.gateway_ip}:16379/0",
                "prefix": prefix,
            },
            "limits": {"requests_per_minute": 10_000},
            "key_pepper_env": "RF_NETNS_PEPPER",
        }
        path = workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        store = f"postgresql+psycopg://postgres@{lab.gateway_ip}:15432/{db}"
        env = {"RF_NETNS_PEPPER": PEPPER}
        urls = [lab.replica(i, path, store, env) for i in (1, 2)]
        for i, url in enumerate(urls, start=1):
            lab.wait_replica(i, url, timeout_s=90)
        yield Cluster(lab, urls, f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", prefix, config)
    finally:
        lab.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.dispose()


def _same_minute(margin_s: float = 6.0) -> None:
    """Per-minute windows: start a short sequence only when it ends within the current minute."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.2)


def test_budget_holds_under_a_burst_through_both_replicas(cluster: Cluster) -> None:
    key, _info = cluster.keys().create("acme")
    results = cluster.load(key, "--n", "20", "--concurrency", "20")
    codes = [r["status"] for r in results]
    assert len(codes) == 20 and {r["url"] for r in results} == set(cluster.urls)
    # 2.5 USD at ~1.08 USD reserved (1.00 actual) each: 2 answered, never more (without reservations: 20)
    assert codes.count(200) == 2 and codes.count(429) == 18, codes
    assert all(r["error"]["type"] == "insufficient_quota" for r in results if r["status"] == 429)

    assert _tenant_usage(cluster, "acme") == pytest.approx(
        (2.02, 0.0)
    )  # 2 × 101 tokens settled; none reserved


def test_rate_limits_are_shared_by_both_replicas(cluster: Cluster) -> None:
    keys = cluster.keys()
    rpm_key, _ = keys.create("free", requests_per_minute=3)
    tpm_key, _ = keys.create("free", tokens_per_minute=300)
    _same_minute()
    rpm = cluster.load(rpm_key, "--n", "4", "--concurrency", "1")
    assert [r["status"] for r in rpm] == [200, 200, 200, 429]
    assert [r["url"] for r in rpm] == [*cluster.urls, *cluster.urls]  # alternating replicas
    assert rpm[3]["error"]["type"] == "rate_limit_error"
    # ~108 prompt + 20 completion tokens reserved, ~103 used each: the third no longer fits in 300
    _same_minute()
    tpm = cluster.load(tpm_key, "--n", "3", "--concurrency", "1", "--max-tokens", "20")
    assert [r["status"] for r in tpm] == [200, 200, 429]
    assert "tokens per minute" in tpm[2]["error"]["message"]


def test_new_and_revoked_keys_reach_both_replicas(cluster: Cluster) -> None:
    keys = cluster.keys()
    key, info = keys.create("free")  # created after the replicas started: accepted at once by both
    auth = {"authorization": f"Bearer {key}"}
    assert [httpx.get(u + "/v1/models", headers=auth).status_code for u in cluster.urls] == [200, 200]
    keys.revoke(info.id)  # in another process: each replica's key cache (TTL 5 s) is the bound
    revoked_at = time.monotonic()
    pending = set(cluster.urls)
    while pending:
        for u in list(pending):
            if httpx.get(u + "/v1/models", headers=auth).status_code == 401:
                pending.discard(u)
        assert time.monotonic() - revoked_at < 6.0, f"{pending} accept a key revoked 6 s ago"
        time.sleep(0.1)


def test_config_change_reaches_both_replicas_without_restart(cluster: Cluster, tmp_path: Path) -> None:
    """gateway.yaml edited once (a new budgeted tenant, a new model): both replicas apply it through hot
    reload (gateway/reload.py), budgets included."""
    key, _ = cluster.keys().create("late")  # a tenant the config does not know yet: no budget
    auth = {"authorization": f"Bearer {key}"}
    body = {"model": "dollar", "messages": [{"role": "user", "content": "y" * 400}]}
    assert [
        httpx.post(u + "/v1/chat/completions", headers=auth, json=body).status_code for u in cluster.urls
    ] == [
        200,
        200,
    ]
    config = dict(cluster.config)
    config["tenants"] = [*config["tenants"], {"name": "late", "daily_usd": 0.5}]  # < one request's 1.08
    config["models"] = [*config["models"], {**config["models"][0], "id": "extra"}]
    path = cluster.lab.workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    changed_at = time.monotonic()
    pending = set(cluster.urls)
    while pending:
        for u in list(pending):
            models = [m["id"] for m in httpx.get(u + "/v1/models", headers=auth).json()["data"]]
            r = httpx.post(u + "/v1/chat/completions", headers=auth, json=body)
            if "extra" in models and r.status_code == 429:
                assert r.json()["error"]["type"] == "insufficient_quota"
                pending.discard(u)
        assert time.monotonic() - changed_at < 15.0, f"{pending} did not reload gateway.yaml within 15 s"
        time.sleep(0.3)


def test_killed_replica_loses_no_answered_request(cluster: Cluster) -> None:
    key, _ = cluster.keys().create("kill")
    args = [a for u in cluster.urls for a in ("--url", u)]
    load = cluster.lab.load_background(
        [*args, "--key", key, "--duration-s", "6", "--concurrency", "4", "--failover"]
    )
    time.sleep(2.0)
    cluster.lab.kill("replica1")  # SIGKILL: no graceful shutdown
    killed_at = time.time()
    out, err = load.communicate(timeout=60)
    assert load.returncode == 0, err[-2000:]
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    answered = [r for r in results if r["status"] == 200]
    assert len(answered) >= 20 and all(r["status"] in (200, 0) for r in results), results
    after = [r for r in answered if r["url"] == cluster.urls[1] and r["tries"] == 2]
    assert after, "no request failed over to the surviving replica"
    assert sum(r["status"] == 0 for r in results) == 0  # every request found a replica that answered
    assert time.time() - killed_at > 2.0  # traffic went on after the kill

    import sqlalchemy

    engine = sqlalchemy.create_engine(cluster.pg_url)
    try:
        with engine.connect() as conn:
            rows = dict(conn.exec_driver_sql("SELECT id, status FROM gw_requests").all())
    finally:
        engine.dispose()
    missing = [r["request_id"] for r in answered if rows.get(r["request_id"]) != 200]
    assert not missing, f"answered but not in the log: {missing}"
    # the survivor still serves; the killed replica's reservations (requests in flight at the kill) expire
    time.sleep(max(0.0, LEASE_S + 0.5 - (time.time() - killed_at)))
    auth = {"authorization": f"Bearer {key}"}
    body = {"model": "dollar", "messages": [{"role": "user", "content": "y" * 400}]}
    assert httpx.post(cluster.urls[1] + "/v1/chat/completions", headers=auth, json=body).status_code == 200
    spent, reserved = _tenant_usage(cluster, "kill")
    assert reserved == pytest.approx(0.0, abs=1e-6)
    engine = sqlalchemy.create_engine(cluster.pg_url)
    try:
        with engine.connect() as conn:
            logged = conn.exec_driver_sql(
                "SELECT coalesce(sum(cost_usd), 0) FROM gw_requests WHERE tenant = 'kill' AND status = 200"
            ).scalar_one()
    finally:
        engine.dispose()
    # spend is settled before the log row commits: a request killed in between is spent but not answered
    assert float(logged) - 1e-6 <= spent <= float(logged) + 4 * 1.02
    assert httpx.get(cluster.urls[1] + "/readyz").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(cluster.urls[0] + "/readyz", timeout=2)


def _tenant_usage(cluster: Cluster, tenant: str) -> tuple[float, float]:
    """The tenant's daily (spent, reserved) on the replicas' Redis ledger."""
    from routerforge.gateway.budgets import Budgets
    from routerforge.gateway.config import parse_gateway_config
    from routerforge.gateway.ledger import RedisLedger

    async def read() -> tuple[float, float]:
        ledger = RedisLedger(REDIS_URL, cluster.redis_prefix)
        try:
            st = await Budgets(parse_gateway_config(cluster.config), ledger).state(tenant)
            return st.spent_day_usd, st.levels[0].reserved
        finally:
            await ledger.aclose()

    return asyncio.run(read())


def test_lab_cleans_up_its_namespaces(tmp_path: Path) -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"multi-host test: {reason}")
    import subprocess

    lab = Lab(tmp_path, replicas=1)
    lab.up()
    names = list(lab.namespaces.values())
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert all(n in listed for n in names)
    lab.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)
    assert subprocess.run(["ip", "link", "show", lab.bridge], capture_output=True).returncode != 0
