"""The request log loses nothing: every column of every row, refusals (401 included), streamed usage."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.backends.base import ChatRequest
from routerforge.backends.fit import estimate_prompt_tokens
from routerforge.backends.reliability import UpstreamPool
from routerforge.gateway.app import create_app
from routerforge.gateway.db import GatewayDB, GwRequest
from routerforge.gateway.logentry import UNKNOWN_TENANT, AttemptEntry, LogEntry
from routerforge.gateway.requestlog import RequestLog
from routerforge.gateway.service import GatewayService
from test_gateway import make_config, make_settings
from test_gateway_routing import StubRouter, router_dir

SERVED_FIELDS = ("chosen_model", "answered_model", "tokens_in", "tokens_out", "cost_usd", "response_text")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def fake_usage(messages: list[dict[str, Any]], answer: str) -> tuple[int, int]:
    """The fake upstream's usage: ceil(prompt chars / 4) + 1 prompt tokens, one token per answer word."""
    chars = sum(len(m["content"]) for m in messages)
    return math.ceil(chars / 4) + 1, len(answer.split())


def test_log_entry_declares_every_column() -> None:
    fields = {f.name for f in dataclasses.fields(LogEntry)} - {"attempts"}
    assert fields == {c.key for c in GwRequest.__table__.columns}
    assert {f.name for f in dataclasses.fields(AttemptEntry)} < {
        c.key for c in GwRequest.metadata.tables["gw_attempts"].columns
    }


def test_a_batch_opened_by_a_refusal_keeps_the_served_rows_whole(rf_home: Path) -> None:
    db = GatewayDB(f"sqlite:///{rf_home / 'log.db'}")
    log = RequestLog(db)
    now = dt.datetime(2026, 1, 1)
    refused = LogEntry(
        id="r1", tenant=UNKNOWN_TENANT, created_at=now, requested_model="", status=401, error="no key"
    )
    served = LogEntry(
        id="s1",
        tenant="acme",
        key_id="key_1",
        created_at=now,
        requested_model="small",
        chosen_model="small",
        answered_model="small",
        policy="threshold",
        decision={"strong": "large", "weak": "small", "p_strong": 0.2},
        tokens_in=12,
        tokens_out=3,
        cost_usd=0.5,
        response_text="hi",
        status=200,
        attempts=[AttemptEntry("small", "ok", latency_ms=1.5)],
    )
    log.write([refused, served, dataclasses.replace(refused, id="r2", status=404)])
    row = log.get("s1")
    assert row is not None
    assert {k: row[k] for k in (*SERVED_FIELDS, "policy", "decision")} == {
        "chosen_model": "small",
        "answered_model": "small",
        "tokens_in": 12,
        "tokens_out": 3,
        "cost_usd": 0.5,
        "response_text": "hi",
        "policy": "threshold",
        "decision": {"strong": "large", "weak": "small", "p_strong": 0.2},
    }
    assert row["attempts"] == [
        {"model": "small", "status": "ok", "status_code": None, "latency_ms": 1.5, "error": None}
    ]
    assert [r["status"] for r in log.query(tenant=UNKNOWN_TENANT)] in ([401, 404], [404, 401])
    db.close()


@pytest.mark.parametrize("durability", ["async", "commit"])
def test_concurrent_refused_and_served_requests_each_have_a_whole_row(
    rf_home: Path, upstream: FakeUpstream, durability: str
) -> None:
    """401 (no key, a wrong key), 403, 404, 429, 400 and served chat, stream and route requests at once,
    through the real app; the writer batches them together."""
    settings = make_settings(rf_home)
    config = make_config(
        upstream,
        logging={"durability": durability, "batch_size": 500, "flush_interval_s": 0.3},
        synthetic_models=[{"name": "globex-only", "router": "stub", "tenant": "globex"}],
    )
    app = create_app(settings, config)
    stub = router_dir(settings.routers_dir / "stub")
    app.state.service.routing._routers[stub.resolve()] = StubRouter(stub)  # a router without training
    wrong_key = "rf-not-a-real-key-0123456789"
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        slow_key, _ = app.state.keys.create("acme", requests_per_minute=3)

        def chat(text: str, **extra: Any) -> dict[str, Any]:
            return {"model": "small", "messages": [{"role": "user", "content": text}], **extra}

        plan: list[tuple[str, str, str | None, Any]] = []  # (kind, path, key, body)
        plan += [("no-key", "/v1/chat/completions", None, chat("x"))] * 10
        plan += [("wrong-key", "/v1/chat/completions", wrong_key, chat("x"))] * 10
        plan += [("wrong-key-route", "/v1/route", wrong_key, {"model": "small", "prompt": "x"})] * 5
        plan += [("unknown", "/v1/chat/completions", key, {**chat("x"), "model": "nope"})] * 10
        plan += [("forbidden", "/v1/chat/completions", key, {**chat("x"), "model": "globex-only"})] * 5
        plan += [("bad-json", "/v1/chat/completions", key, b"{not json")] * 5
        plan += [("limited", "/v1/chat/completions", slow_key, chat(f"limited {i}")) for i in range(8)]
        plan += [("chat", "/v1/chat/completions", key, chat(f"question number {i}")) for i in range(30)]
        plan += [("stream", "/v1/chat/completions", key, chat(f"stream {i}", stream=True)) for i in range(15)]
        plan += [("route", "/v1/route", key, {"model": "small", "prompt": f"route {i}"}) for i in range(5)]

        async def fire() -> list[tuple[str, Any, httpx.Response]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

                async def one(
                    kind: str, path: str, k: str | None, body: Any
                ) -> tuple[str, Any, httpx.Response]:
                    headers = {"authorization": f"Bearer {k}"} if k else {}
                    if isinstance(body, bytes):
                        r = await client.post(path, content=body, headers=headers)
                    else:
                        r = await client.post(path, json=body, headers=headers)
                    return kind, body, r

                return await asyncio.gather(*(one(*p) for p in plan))

        results = asyncio.run(fire())
        app.state.service.logs.flush()
        log = RequestLog(app.state.service.db)
        rows = {r["id"]: r for r in log.query(limit=10_000)}

    expected = {
        "no-key": 401,
        "wrong-key": 401,
        "wrong-key-route": 401,
        "forbidden": 403,
        "unknown": 404,
        "bad-json": 400,
    }
    limited = [r.status_code for kind, _, r in results if kind == "limited"]
    assert sorted(limited) == [200] * 3 + [429] * 5
    assert len(rows) == len(plan)  # every request id has its row, and no other row exists
    for kind, body, r in results:
        rid = r.headers["x-routerforge-request-id"]
        row = rows[rid]
        assert row["status"] == r.status_code == expected.get(kind, r.status_code), (kind, r.text)
        dumped = json.dumps(row, default=str)
        assert wrong_key not in dumped and key not in dumped and slow_key not in dumped
        if r.status_code == 401:
            assert row["tenant"] == UNKNOWN_TENANT and row["key_id"] is None
            assert row["endpoint"] == ("route" if kind.endswith("route") else "chat")
            continue
        assert row["tenant"] == "acme" and row["key_id"] is not None
        if r.status_code != 200 or kind == "route":
            continue
        assert all(row[f] not in (None, 0, "") for f in SERVED_FIELDS), (kind, row)
        assert row["answered_model"] == "small" and row["attempts"][0]["status"] == "ok"
        tokens_in, tokens_out = fake_usage(body["messages"], f"small says: {body['messages'][0]['content']}")
        assert (row["tokens_in"], row["tokens_out"], row["usage_estimated"]) == (tokens_in, tokens_out, False)
        assert row["cost_usd"] == pytest.approx((tokens_in * 1.0 + tokens_out * 2.0) / 1e6)
        assert row["stream"] is (kind == "stream")


def test_streamed_usage_is_counted_priced_and_reported(rf_home: Path, upstream: FakeUpstream) -> None:
    app = create_app(make_settings(rf_home), make_config(upstream))
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        messages = [{"role": "user", "content": "please count the tokens of this streamed prompt"}]
        raw = client.chat.completions.with_raw_response.create(
            model="large",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
        usage = [c.usage for c in raw.parse() if c.usage is not None]
        app.state.service.logs.flush()
        row = app.state.service.request_log.get(raw.headers["x-routerforge-request-id"])
    tokens_in, tokens_out = fake_usage(messages, "large says: " + messages[0]["content"])
    assert upstream.calls[-1].body["stream_options"] == {"include_usage": True}  # asked upstream
    assert (row["tokens_in"], row["tokens_out"], row["usage_estimated"]) == (tokens_in, tokens_out, False)
    assert row["cost_usd"] == pytest.approx((tokens_in * 100.0 + tokens_out * 200.0) / 1e6)
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (tokens_in, tokens_out)


def test_a_stream_without_upstream_usage_is_estimated_and_says_so(
    rf_home: Path, upstream: FakeUpstream
) -> None:
    settings, config = make_settings(rf_home), make_config(upstream)
    specs = [m.to_spec().model_copy(update={"options": {"stream_usage": False}}) for m in config.models]
    service = GatewayService(settings, config, db=GatewayDB(settings.store_url), pool=UpstreamPool(specs))
    app = create_app(settings, config, service=service)
    messages = [{"role": "user", "content": "an upstream that reports no usage in its stream"}]
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}"}) as h:
            r = h.post("/v1/chat/completions", json={"model": "small", "messages": messages, "stream": True})
        assert r.text.endswith("data: [DONE]\n\n")
        service.logs.flush()
        row = service.request_log.get(r.headers["x-routerforge-request-id"])
    assert "stream_options" not in upstream.calls[-1].body
    answer = "small says: " + messages[0]["content"]
    assert row["usage_estimated"] is True
    assert row["tokens_in"] == estimate_prompt_tokens(ChatRequest(model="small", messages=messages)) > 0
    assert row["tokens_out"] == math.ceil(len(answer) / 4)
    assert row["cost_usd"] == pytest.approx((row["tokens_in"] * 1.0 + row["tokens_out"] * 2.0) / 1e6)


def test_no_auth_mode_accepts_the_openai_client_and_any_token(rf_home: Path, upstream: FakeUpstream) -> None:
    app = create_app(make_settings(rf_home), make_config(upstream, require_auth=False))
    with LoopbackServer(app) as server:
        valid, _ = app.state.keys.create("acme")
        anyone = openai.OpenAI(
            base_url=server.base_url, api_key="sk-whatever-the-client-sends", max_retries=0
        )
        raw = anyone.chat.completions.with_raw_response.create(
            model="small", messages=[{"role": "user", "content": "hello without a key"}]
        )
        assert raw.parse().choices[0].message.content == "small says: hello without a key"
        chunks = list(
            anyone.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "a stream"}], stream=True
            )
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "small says: a stream"
        )
        keyed = openai.OpenAI(base_url=server.base_url, api_key=valid, max_retries=0)
        raw_keyed = keyed.chat.completions.with_raw_response.create(
            model="small", messages=[{"role": "user", "content": "with a key"}]
        )
        no_header = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "small", "messages": [{"role": "user", "content": "no header"}]},
        )
        assert no_header.status_code == 200
        app.state.service.logs.flush()
        log = app.state.service.request_log
        anon = log.get(raw.headers["x-routerforge-request-id"])
        own = log.get(raw_keyed.headers["x-routerforge-request-id"])
    assert (anon["tenant"], anon["key_id"], anon["status"]) == ("default", None, 200)
    assert own["tenant"] == "acme" and own["key_id"] is not None


def test_one_engine_factory_and_one_set_of_sqlite_pragmas(tmp_path: Path) -> None:
    from sqlalchemy import Engine, text

    from routerforge.data.store import Store

    def pragmas(engine: Engine) -> list[Any]:
        with engine.connect() as conn:
            names = ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            return [conn.execute(text(f"PRAGMA {p}")).scalar() for p in names]

    url = f"sqlite:///{tmp_path / 'one.db'}"
    store, gateway, durable = Store(url), GatewayDB(url), GatewayDB(url, durable_log=True)
    try:
        assert pragmas(store.engine) == pragmas(gateway.engine) == ["wal", 1, 1, 30000]  # NORMAL
        assert pragmas(durable.engine) == pragmas(gateway.log_engine) == ["wal", 1, 1, 30000]
        assert pragmas(durable.log_engine) == ["wal", 1, 2, 30000]  # FULL: the log's commit durability
    finally:
        for db in (store, gateway, durable):
            db.close()


def test_errors_declare_their_openai_code_and_param(rf_home: Path, upstream: FakeUpstream) -> None:
    app = create_app(make_settings(rf_home), make_config(upstream, limits={"max_prompt_chars": 10}))
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}"}) as h:
            too_long = h.post(
                "/v1/chat/completions",
                json={"model": "small", "messages": [{"role": "user", "content": "x" * 11}]},
            )
            bad_type = h.post(
                "/v1/chat/completions",
                json={"model": "small", "messages": [{"role": "user", "content": 3}], "temperature": "hot"},
            )
            bad_json = h.post(
                "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
            )
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert bad_type.json()["error"]["param"] is not None
    assert bad_json.json()["error"]["code"] == "invalid_json"
