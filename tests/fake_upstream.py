"""A small OpenAI-compatible upstream for tests and benchmarks, with fault injection.

Serves ``POST /v1/chat/completions`` (plain and SSE streaming, ``stream_options.include_usage``) and
``GET /v1/models`` on loopback with a real uvicorn server in a background thread. Answers are
deterministic (``answer(model, messages)``; by default ``"<model> says: <last user text>"``), usage is
``ceil(prompt chars / 4)`` prompt tokens and one completion token per word.

Faults, injected per model / for the next N requests with :meth:`FakeUpstream.inject`, or per request
with the header ``x-fake-fault: {"kind": "status", "status": 503}`` (JSON of :class:`Fault` fields):

- ``status``: an OpenAI-style error with HTTP ``status`` (and ``Retry-After`` when ``retry_after``);
- ``timeout``: no answer for ``delay_s`` (default 30 s; the handler ends as soon as the client leaves);
- ``slow``: answer normally after ``delay_s``;
- ``slow_stream``: stream normally with ``delay_s`` between chunks;
- ``stall_stream``: send ``after_chunks`` chunks, then go silent for ``delay_s`` (default 30 s);
- ``broken_stream``: send ``after_chunks`` chunks, then drop the connection mid-SSE;
- ``stream_error``: send ``after_chunks`` chunks, then an in-band ``data: {"error": …}`` event;
- ``malformed_json``: a 200 whose body (or first SSE event) is not valid JSON;
- ``echo_headers``: HTTP ``status`` whose error echoes every request header, ``Authorization`` included
  (an OpenAI-style JSON error below 500, plain text from 500; in a stream, an in-band error event after
  ``after_chunks`` chunks), like a careless proxy: the key must not reach our clients or logs.

Usage::

    with FakeUpstream() as up:
        up.inject(Fault("status", status=503, model="m1", times=2))
        ...  # call up.base_url
        assert up.count("m1") == 3

From a shell (an instant upstream for benchmarks): ``python tests/fake_upstream.py --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import uvicorn

from gateway_server import LoopbackServer

FaultKind = Literal[
    "status",
    "timeout",
    "slow",
    "slow_stream",
    "stall_stream",
    "broken_stream",
    "stream_error",
    "malformed_json",
    "echo_headers",
]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    delay_s: float | None = None  # default 30 s for timeout/stall_stream, 0.05 s for slow/slow_stream
    after_chunks: int = 2  # broken_stream / stall_stream / stream_error: chunks sent before the fault
    model: str | None = None  # only requests for this model (None: any model)
    times: int | None = 1  # how many matching requests it affects (None: every one)
    echo: str = ""  # echo_headers: the request headers, filled in per request

    def delay(self) -> float:
        if self.delay_s is not None:
            return self.delay_s
        return 30.0 if self.kind in ("timeout", "stall_stream") else 0.05


@dataclass
class Call:
    """One request the upstream received."""

    path: str
    model: str | None
    stream: bool
    fault: str | None
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    client_port: int | None = None  # the caller's TCP port: equal ports = one kept-alive connection


class _BrokenStream(Exception):
    """Raised inside the app to make uvicorn drop the connection mid-response."""


def default_answer(model: str, messages: list[dict[str, Any]]) -> str:
    last = ""
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                last = content
            elif isinstance(content, list):
                last = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return f"{model} says: {last}"


def _prompt_chars(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return total


class FakeUpstream:
    """The fake server. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        answer: Callable[[str, list[dict[str, Any]]], str] = default_answer,
        report_cost_usd_per_token: float | None = None,
        models: list[str] | None = None,
        record: bool = True,
        log_level: str = "critical",
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.answer = answer
        self.report_cost_usd_per_token = report_cost_usd_per_token
        self.models = list(models or [])
        self.log_level = log_level  # "critical" hides the tracebacks of injected broken streams
        self.record = record  # keep every Call (bodies included); False: only count per model
        self.calls: list[Call] = []
        self._counts: dict[str | None, int] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    # -- control -----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.calls.clear()
            self._counts.clear()

    def count(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return sum(self._counts.values())
            return self._counts.get(model, 0)

    def _take_fault(self, model: str | None) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.model is not None and fault.model != model:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[i]
                return fault
        return None

    def start(self) -> FakeUpstream:
        self._server = LoopbackServer(
            self._app,
            self.host,
            self.port,
            name="fake-upstream",
            start_timeout_s=10,
            stop_timeout_s=5,
            log_level=self.log_level,
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
        ).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the ASGI app --------------------------------------------------------------------------------
    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            await _json(send, 401, _error("Incorrect API key provided.", "invalid_api_key", 401))
            return
        if scope["method"] == "GET" and path.rstrip("/").endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
            await _json(send, 200, {"object": "list", "data": data})
            return
        if scope["method"] != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await _json(send, 404, _error(f"No route {scope['method']} {path}", "not_found", 404))
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("body must be an object with messages")
        except ValueError as exc:
            await _json(send, 400, _error(f"Invalid request body: {exc}", "invalid_request_error", 400))
            return
        model = body.get("model")
        stream = bool(body.get("stream"))
        fault = self._header_fault(headers) or self._take_fault(model)
        with self._lock:
            self._counts[model] = self._counts.get(model, 0) + 1
            if self.record:
                safe_headers = {k: v for k, v in headers.items() if k != "authorization"}
                client = scope.get("client")
                port = client[1] if client else None
                self.calls.append(
                    Call(path, model, stream, fault.kind if fault else None, body, safe_headers, port)
                )
        if fault is not None and fault.kind == "echo_headers":
            fault = dataclasses.replace(fault, echo=_header_dump(headers))
        await self._answer(send, receive, body, str(model), stream, fault)

    @staticmethod
    def _header_fault(headers: dict[str, str]) -> Fault | None:
        spec = headers.get("x-fake-fault")
        if not spec:
            return None
        values = json.loads(spec)
        known = {f.name for f in fields(Fault)}
        return Fault(**{k: v for k, v in values.items() if k in known})

    async def _answer(
        self,
        send: Send,
        receive: Receive,
        body: dict[str, Any],
        model: str,
        stream: bool,
        fault: Fault | None,
    ) -> None:
        kind = fault.kind if fault else None
        if fault is not None and kind == "echo_headers" and not stream:
            message = f"Unauthorized. Your request headers were: {fault.echo}"
            if fault.status >= 500:
                await _raw(send, fault.status, message.encode(), "text/plain")
            else:
                await _json(send, fault.status, _error(message, "echo", fault.status))
            return
        if fault is not None and kind == "status":
            extra = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            await _json(
                send, fault.status, _error(f"Injected HTTP {fault.status}", "injected", fault.status), extra
            )
            return
        if (
            fault is not None
            and kind in ("timeout", "slow")
            and (await _wait_or_disconnect(receive, fault.delay()) or kind == "timeout")
        ):
            return
        messages = body["messages"]
        text = self.answer(model, messages)
        tokens_in = math.ceil(_prompt_chars(messages) / 4) + 1
        tokens_out = len(text.split())
        usage: dict[str, Any] = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        if self.report_cost_usd_per_token is not None:
            usage["cost"] = (tokens_in + tokens_out) * self.report_cost_usd_per_token
        if not stream:
            if kind == "malformed_json":
                await _raw(send, 200, b'{"id": "chatcmpl-fake", "choices": [{"message": ', "application/json")
                return
            n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 1 else 1
            await _json(send, 200, _completion(model, text, usage, n))
            return
        await self._stream(send, receive, body, model, text, usage, fault)

    async def _stream(
        self,
        send: Send,
        receive: Receive,
        body: dict[str, Any],
        model: str,
        text: str,
        usage: dict[str, Any],
        fault: Fault | None,
    ) -> None:
        kind = fault.kind if fault else None
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        if kind == "malformed_json":
            await send({"type": "http.response.body", "body": b"data: {not json\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            return
        words = text.split(" ")
        events: list[dict[str, Any]] = [_chunk(model, {"role": "assistant", "content": ""}, None)]
        events += [_chunk(model, {"content": w if i == 0 else " " + w}, None) for i, w in enumerate(words)]
        events.append(_chunk(model, {}, "stop"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if include_usage:
            events.append({**_chunk(model, {}, None), "choices": [], "usage": usage})
        for i, event in enumerate(events):
            if fault is not None and i == fault.after_chunks:
                if kind == "broken_stream":
                    raise _BrokenStream("injected: connection dropped mid-stream")
                if kind in ("stream_error", "echo_headers"):
                    text = "Injected error mid-stream" + (f"; headers: {fault.echo}" if fault.echo else "")
                    err = _error(text, "server_error", 500)
                    await send({"type": "http.response.body", "body": _sse(err), "more_body": False})
                    return
                if kind == "stall_stream":
                    await _wait_or_disconnect(receive, fault.delay())
                    return
            if (
                kind == "slow_stream"
                and fault is not None
                and i > 0
                and await _wait_or_disconnect(receive, fault.delay())
            ):
                return
            await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _wait_or_disconnect(receive: Receive, delay_s: float) -> bool:
    """Sleep ``delay_s``; return True early if the client disconnected."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait_for(asyncio.shield(watcher), timeout=delay_s)
    except TimeoutError:
        return False
    finally:
        watcher.cancel()
    return True


def _header_dump(headers: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in headers.items())


def _error(message: str, code: str, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _completion(model: str, text: str, usage: dict[str, Any], n: int = 1) -> dict[str, Any]:
    """An OpenAI completion body; ``n`` > 1 (the request's ``n``): choice i answers ``text #i``."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text if i == 0 else f"{text} #{i}"},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i in range(n)
        ],
        "usage": usage,
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _raw(
    send: Send, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, obj: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    await _raw(send, status, json.dumps(obj).encode(), "application/json", extra)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An instant OpenAI-compatible upstream on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--models", default="", help="Comma-separated ids listed by GET /v1/models.")
    parser.add_argument("--delay-s", type=float, default=0.0, help="Answer every request after this delay.")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    upstream = FakeUpstream(args.host, args.port, api_key=args.api_key, models=models, record=False)
    if args.delay_s > 0:
        upstream.inject(Fault("slow", delay_s=args.delay_s, times=None))
    config = uvicorn.Config(
        upstream._app, host=args.host, port=args.port, log_level="warning", lifespan="off", interface="asgi3"
    )
    print(f"fake upstream on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
