"""Hot reload, promote under load, admin endpoints, shadow and canary — real gateway, real routers, fake
upstream, official `openai` client."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from review_setup import ALGEBRA, HISTORY, STRONG, WEAK, cli_json, gateway_raw, train_two, write_config


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def routers(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    return train_two(rf_home)


def _app(raw: dict[str, Any], path: Path | None = None) -> Any:
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    return create_app(load_settings(), parse_gateway_config(raw), config_path=path)


def _state(server: LoopbackServer) -> dict[str, Any]:
    return httpx.get(server.url + "/readyz").json()["state"]


def _wait(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_promote_under_load_drops_nothing_and_changes_the_served_model(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    raw = gateway_raw(upstream.base_url)
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    app = _app(raw, cfg)
    served: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        before = _state(server)["version"]

        def load() -> None:
            client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
            while not stop.is_set():
                try:
                    r = client.chat.completions.with_raw_response.create(
                        model="smart", messages=[{"role": "user", "content": ALGEBRA}]
                    )
                    served.append((time.monotonic(), r.headers["x-routerforge-model"]))
                except Exception as exc:  # every failure is a test failure, counted here
                    failures.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        _wait(lambda: len(served) >= 20)
        promoted = cli_json(capsys, ["promote", "smart", "--router", "v2", "--config", str(cfg), "--json"])
        _wait(lambda: _state(server)["version"] == promoted["state_version"])
        mark = time.monotonic() + 0.2  # requests routed before the swap may still be finishing
        _wait(lambda: sum(1 for t, _ in served if t > mark) >= 20)
        mark_rb = time.monotonic()
        back = cli_json(capsys, ["rollback", "smart", "--config", str(cfg), "--json"])
        _wait(lambda: _state(server)["version"] == back["state_version"])
        mark2 = time.monotonic() + 0.2
        _wait(lambda: sum(1 for t, _ in served if t > mark2) >= 20)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        state = _state(server)
    assert failures == []
    assert promoted["state_version"] > before
    first = [m for t, m in served[:20]]
    middle = [m for t, m in served if mark < t < mark_rb]
    after = [m for t, m in served if t > mark2]
    assert set(first) == {STRONG}  # v1: algebra needs the strong model
    assert middle and set(middle) == {WEAK}  # v2 serves after the promote
    assert after and set(after) == {STRONG}  # rolled back
    assert state["reloads"] >= 2 and state["reload_error"] is False


def test_config_edits_reload_and_bad_ones_are_refused(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    raw = gateway_raw(upstream.base_url)
    raw["require_auth"] = False
    raw["metrics"] = {"access": "open"}
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    app = _app(raw, cfg)
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        sha = _state(server)["config_sha256"]
        cfg.write_text("models: [this is: not valid", encoding="utf-8")  # broken YAML
        _wait(lambda: _state(server)["reload_error"])
        r = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": ALGEBRA}]
        )
        assert r.headers["x-routerforge-model"] == STRONG  # the old state keeps serving
        metrics = httpx.get(server.url + "/metrics").text
        assert "routerforge_reload_failing 1.0" in metrics
        assert 'routerforge_reload_total{outcome="error"} 1.0' in metrics
        cfg.write_text("", encoding="utf-8")  # emptied (an editor's truncate, a botched deploy): refused too
        empty = hashlib.sha256(b"").hexdigest()[:16]
        _wait(lambda: _state(server)["config_sha256"] == empty)
        assert _state(server)["reload_error"] is True
        r = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": ALGEBRA}]
        )
        assert r.headers["x-routerforge-model"] == STRONG
        bad_router = {**raw, "synthetic_models": [{**raw["synthetic_models"][0], "router": "missing"}]}
        write_config(cfg, bad_router)  # valid YAML, but a router that does not exist: refused too
        _wait(lambda: _state(server)["config_sha256"] != sha and _state(server)["reload_error"])
        new = {
            **raw,
            "synthetic_models": [
                *raw["synthetic_models"],
                {
                    "name": "smart2",
                    "router": "v2",
                    "models": [WEAK, STRONG],
                    "policy": {"kind": "threshold", "knob": 0.6},
                },
            ],
        }
        write_config(cfg, new)
        _wait(lambda: not _state(server)["reload_error"])
        assert "routerforge_reload_failing 0.0" in httpx.get(server.url + "/metrics").text
        assert "smart2" in [m.id for m in client.models.list().data]
        r2 = client.chat.completions.with_raw_response.create(
            model="smart2", messages=[{"role": "user", "content": ALGEBRA}]
        )
        assert r2.headers["x-routerforge-model"] == WEAK


def test_admin_endpoints_promote_and_roll_back(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    raw = gateway_raw(upstream.base_url)
    app = _app(raw)
    with LoopbackServer(app) as server:
        admin, _ = app.state.keys.create("acme", admin=True)
        user, _ = app.state.keys.create("acme")
        ha, hu = {"authorization": f"Bearer {admin}"}, {"authorization": f"Bearer {user}"}
        body = {"model": "smart", "router": "v2"}
        assert httpx.post(server.url + "/v1/admin/promote", json=body, headers=hu).status_code == 403
        assert httpx.post(server.url + "/v1/admin/promote", json=body).status_code == 401
        bad = httpx.post(
            server.url + "/v1/admin/promote", json={"model": "smart", "router": "nope"}, headers=ha
        )
        assert bad.status_code == 404
        assert "No trained router" in bad.json()["error"]["message"]
        ok = httpx.post(server.url + "/v1/admin/promote", json=body, headers=ha)
        assert ok.status_code == 200, ok.text
        assert ok.json()["reload"]["version"] == ok.json()["state_version"]  # this process reloaded at once
        client = openai.OpenAI(base_url=server.base_url, api_key=user, max_retries=0)
        r = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": ALGEBRA}]
        )
        assert r.headers["x-routerforge-model"] == WEAK
        state = httpx.get(server.url + "/v1/admin/state", headers=ha).json()
        assert state["assignments"]["smart"]["router"] == "v2"
        assert [a["action"] for a in state["audit"]] == ["promote"]
        assert state["audit"][0]["actor"].startswith("key:")
        back = httpx.post(server.url + "/v1/admin/rollback", json={"model": "smart"}, headers=ha)
        assert back.status_code == 200 and back.json()["source"] == "config"
        r = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": ALGEBRA}]
        )
        assert r.headers["x-routerforge-model"] == STRONG
        again = httpx.post(server.url + "/v1/admin/rollback", json={"model": "smart"}, headers=ha)
        assert again.status_code == 404


def test_a_replica_started_after_a_promote_serves_it(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    raw = gateway_raw(upstream.base_url)
    raw["require_auth"] = False
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    cli_json(capsys, ["promote", "smart", "--router", "v2", "--config", str(cfg), "--json"])
    with LoopbackServer(_app(raw, cfg)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        r = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": ALGEBRA}]
        )
        assert r.headers["x-routerforge-model"] == WEAK


def test_shadow_decisions_are_logged_and_reviewable(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.requestlog import RequestLog

    raw = gateway_raw(upstream.base_url, shadow={"router": "v2", "share": 1.0, "knob": 0.6})
    raw["require_auth"] = False
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    prompts = [ALGEBRA, HISTORY, "poetry question 2: explain poetry item 1", ALGEBRA + " again"]
    with LoopbackServer(_app(raw, cfg)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        ids = []
        for text in prompts:
            r = client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": text}]
            )
            ids.append(r.headers["x-routerforge-request-id"])
            assert r.headers["x-routerforge-model"] in (WEAK, STRONG)
    db = GatewayDB(load_settings().store_url)
    rows = [RequestLog(db).get(i) for i in ids]
    db.close()
    for row in rows:
        assert row is not None
        shadow = row["decision"]["shadow"]
        assert shadow["status"] == "ok" and shadow["router"] == "v2"
        assert set(shadow["predicted"]) == {WEAK, STRONG}
    assert rows[0]["chosen_model"] == STRONG and rows[0]["decision"]["shadow"]["model"] == WEAK
    shadowed = cli_json(
        capsys,
        [
            "review",
            "--candidate",
            "v2",
            "--knob",
            "0.6",
            "--last",
            "10",
            "--from-shadow",
            "--config",
            str(cfg),
            "--json",
        ],
    )
    recomputed = cli_json(
        capsys,
        ["review", "--candidate", "v2", "--knob", "0.6", "--last", "10", "--config", str(cfg), "--json"],
    )
    assert shadowed["source"]["kind"] == "shadow" and shadowed["n"] == len(prompts)
    assert shadowed["disagreements"]["count"] == recomputed["disagreements"]["count"] > 0
    assert shadowed["choices"] == recomputed["choices"]


def test_canary_serves_its_share_deterministically(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.requestlog import RequestLog
    from routerforge.gateway.shadow import in_share

    raw = gateway_raw(upstream.base_url, canary={"router": "v2", "share": 0.5, "knob": 0.6})
    raw["require_auth"] = False
    with LoopbackServer(_app(raw)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        got = []
        for _ in range(30):
            r = client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": ALGEBRA}]
            )
            got.append((r.headers["x-routerforge-request-id"], r.headers["x-routerforge-model"]))
    db = GatewayDB(load_settings().store_url)
    log = RequestLog(db)
    arms = Counter()
    for rid, model in got:
        row = log.get(rid)
        assert row is not None
        arm = row["decision"]["canary"]["arm"]
        arms[arm] += 1
        assert arm == ("canary" if in_share(rid, 0.5, "canary") else "serving")  # by the request id
        assert model == (WEAK if arm == "canary" else STRONG)  # v2 answers the canary arm
    db.close()
    assert arms["canary"] > 0 and arms["serving"] > 0


def test_in_flight_requests_finish_on_the_old_router_and_two_replicas_follow(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    from fake_upstream import Fault

    raw = gateway_raw(upstream.base_url)
    raw["require_auth"] = False
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    with LoopbackServer(_app(raw, cfg)) as one, LoopbackServer(_app(raw, cfg)) as two:
        c1 = openai.OpenAI(base_url=one.base_url, api_key="x", max_retries=0)
        c2 = openai.OpenAI(base_url=two.base_url, api_key="x", max_retries=0)
        upstream.inject(Fault("slow", delay_s=2.0, model=STRONG, times=1))
        slow: dict[str, Any] = {}

        def call() -> None:
            r = c1.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": ALGEBRA}]
            )
            slow["model"] = r.headers["x-routerforge-model"]
            slow["text"] = r.parse().choices[0].message.content

        before = upstream.count(STRONG)
        t = threading.Thread(target=call)
        t.start()
        _wait(lambda: upstream.count(STRONG) > before)  # routed to strong, now waiting on the slow upstream
        promoted = cli_json(capsys, ["promote", "smart", "--router", "v2", "--config", str(cfg), "--json"])
        for server in (one, two):  # both replicas reach the new state version
            _wait(lambda server=server: _state(server)["version"] == promoted["state_version"])
        for client in (c1, c2):
            r = client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": ALGEBRA}]
            )
            assert r.headers["x-routerforge-model"] == WEAK
        t.join(timeout=30)
        assert slow == {"model": STRONG, "text": f"{STRONG} says: {ALGEBRA}"}  # finished on the old router
        upstream.clear_faults()


def test_a_promoted_router_that_no_longer_loads_does_not_stop_a_new_replica(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    import shutil

    _v1, v2 = routers
    raw = gateway_raw(upstream.base_url)
    raw["require_auth"] = False
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    cli_json(capsys, ["promote", "smart", "--router", "v2", "--config", str(cfg), "--json"])
    shutil.rmtree(v2)  # gone after the promotion
    with LoopbackServer(_app(raw, cfg)) as server:
        assert _state(server)["reload_error"] is True
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        r = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": ALGEBRA}]
        )
        assert r.headers["x-routerforge-model"] == STRONG  # gateway.yaml's router (v1) serves
