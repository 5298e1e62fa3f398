"""The backend contract: calling one candidate model with an OpenAI-style chat request.

Backends are async at the edge (the gateway and evaluation runs call many models concurrently); a
backend translates its SDK's or server's exceptions once, into ``UpstreamError`` with ``provider``,
``status_code`` and ``retryable`` set, so retries and fallbacks never look at SDK internals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ChatRequest:
    model: str  # the upstream model name as the backend expects it
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other OpenAI fields passed through
    timeout_s: float | None = None


@dataclass
class ChatResult:
    text: str
    model: str
    finish_reason: str | None = "stop"
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    raw: dict[str, Any] | None = None  # the upstream's OpenAI-format body when it had one


@dataclass
class ChatChunk:
    """One streamed piece: a text delta, and on the last chunk the finish reason and usage."""

    delta: str
    finish_reason: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    raw: dict[str, Any] | None = None


class ChatBackend(Protocol):
    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def aclose(self) -> None: ...
