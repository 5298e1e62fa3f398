"""A backend for any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp server, OpenRouter, …).

One lazily created ``httpx.AsyncClient`` per backend (connection pooling, HTTP keep-alive). Every
failure is translated once into :class:`~routerforge.errors.UpstreamError`:

- retryable: HTTP 408, 409, 425, 429 and 5xx; connect errors, timeouts, connections dropped mid-body;
- not retryable (but a fallback chain may still try another model): 400, 401, 403, 404, 413, 422 and
  any other 4xx; a 2xx body that is not the expected JSON.

The API key is sent as ``Authorization: Bearer …`` and never appears in messages, reprs or logs: the text
of every failure (an upstream's error body included) goes through
:func:`~routerforge.backends.redact.redact_secrets` in ``_fail``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
from routerforge.backends.redact import redact_secrets, secrets_of
from routerforge.backends.spec import ModelSpec
from routerforge.errors import UpstreamError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def request_payload(request: ChatRequest, model: str, *, stream: bool, stream_usage: bool) -> dict[str, Any]:
    """The OpenAI wire body of ``request`` for upstream ``model``."""
    body: dict[str, Any] = {"model": model, "messages": request.messages}
    for key in ("max_tokens", "temperature", "stop", "tools", "response_format"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    body.update(request.extra)
    body["model"] = model
    if stream:
        body["stream"] = True
        if stream_usage:  # usage arrives in a last chunk: what the request log counts and prices
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _error_message(body: bytes) -> str:
    """The upstream's own error message from an OpenAI-style error body (or the start of the body)."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300].strip() or "(empty body)"
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return text[:300]


def _usage(obj: dict[str, Any]) -> tuple[int | None, int | None, float | None]:
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None, None, None
    tin, tout, cost = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("cost")
    return (
        int(tin) if isinstance(tin, int | float) else None,
        int(tout) if isinstance(tout, int | float) else None,
        float(cost) if isinstance(cost, int | float) else None,
    )


class OpenAICompatBackend:
    """Calls one model (or, with ``model=None``, ``request.model``) at an OpenAI-compatible base URL."""

    enforces_timeouts = True  # connect and every read are bounded by timeout_s (see UpstreamPool)

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: SecretStr | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
        headers: dict[str, str] | None = None,
        *,
        provider: str | None = None,
        stream_usage: bool = True,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.provider = provider or urlsplit(self.base_url).netloc or self.base_url
        self.stream_usage = stream_usage
        self._api_key = api_key
        self._headers = dict(headers or {})
        self._max_connections = max_connections
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._chat_url: httpx.URL | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> OpenAICompatBackend:
        return cls(
            base_url=spec.base_url or DEFAULT_BASE_URL,
            api_key=spec.api_key,
            model=spec.upstream_name,
            timeout_s=spec.timeout_s,
            headers=spec.headers,
            provider=spec.options.get("provider_name"),
            stream_usage=bool(spec.options.get("stream_usage", True)),
        )

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}" if self.model else self.provider

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self.base_url!r}, model={self.model!r})"

    # -- plumbing ----------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"content-type": "application/json", **self._headers}
            if self._api_key is not None and self._api_key.get_secret_value():
                headers["authorization"] = f"Bearer {self._api_key.get_secret_value()}"
            limits = httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections
            )
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                limits=limits,
                timeout=httpx.Timeout(self.timeout_s),
                transport=self._transport,
                follow_redirects=False,
            )
            # the endpoint's absolute URL, merged with base_url once (by httpx itself) rather than per request
            self._chat_url = self._client.build_request("POST", "/chat/completions").url
        return self._client

    def _timeout(self, request: ChatRequest) -> float:
        return request.timeout_s if request.timeout_s is not None else self.timeout_s

    def _model_for(self, request: ChatRequest) -> str:
        return self.model or request.model

    def _fail(
        self, message: str, *, status: int | None, retryable: bool, retry_after: float | None = None
    ) -> UpstreamError:
        return UpstreamError(
            f"{self.name}: {redact_secrets(message, secrets_of(self._api_key, self._headers))}",
            provider=self.provider,
            status_code=status,
            retryable=retryable,
            retry_after_s=retry_after,
        )

    def _translate(self, exc: httpx.HTTPError, timeout_s: float) -> UpstreamError:
        if isinstance(exc, httpx.TimeoutException):
            return self._fail(
                f"timed out after {timeout_s:g} s ({type(exc).__name__})", status=None, retryable=True
            )
        if isinstance(exc, httpx.ConnectError):
            return self._fail(f"cannot connect to {self.base_url} ({exc})", status=None, retryable=True)
        if isinstance(exc, httpx.TransportError):
            return self._fail(f"connection failed: {type(exc).__name__}: {exc}", status=None, retryable=True)
        return self._fail(f"HTTP client error: {type(exc).__name__}: {exc}", status=None, retryable=False)

    def _status_error(self, response: httpx.Response, body: bytes) -> UpstreamError:
        status = response.status_code
        return self._fail(
            f"HTTP {status}: {_error_message(body)}",
            status=status,
            retryable=is_retryable_status(status),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    # -- the contract --------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> ChatResult:
        timeout_s = self._timeout(request)
        model = self._model_for(request)
        body = request_payload(request, model, stream=False, stream_usage=self.stream_usage)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                client = self._http()
                response = await client.post(
                    self._chat_url or "/chat/completions", json=body, timeout=timeout_s
                )
        except TimeoutError as exc:
            raise self._fail(f"timed out after {timeout_s:g} s", status=None, retryable=True) from exc
        except httpx.HTTPError as exc:
            raise self._translate(exc, timeout_s) from exc
        latency_ms = (time.perf_counter() - start) * 1000.0
        if response.status_code >= 400:
            raise self._status_error(response, response.content)
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice.get("message") or {}
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._fail(
                f"malformed response body (HTTP {response.status_code}): {response.text[:200]!r}",
                status=response.status_code,
                retryable=False,
            ) from exc
        tokens_in, tokens_out, cost = _usage(data)
        return ChatResult(
            text=text,
            model=str(data.get("model") or model),
            finish_reason=choice.get("finish_reason"),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            latency_ms=latency_ms,
            raw=data,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Yield chunks as the upstream sends them; raises ``UpstreamError`` from the iterator on failure.

        Timeouts: ``timeout_s`` bounds connecting and every wait for the next bytes, so a stalled
        stream fails instead of hanging; a slow but steady stream may take longer in total.
        """
        timeout_s = self._timeout(request)
        model = self._model_for(request)
        body = request_payload(request, model, stream=True, stream_usage=self.stream_usage)
        finished = False
        try:
            client = self._http()
            async with client.stream(
                "POST", self._chat_url or "/chat/completions", json=body, timeout=timeout_s
            ) as response:
                if response.status_code >= 400:
                    raise self._status_error(response, await response.aread())
                done = False
                async for line in response.aiter_lines():
                    # Read to the end of the body even after [DONE], so the connection returns to the pool.
                    if done or not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = done = True
                        continue
                    chunk = self._parse_chunk(data)
                    if chunk.finish_reason is not None:
                        finished = True
                    yield chunk
        except httpx.HTTPError as exc:
            raise self._translate(exc, timeout_s) from exc
        if not finished:
            raise self._fail(
                "stream ended before the upstream finished the answer", status=None, retryable=True
            )

    def _parse_chunk(self, data: str) -> ChatChunk:
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict):
                raise TypeError("chunk is not an object")
        except (ValueError, TypeError) as exc:
            raise self._fail(f"malformed stream chunk: {data[:200]!r}", status=None, retryable=False) from exc
        if "error" in obj:
            err = obj["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            code = err.get("code") if isinstance(err, dict) else None
            status = code if isinstance(code, int) else None
            raise self._fail(
                f"error in stream: {message}",
                status=status,
                retryable=status is None or is_retryable_status(status),
            )
        delta_text = ""
        finish = None
        choices = obj.get("choices") or []
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            delta_text = content if isinstance(content, str) else ""
            finish = choices[0].get("finish_reason")
        tokens_in, tokens_out, _ = _usage(obj)
        return ChatChunk(
            delta=delta_text, finish_reason=finish, tokens_in=tokens_in, tokens_out=tokens_out, raw=obj
        )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def from_spec(spec: ModelSpec) -> OpenAICompatBackend:
    """Registry factory for kind ``"openai"``."""
    return OpenAICompatBackend.from_spec(spec)
