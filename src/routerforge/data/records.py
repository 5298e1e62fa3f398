"""Plain data of the data layer: eval records as importers yield them, prompts, candidate models."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def text_hash(text: str) -> str:
    """Stable id of a prompt text (sha256 of the UTF-8 bytes, hex, 32 chars)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(slots=True)
class EvalRecord:
    """One outcome of one model on one prompt.

    ``prompt_key`` is the prompt's id inside its dataset (the source's id when it has one, else a
    hash of the text). ``score`` is normalised to [0, 1]; ``None`` means "not scored" (missing cell).
    """

    prompt_key: str
    prompt: str
    model: str
    score: float | None
    cost_usd: float | None = None
    latency_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    response: str | None = None
    dimensions: dict[str, float] | None = None
    judge: str | None = None
    source: str | None = None
    split: str | None = None
    category: str | None = None
    reference: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # kept as prompt metadata by the store
    choices: list[str] | None = None  # answer options of a multiple-choice prompt


@dataclass(slots=True)
class PromptItem:
    """A prompt of a dataset, with or without eval records (evaluation runs start from these)."""

    key: str
    text: str
    reference: str | None = None
    choices: list[str] | None = None
    category: str | None = None
    split: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def cost_usd(
    input_usd_per_mtok: float | None,
    output_usd_per_mtok: float | None,
    tokens_in: Any,
    tokens_out: Any,
) -> Any:
    """The one cost formula: USD for a call from token counts × prices in USD per million tokens.

    ``None`` when a token count is unknown, or when a side that has tokens has no price (a prompt-only
    call needs no output price). Token counts may be numpy arrays (element-wise, one price per side).
    """
    if tokens_in is None or tokens_out is None:
        return None
    if (input_usd_per_mtok is None and _any(tokens_in)) or (output_usd_per_mtok is None and _any(tokens_out)):
        return None
    return (tokens_in * (input_usd_per_mtok or 0.0) + tokens_out * (output_usd_per_mtok or 0.0)) / 1e6


def _any(tokens: Any) -> bool:
    return bool(tokens.any()) if hasattr(tokens, "any") else bool(tokens)


@dataclass(slots=True)
class CandidateModel:
    """A candidate LLM and how to call it. Prices in USD per million tokens."""

    id: str
    provider: str | None = None  # LiteLLM provider string ("openai/gpt-4o") or None
    base_url: str | None = None  # OpenAI-compatible base URL
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    context_window: int | None = None
    capabilities: dict[str, bool] = field(default_factory=dict)  # tools, vision, json

    @property
    def has_prices(self) -> bool:
        return self.input_usd_per_mtok is not None or self.output_usd_per_mtok is not None
