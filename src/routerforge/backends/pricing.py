"""Cost of one call from token usage × prices, when the upstream does not report a cost itself.

Prices are USD per million tokens (``input_usd_per_mtok``, ``output_usd_per_mtok`` of a
:class:`~routerforge.backends.spec.ModelSpec`). An upstream-reported cost (OpenRouter's
``usage.cost``, LiteLLM's ``response_cost``) always wins over the computed one.

:func:`litellm_defaults` fills missing prices and the context window from LiteLLM's bundled price map;
it imports LiteLLM (≈2.4 s), so it is only called explicitly, never on import or per request.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from routerforge.backends.base import ChatResult
from routerforge.backends.spec import ModelSpec
from routerforge.data.records import cost_usd


def spec_cost_usd(spec: ModelSpec, tokens_in: int | None, tokens_out: int | None) -> float | None:
    """:func:`cost_usd` with the spec's prices."""
    return cost_usd(spec.input_usd_per_mtok, spec.output_usd_per_mtok, tokens_in, tokens_out)


def with_cost(result: ChatResult, spec: ModelSpec) -> ChatResult:
    """``result`` with ``cost_usd`` filled from usage × the spec's prices when the upstream gave none."""
    if result.cost_usd is not None:
        return result
    cost = spec_cost_usd(spec, result.tokens_in, result.tokens_out)
    return result if cost is None else dataclasses.replace(result, cost_usd=cost)


def litellm_model_info(name: str) -> dict[str, Any] | None:
    """LiteLLM's price-map entry for ``name`` (``"gpt-4o-mini"`` or ``"openai/gpt-4o-mini"``), offline."""
    from routerforge.backends.litellm_backend import import_litellm

    litellm = import_litellm()
    cost_map: dict[str, Any] = litellm.model_cost
    for key in (name, name.split("/", 1)[-1]):
        entry = cost_map.get(key)
        if isinstance(entry, dict):
            return entry
    return None


def litellm_defaults(spec: ModelSpec) -> ModelSpec:
    """``spec`` with unknown prices, context window and capabilities taken from LiteLLM's price map."""
    info = litellm_model_info(spec.upstream_name)
    if info is None:
        return spec
    updates: dict[str, Any] = {}
    if spec.input_usd_per_mtok is None and info.get("input_cost_per_token") is not None:
        updates["input_usd_per_mtok"] = float(info["input_cost_per_token"]) * 1e6
    if spec.output_usd_per_mtok is None and info.get("output_cost_per_token") is not None:
        updates["output_usd_per_mtok"] = float(info["output_cost_per_token"]) * 1e6
    if spec.context_window is None:
        window = info.get("max_input_tokens") or info.get("max_tokens")
        if window:
            updates["context_window"] = int(window)
    if spec.max_output_tokens is None and info.get("max_output_tokens"):
        updates["max_output_tokens"] = int(info["max_output_tokens"])
    if spec.capabilities is None:
        caps = set()
        if info.get("supports_function_calling"):
            caps.add("tools")
        if info.get("supports_response_schema") or info.get("supports_function_calling"):
            caps.add("json")
        if info.get("supports_vision"):
            caps.add("vision")
        updates["capabilities"] = frozenset(caps)
    return spec.model_copy(update=updates) if updates else spec
