"""HttpEmbedder against a real loopback HTTP server (OpenAI and TEI formats, retries)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from routerforge.config import EmbedSettings
from routerforge.embed import HttpEmbedder, build_embedder
from routerforge.embed.http import resolve_endpoint
from routerforge.errors import ConfigError, UpstreamError

DIM = 8


def fake_vector(text: str) -> list[float]:
    rng = np.random.default_rng(sum(text.encode()))
    return (rng.normal(size=DIM) * 3.0).tolist()  # deliberately not normalised


@dataclass
class ServerState:
    fail_with: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    requests: list[dict[str, Any]] = field(default_factory=list)


def make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(
                {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
            )
            if state.fail_with:
                status = state.fail_with.pop(0)
                self._send(status, {"error": {"message": "try again"}}, {"Retry-After": "0"})
                return
            if self.path == "/v1/embeddings":
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_vector(t)}
                    for i, t in enumerate(body["input"])
                ]
                self._send(200, {"object": "list", "data": data[::-1], "model": body["model"]})
            elif self.path == "/embed":
                self._send(200, [fake_vector(t) for t in body["inputs"]])
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _expected(texts: list[str]) -> np.ndarray:
    raw = np.array([fake_vector(t) for t in texts], dtype=np.float32)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_openai_format_batches_orders_and_normalises(server: tuple[str, ServerState]) -> None:
    url, state = server
    emb = HttpEmbedder(url + "/v1", model="text-embedding-test", api_key="sk-secret-123", batch_size=2)
    texts = ["one", "two", "three", "four", "five"]
    out = emb.embed(texts)
    assert out.shape == (5, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out, _expected(texts), atol=1e-6)
    assert [len(r["body"]["input"]) for r in state.requests] == [2, 2, 1]
    assert all(r["path"] == "/v1/embeddings" for r in state.requests)
    assert state.requests[0]["auth"] == "Bearer sk-secret-123"
    assert state.requests[0]["body"]["model"] == "text-embedding-test"
    assert emb.dim == DIM and "sk-secret" not in repr(emb) and "sk-secret" not in emb.id
    emb.close()


def test_tei_format(server: tuple[str, ServerState]) -> None:
    url, state = server
    emb = build_embedder(EmbedSettings(provider="http", url=url + "/embed", batch_size=3))
    assert isinstance(emb, HttpEmbedder)
    texts = ["alpha", "beta", "gamma", "delta"]
    np.testing.assert_allclose(emb.embed(texts), _expected(texts), atol=1e-6)
    assert state.requests[0]["body"] == {
        "inputs": ["alpha", "beta", "gamma"],
        "truncate": True,
        "normalize": True,
    }
    assert state.requests[0]["auth"] is None


def test_dim_is_probed_when_unknown(server: tuple[str, ServerState]) -> None:
    url, state = server
    emb = HttpEmbedder(url, api_format="tei")
    assert emb.dim == DIM and len(state.requests) == 1
    assert emb.embed([]).shape == (0, DIM)


def test_retries_500_then_succeeds(server: tuple[str, ServerState], caplog: pytest.LogCaptureFixture) -> None:
    url, state = server
    state.fail_with = [500, 429]
    caplog.set_level(logging.DEBUG)
    emb = HttpEmbedder(url + "/v1/embeddings", model="m", api_key="sk-never-logged", backoff_s=0.01)
    out = emb.embed(["retry me"])
    np.testing.assert_allclose(out, _expected(["retry me"]), atol=1e-6)
    assert len(state.requests) == 3 and emb.requests == 3
    assert "sk-never-logged" not in caplog.text


def test_gives_up_after_max_retries_and_on_client_errors(server: tuple[str, ServerState]) -> None:
    url, state = server
    state.fail_with = [503, 503, 503]
    emb = HttpEmbedder(url + "/embed", max_retries=2, backoff_s=0.0)
    with pytest.raises(UpstreamError) as info:
        emb.embed(["x"])
    assert info.value.status_code == 503 and info.value.retryable
    assert len(state.requests) == 3
    state.fail_with = [400]
    with pytest.raises(UpstreamError) as info:
        emb.embed(["x"])
    assert info.value.status_code == 400 and not info.value.retryable
    assert len(state.requests) == 4  # no retry on 4xx


def test_unreachable_server_is_an_upstream_error() -> None:
    emb = HttpEmbedder("http://127.0.0.1:9/embed", max_retries=0, timeout_s=2)
    with pytest.raises(UpstreamError, match="Cannot reach"):
        emb.embed(["x"])


def test_resolve_endpoint() -> None:
    assert resolve_endpoint("http://h:1/v1") == ("http://h:1/v1/embeddings", "openai")
    assert resolve_endpoint("http://h:1/") == ("http://h:1/v1/embeddings", "openai")
    assert resolve_endpoint("http://h:1/v1/embeddings/") == ("http://h:1/v1/embeddings", "openai")
    assert resolve_endpoint("http://h:1/embed") == ("http://h:1/embed", "tei")
    assert resolve_endpoint("http://h:1", "tei") == ("http://h:1/embed", "tei")
    with pytest.raises(ConfigError):
        resolve_endpoint("ftp://h/embed")
    with pytest.raises(ConfigError, match="model name"):
        HttpEmbedder("http://h:1/v1")
