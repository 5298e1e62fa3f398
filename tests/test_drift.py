"""Drift and quality alerts (gateway/drift.py): a real knn router trained from the store, a real gateway on
loopback with the fake upstream, traffic that does or does not drift, the admin endpoint, the metrics and
``routerforge drift --json``."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import yaml

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.cli.main import main
from routerforge.config import load_settings
from routerforge.data.records import EvalRecord
from routerforge.data.store import Store
from routerforge.gateway.app import create_app
from routerforge.gateway.config import DriftConfig, load_gateway_config, parse_gateway_config
from routerforge.gateway.drift import (
    ALERT,
    INSUFFICIENT,
    OK,
    Reference,
    coverage_check,
    feedback_check,
    nearest_similarity,
    share_check,
    two_proportion_p,
)

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "lemon",
    "candle",
    "mirror",
    "garden",
    "rocket",
    "violin",
    "pepper",
    "window",
    "forest",
    "planet",
    "marble",
    "pillow",
    "ladder",
    "basket",
    "copper",
]
THEMES = ["autumn", "ocean", "silence", "winter", "harvest", "lantern"]


def arith(rng: random.Random) -> str:
    return f"What is {rng.randint(10, 999)} plus {rng.randint(10, 999)}?"


def spell(rng: random.Random) -> str:
    return f"Spell the word {rng.choice(WORDS)}{rng.choice(WORDS)} backwards, letter by letter."


def novel(rng: random.Random) -> str:  # a kind of prompt the router never saw
    return f"Compose a gentle haiku on {rng.choice(THEMES)} beneath a {rng.choice(THEMES)} sky."


def mixed(rng: random.Random, n: int) -> list[str]:
    return [arith(rng) if i % 2 == 0 else spell(rng) for i in range(n)]


def training_records(n: int = 180, seed: int = 0) -> list[EvalRecord]:
    """small answers arithmetic right and spelling wrong; large is right on both (a few misses)."""
    rng = random.Random(seed)
    out = []
    for i, text in enumerate(mixed(rng, n)):
        is_arith = text.startswith("What is")
        split = "test" if i % 3 == 0 else "train"
        small = 1.0 if is_arith else 0.0
        large = 1.0 if rng.random() < 0.9 else 0.0
        for model, score in (("small", small), ("large", large)):
            out.append(EvalRecord(f"p{i}", text, model, score, cost_usd=None, split=split))
    return out


@pytest.fixture
def env(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    settings = load_settings()
    store = Store.from_settings(settings)
    try:
        store.import_records("tasks", training_records())
    finally:
        store.close()
    router = rf_home / "routers" / "knn-v1"
    assert main(["train", "knn", "--data", "tasks", "--out", str(router)]) == 0
    with FakeUpstream() as up:
        raw = {
            "models": [
                {
                    "id": "small",
                    "base_url": up.base_url,
                    "input_usd_per_mtok": 0.1,
                    "output_usd_per_mtok": 0.1,
                },
                {
                    "id": "large",
                    "base_url": up.base_url,
                    "input_usd_per_mtok": 3.0,
                    "output_usd_per_mtok": 3.0,
                },
            ],
            "synthetic_models": [
                {"name": name, "router": str(router)} for name in ("steady", "shifted", "arith", "quiet")
            ],
            "tenants": [{"name": "acme"}],
            "drift": {"enabled": False},
        }
        path = rf_home / "gateway.yaml"
        path.write_text(yaml.safe_dump(raw))
        yield {"home": rf_home, "config": path, "router": router, "up": up}


def send(client: openai.OpenAI, model: str, prompts: list[str]) -> list[str]:
    ids = []
    for text in prompts:
        reply = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
        ids.append(reply.headers["x-routerforge-request-id"])
    return ids


def test_drift_alerts_on_shifted_traffic_only(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings()
    gw = load_gateway_config(env["config"])
    app = create_app(settings, gw)
    rng = random.Random(42)  # traffic the router has not seen, from the same or a new distribution
    with LoopbackServer(app) as server:
        admin, _ = app.state.keys.create("acme", admin=True)
        user, _ = app.state.keys.create("acme")
        client = openai.OpenAI(base_url=server.base_url, api_key=user, max_retries=0)
        steady_ids = send(client, "steady", mixed(rng, 60))
        send(client, "shifted", [novel(rng) for _ in range(60)])
        arith_ids = send(client, "arith", [arith(rng) for _ in range(60)])
        send(client, "quiet", mixed(rng, 10))
        auth = {"authorization": f"Bearer {user}"}
        for rid in arith_ids[:40]:  # the arithmetic answers are rated bad: feedback far below predicted
            r = httpx.post(server.url + "/v1/feedback", headers=auth, json={"request_id": rid, "rating": 0.0})
            assert r.status_code == 200
        for rid in steady_ids[:5]:  # too few ratings to judge
            httpx.post(server.url + "/v1/feedback", headers=auth, json={"request_id": rid, "rating": 1.0})

        forbidden = httpx.get(server.url + "/v1/admin/drift", headers=auth)
        assert forbidden.status_code == 403
        got = httpx.get(
            server.url + "/v1/admin/drift",
            params={"refresh": "true"},
            headers={"authorization": f"Bearer {admin}"},
            timeout=60,
        )
        assert got.status_code == 200, got.text
        reports = {d["synthetic_model"]: d for d in got.json()["data"]}
        metrics = httpx.get(server.url + "/metrics", headers={"authorization": f"Bearer {admin}"}).text
        # the dashboard's badges: per synthetic model on /ui/traffic, per router directory on /ui/routers
        ui_auth = {"authorization": f"Bearer {admin}"}
        traffic_page = httpx.get(server.url + "/ui/traffic", headers=ui_auth, timeout=30)
        routers_page = httpx.get(server.url + "/ui/routers", headers=ui_auth, timeout=30)
    assert traffic_page.status_code == 200 and routers_page.status_code == 200
    assert 'badge-bad">drift: alert (coverage' in traffic_page.text
    assert 'badge-ok">drift: ok</span>' in traffic_page.text
    assert 'badge-info">drift: insufficient data</span>' in traffic_page.text
    assert 'badge-bad">drift shifted: alert (coverage' in routers_page.text
    assert 'badge-ok">drift steady: ok</span>' in routers_page.text

    steady, shifted, ar, quiet = (reports[n] for n in ("steady", "shifted", "arith", "quiet"))
    # unshifted traffic: no alarm; a handful of ratings is "insufficient data", not a verdict
    assert steady["checks"]["coverage"]["status"] == OK, steady["checks"]["coverage"]
    assert steady["checks"]["share"]["status"] == OK, steady["checks"]["share"]
    assert steady["checks"]["feedback"]["status"] == INSUFFICIENT
    assert steady["status"] == OK
    assert steady["checks"]["coverage"]["value"] < 0.10
    # prompts of a kind never trained on: poorly covered
    cov = shifted["checks"]["coverage"]
    assert cov["status"] == ALERT and cov["value"] > 0.5 and cov["p_value"] < 0.01, cov
    assert shifted["status"] == ALERT
    # only arithmetic: well covered, but the chosen-model shares moved, and feedback is far below predicted
    assert ar["checks"]["coverage"]["status"] == OK, ar["checks"]["coverage"]
    share = ar["checks"]["share"]
    assert share["status"] == ALERT and share["value"] > 0.3, share
    assert share["details"]["window_share"]["small"] > share["details"]["reference_share"]["small"]
    fb = ar["checks"]["feedback"]
    assert fb["status"] == ALERT and fb["n"] == 40 and fb["value"] < -0.5 and fb["details"]["ci"][1] < 0, fb
    # 10 requests: insufficient data everywhere, never an alarm
    assert quiet["status"] == INSUFFICIENT and quiet["window"]["requests"] == 10
    assert all(c["status"] == INSUFFICIENT and c["value"] is None for c in quiet["checks"].values())
    # metrics
    assert 'routerforge_drift_status{router="shifted"} 2.0' in metrics
    assert 'routerforge_drift_status{router="steady"} 0.0' in metrics
    assert 'routerforge_drift_status{router="quiet"} -1.0' in metrics
    assert 'routerforge_drift_low_coverage_share{router="shifted"}' in metrics
    assert 'routerforge_drift_share_tvd{router="arith"}' in metrics
    assert 'routerforge_drift_feedback_gap{router="arith"} -' in metrics
    assert 'routerforge_drift_check_status{check="share",router="arith"} 2.0' in metrics

    # the CLI computes the same from the store, without the gateway
    code = main(["drift", "--config", str(env["config"]), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    cli = {d["synthetic_model"]: d for d in out["data"]}
    for name in ("steady", "shifted", "arith", "quiet"):
        assert cli[name]["status"] == reports[name]["status"]
        assert cli[name]["checks"]["coverage"]["value"] == pytest.approx(
            reports[name]["checks"]["coverage"]["value"]
        )
    assert out["thresholds"]["coverage_alert"] == DriftConfig().coverage_alert
    assert main(["drift", "--config", str(env["config"]), "--model", "shifted", "--fail-on", "alert"]) == 4
    capsys.readouterr()
    assert main(["drift", "--config", str(env["config"]), "--model", "steady", "--fail-on", "warn"]) == 0
    capsys.readouterr()
    # a window too short to hold any request: insufficient data, exit 0
    assert main(["drift", "--config", str(env["config"]), "--window", "1m", "--last", "5", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert all(d["window"]["requests"] <= 5 for d in short["data"])
    assert all(d["status"] == INSUFFICIENT for d in short["data"])


def test_drift_cli_rejects_bad_input(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drift", "--config", str(env["config"]), "--window", "soon"]) != 0
    assert "--window" in capsys.readouterr().err
    assert main(["drift", "--config", str(env["config"]), "--model", "nosuch"]) != 0
    assert "No synthetic model 'nosuch'" in capsys.readouterr().err
    assert main(["drift", "--config", str(env["config"]), "--fail-on", "sometimes"]) != 0
    assert "--fail-on" in capsys.readouterr().err


def test_drift_without_training_data_in_the_store_says_so(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.from_settings(load_settings())
    try:
        store.delete_dataset("tasks")
    finally:
        store.close()
    assert main(["drift", "--config", str(env["config"]), "--model", "steady", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["data"][0]
    assert doc["status"] == INSUFFICIENT
    assert "not in the store" in doc["checks"]["coverage"]["reason"]


# -- the statistics alone ------------------------------------------------------------------------------
def test_statistics_behave() -> None:
    cfg = DriftConfig()
    rng = np.random.default_rng(0)
    centre = 3 * np.eye(8)[0]  # training prompts cover a cap of the sphere around one direction
    ref = rng.normal(size=(400, 8)) + centre
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    loo = nearest_similarity(ref, ref, exclude_self=True)
    assert np.all(loo < 1.0)  # never matched with itself
    reference = Reference(ref.astype(np.float32), loo, float(np.percentile(loo, 5)), {}, "")
    same = rng.normal(size=(300, 8)) + centre
    same /= np.linalg.norm(same, axis=1, keepdims=True)
    far = rng.normal(size=(300, 8)) - centre  # the opposite side: outside what training covered
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    ok = coverage_check(nearest_similarity(same, ref), reference, cfg)
    bad = coverage_check(nearest_similarity(far, ref), reference, cfg)
    assert ok.status == OK and ok.value is not None and ok.value < 0.1
    assert bad.status == ALERT and bad.value is not None and bad.value > 0.3
    assert coverage_check(nearest_similarity(same[:10], ref), reference, cfg).status == INSUFFICIENT
    assert two_proportion_p(5, 100, 5, 100) == pytest.approx(0.5)
    assert two_proportion_p(30, 100, 5, 100) < 1e-4
    # shares: equal distributions are ok whatever the size; a large shift alerts
    assert share_check({"a": 50, "b": 50}, {"a": 100, "b": 100}, cfg).status == OK
    assert share_check({"a": 95, "b": 5}, {"a": 100, "b": 100}, cfg).status == ALERT
    assert share_check({"a": 9, "b": 1}, {"a": 100, "b": 100}, cfg).status == INSUFFICIENT
    # a big but noisy gap is not significant; a consistent one is
    noisy = [0.9, -0.9] * 20 + [0.3]
    assert feedback_check(noisy, {}, cfg).status == OK
    assert feedback_check([-0.3 + 0.01 * (i % 3) for i in range(40)], {}, cfg).status == ALERT
    assert feedback_check([-0.5] * 10, {}, cfg).status == INSUFFICIENT


def test_the_gateway_computes_drift_in_the_background(env: dict[str, Any]) -> None:
    raw = yaml.safe_load(env["config"].read_text())
    raw["drift"] = {"enabled": True, "interval_s": 1}
    app = create_app(load_settings(), parse_gateway_config(raw))
    with LoopbackServer(app) as server:
        admin, _ = app.state.keys.create("acme", admin=True)
        monitor = app.state.service.drift
        deadline = time.monotonic() + 30
        while len(monitor.reports) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(monitor.reports) == ["arith", "quiet", "shifted", "steady"]
        assert all(r.status == INSUFFICIENT for r in monitor.reports.values())  # no traffic yet
        got = httpx.get(
            server.url + "/v1/admin/drift",
            params={"model": "quiet"},
            headers={"authorization": f"Bearer {admin}"},
        ).json()
        assert [d["synthetic_model"] for d in got["data"]] == ["quiet"]
        missing = httpx.get(
            server.url + "/v1/admin/drift",
            params={"model": "nosuch"},
            headers={"authorization": f"Bearer {admin}"},
        )
        assert missing.status_code == 404 and "nosuch" in missing.json()["error"]["message"]
        metrics = httpx.get(server.url + "/metrics", headers={"authorization": f"Bearer {admin}"}).text
    assert 'routerforge_drift_status{router="quiet"} -1.0' in metrics
