"""Retries, circuit breakers and fallback chains over real backends and the fake upstream on loopback.

Time is injected: a fake clock drives breaker windows and cool-downs, a recording sleep replaces
backoff waits. Real waiting happens only where a real timeout is the subject (≤ 0.5 s).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from fake_upstream import FakeUpstream, Fault
from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
from routerforge.backends.reliability import (
    BreakerPolicy,
    ChainStream,
    CircuitBreaker,
    RetryPolicy,
    UpstreamPool,
)
from routerforge.backends.spec import ModelSpec
from routerforge.errors import FallbackExhaustedError, UnknownModelError, UpstreamError

KEY = "sk-test-secret-reliability"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=KEY) as up:
        yield up


@pytest.fixture
def up(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def _spec(up: FakeUpstream, model_id: str, **kw: object) -> ModelSpec:
    values: dict[str, object] = {
        "id": model_id,
        "base_url": up.base_url,
        "api_key": SecretStr(KEY),
        "timeout_s": 2.0,
    }
    values.update(kw)
    return ModelSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
async def make_pool(up: FakeUpstream, clock: FakeClock, sleeps: Sleeps) -> AsyncIterator[object]:
    pools: list[UpstreamPool] = []

    def make(*specs: ModelSpec, threshold: int = 3, cooldown_s: float = 30.0, **kw: object) -> UpstreamPool:
        pool = UpstreamPool(
            specs,
            breaker=BreakerPolicy(failure_threshold=threshold, window_s=60.0, cooldown_s=cooldown_s),
            clock=clock,
            sleep=sleeps,
            rng=random.Random(0),
            **kw,  # type: ignore[arg-type]
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.aclose()


def _req(text: str = "hello", **kw: object) -> ChatRequest:
    return ChatRequest(model="", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def _drain(stream: ChainStream) -> str:
    try:
        return "".join([chunk.delta async for chunk in stream])
    finally:
        await stream.aclose()


# -- complete ----------------------------------------------------------------------------------------


async def test_success_records_one_attempt_and_cost(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(_spec(up, "m1", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0))
    out = await pool.complete(["m1"], _req())
    assert out.model.id == "m1" and out.result.text == "m1 says: hello"
    assert [(a.model, a.status, a.retry) for a in out.attempts] == [("m1", "ok", 0)]
    assert out.result.cost_usd == pytest.approx((3 * 1.0 + 3 * 2.0) / 1e6)
    assert out.attempts[0].to_dict()["status"] == "ok"


async def test_upstream_model_name_is_sent(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(_spec(up, "alias", upstream_model="real-name"))
    out = await pool.complete(["alias"], _req())
    assert out.result.text.startswith("real-name says") and up.calls[0].model == "real-name"


async def test_retry_then_success(up: FakeUpstream, make_pool, sleeps: Sleeps) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=503, times=2))
    pool = make_pool(_spec(up, "m1", max_retries=2), retry=RetryPolicy(base_s=0.5, cap_s=0.8))
    out = await pool.complete(["m1"], _req())
    assert [(a.status, a.status_code, a.retry) for a in out.attempts] == [
        ("error", 503, 0),
        ("error", 503, 1),
        ("ok", None, 2),
    ]
    assert up.count("m1") == 3
    assert len(sleeps.waits) == 2
    assert 0 <= sleeps.waits[0] <= 0.5 and 0 <= sleeps.waits[1] <= 0.8  # full jitter under base·2^k, capped


async def test_no_retry_on_400_but_fallback(up: FakeUpstream, make_pool, sleeps: Sleeps) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=400, model="m1"))
    pool = make_pool(_spec(up, "m1", max_retries=3), _spec(up, "m2"))
    out = await pool.complete(["m1", "m2"], _req())
    assert out.model.id == "m2"
    assert [(a.model, a.status, a.status_code) for a in out.attempts] == [
        ("m1", "error", 400),
        ("m2", "ok", None),
    ]
    assert up.count("m1") == 1 and sleeps.waits == []


async def test_retry_after_is_honoured_up_to_a_cap(up: FakeUpstream, make_pool, sleeps: Sleeps) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=429, retry_after=3), Fault("status", status=503, retry_after=2))
    pool = make_pool(
        _spec(up, "m1", max_retries=2), _spec(up, "m2"), retry=RetryPolicy(retry_after_cap_s=10.0)
    )
    out = await pool.complete(["m1", "m2"], _req())
    assert out.model.id == "m1" and [a.status for a in out.attempts] == ["error", "error", "ok"]
    assert sleeps.waits == [3.0, 2.0]
    # a longer pause than the cap: do not wait, go to the next candidate at once
    up.inject(Fault("status", status=429, retry_after=120, model="m1"))
    out = await pool.complete(["m1", "m2"], _req())
    assert out.model.id == "m2" and sleeps.waits == [3.0, 2.0]
    assert [(a.model, a.status) for a in out.attempts] == [("m1", "error"), ("m2", "ok")]


async def test_malformed_json_falls_back_without_retry(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("malformed_json", model="m1"))
    pool = make_pool(_spec(up, "m1", max_retries=2), _spec(up, "m2"))
    out = await pool.complete(["m1", "m2"], _req())
    assert out.model.id == "m2" and up.count("m1") == 1


async def test_fallback_order_and_exhaustion(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(
        Fault("status", status=500, model="m1", times=None),
        Fault("status", status=502, model="m2", times=None),
    )
    pool = make_pool(
        _spec(up, "m1", max_retries=1), _spec(up, "m2", max_retries=0), _spec(up, "m3"), threshold=10
    )
    out = await pool.complete(["m1", "m2", "m3", "m2"], _req())
    assert out.model.id == "m3"
    assert [(a.model, a.status) for a in out.attempts] == [
        ("m1", "error"),
        ("m1", "error"),
        ("m2", "error"),
        ("m3", "ok"),
    ]
    with pytest.raises(FallbackExhaustedError) as info:
        await pool.complete(["m1", "m2"], _req())
    err = info.value
    assert err.http_status == 502 and err.status_code == 502
    assert [a.model for a in err.attempts] == ["m1", "m1", "m2"]
    assert "All candidate models failed" in str(err)


async def test_timeout_is_retried_then_falls_back(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("timeout", model="m1", times=None))
    pool = make_pool(_spec(up, "m1", timeout_s=0.15, max_retries=1), _spec(up, "m2"))
    out = await pool.complete(["m1", "m2"], _req())
    assert out.model.id == "m2"
    assert [(a.model, a.status) for a in out.attempts][:2] == [("m1", "error"), ("m1", "error")]
    assert "timed out" in (out.attempts[0].error or "") or "no answer within" in (out.attempts[0].error or "")


async def test_unknown_candidate(make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool()
    with pytest.raises(UnknownModelError):
        await pool.complete(["nope"], _req())
    with pytest.raises(FallbackExhaustedError):
        await pool.complete([], _req())


async def test_specs_can_be_passed_as_candidates(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool()
    out = await pool.complete([_spec(up, "m9")], _req())
    assert out.model.id == "m9" and pool.models == ["m9"]


# -- fit ---------------------------------------------------------------------------------------------


async def test_skips_models_whose_context_window_is_too_small(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(_spec(up, "tiny", context_window=50), _spec(up, "big", context_window=100_000))
    out = await pool.complete(["tiny", "big"], _req("x" * 400))
    assert out.model.id == "big" and up.count("tiny") == 0
    skipped = out.attempts[0]
    assert skipped.status == "skipped" and "context window 50" in (skipped.error or "")
    # max_tokens counts toward the window too
    out = await pool.complete(["tiny", "big"], _req("short", max_tokens=100))
    assert out.model.id == "big"


@pytest.mark.parametrize(
    ("request_kw", "reason"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "JSON mode"),
    ],
)
async def test_skips_models_without_needed_capabilities(
    up: FakeUpstream, make_pool, request_kw, reason
) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(
        _spec(up, "plain", capabilities=frozenset()), _spec(up, "able", capabilities={"tools", "json"})
    )
    out = await pool.complete(["plain", "able"], _req(**request_kw))
    assert out.model.id == "able"
    assert out.attempts[0].status == "skipped" and reason in (out.attempts[0].error or "")


async def test_images_need_vision(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(_spec(up, "text", capabilities={"tools"}), _spec(up, "eyes", capabilities={"vision"}))
    request = ChatRequest(
        model="",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what?"},
                    {"type": "image_url", "image_url": {"url": "data:,"}},
                ],
            }
        ],
    )
    out = await pool.complete(["text", "eyes"], request)
    assert out.model.id == "eyes"


async def test_nothing_fits_is_a_client_error(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(_spec(up, "tiny", context_window=10))
    with pytest.raises(FallbackExhaustedError) as info:
        await pool.complete(["tiny"], _req("x" * 400))
    assert info.value.http_status == 400 and "fits this request" in str(info.value)
    assert up.count() == 0


# -- circuit breaker ---------------------------------------------------------------------------------


def test_breaker_state_machine(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2, window_s=10, cooldown_s=5), clock)
    assert breaker.state == "closed" and breaker.try_acquire()
    breaker.record_failure()
    clock.advance(11)  # the first failure leaves the window
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.try_acquire()
    clock.advance(5)
    assert breaker.state == "half_open"
    assert breaker.try_acquire()  # the one probe
    assert not breaker.try_acquire()  # everybody else waits
    breaker.record_failure()  # probe failed: open again for a fresh cool-down
    assert breaker.state == "open"
    clock.advance(4.9)
    assert not breaker.try_acquire()
    clock.advance(0.2)
    assert breaker.try_acquire()
    breaker.release()  # probe cancelled: the next caller may probe
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.try_acquire()


def test_success_resets_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2, window_s=10, cooldown_s=5), clock)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


async def test_circuit_opens_skips_and_recovers(up: FakeUpstream, make_pool, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=503, model="m1", times=3))
    pool = make_pool(_spec(up, "m1", max_retries=0), _spec(up, "m2"), threshold=2, cooldown_s=30)
    for _ in range(2):
        out = await pool.complete(["m1", "m2"], _req())
        assert out.model.id == "m2"
    assert pool.breaker("m1").state == "open" and up.count("m1") == 2
    out = await pool.complete(["m1", "m2"], _req())
    assert out.attempts[0].status == "skipped" and out.attempts[0].error == "circuit open"
    assert up.count("m1") == 2  # not called while open
    clock.advance(30)
    assert pool.breaker_states()["m1"] == "half_open"
    out = await pool.complete(["m1", "m2"], _req())  # the probe fails (third injected 503)
    assert out.model.id == "m2" and pool.breaker("m1").state == "open"
    clock.advance(30)
    out = await pool.complete(["m1", "m2"], _req())  # the probe succeeds
    assert out.model.id == "m1" and pool.breaker("m1").state == "closed"


async def test_client_errors_do_not_open_the_circuit(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=400, model="m1", times=None))
    pool = make_pool(_spec(up, "m1", max_retries=0), _spec(up, "m2"), threshold=1)
    for _ in range(3):
        await pool.complete(["m1", "m2"], _req())
    assert pool.breaker("m1").state == "closed" and up.count("m1") == 3


async def test_all_open_raises_with_attempts(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=500, times=None))
    pool = make_pool(_spec(up, "m1", max_retries=0), threshold=1)
    with pytest.raises(FallbackExhaustedError):
        await pool.complete(["m1"], _req())
    with pytest.raises(FallbackExhaustedError) as info:
        await pool.complete(["m1"], _req())
    assert info.value.http_status == 502 and info.value.attempts[0].error == "circuit open"


# -- streaming ---------------------------------------------------------------------------------------


async def test_stream_success_reports_usage_and_cost(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(_spec(up, "m1", input_usd_per_mtok=1.0, output_usd_per_mtok=1.0))
    stream = await pool.open_stream(["m1"], _req())
    assert stream.model.id == "m1"
    assert await _drain(stream) == "m1 says: hello"
    assert stream.done and stream.finish_reason == "stop" and stream.text == "m1 says: hello"
    assert (stream.tokens_in, stream.tokens_out) == (3, 3)
    assert stream.cost_usd == pytest.approx(6e-6)
    attempt = stream.attempts[-1]
    assert attempt.status == "ok" and attempt.ttft_ms is not None and attempt.latency_ms >= attempt.ttft_ms


async def test_stream_falls_back_before_the_first_chunk(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=503, model="m1", times=None))
    pool = make_pool(_spec(up, "m1", max_retries=1), _spec(up, "m2"))
    stream = await pool.open_stream(["m1", "m2"], _req())
    assert stream.model.id == "m2"
    assert await _drain(stream) == "m2 says: hello"
    assert [(a.model, a.status) for a in stream.attempts] == [("m1", "error"), ("m1", "error"), ("m2", "ok")]


async def test_stream_broken_before_content_still_falls_back(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("broken_stream", after_chunks=1, model="m1"))  # only the role-only preamble was sent
    pool = make_pool(_spec(up, "m1", max_retries=0), _spec(up, "m2"))
    stream = await pool.open_stream(["m1", "m2"], _req())
    assert stream.model.id == "m2" and await _drain(stream) == "m2 says: hello"


async def test_stream_retry_then_success(up: FakeUpstream, make_pool, sleeps: Sleeps) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("stream_error", after_chunks=0, model="m1"))
    pool = make_pool(_spec(up, "m1", max_retries=1))
    stream = await pool.open_stream(["m1"], _req())
    assert await _drain(stream) == "m1 says: hello"
    assert [a.status for a in stream.attempts] == ["error", "ok"] and len(sleeps.waits) == 1


async def test_mid_stream_break_ends_the_stream_with_an_error(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("broken_stream", after_chunks=3, model="m1"))
    pool = make_pool(_spec(up, "m1"), _spec(up, "m2"), threshold=1)
    stream = await pool.open_stream(["m1", "m2"], _req())
    received: list[str] = []
    with pytest.raises(UpstreamError):
        try:
            async for chunk in stream:
                received.append(chunk.delta)
        finally:
            await stream.aclose()
    assert "".join(received) == "m1 says:"
    assert up.count("m2") == 0  # no fallback once content was sent
    attempt = stream.attempts[-1]
    assert attempt.status == "error" and (attempt.error or "").startswith("mid-stream")
    assert stream.error is not None and not stream.done
    assert pool.breaker("m1").state == "open"  # a mid-stream failure counts against the model


async def test_stalled_stream_times_out_instead_of_hanging(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("stall_stream", after_chunks=3, model="m1"))
    pool = make_pool(_spec(up, "m1", timeout_s=0.5))
    stream = await pool.open_stream(["m1"], _req())
    with pytest.raises(UpstreamError):
        await _drain(stream)
    assert stream.attempts[-1].status == "error"


async def test_stream_timeout_before_first_chunk_falls_back(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("timeout", model="m1"))
    pool = make_pool(_spec(up, "m1", timeout_s=0.15, max_retries=0), _spec(up, "m2"))
    stream = await pool.open_stream(["m1", "m2"], _req())
    assert stream.model.id == "m2" and await _drain(stream) == "m2 says: hello"


async def test_stream_exhaustion_and_fit(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=500, times=None))
    pool = make_pool(_spec(up, "m1", max_retries=0), _spec(up, "tiny", context_window=5))
    with pytest.raises(FallbackExhaustedError) as info:
        await pool.open_stream(["tiny", "m1"], _req("x" * 100))
    assert [a.status for a in info.value.attempts] == ["skipped", "error"]


async def test_client_leaving_mid_stream_releases_everything(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("slow_stream", delay_s=0.01, model="m1"))
    pool = make_pool(_spec(up, "m1"))
    stream = await pool.open_stream(["m1"], _req("a b c d e f"))
    async for _chunk in stream:
        break
    await stream.aclose()
    assert stream.attempts[-1].status == "ok" and pool.breaker("m1").state == "closed"
    out = await pool.complete(["m1"], _req())  # the pooled client still works
    assert out.result.text == "m1 says: hello"


async def test_stream_can_be_iterated_once(up: FakeUpstream, make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(_spec(up, "m1"))
    stream = await pool.open_stream(["m1"], _req())
    await _drain(stream)
    with pytest.raises(RuntimeError):
        aiter(stream)


async def test_half_open_lets_exactly_one_probe_through(
    up: FakeUpstream, make_pool, clock: FakeClock
) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=500, model="m1"))
    pool = make_pool(_spec(up, "m1", max_retries=0), _spec(up, "m2"), threshold=1, cooldown_s=10)
    await pool.complete(["m1", "m2"], _req())
    assert pool.breaker("m1").state == "open"
    clock.advance(10)
    up.inject(Fault("slow", delay_s=0.1, model="m1"))  # the probe takes a while; others arrive meanwhile
    outs = await asyncio.gather(*(pool.complete(["m1", "m2"], _req()) for _ in range(5)))
    assert sorted(o.model.id for o in outs) == ["m1", "m2", "m2", "m2", "m2"]
    assert up.count("m1") == 2 and pool.breaker("m1").state == "closed"


async def test_cancelled_probe_frees_the_half_open_slot(
    up: FakeUpstream, make_pool, clock: FakeClock
) -> None:  # type: ignore[no-untyped-def]
    up.inject(Fault("status", status=500, model="m1"))
    pool = make_pool(_spec(up, "m1", max_retries=0), threshold=1, cooldown_s=10)
    with pytest.raises(FallbackExhaustedError):
        await pool.complete(["m1"], _req())
    clock.advance(10)
    up.inject(Fault("timeout", model="m1"))
    task = asyncio.create_task(pool.complete(["m1"], _req()))
    while up.count("m1") < 2:  # the probe reached the upstream
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.breaker("m1").try_acquire()  # the next caller may probe


class _StallingBackend:
    """An in-process backend without timeouts of its own: one chunk, then silence."""

    name = "stalling"

    async def complete(self, request: ChatRequest) -> ChatResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(delta="partial")
        await asyncio.sleep(3600)

    async def aclose(self) -> None:
        return None


async def test_pool_bounds_backends_without_their_own_timeouts(make_pool) -> None:  # type: ignore[no-untyped-def]
    pool = make_pool(ModelSpec(id="s", timeout_s=0.1, max_retries=0), build=lambda spec: _StallingBackend())
    with pytest.raises(FallbackExhaustedError) as info:
        await pool.complete(["s"], _req())
    assert "no answer within 0.1 s" in (info.value.attempts[0].error or "")
    stream = await pool.open_stream(["s"], _req())
    with pytest.raises(UpstreamError, match="stream stalled"):
        await _drain(stream)
    assert stream.text == "partial" and stream.attempts[-1].status == "error"
