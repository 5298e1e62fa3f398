"""OpenAI wire-format request/response models, plus the gateway's own /v1/route and /v1/feedback bodies.

Requests keep unknown OpenAI fields (``extra="allow"``) and pass them upstream; responses are built as
plain dicts on the hot path (see :func:`completion_body`) because that is cheaper than model dumps.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from routerforge.errors import ValidationError

MAX_NAME_CHARS = 255  # a model or router name (also the longest file name on common filesystems)
ModelName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_hold_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                if part.get("type") == "text" and not isinstance(part.get("text"), str):
                    raise ValueError("a content part of type 'text' needs a string 'text'")
        return value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class RoutingParams(BaseModel):
    """Per-request routing parameters (``routing`` in a chat or route body): they narrow what a synthetic
    model may choose and never reach the upstream."""

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float | None = Field(default=None, ge=0, description="Estimated USD for this request.")
    max_latency_ms: float | None = Field(default=None, gt=0, description="A model's mean latency, ms.")
    willingness_to_pay: float | None = Field(
        default=None, ge=0, description="λ of the wtp policy: quality points per USD."
    )
    models: list[ModelName] | None = Field(default=None, min_length=1, max_length=64)
    metadata: dict[str, str | int | float | bool | None] | None = Field(
        default=None,
        description='What is known about the prompt at routing time, e.g. {"category": "law"}: '
        "routers trained with metadata (the prior family) use it; at most 16 keys, values ≤ 255 characters.",
    )

    @field_validator("metadata")
    @classmethod
    def _clean_metadata(cls, value: Any) -> Any:
        from routerforge.routers.metadata import clean_metadata

        if value is None:
            return None
        try:
            return clean_metadata(value, what="routing.metadata") or None
        except ValidationError as exc:
            raise ValueError(str(exc)) from None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: ModelName
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    n: int | None = Field(
        default=None,
        ge=1,
        le=128,
        description="Choices to generate (passed to the upstream; not with stream).",
    )
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
    routing: RoutingParams | None = None

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

    model: ModelName
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    explain: bool = Field(default=True, description="Include the router's explanation and neighbours.")
    routing: RoutingParams | None = None

    def text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        if not self.messages:
            raise ValueError("give 'messages' or 'prompt'")
        return prompt_text([m.model_dump(exclude_none=True) for m in self.messages])


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    rating: float = Field(ge=0, le=1, description="Quality of the answer in [0, 1].")
    labels: dict[str, Any] = Field(
        default_factory=dict, description="At most limits.max_feedback_labels_chars as JSON."
    )
    comment: str | None = Field(default=None, description="At most limits.max_feedback_comment_chars.")


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


def json_chars(value: Any) -> int:
    """Characters of ``value`` as compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def overhead_chars(req: ChatCompletionRequest, messages: list[dict[str, Any]]) -> int:
    """Characters of a chat request besides its message text, as compact JSON: tools, response format,
    extra fields, message fields other than ``role``/``content`` (tool calls, names, …) and non-text
    content parts (images). They count toward ``max_prompt_chars`` and are never truncated."""
    top = req.model_dump(
        exclude={"model", "messages", "stream", "stream_options", "routing"}, exclude_none=True
    )
    total = json_chars(top) if top else 0
    for m in messages:
        rest = {k: v for k, v in m.items() if k not in ("role", "content")}
        if rest:
            total += json_chars(rest)
        content = m.get("content")
        if isinstance(content, list):
            parts = [p for p in content if not (isinstance(p, dict) and p.get("type") == "text")]
            if parts:
                total += json_chars(parts)
    return total


def limit_prompt(
    messages: list[dict[str, Any]], max_chars: int, mode: str, overhead: int = 0
) -> list[dict[str, Any]]:
    """Apply the prompt-size limit to the message text plus ``overhead`` (:func:`overhead_chars`): reject,
    or truncate the text (drop the oldest turns, then cut the last text)."""
    text_chars = sum(len(content_text(m.get("content"))) for m in messages)
    if text_chars + overhead <= max_chars:
        return messages
    if mode == "reject" or overhead >= max_chars:
        raise ValidationError(
            f"The prompt has {text_chars + overhead} characters ({text_chars} of message text, {overhead} "
            f"of tools and other fields); this gateway accepts at most {max_chars}.",
            hint="Shorten the messages (or ask the operator for limits.oversize: truncate).",
            code="context_length_exceeded",
        )
    max_chars -= overhead
    total = text_chars
    out = [dict(m) for m in messages]
    while total > max_chars:
        droppable = [i for i, m in enumerate(out[:-1]) if m.get("role") != "system"]
        if not droppable:
            break
        total -= len(content_text(out[droppable[0]].get("content")))
        del out[droppable[0]]
    if total > max_chars:
        last = out[-1]
        text = content_text(last.get("content"))
        keep = max(0, len(text) - (total - max_chars))
        last["content"] = text[:keep]
    return out


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
    choices: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` body: one choice of ``message`` (or ``text``), or ``choices`` as given (``n`` > 1)."""
    msg = message if message is not None else {"role": "assistant", "content": text}
    if choices is None:
        choices = [{"index": 0, "message": msg, "finish_reason": finish_reason or "stop", "logprobs": None}]
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage_body(tokens_in, tokens_out),
    }


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
