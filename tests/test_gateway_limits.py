"""Hostile input in the HTTP request path (issue 9): limits, no 5xx for any client input, slow clients,
client disconnects, n > 1 and broken router directories. Every refusal is a 4xx in the OpenAI error shape."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from fake_upstream import FakeUpstream, Fault
from gateway_server import LoopbackServer
from routerforge.cli.main import main
from routerforge.config import Settings, load_settings
from routerforge.gateway.app import create_app
from routerforge.gateway.config import parse_gateway_config
from routerforge.gateway.server import LimitedHttpToolsProtocol


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def config(up: FakeUpstream, **limits: Any) -> dict[str, Any]:
    return {
        "models": [{"id": "small", "base_url": up.base_url, "max_retries": 0}],
        "tenants": [{"name": "acme"}],
        "logging": {"flush_interval_s": 0.02},
        "limits": limits,
    }


@pytest.fixture
def settings(rf_home: Path, upstream: FakeUpstream) -> Iterator[Settings]:
    upstream.reset()
    yield load_settings(overrides={"home": rf_home, "embed": {"provider": "hash"}})
    upstream.reset()


class Running:
    """A gateway on loopback with one tenant key and an admin key."""

    def __init__(self, settings: Settings, raw: dict[str, Any], **server_options: Any) -> None:
        self.app = create_app(settings, parse_gateway_config(raw))
        self.server = LoopbackServer(self.app, **server_options).start()
        self.key, _ = self.app.state.keys.create("acme")
        self.admin, _ = self.app.state.keys.create("ops", admin=True)
        self.service = self.app.state.service

    def post(self, path: str, body: Any = None, *, content: Any = None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.key}", **kw.pop("headers", {})}
        if content is None:
            content = json.dumps(body)
            headers["content-type"] = "application/json"
        kw.setdefault("timeout", 30)
        return httpx.post(self.server.url + path, content=content, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.admin}"}
        return httpx.get(self.server.url + path, headers=headers, timeout=30, **kw)

    def last_row(self) -> dict[str, Any]:
        self.service.logs.flush()
        rows = self.service.requests.query(limit=1)
        return rows[0] if rows else {}

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def gw(settings: Settings, upstream: FakeUpstream) -> Iterator[Running]:
    g = Running(settings, config(upstream, max_body_bytes=65_536, max_prompt_chars=4000, max_messages=20))
    yield g
    g.stop()


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "small", "messages": [{"role": "user", "content": content}], **extra}


# -- 1. limits ---------------------------------------------------------------------------------------
def test_body_over_the_limit_is_413_and_logged_without_it(gw: Running) -> None:
    big = "x" * 70_000
    err = assert_error(gw.post("/v1/chat/completions", chat(big)), 413, "request_too_large")
    assert "65536" in err["message"]
    row = gw.last_row()
    assert row["status"] == 413 and row["endpoint"] == "chat"
    assert row["messages"] is None and row["prompt"] is None and big not in (row["error"] or "")
    assert_error(gw.post("/v1/route", {"model": "small", "prompt": big}), 413)
    assert_error(gw.post("/v1/feedback", {"request_id": "a", "rating": 1, "comment": big}), 413)


def test_a_chunked_body_without_content_length_is_cut_off(gw: Running) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"model": "small", "messages": [{"role": "user", "content": "'
        for _ in range(40):  # 40 × 4 KiB = 160 KiB, over the 64 KiB cap
            sent += 4096
            yield b"y" * 4096
        yield b'"}]}'

    resp = gw.post("/v1/chat/completions", content=chunks())
    assert "content-length" not in resp.request.headers
    assert_error(resp, 413, "request_too_large")
    assert gw.last_row()["status"] == 413


def test_message_count_limit(gw: Running) -> None:
    body = {"model": "small", "messages": [{"role": "user", "content": "m"}] * 21}
    assert assert_error(gw.post("/v1/chat/completions", body), 400)["param"] == "messages"
    body = {"model": "small", "messages": [{"role": "user", "content": "m"}] * 21}
    assert_error(gw.post("/v1/route", body), 400)


def test_deeply_nested_json_is_400_not_500(gw: Running) -> None:
    deep = '{"model": "small", "messages": [{"role": "user", "content": "x"}], "x": ' + "[" * 1000
    deep += "]" * 1000 + "}"
    assert_error(gw.post("/v1/chat/completions", content=deep), 400, "json_too_deep")
    assert gw.last_row()["status"] == 400  # the refusal has its log row
    just_over = {"model": "small", "prompt": "p", "x": json.loads("[" * 64 + "]" * 64)}
    assert_error(gw.post("/v1/route", just_over), 400, "json_too_deep")
    labels: Any = {}
    for _ in range(100):
        labels = {"a": labels}
    assert_error(gw.post("/v1/feedback", {"request_id": "a", "rating": 1, "labels": labels}), 400)


def test_prompt_size_counts_tools_and_extra_fields(gw: Running, upstream: FakeUpstream) -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 5000, "parameters": {}}}
    for body in (
        chat("short", tools=[tool]),
        chat("short", metadata={"blob": "z" * 5000}),
        {"model": "small", "messages": [{"role": "user", "content": "short", "name": "n" * 5000}]},
        chat("w" * 4001),
    ):
        err = assert_error(gw.post("/v1/chat/completions", body), 400, "context_length_exceeded")
        assert "4000" in err["message"]
        row = gw.last_row()
        assert row["status"] == 400 and row["messages"] is None and row["prompt"] is None
    assert upstream.count() == 0
    assert gw.post("/v1/chat/completions", chat("w" * 3000)).status_code == 200


def test_route_refuses_a_huge_prompt_before_embedding(settings: Settings, upstream: FakeUpstream) -> None:
    g = Running(settings, config(upstream, max_body_bytes=16 * 1024 * 1024))
    try:
        prompt = "word " * 2_000_000  # 10 MB
        start = time.perf_counter()
        resp = g.post("/v1/route", {"model": "small", "prompt": prompt})
        elapsed = time.perf_counter() - start
        err = assert_error(resp, 400, "context_length_exceeded")
        assert err["param"] == "prompt" and elapsed < 5
        row = g.last_row()
        assert row["endpoint"] == "route" and row["status"] == 400 and row["prompt"] is None
    finally:
        g.stop()
    g = Running(settings, config(upstream))  # the defaults: 1 MiB bodies
    try:
        assert_error(g.post("/v1/route", {"model": "small", "prompt": prompt}), 413)
    finally:
        g.stop()


def test_feedback_labels_and_comment_are_bounded(gw: Running) -> None:
    rid = gw.post("/v1/chat/completions", chat()).headers["x-routerforge-request-id"]
    labels = {f"k{i}": "v" * 100 for i in range(100)}  # ~10 KB as JSON
    fb = gw.post("/v1/feedback", {"request_id": rid, "rating": 1, "labels": labels})
    assert assert_error(fb, 400)["param"] == "labels"
    fb = gw.post("/v1/feedback", {"request_id": rid, "rating": 1, "comment": "c" * 4001})
    assert assert_error(fb, 400)["param"] == "comment"
    fb = gw.post("/v1/feedback", {"request_id": rid, "rating": 1, "labels": {"ok": True}, "comment": "fine"})
    assert fb.status_code == 200, fb.text


# -- 2. no 500 for anything a client can send --------------------------------------------------------
def test_lone_surrogates_and_nul_are_replaced(gw: Running, upstream: FakeUpstream) -> None:
    raw = '{"model": "small", "messages": [{"role": "user", "content": "a\\ud800b\\u0000c"}]}'
    resp = gw.post("/v1/chat/completions", content=raw)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "small says: a\ufffdb\ufffdc"
    assert upstream.calls[-1].body["messages"][0]["content"] == "a\ufffdb\ufffdc"
    resp = gw.post("/v1/route", content='{"model": "small", "prompt": "\\udfff lone"}')
    assert resp.status_code == 200, resp.text
    assert gw.last_row()["prompt"] == "\ufffd lone"
    raw_bytes = b'{"model": "small", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'
    resp = gw.post("/v1/chat/completions", content=raw_bytes)  # a surrogate encoded as UTF-8 bytes
    assert resp.status_code == 200 and upstream.calls[-1].body["messages"][0]["content"] == "\ufffd"
    assert_error(gw.post("/v1/chat/completions", content=b'{"model": "\xff\xfe"}'), 400, "invalid_json")


def test_model_names_are_bounded(gw: Running) -> None:
    for path, body in (
        ("/v1/chat/completions", chat(model="router-" + "k" * 300)),
        ("/v1/route", {"model": "router-" + "k" * 300, "prompt": "p"}),
    ):
        assert assert_error(gw.post(path, body), 400)["param"] == "model"
    assert_error(gw.post("/v1/route", {"model": "router-" + "k" * 240, "prompt": "p"}), 404)
    assert_error(gw.post("/v1/route", {"model": "router-a\u0000b", "prompt": "p"}), 404)


def test_non_finite_numbers_are_refused(gw: Running) -> None:
    for raw in (
        '{"model": "small", "prompt": "p", "routing": {"willingness_to_pay": 1e999}}',
        '{"model": "small", "prompt": "p", "routing": {"max_cost_usd": NaN}}',
    ):
        assert_error(gw.post("/v1/route", content=raw), 400, "invalid_json")


@pytest.mark.parametrize(
    "query",
    [
        "since=99999999999d",
        "since=1e30s",
        "since=%C2%B2h",
        "since=9999-12-31T23:59:59-23:59",
        "limit=-1",
        "limit=abc",
        "limit=99999999999999999999999999",
        "tenant=" + "t" * 300,
        "tenant=a%00b",
    ],
)
def test_log_queries_never_500(gw: Running, query: str) -> None:
    resp = gw.get("/v1/logs?" + query)
    if resp.status_code != 200:
        assert_error(resp, 400)
    else:
        assert resp.json()["object"] == "list"


def test_bad_request_ids_are_404(gw: Running) -> None:
    for rid in ("x" * 500, "a%00b", "%ED%A0%80", "..%2F..%2Fetc"):
        assert_error(gw.get("/v1/logs/" + rid), 404)
    fb = gw.post("/v1/feedback", {"request_id": "a\u0000b", "rating": 1})
    assert_error(fb, 404)


def test_framework_errors_have_the_openai_shape(gw: Running) -> None:
    assert_error(gw.get("/v1/nope"), 404)
    resp = gw.get("/v1/chat/completions")
    assert_error(resp, 405)
    assert "POST" in resp.headers["allow"]
    assert_error(httpx.put(gw.server.url + "/v1/models"), 405)
    assert_error(gw.get("/v1/logs?limit=1.5"), 400)


# -- 4. disconnects and slow clients -----------------------------------------------------------------
def test_a_non_streaming_client_that_leaves_cancels_the_upstream_call(
    gw: Running, upstream: FakeUpstream
) -> None:
    upstream.inject(Fault("timeout", delay_s=30))
    with pytest.raises(httpx.ReadTimeout):
        gw.post("/v1/chat/completions", chat(), timeout=httpx.Timeout(30, read=0.5))
    deadline = time.monotonic() + 10
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = gw.last_row()
        if row.get("status") == 499:
            break
        time.sleep(0.05)
    assert row["status"] == 499 and "disconnect" in row["error"]
    assert row["total_ms"] < 5000  # logged when the client left, not when the upstream gave up (30 s)
    assert upstream.count() == 1


def _raw_socket(server: LoopbackServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        out += data
    return out


@pytest.fixture
def slow_gw(settings: Settings, upstream: FakeUpstream) -> Iterator[Running]:
    raw = config(upstream, header_timeout_s=1.0, body_timeout_s=1.0, max_header_bytes=4096)
    g = Running(settings, raw, http=LimitedHttpToolsProtocol, timeout_keep_alive=1)
    yield g
    g.stop()


def test_slowloris_headers_are_cut_off_with_408(slow_gw: Running) -> None:
    sock = _raw_socket(slow_gw.server)
    start = time.monotonic()
    request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + b"x-slow: " + b"a" * 100
    try:
        for byte in request:
            sock.sendall(bytes([byte]))
            time.sleep(0.05)  # 20 bytes/s: the headers would take ~7 s
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"error"' in answer
    assert time.monotonic() - start < 3


def test_a_silent_connection_is_closed(slow_gw: Running) -> None:
    sock = _raw_socket(slow_gw.server)
    start = time.monotonic()
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 3


def test_a_slow_body_is_cut_off_with_408(slow_gw: Running) -> None:
    sock = _raw_socket(slow_gw.server)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {slow_gw.key}\r\ncontent-length: 500\r\n\r\n"
    )
    sock.sendall(head.encode())
    start = time.monotonic()
    try:
        for _ in range(60):
            sock.sendall(b" ")
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer and time.monotonic() - start < 4
    assert slow_gw.last_row()["status"] == 408


def test_oversized_headers_are_431(slow_gw: Running) -> None:
    sock = _raw_socket(slow_gw.server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"b" * 10_000)
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    ok = httpx.get(slow_gw.server.url + "/healthz", headers={"x-fine": "f" * 1000})
    assert ok.status_code == 200  # normal requests (keep-alive included) are unaffected
    with httpx.Client(base_url=slow_gw.server.url) as client:
        assert [client.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]


# -- 5. n > 1 --------------------------------------------------------------------------------------
def test_n_returns_every_choice(gw: Running, upstream: FakeUpstream) -> None:
    resp = gw.post("/v1/chat/completions", chat("hi", n=3))
    assert resp.status_code == 200, resp.text
    choices = resp.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert [c["message"]["content"] for c in choices] == [
        "small says: hi",
        "small says: hi #1",
        "small says: hi #2",
    ]
    assert upstream.calls[-1].body["n"] == 3
    err = assert_error(gw.post("/v1/chat/completions", chat("hi", n=2, stream=True)), 400)
    assert err["param"] == "n"
    assert_error(gw.post("/v1/chat/completions", chat("hi", n=0)), 400)


# -- 3. broken router directories ----------------------------------------------------------------------
def _train(settings: Settings, name: str) -> Path:
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.policy import trained as pipeline

    prompts = [f"math question {i}" for i in range(10)] + [f"say hello {i}" for i in range(10)]
    scores = np.array([[0.0, 1.0]] * 10 + [[1.0, 1.0]] * 10)
    matrix = ScoreMatrix(
        name="tiny",
        keys=[str(i) for i in range(20)],
        prompts=prompts,
        models=["small", "large"],
        scores=scores,
        costs=np.full((20, 2), np.nan),
    )
    out = settings.routers_dir / name
    pipeline.train_router("knn", matrix, np.arange(20), settings.embed, out, k=3)
    return out


def _two_models(up: FakeUpstream) -> list[dict[str, Any]]:
    return [{"id": m, "base_url": up.base_url, "max_retries": 0} for m in ("small", "large")]


@pytest.mark.parametrize("damage", ["truncated_npy", "garbled_json"])
def test_a_broken_router_dir_answers_503_naming_it(
    settings: Settings, upstream: FakeUpstream, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _train(settings, "good")
    bad = settings.routers_dir / "bad"
    shutil.copytree(good, bad)
    if damage == "truncated_npy":
        npy = sorted(bad.glob("*.npy"))[0]
        npy.write_bytes(npy.read_bytes()[:100])
    else:
        (bad / "router.json").write_text('{"type": "knn", "params": ')
    raw = {**config(upstream), "models": _two_models(upstream)}
    g = Running(settings, raw)
    try:
        ready = httpx.get(g.server.url + "/readyz")
        assert ready.status_code == 200 and ready.json()["routers_failed"] == 1
        err = assert_error(
            g.post("/v1/route", {"model": "router-bad", "prompt": "p"}), 503, "router_unavailable"
        )
        assert "router-bad" in err["message"] and str(bad) not in err["message"]
        assert_error(g.post("/v1/chat/completions", chat(model="router-bad")), 503, "router_unavailable")
        assert g.post("/v1/route", {"model": "router-good", "prompt": "say hello 3"}).status_code == 200
        assert g.last_row()["status"] == 200
    finally:
        g.stop()
    # Named in gateway.yaml: `serve` loads it before it binds and stops with the file and the reason.
    named = {**raw, "synthetic_models": [{"name": "smart", "router": "bad"}]}
    path = settings.home / "gateway.yaml"
    path.write_text(yaml.safe_dump(named))
    assert main(["serve", "--config", str(path), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and ("npy" in err if damage == "truncated_npy" else "router.json" in err)


def test_a_text_part_without_string_text_is_400(gw: Running, upstream: FakeUpstream) -> None:
    body = {"model": "small", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    assert "messages.0.content" in assert_error(gw.post("/v1/chat/completions", body), 400)["param"]
    assert upstream.count() == 0


def test_an_upstream_400_for_the_clients_values_is_a_400(gw: Running, upstream: FakeUpstream) -> None:
    upstream.inject(Fault("status", status=400, times=None))
    try:
        err = assert_error(gw.post("/v1/chat/completions", chat(max_tokens=10**30)), 400, "upstream_rejected")
        assert "HTTP 400" in err["message"]
        assert gw.last_row()["status"] == 400
        stream = gw.post("/v1/chat/completions", chat(stream=True))
        assert_error(stream, 400, "upstream_rejected")
    finally:
        upstream.reset()
    upstream.inject(Fault("status", status=503, times=None))
    try:
        assert_error(gw.post("/v1/chat/completions", chat()), 502)  # the upstream's own failure stays 502
    finally:
        upstream.reset()
