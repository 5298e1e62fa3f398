"""OpenAICompatBackend, the registry, pricing and fit checks, against the fake upstream on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from fake_upstream import FakeUpstream, Fault
from routerforge.backends import pricing
from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
from routerforge.backends.fit import RequestNeeds, estimate_prompt_tokens, misfit
from routerforge.backends.openai_compat import OpenAICompatBackend, parse_retry_after, request_payload
from routerforge.backends.registry import available_kinds, build_backend, kind_of, register_backend_kind
from routerforge.backends.spec import ModelSpec
from routerforge.data.records import CandidateModel
from routerforge.errors import ConfigError, UpstreamError

KEY = "sk-test-secret-0123456789"
NOT_RETRYABLE = [(400, False), (401, False), (403, False), (404, False), (422, False)]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=KEY, models=["m1", "m2"]) as up:
        yield up


@pytest.fixture
def up(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


def _backend(
    up: FakeUpstream, model: str = "m1", timeout_s: float = 2.0, key: str = KEY
) -> OpenAICompatBackend:
    return OpenAICompatBackend(up.base_url, SecretStr(key), model, timeout_s=timeout_s)


def _req(text: str = "hello there", **kw: object) -> ChatRequest:
    return ChatRequest(model="", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def _collect(backend: OpenAICompatBackend, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in backend.stream(request)]


async def test_complete_returns_text_usage_and_raw(up: FakeUpstream) -> None:
    backend = _backend(up)
    try:
        result = await backend.complete(_req(max_tokens=20, temperature=0.0, extra={"seed": 7}))
    finally:
        await backend.aclose()
    assert result.text == "m1 says: hello there"
    assert result.model == "m1"
    assert result.finish_reason == "stop"
    assert (result.tokens_in, result.tokens_out) == (4, 4)
    assert result.cost_usd is None
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert result.raw is not None and result.raw["object"] == "chat.completion"
    body = up.calls[0].body
    assert body["max_tokens"] == 20 and body["temperature"] == 0.0 and body["seed"] == 7
    assert "stream" not in body


async def test_one_pooled_client_is_reused(up: FakeUpstream) -> None:
    backend = _backend(up)
    try:
        await backend.complete(_req())
        client = backend._client
        await backend.complete(_req())
        assert backend._client is client and client is not None
    finally:
        await backend.aclose()
    assert backend._client is None
    assert up.count("m1") == 2


async def test_streams_return_their_connection_to_the_pool(up: FakeUpstream) -> None:
    """Reading past [DONE] to the end of the body keeps the connection reusable (keep-alive)."""
    backend = _backend(up)
    try:
        for _ in range(3):
            await _collect(backend, _req())
        await backend.complete(_req())
    finally:
        await backend.aclose()
    assert len({call.client_port for call in up.calls}) == 1


async def test_backend_without_model_sends_request_model(up: FakeUpstream) -> None:
    backend = OpenAICompatBackend(up.base_url, SecretStr(KEY), timeout_s=2)
    try:
        result = await backend.complete(ChatRequest(model="m2", messages=[{"role": "user", "content": "x"}]))
    finally:
        await backend.aclose()
    assert result.text.startswith("m2 says")


async def test_stream_yields_deltas_finish_and_usage(up: FakeUpstream) -> None:
    backend = _backend(up)
    try:
        chunks = await _collect(backend, _req())
    finally:
        await backend.aclose()
    assert "".join(c.delta for c in chunks) == "m1 says: hello there"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert (chunks[-1].tokens_in, chunks[-1].tokens_out) == (4, 4)
    body = up.calls[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_option(up: FakeUpstream) -> None:
    backend = OpenAICompatBackend(up.base_url, SecretStr(KEY), "m1", timeout_s=2, stream_usage=False)
    try:
        chunks = await _collect(backend, _req())
    finally:
        await backend.aclose()
    assert all(c.tokens_in is None for c in chunks)
    assert "stream_options" not in up.calls[0].body


async def test_wrong_key_is_not_retryable_and_never_echoed(up: FakeUpstream) -> None:
    backend = _backend(up, key="sk-wrong-key-abcdefgh")
    try:
        with pytest.raises(UpstreamError) as info:
            await backend.complete(_req())
    finally:
        await backend.aclose()
    err = info.value
    assert err.status_code == 401 and err.retryable is False
    assert "sk-wrong-key" not in str(err) and "sk-wrong-key" not in repr(backend)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (408, True), (409, True), (429, True), *NOT_RETRYABLE],
)
async def test_status_faults_are_classified(up: FakeUpstream, status: int, retryable: bool) -> None:
    up.inject(Fault("status", status=status))
    backend = _backend(up)
    try:
        with pytest.raises(UpstreamError) as info:
            await backend.complete(_req())
        # the same status inside a stream request
        up.inject(Fault("status", status=status))
        with pytest.raises(UpstreamError) as stream_info:
            await _collect(backend, _req())
    finally:
        await backend.aclose()
    for err in (info.value, stream_info.value):
        assert err.status_code == status
        assert err.retryable is retryable
        assert f"HTTP {status}: Injected HTTP {status}" in str(err)


async def test_429_carries_retry_after(up: FakeUpstream) -> None:
    up.inject(Fault("status", status=429, retry_after=7))
    backend = _backend(up)
    try:
        with pytest.raises(UpstreamError) as info:
            await backend.complete(_req())
    finally:
        await backend.aclose()
    assert info.value.retry_after_s == 7.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


async def test_malformed_json_is_not_retryable(up: FakeUpstream) -> None:
    up.inject(Fault("malformed_json"), Fault("malformed_json"))
    backend = _backend(up)
    try:
        with pytest.raises(UpstreamError) as info:
            await backend.complete(_req())
        with pytest.raises(UpstreamError) as stream_info:
            await _collect(backend, _req())
    finally:
        await backend.aclose()
    assert info.value.retryable is False and info.value.status_code == 200
    assert "malformed" in str(info.value)
    assert stream_info.value.retryable is False and "malformed stream chunk" in str(stream_info.value)


async def test_timeout_is_retryable(up: FakeUpstream) -> None:
    up.inject(Fault("timeout"))
    backend = _backend(up, timeout_s=0.2)
    try:
        with pytest.raises(UpstreamError) as info:
            await backend.complete(_req())
    finally:
        await backend.aclose()
    assert info.value.retryable is True and info.value.status_code is None
    assert "timed out after 0.2 s" in str(info.value)


async def test_request_timeout_overrides_backend_timeout(up: FakeUpstream) -> None:
    up.inject(Fault("slow", delay_s=0.3))
    backend = _backend(up, timeout_s=0.1)
    try:
        result = await backend.complete(_req(timeout_s=3.0))
    finally:
        await backend.aclose()
    assert result.text.startswith("m1 says")


async def test_slow_stream_completes(up: FakeUpstream) -> None:
    up.inject(Fault("slow_stream", delay_s=0.02))
    backend = _backend(up, timeout_s=1.0)
    try:
        chunks = await _collect(backend, _req())
    finally:
        await backend.aclose()
    assert "".join(c.delta for c in chunks) == "m1 says: hello there"


async def test_broken_stream_raises_from_the_iterator(up: FakeUpstream) -> None:
    up.inject(Fault("broken_stream", after_chunks=3))
    backend = _backend(up)
    received: list[str] = []
    try:
        with pytest.raises(UpstreamError) as info:
            async for chunk in backend.stream(_req()):
                received.append(chunk.delta)
    finally:
        await backend.aclose()
    assert "".join(received) == "m1 says:"
    assert info.value.retryable is True and info.value.status_code is None


async def test_stalled_stream_times_out(up: FakeUpstream) -> None:
    up.inject(Fault("stall_stream", after_chunks=2))
    backend = _backend(up, timeout_s=0.5)
    try:
        with pytest.raises(UpstreamError) as info:
            await _collect(backend, _req())
    finally:
        await backend.aclose()
    assert info.value.retryable is True and "timed out" in str(info.value)


async def test_in_band_stream_error_event(up: FakeUpstream) -> None:
    up.inject(Fault("stream_error", after_chunks=2))
    backend = _backend(up)
    try:
        with pytest.raises(UpstreamError) as info:
            await _collect(backend, _req())
    finally:
        await backend.aclose()
    assert "Injected error mid-stream" in str(info.value) and info.value.retryable


async def test_per_request_fault_header(up: FakeUpstream) -> None:
    backend = OpenAICompatBackend(
        up.base_url,
        SecretStr(KEY),
        "m1",
        timeout_s=2,
        headers={"x-fake-fault": '{"kind": "status", "status": 503}'},
    )
    try:
        with pytest.raises(UpstreamError) as info:
            await backend.complete(_req())
    finally:
        await backend.aclose()
    assert info.value.status_code == 503


async def test_connect_error_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAICompatBackend(f"http://127.0.0.1:{port}/v1", None, "m1", timeout_s=1)
    try:
        with pytest.raises(UpstreamError) as info:
            await backend.complete(_req())
        with pytest.raises(UpstreamError) as stream_info:
            await _collect(backend, _req())
    finally:
        await backend.aclose()
    assert info.value.retryable and "cannot connect" in str(info.value)
    assert stream_info.value.retryable


async def test_official_openai_client_accepts_the_fake_upstream(up: FakeUpstream) -> None:
    """The fake speaks the wire format the official client parses (complete, stream with usage)."""
    import openai

    client = openai.AsyncOpenAI(base_url=up.base_url, api_key=KEY, max_retries=0)
    try:
        resp = await client.chat.completions.create(model="m2", messages=[{"role": "user", "content": "hi"}])
        assert resp.choices[0].message.content == "m2 says: hi"
        assert resp.usage is not None and resp.usage.completion_tokens == 3
        stream = await client.chat.completions.create(
            model="m2",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == "m2 says: hi"
        assert parts[-1].usage is not None and parts[-1].usage.prompt_tokens == 2
        models = await client.models.list()
        assert [m.id for m in models.data] == ["m1", "m2"]
    finally:
        await client.close()


def test_request_payload_passes_fields_through() -> None:
    req = ChatRequest(
        model="ignored",
        messages=[{"role": "user", "content": "x"}],
        stop=["\n"],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        response_format={"type": "json_object"},
        extra={"top_p": 0.5, "stream": True},
    )
    body = request_payload(req, "real", stream=False, stream_usage=True)
    assert body["model"] == "real" and body["stop"] == ["\n"] and body["top_p"] == 0.5
    assert body["tools"][0]["function"]["name"] == "f" and body["response_format"] == {"type": "json_object"}
    assert "stream" not in body
    assert request_payload(req, "real", stream=True, stream_usage=True)["stream_options"] == {
        "include_usage": True
    }


# -- registry -----------------------------------------------------------------------------------------


def test_kind_of_and_build_backend() -> None:
    assert {"openai", "litellm", "llamacpp"} <= set(available_kinds())
    openai_spec = ModelSpec(id="a", base_url="http://127.0.0.1:1/v1", api_key=SecretStr(KEY))
    assert kind_of(openai_spec) == "openai"
    assert kind_of(ModelSpec(id="b", provider="anthropic/claude-3-haiku")) == "litellm"
    assert kind_of(ModelSpec(id="c", provider="llamacpp")) == "llamacpp"
    assert kind_of(ModelSpec(id="d", provider="openai/gpt-4o", kind="openai")) == "openai"
    backend = build_backend(openai_spec)
    assert isinstance(backend, OpenAICompatBackend)
    assert backend.model == "a" and backend.base_url == "http://127.0.0.1:1/v1"
    assert (
        KEY not in repr(openai_spec) and KEY not in repr(backend) and KEY not in str(openai_spec.model_dump())
    )
    with pytest.raises(ConfigError, match="neither a backend kind"):
        build_backend(ModelSpec(id="e", provider="nonsense"))
    with pytest.raises(ConfigError, match="Unknown backend kind"):
        build_backend(ModelSpec(id="f", kind="nonsense"))


def test_register_backend_kind() -> None:
    class Echo:
        name = "echo"

        def __init__(self, spec: ModelSpec) -> None:
            self.spec = spec

        async def complete(self, request: ChatRequest) -> ChatResult:
            return ChatResult(text="echo", model=self.spec.id)

        async def stream(self, request: ChatRequest):  # type: ignore[no-untyped-def]
            yield ChatChunk(delta="echo", finish_reason="stop")

        async def aclose(self) -> None:
            return None

    register_backend_kind("echo-test", Echo)
    register_backend_kind("echo-test", Echo)  # idempotent for the same factory
    with pytest.raises(ConfigError, match="already registered"):
        register_backend_kind("echo-test", lambda spec: Echo(spec))
    backend = build_backend(ModelSpec(id="x", provider="echo-test"))
    assert isinstance(backend, Echo)


def test_model_spec_from_candidate() -> None:
    cand = CandidateModel(
        id="gpt",
        provider="openai/gpt-4o",
        input_usd_per_mtok=2.5,
        output_usd_per_mtok=10,
        context_window=128000,
        capabilities={"tools": True, "vision": False},
    )
    spec = ModelSpec.from_candidate(cand, timeout_s=5)
    assert spec.capabilities == frozenset({"tools"}) and spec.timeout_s == 5
    assert spec.upstream_name == "openai/gpt-4o" and kind_of(spec) == "litellm"
    assert ModelSpec.from_candidate(CandidateModel(id="y")).capabilities is None


# -- pricing -----------------------------------------------------------------------------------------


def test_cost_from_usage_and_prices() -> None:
    assert pricing.cost_usd(1.0, 2.0, 1_000_000, 500_000) == pytest.approx(2.0)
    assert pricing.cost_usd(1.0, None, 10, 0) == pytest.approx(1e-5)
    assert pricing.cost_usd(None, 2.0, 10, 5) is None
    assert pricing.cost_usd(1.0, 2.0, None, 5) is None
    spec = ModelSpec(id="m", input_usd_per_mtok=1.0, output_usd_per_mtok=3.0)
    filled = pricing.with_cost(ChatResult(text="", model="m", tokens_in=100, tokens_out=10), spec)
    assert filled.cost_usd == pytest.approx(130e-6)
    reported = ChatResult(text="", model="m", tokens_in=100, tokens_out=10, cost_usd=0.5)
    assert pricing.with_cost(reported, spec).cost_usd == 0.5


async def test_upstream_reported_cost_wins(up: FakeUpstream) -> None:
    with FakeUpstream(report_cost_usd_per_token=1e-6) as costly:
        backend = OpenAICompatBackend(costly.base_url, None, "m1", timeout_s=2)
        try:
            result = await backend.complete(_req())
        finally:
            await backend.aclose()
    assert result.cost_usd == pytest.approx(8e-6)


# -- fit ---------------------------------------------------------------------------------------------


def test_prompt_token_estimate_and_needs() -> None:
    req = ChatRequest(
        model="",
        messages=[
            {"role": "system", "content": "a" * 40},
            {
                "role": "user",
                "content": [{"type": "text", "text": "b" * 8}, {"type": "image_url", "image_url": {}}],
            },
        ],
    )
    assert estimate_prompt_tokens(req) == 10 + 2 + 2 * 4 + 85
    needs = RequestNeeds.of(req)
    assert needs.vision and not needs.tools and not needs.json
    tools_req = ChatRequest(
        model="", messages=[], tools=[{"type": "function"}], response_format={"type": "json_schema"}
    )
    needs = RequestNeeds.of(tools_req)
    assert needs.tools and needs.json


def test_misfit_reasons() -> None:
    needs = RequestNeeds(prompt_tokens=100, max_tokens=50, tools=True)
    assert misfit(ModelSpec(id="a"), needs) is None  # unknown window and capabilities fit
    assert misfit(ModelSpec(id="a", capabilities=frozenset({"json"})), needs) == "does not support tools"
    reason = misfit(ModelSpec(id="a", context_window=120), needs)
    assert reason is not None and "context window 120" in reason
    assert misfit(ModelSpec(id="a", context_window=150), needs) is None
    assert misfit(ModelSpec(id="a", max_output_tokens=10), needs) is not None
    assert misfit(
        ModelSpec(id="a", capabilities=frozenset()), RequestNeeds(prompt_tokens=1, vision=True)
    ) == ("does not accept images")
