"""Default prices and context windows from LiteLLM's bundled price map, read offline.

The JSON file ``model_prices_and_context_window_backup.json`` that ships inside the ``litellm`` package is
read directly from the installed package (``import litellm`` takes seconds and is not needed). When
LiteLLM is not installed, :func:`load_price_map` raises a ``ConfigError`` that says how to fix it.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from routerforge.data.records import CandidateModel
from routerforge.errors import ConfigError

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"
_CAPABILITIES = {
    "tools": "supports_function_calling",
    "vision": "supports_vision",
    "json": "supports_response_schema",
    "reasoning": "supports_reasoning",
}


@dataclass(frozen=True)
class ModelPrice:
    """One entry of the price map. Prices in USD per million tokens."""

    key: str  # the price-map entry that matched
    provider: str | None
    input_usd_per_mtok: float | None
    output_usd_per_mtok: float | None
    context_window: int | None
    capabilities: dict[str, bool] = field(default_factory=dict)
    mode: str | None = None


def price_map_path() -> Path:
    """Where the installed LiteLLM keeps its bundled price map (without importing litellm)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "LiteLLM's price map is not available because litellm is not installed.",
            hint="Install it (`pip install 'routerforge[litellm]'`) or give prices explicitly "
            "(`routerforge models add ID --input-price X --output-price Y`).",
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / PRICE_MAP_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"The installed litellm has no {PRICE_MAP_FILE}.",
        hint="Upgrade litellm or give prices explicitly with --input-price/--output-price.",
    )


@lru_cache(maxsize=1)
def load_price_map() -> dict[str, dict[str, Any]]:
    path = price_map_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read LiteLLM's price map {path}: {exc}") from exc
    return {k: v for k, v in raw.items() if isinstance(v, dict) and k != "sample_spec"}


def _per_mtok(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value) * 1_000_000, 9)
    return None


def _entry(key: str, raw: dict[str, Any]) -> ModelPrice:
    window = raw.get("max_input_tokens") or raw.get("max_tokens")
    return ModelPrice(
        key=key,
        provider=raw.get("litellm_provider"),
        input_usd_per_mtok=_per_mtok(raw.get("input_cost_per_token")),
        output_usd_per_mtok=_per_mtok(raw.get("output_cost_per_token")),
        context_window=int(window) if isinstance(window, int | float) else None,
        capabilities={name: bool(raw[flag]) for name, flag in _CAPABILITIES.items() if flag in raw},
        mode=raw.get("mode"),
    )


def _candidates(name: str) -> list[str]:
    """``openai/gpt-4o`` → [``openai/gpt-4o``, ``gpt-4o``]; ``groq/meta-llama/x`` → also ``meta-llama/x``, ``x``."""
    parts = name.split("/")
    return list(dict.fromkeys("/".join(parts[i:]) for i in range(len(parts))))


def lookup_price(model: str, provider: str | None = None) -> ModelPrice | None:
    """The price-map entry of a LiteLLM provider string or model id, or ``None`` when it has none."""
    prices = load_price_map()
    for name in (provider, model):
        if not name:
            continue
        for key in _candidates(name):
            if key in prices:
                return _entry(key, prices[key])
            lowered = key.lower()
            if lowered in prices:
                return _entry(lowered, prices[lowered])
    return None


def with_default_prices(model: CandidateModel) -> tuple[CandidateModel, ModelPrice | None]:
    """``model`` with its empty price, context-window and capability fields filled from the price map."""
    price = lookup_price(model.id, model.provider)
    if price is None:
        return model, None
    filled = replace(
        model,
        input_usd_per_mtok=(
            model.input_usd_per_mtok if model.input_usd_per_mtok is not None else price.input_usd_per_mtok
        ),
        output_usd_per_mtok=(
            model.output_usd_per_mtok if model.output_usd_per_mtok is not None else price.output_usd_per_mtok
        ),
        context_window=model.context_window if model.context_window is not None else price.context_window,
        capabilities={**price.capabilities, **model.capabilities},
    )
    return filled, price


__all__ = ["ModelPrice", "load_price_map", "lookup_price", "price_map_path", "with_default_prices"]
