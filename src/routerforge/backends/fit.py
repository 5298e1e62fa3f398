"""Does a request fit a model? Prompt-size estimate, context window and capabilities.

The prompt-token estimate is deliberately cheap and tokenizer-free (it runs on every request, before
any routing decision is final): ``ceil(characters / 4)`` over all text parts of all messages, plus 4
tokens of framing per message, plus ``characters / 4`` of the JSON of ``tools``, plus a flat 85
tokens per image part (OpenAI's low-detail image cost). For English text with GPT-style BPE
tokenizers this is within about ±20 %; models whose window is tight should set ``context_window``
conservatively.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from routerforge.backends.base import ChatRequest
from routerforge.backends.spec import ModelSpec

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE = 85
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})


@dataclass(frozen=True)
class RequestNeeds:
    """What a request asks of a model: estimated prompt tokens, output budget, capabilities."""

    prompt_tokens: int
    max_tokens: int | None = None
    tools: bool = False
    json: bool = False
    vision: bool = False

    @classmethod
    def of(cls, request: ChatRequest) -> RequestNeeds:
        fmt = request.response_format or request.extra.get("response_format")
        fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
        tools = bool(request.tools or request.extra.get("tools") or request.extra.get("functions"))
        max_tokens = request.max_tokens
        if max_tokens is None:
            extra_max = request.extra.get("max_completion_tokens")
            max_tokens = extra_max if isinstance(extra_max, int) else None
        return cls(
            prompt_tokens=estimate_prompt_tokens(request),
            max_tokens=max_tokens,
            tools=tools,
            json=fmt_type in ("json_object", "json_schema"),
            vision=_has_images(request.messages),
        )


def _has_images(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in _IMAGE_PART_TYPES:
                    return True
    return False


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """Estimated prompt tokens of ``request`` (see the module docstring for the rule)."""
    chars = 0
    images = 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") in _IMAGE_PART_TYPES:
                    images += 1
                elif isinstance(part.get("text"), str):
                    chars += len(part["text"])
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"]))
    if request.tools:
        chars += len(json.dumps(request.tools))
    return (
        math.ceil(chars / CHARS_PER_TOKEN)
        + TOKENS_PER_MESSAGE * len(request.messages)
        + TOKENS_PER_IMAGE * images
    )


def misfit(spec: ModelSpec, needs: RequestNeeds) -> str | None:
    """Why ``spec`` cannot serve a request with ``needs``, or ``None`` when it fits."""
    if needs.tools and not spec.supports("tools"):
        return "does not support tools"
    if needs.json and not spec.supports("json"):
        return "does not support JSON mode"
    if needs.vision and not spec.supports("vision"):
        return "does not accept images"
    if spec.context_window is not None:
        wanted = needs.prompt_tokens + (needs.max_tokens or 0)
        if wanted > spec.context_window:
            return f"context window {spec.context_window} < ~{needs.prompt_tokens} prompt tokens" + (
                f" + {needs.max_tokens} max_tokens" if needs.max_tokens else ""
            )
    if (
        spec.max_output_tokens is not None
        and needs.max_tokens is not None
        and needs.max_tokens > spec.max_output_tokens
    ):
        return f"max_tokens {needs.max_tokens} > the model's output limit {spec.max_output_tokens}"
    return None
