"""LiteLLMBackend against the fake upstream on loopback (``openai/<model>`` with ``api_base``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from fake_upstream import FakeUpstream, Fault
from routerforge.backends.base import ChatRequest
from routerforge.backends.litellm_backend import LiteLLMBackend
from routerforge.backends.pricing import litellm_defaults
from routerforge.backends.registry import build_backend
from routerforge.backends.reliability import UpstreamPool
from routerforge.backends.spec import ModelSpec
from routerforge.errors import UpstreamError

# LiteLLM must be imported by routerforge (which switches it to its offline price map), never here first.
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed"),
    # LiteLLM's own types trip a pydantic UserWarning at runtime; warnings are errors in this suite.
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
]

KEY = "sk-litellm-test-secret"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=KEY) as up:
        yield up


@pytest.fixture
def up(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


def _backend(up: FakeUpstream, timeout_s: float = 5.0) -> LiteLLMBackend:
    return LiteLLMBackend("openai/m1", SecretStr(KEY), api_base=up.base_url, timeout_s=timeout_s)


def _req(text: str = "hello there") -> ChatRequest:
    return ChatRequest(model="", messages=[{"role": "user", "content": text}], max_tokens=16)


async def test_complete_through_litellm(up: FakeUpstream) -> None:
    result = await _backend(up).complete(_req())
    assert result.text == "m1 says: hello there"
    assert (result.tokens_in, result.tokens_out) == (4, 4)
    assert up.calls[0].model == "m1" and up.calls[0].body["max_tokens"] == 16


async def test_stream_through_litellm(up: FakeUpstream) -> None:
    chunks = [c async for c in _backend(up).stream(_req())]
    assert "".join(c.delta for c in chunks) == "m1 says: hello there"
    assert any(c.finish_reason == "stop" for c in chunks)


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (400, False), (401, False)])
async def test_litellm_errors_are_translated(up: FakeUpstream, status: int, retryable: bool) -> None:
    up.inject(Fault("status", status=status))
    with pytest.raises(UpstreamError) as info:
        await _backend(up).complete(_req())
    assert info.value.status_code == status and info.value.retryable is retryable
    assert info.value.provider == "openai"
    assert KEY not in str(info.value)


async def test_litellm_timeout_is_retryable(up: FakeUpstream) -> None:
    up.inject(Fault("timeout"))
    with pytest.raises(UpstreamError) as info:
        await _backend(up, timeout_s=0.3).complete(_req())
    assert info.value.retryable is True


async def test_litellm_mid_stream_break(up: FakeUpstream) -> None:
    up.inject(Fault("broken_stream", after_chunks=3))
    with pytest.raises(UpstreamError):
        [c async for c in _backend(up).stream(_req())]


async def test_litellm_spec_in_a_pool(up: FakeUpstream) -> None:
    spec = ModelSpec(
        id="lite", provider="openai/m2", base_url=up.base_url, api_key=SecretStr(KEY), max_retries=0
    )
    assert isinstance(build_backend(spec), LiteLLMBackend)
    pool = UpstreamPool([spec])
    try:
        out = await pool.complete(["lite"], _req())
    finally:
        await pool.aclose()
    assert out.result.text == "m2 says: hello there"


def test_litellm_price_map_defaults_offline() -> None:
    spec = litellm_defaults(ModelSpec(id="g", provider="openai/gpt-4o-mini"))
    assert spec.input_usd_per_mtok == pytest.approx(0.15)
    assert spec.context_window is not None and spec.context_window >= 100_000
    assert spec.capabilities is not None and "tools" in spec.capabilities
    explicit = litellm_defaults(ModelSpec(id="g", provider="openai/gpt-4o-mini", input_usd_per_mtok=9.0))
    assert explicit.input_usd_per_mtok == 9.0
    unknown = ModelSpec(id="u", provider="openai/no-such-model-xyz")
    assert litellm_defaults(unknown) is unknown
