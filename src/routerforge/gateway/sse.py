"""Streaming wire format: OpenAI ``chat.completion.chunk`` bodies and their Server-Sent-Events framing.

The service yields plain chunk bodies (dicts: what the in-process SDK turns into ``ChatCompletionChunk``);
the HTTP app frames them with :func:`sse_bytes`, which ends every stream with ``data: [DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from routerforge.backends.base import ChatChunk
from routerforge.gateway.schemas import usage_body

DONE = b"data: [DONE]\n\n"


def frame(body: dict[str, Any]) -> bytes:
    """One SSE event carrying ``body`` as compact JSON."""
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


async def sse_bytes(bodies: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The SSE byte stream of ``bodies``, then ``[DONE]`` (sent once ``bodies`` is exhausted)."""
    try:
        async for body in bodies:
            yield frame(body)
        yield DONE
    finally:
        close = getattr(bodies, "aclose", None)
        if close is not None:
            await close()


class ChunkBodies:
    """Builds the ``chat.completion.chunk`` bodies of one response (one id, model and creation time)."""

    def __init__(self, request_id: str, model: str, created: int) -> None:
        self.request_id = request_id
        self.model = model
        self.created = created
        self._first = True

    def body(
        self,
        delta: dict[str, Any] | None,
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        )
        out: dict[str, Any] = {
            "id": f"chatcmpl-{self.request_id}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            out["usage"] = usage
        return out

    def of(self, chunk: ChatChunk) -> dict[str, Any] | None:
        """The body relaying an upstream chunk (its delta as sent: content, tool calls, …), or ``None``
        when the chunk carries nothing for the client (e.g. the upstream's own usage chunk)."""
        delta: dict[str, Any] = {}
        if self._first:
            delta["role"] = "assistant"
            self._first = False
        raw = _raw_delta(chunk.raw)
        if raw:
            delta.update({k: v for k, v in raw.items() if k != "role"})
        elif chunk.delta:
            delta["content"] = chunk.delta
        if not delta and chunk.finish_reason is None:
            return None
        return self.body(delta, chunk.finish_reason)

    def usage(self, tokens_in: int | None, tokens_out: int | None) -> dict[str, Any]:
        """The final usage chunk (``stream_options.include_usage``): no choices, ``usage`` set."""
        return self.body(None, usage=usage_body(tokens_in, tokens_out))


def _raw_delta(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    choices = raw.get("choices") or []
    if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("delta"), dict):
        return {k: v for k, v in choices[0]["delta"].items() if v is not None}
    return None
