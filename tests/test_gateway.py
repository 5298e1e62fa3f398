"""The gateway over real loopback HTTP: the official openai client → routerforge → the fake upstream."""

from __future__ import annotations

import json
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
                "input_usd_per_mtok": 1.0,
                "output_usd_per_mtok": 2.0,
                "max_retries": 1,
                "capabilities": ["json"],
            },
            {
                "id": "large",
                "base_url": up.base_url,
                "input_usd_per_mtok": 100.0,
                "output_usd_per_mtok": 200.0,
                "max_retries": 1,
                "fallbacks": ["small"],
                "capabilities": ["json", "tools"],
            },
        ],
        "tenants": [{"name": "acme"}, {"name": "globex", "training_opt_out": True}],
        "reliability": {
            "retry_base_s": 0.001,
            "retry_cap_s": 0.002,
            "breaker_failures": 3,
            "breaker_cooldown_s": 60,
        },
        "logging": {"flush_interval_s": 0.02},
    }
    raw.update(extra)
    return parse_gateway_config(raw)


def make_settings(home: Path) -> Settings:
    return load_settings(overrides={"home": home, "embed": {"provider": "hash"}})


class Gateway:
    """A running gateway with helpers: keys per tenant and openai clients."""

    def __init__(self, settings: Settings, config: GatewayConfig) -> None:
        self.app = create_app(settings, config)
        self.server = LoopbackServer(self.app).start()
        self.service = self.app.state.service
        self.keys: dict[str, str] = {}

    def key(self, tenant: str, *, admin: bool = False, rpm: int | None = None) -> str:
        secret, _ = self.app.state.keys.create(tenant, admin=admin, requests_per_minute=rpm)
        return secret

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.base_url, api_key=key, max_retries=0, timeout=30)

    def http(self, key: str | None) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)

    def flush(self) -> None:
        self.service.logs.flush()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def gw(rf_home: Path, upstream: FakeUpstream) -> Iterator[Gateway]:
    upstream.reset()
    g = Gateway(make_settings(rf_home), make_config(upstream))
    yield g
    g.stop()
    upstream.reset()


def test_pass_through_with_openai_client(gw: Gateway, upstream: FakeUpstream) -> None:
    key = gw.key("acme")
    client = gw.client(key)
    raw = client.chat.completions.with_raw_response.create(
        model="small", messages=[{"role": "user", "content": "hello there"}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "small says: hello there"
    assert resp.model == "small"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    assert raw.headers["x-routerforge-model"] == "small"
    rid = raw.headers["x-routerforge-request-id"]
    assert upstream.count("small") == 1
    gw.flush()
    with gw.http(key) as h:
        entry = h.get(f"/v1/logs/{rid}").json()
    assert entry["tenant"] == "acme"
    assert entry["chosen_model"] == "small" and entry["answered_model"] == "small"
    assert entry["status"] == 200
    assert entry["messages"] == [{"role": "user", "content": "hello there"}]
    assert [a["status"] for a in entry["attempts"]] == ["ok"]
    assert entry["cost_usd"] > 0 and entry["tokens_in"] > 0


def test_streaming_with_usage(gw: Gateway) -> None:
    client = gw.client(gw.key("acme"))
    stream = client.chat.completions.create(
        model="large",
        messages=[{"role": "user", "content": "count to three please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "large says: count to three please"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_fallback_order_and_attempts_logged(gw: Gateway, upstream: FakeUpstream) -> None:
    key = gw.key("acme")
    upstream.inject(Fault("status", status=503, model="large", times=2))
    raw = gw.client(key).chat.completions.with_raw_response.create(
        model="large", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-routerforge-model"] == "small"
    assert raw.parse().choices[0].message.content == "small says: hi"
    gw.flush()
    entry = gw.http(key).get(f"/v1/logs/{raw.headers['x-routerforge-request-id']}").json()
    assert [(a["model"], a["status"], a["status_code"]) for a in entry["attempts"]] == [
        ("large", "error", 503),
        ("large", "error", 503),
        ("small", "ok", None),
    ]
    assert entry["chosen_model"] == "large" and entry["answered_model"] == "small"


def test_circuit_breaker_skips_a_failing_model(gw: Gateway, upstream: FakeUpstream) -> None:
    key = gw.key("acme")
    client = gw.client(key)
    upstream.inject(Fault("status", status=500, model="large", times=None))
    for _ in range(2):  # 2 requests × 2 tries = 4 failures ≥ 3 → open
        client.chat.completions.create(model="large", messages=[{"role": "user", "content": "x"}])
    before = upstream.count("large")
    raw = client.chat.completions.with_raw_response.create(
        model="large", messages=[{"role": "user", "content": "y"}]
    )
    assert raw.headers["x-routerforge-model"] == "small"
    assert upstream.count("large") == before  # not even tried
    gw.flush()
    entry = gw.http(key).get(f"/v1/logs/{raw.headers['x-routerforge-request-id']}").json()
    assert entry["attempts"][0]["status"] == "skipped" and entry["attempts"][0]["error"] == "circuit open"
    assert gw.http(key).get("/readyz").json()["breakers"]["large"] == "open"
    upstream.clear_faults()


def test_all_upstreams_failing_is_502_and_logged(gw: Gateway, upstream: FakeUpstream) -> None:
    key = gw.key("acme")
    upstream.inject(Fault("status", status=500, times=None))
    with pytest.raises(openai.APIStatusError) as info:
        gw.client(key).chat.completions.create(model="large", messages=[{"role": "user", "content": "x"}])
    upstream.clear_faults()
    assert info.value.status_code == 502
    body = info.value.response.json()
    assert body["error"]["type"] == "upstream_error"
    rid = info.value.response.headers["x-routerforge-request-id"]
    gw.flush()
    entry = gw.http(key).get(f"/v1/logs/{rid}").json()
    assert entry["status"] == 502 and len(entry["attempts"]) == 4


def test_broken_stream_ends_with_error_event(gw: Gateway, upstream: FakeUpstream) -> None:
    key = gw.key("acme")
    upstream.inject(Fault("broken_stream", model="small", after_chunks=2))
    with gw.http(key) as h:
        r = h.post(
            "/v1/chat/completions",
            json={
                "model": "small",
                "stream": True,
                "messages": [{"role": "user", "content": "one two three four"}],
            },
        )
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "error" in json.loads(events[-2])
    gw.flush()
    entry = gw.http(key).get(f"/v1/logs/{r.headers['x-routerforge-request-id']}").json()
    assert entry["status"] == 502 and entry["attempts"][-1]["status"] == "error"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"model": "small"}).encode(), 400, "messages"),
        (json.dumps({"model": "small", "messages": []}).encode(), 400, "messages"),
        (json.dumps({"model": "small", "messages": "hi"}).encode(), 400, "messages"),
        (json.dumps({"model": 3, "messages": [{"role": "user", "content": "x"}]}).encode(), 400, "model"),
        (json.dumps({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).encode(), 404, "nope"),
        (
            json.dumps({"model": "small", "messages": [{"role": "user", "content": "x" * 5000}]}).encode(),
            400,
            "5000",
        ),
    ],
)
def test_bad_requests_get_openai_error_bodies(
    rf_home: Path, upstream: FakeUpstream, body: bytes, status: int, fragment: str
) -> None:
    cfg = make_config(upstream, limits={"max_prompt_chars": 1000})
    app = create_app(make_settings(rf_home), cfg)
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        r = httpx.post(
            server.url + "/v1/chat/completions",
            content=body,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert fragment in err["message"]


def test_auth_is_required_and_checked(gw: Gateway) -> None:
    with gw.http(None) as h:
        r = h.post(
            "/v1/chat/completions", json={"model": "small", "messages": [{"role": "user", "content": "x"}]}
        )
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    with gw.http("rf-wrong") as h:
        assert h.get("/v1/models").status_code == 401
    key = gw.key("acme")
    kid = gw.app.state.keys.db.list_keys("acme")[0].id
    with gw.http(key) as h:
        assert h.get("/v1/models").status_code == 200
        gw.app.state.keys.revoke(kid)
        assert h.get("/v1/models").status_code == 401


def test_rate_limit_per_key(gw: Gateway) -> None:
    key = gw.key("acme", rpm=2)
    other = gw.key("acme")
    with gw.http(key) as h:
        assert h.get("/v1/models").status_code == 200
        assert h.get("/v1/models").status_code == 200
        r = h.get("/v1/models")
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    with gw.http(other) as h:
        assert h.get("/v1/models").status_code == 200


def test_tenant_isolation_of_logs_and_feedback(gw: Gateway) -> None:
    a, b = gw.key("acme"), gw.key("globex")
    admin = gw.key("ops", admin=True)
    raw = gw.client(a).chat.completions.with_raw_response.create(
        model="small", messages=[{"role": "user", "content": "secret of acme"}]
    )
    rid = raw.headers["x-routerforge-request-id"]
    with gw.http(b) as h:
        assert h.get(f"/v1/logs/{rid}").status_code == 404
        assert h.post("/v1/feedback", json={"request_id": rid, "rating": 0.0}).status_code == 404
        assert all(r["tenant"] == "globex" for r in h.get("/v1/logs").json()["data"])
        assert h.get("/v1/logs", params={"tenant": "acme"}).status_code == 403
    with gw.http(a) as h:
        r = h.post("/v1/feedback", json={"request_id": rid, "rating": 1.0, "labels": {"good": True}})
        assert r.status_code == 200, r.text
        assert [x["id"] for x in h.get("/v1/logs").json()["data"]] == [rid]
    with gw.http(admin) as h:
        assert [x["id"] for x in h.get("/v1/logs", params={"tenant": "acme"}).json()["data"]] == [rid]


def test_budget_refuses_with_429(rf_home: Path, upstream: FakeUpstream) -> None:
    cfg = make_config(upstream, tenants=[{"name": "acme", "daily_usd": 0.0001}])
    app = create_app(make_settings(rf_home), cfg)
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        # large costs ~100 USD/Mtok: a few requests exhaust 0.0001 USD
        with pytest.raises(openai.RateLimitError) as info:
            for _ in range(10):
                client.chat.completions.create(
                    model="large", messages=[{"role": "user", "content": "x" * 40}]
                )
        assert info.value.response.json()["error"]["type"] == "insufficient_quota"
        admin, _ = app.state.keys.create("ops", admin=True)
        metrics = httpx.get(server.url + "/metrics", headers={"authorization": f"Bearer {admin}"}).text
    assert 'routerforge_budget_left_usd{tenant="acme"}' in metrics


def test_models_health_and_metrics(gw: Gateway) -> None:
    key = gw.key("acme")
    gw.client(key).chat.completions.create(model="small", messages=[{"role": "user", "content": "x"}])
    ids = [m.id for m in gw.client(key).models.list().data]
    assert {"small", "large"} <= set(ids)
    with gw.http(None) as h:
        assert h.get("/healthz").json()["status"] == "ok"
        assert h.get("/readyz").status_code == 200
        assert h.get("/metrics").status_code == 401  # tenants and spend: admin keys only by default
    with gw.http(gw.key("ops", admin=True)) as h:
        text = h.get("/metrics").text
    assert 'routerforge_requests_total{chosen_model="small",status="200",synthetic_model="small"}' in text
    assert "routerforge_upstream_latency_seconds_bucket" in text
    assert 'routerforge_tokens_total{direction="in",model="small"}' in text
    assert "routerforge_cost_usd_total" in text


def test_client_disconnect_mid_stream_is_logged(gw: Gateway, upstream: FakeUpstream) -> None:
    key = gw.key("acme")
    upstream.inject(Fault("slow_stream", model="small", delay_s=0.2))
    body = {
        "model": "small",
        "stream": True,
        "messages": [{"role": "user", "content": "w1 w2 w3 w4 w5 w6 w7 w8"}],
    }
    with (
        gw.http(key) as h,
        h.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        rid = r.headers["x-routerforge-request-id"]
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # go away after the first event
    import time

    deadline = time.monotonic() + 10
    entry: dict[str, Any] = {}
    while time.monotonic() < deadline:
        gw.flush()
        resp = gw.http(key).get(f"/v1/logs/{rid}")
        if resp.status_code == 200:
            entry = resp.json()
            break
        time.sleep(0.1)
    assert entry["status"] == 499 and "disconnect" in entry["error"]
    assert entry["answered_model"] == "small" and entry["attempts"][0]["model"] == "small"


def test_secrets_are_redacted_in_the_log(gw: Gateway) -> None:
    key = gw.key("acme")
    secret = "sk-THISISASECRETVALUE123"
    raw = gw.client(key).chat.completions.with_raw_response.create(
        model="small", messages=[{"role": "user", "content": f"my key is {secret}"}]
    )
    gw.flush()
    entry = gw.http(key).get(f"/v1/logs/{raw.headers['x-routerforge-request-id']}").json()
    assert secret not in json.dumps(entry)
    assert "[REDACTED]" in entry["messages"][0]["content"]
    assert key not in json.dumps(entry)


def test_oversize_prompt_truncated_when_configured() -> None:
    from routerforge.errors import ValidationError
    from routerforge.gateway.schemas import limit_prompt

    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a" * 50},
        {"role": "assistant", "content": "b" * 50},
        {"role": "user", "content": "c" * 80},
    ]
    out = limit_prompt(msgs, 60, "truncate")
    assert [m["role"] for m in out] == ["system", "user"]
    assert sum(len(m["content"]) for m in out) <= 60 and out[-1]["content"].startswith("c")
    with pytest.raises(ValidationError):
        limit_prompt(msgs, 60, "reject")
    assert limit_prompt(msgs, 10_000, "reject") is msgs


async def test_in_process_asgi_errors_and_unknown_routes(rf_home: Path, upstream: FakeUpstream) -> None:
    app = create_app(make_settings(rf_home), make_config(upstream))
    key, _ = app.state.keys.create("acme")
    await app.state.service.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            r = await client.get("/nope")
            assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
            r = await client.post(
                "/v1/route",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "small", "prompt": "hi"},
            )
            assert (
                r.status_code == 200 and r.json()["model"] == "small" and r.json()["reason"] == "pass-through"
            )
            r = await client.post(
                "/v1/route", headers={"authorization": f"Bearer {key}"}, json={"model": "small"}
            )
            assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]
    finally:
        await app.state.service.aclose()
