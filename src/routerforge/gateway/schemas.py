"""OpenAI wire-format request/response models, plus the gateway's own /v1/route and /v1/feedback bodies.

Requests keep unknown OpenAI fields (``extra="allow"``) and pass them upstream; responses are built as
plain dicts on the hot path (see :func:`completion_body`) because that is cheaper than model dumps.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    user: str | None = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise ValueError("messages must hold at least one message")
        return value

    def message_dicts(self) -> list[dict[str, Any]]:
        return [m.model_dump(exclude_none=True) for m in self.messages]

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    explain: bool = Field(default=True, description="Include the router's explanation and neighbours.")

    def text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        if not self.messages:
            raise ValueError("give 'messages' or 'prompt'")
        return prompt_text([m.model_dump(exclude_none=True) for m in self.messages])


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1)
    rating: float = Field(ge=0, le=1, description="Quality of the answer in [0, 1].")
    labels: dict[str, Any] = Field(default_factory=dict)
    comment: str | None = Field(default=None, max_length=4000)


def content_text(content: Any) -> str:
    """The text of one message's content (string or a list of OpenAI content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return str(content)


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """What routers see: the last user message (system prompts and history do not change the task)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return content_text(messages[-1].get("content")) if messages else ""


def total_chars(messages: list[dict[str, Any]]) -> int:
    return sum(len(content_text(m.get("content"))) for m in messages)


def has_images(messages: list[dict[str, Any]]) -> bool:
    for m in messages:
        c = m.get("content")
        if isinstance(c, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in c):
            return True
    return False


def usage_body(tokens_in: int | None, tokens_out: int | None) -> dict[str, int]:
    ti, to = tokens_in or 0, tokens_out or 0
    return {"prompt_tokens": ti, "completion_tokens": to, "total_tokens": ti + to}


def completion_body(
    *,
    request_id: str,
    model: str,
    text: str,
    finish_reason: str | None,
    tokens_in: int | None,
    tokens_out: int | None,
    message: dict[str, Any] | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    msg = message if message is not None else {"role": "assistant", "content": text}
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": msg, "finish_reason": finish_reason or "stop", "logprobs": None}],
        "usage": usage_body(tokens_in, tokens_out),
    }


def chunk_body(
    *,
    request_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    )
    body: dict[str, Any] = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
