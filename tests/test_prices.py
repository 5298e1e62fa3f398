"""LiteLLM's offline price map, read without importing litellm."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from routerforge.data import prices
from routerforge.data.records import CandidateModel
from routerforge.errors import ConfigError

needs_litellm = pytest.mark.skipif(
    importlib.util.find_spec("litellm") is None, reason="litellm is not installed"
)


@needs_litellm
def test_lookup_without_importing_litellm() -> None:
    already = "litellm" in sys.modules
    price = prices.lookup_price("gpt-4o-mini")
    assert price is not None and price.key == "gpt-4o-mini"
    assert price.input_usd_per_mtok == pytest.approx(0.15)
    assert price.context_window and price.context_window >= 100_000
    assert price.capabilities.get("tools") is True
    assert ("litellm" in sys.modules) == already  # the JSON file was read directly
    assert prices.lookup_price("x", provider="openai/gpt-4o-mini") == price  # provider prefix stripped
    assert prices.lookup_price("no-such-model-anywhere") is None


@needs_litellm
def test_with_default_prices_keeps_explicit_values() -> None:
    model = CandidateModel(
        "m", provider="openai/gpt-4o-mini", input_usd_per_mtok=9.0, capabilities={"vision": False}
    )
    filled, price = prices.with_default_prices(model)
    assert price is not None
    assert filled.input_usd_per_mtok == 9.0
    assert filled.output_usd_per_mtok == price.output_usd_per_mtok
    assert filled.capabilities["vision"] is False and filled.capabilities["tools"] is True
    unknown, none = prices.with_default_prices(CandidateModel("private-model"))
    assert none is None and unknown == CandidateModel("private-model")


def test_clear_error_without_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "litellm" else real(name, *a)
    )
    prices.load_price_map.cache_clear()
    try:
        with pytest.raises(ConfigError, match="litellm is not installed") as info:
            prices.lookup_price("gpt-4o")
        assert "--input-price" in str(info.value)
    finally:
        prices.load_price_map.cache_clear()
