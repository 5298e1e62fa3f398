"""Calling candidate models reliably: timeouts, retries, circuit breakers and fallback chains.

:class:`UpstreamPool` is long-lived (one per gateway process or evaluation run). It owns one backend
and one :class:`CircuitBreaker` per model id, and calls an ordered list of candidate models:

- a candidate whose context window or capabilities do not fit the request is skipped
  (``backends/fit.py`` explains the prompt-size estimate);
- a candidate whose breaker is open is skipped; after the cool-down one request probes it (half-open);
- each tried candidate gets ``spec.max_retries`` retries on *retryable* errors only, waiting
  exponential backoff with full jitter (``uniform(0, min(cap, base·2^(retry-1)))``), or the upstream's
  ``Retry-After`` when it is at most ``retry_after_cap_s`` (a longer one skips to the next candidate);
- every failure of the candidate (retryable or not) moves on to the next candidate;
- streams fall back only until the first chunk with content is received; after that, an error ends
  the stream with an :class:`~routerforge.errors.UpstreamError` raised from the iterator;
- the per-attempt timeout also bounds the wait for every next chunk: by a timer here, or by the backend
  itself when it says so with a true ``enforces_timeouts`` attribute (``OpenAICompatBackend`` does:
  its HTTP client bounds every read), which saves a timer per chunk.

Each try (and each skip) is recorded as an :class:`Attempt`. When nothing answers,
:class:`~routerforge.errors.FallbackExhaustedError` carries the attempts.

Time is injectable: ``clock`` (monotonic seconds, for breaker windows and cool-downs) and ``sleep``
(for backoff waits) are constructor parameters, so tests run without real waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from routerforge.backends.base import ChatBackend, ChatChunk, ChatRequest, ChatResult
from routerforge.backends.breaker import BreakerPolicy, BreakerState, CircuitBreaker, Clock
from routerforge.backends.fit import CHARS_PER_TOKEN, RequestNeeds, estimate_prompt_tokens, misfit
from routerforge.backends.pricing import spec_cost_usd, with_cost
from routerforge.backends.redact import redact_error, secrets_of
from routerforge.backends.registry import build_backend
from routerforge.backends.spec import ModelSpec
from routerforge.errors import FallbackExhaustedError, UnknownModelError, UpstreamError

Sleep = Callable[[float], Awaitable[None]]
AttemptStatus = Literal["ok", "error", "skipped"]
T = TypeVar("T")

# Failures caused by the request itself say nothing about the model's health.
_REQUEST_FAULT_STATUS = frozenset({400, 413, 422})


@dataclass
class Attempt:
    """One try of one candidate model (or the reason it was skipped)."""

    model: str  # ModelSpec.id
    status: AttemptStatus  # "ok" | "error" | "skipped"
    latency_ms: float  # wall time of this try (streams: until the end of the stream); 0 when skipped
    error: str | None = None  # the error message, or why the model was skipped
    status_code: int | None = None  # upstream HTTP status of a failure, when there was one
    retry: int = 0  # 0 for the first try of this model, 1 for the first retry, …
    ttft_ms: float | None = None  # streams: time to the first chunk
    started_ns: int = 0  # wall-clock start (time.time_ns()), for trace spans; 0 when skipped

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between retries of one model (how many retries: ``ModelSpec.max_retries``)."""

    base_s: float = 0.25
    cap_s: float = 8.0
    retry_after_cap_s: float = 10.0

    def delay_s(self, retry: int, error: UpstreamError, rng: random.Random) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based) after ``error``.

        ``None`` means "do not retry this model": the upstream asked (``Retry-After``) for a longer
        pause than ``retry_after_cap_s``, so the next candidate is better than waiting.
        """
        if error.retry_after_s is not None:
            wait = max(0.0, error.retry_after_s)
            return wait if wait <= self.retry_after_cap_s else None
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** (retry - 1)))


@dataclass
class ChainResult:
    """The answer of a fallback chain: the result, the model that gave it, and every attempt."""

    result: ChatResult  # cost_usd filled from usage × the model's prices when the upstream gave none
    model: ModelSpec
    attempts: list[Attempt]
    usage_estimated: bool = False  # the upstream reported no usage: tokens are estimates (see ChainStream)


def counts_against_model(error: UpstreamError) -> bool:
    """Whether ``error`` is evidence that the model is unhealthy (feeds its circuit breaker)."""
    return error.status_code not in _REQUEST_FAULT_STATUS


class UpstreamPool:
    """Backends, breakers and the fallback logic for a set of models. See the module docstring.

    ``specs``: models known up front (more can be added with :meth:`add` or passed as candidates).
    ``build``: spec → backend (default :func:`~routerforge.backends.registry.build_backend`).
    ``rng``: the jitter source (seed it for reproducible waits).
    """

    def __init__(
        self,
        specs: Iterable[ModelSpec] = (),
        *,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        build: Callable[[ModelSpec], ChatBackend] = build_backend,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.breaker_policy = breaker or BreakerPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._build = build
        self._specs: dict[str, ModelSpec] = {}
        self._backends: dict[str, ChatBackend] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._retired: list[ChatBackend] = []
        for spec in specs:
            self.add(spec)

    # -- registry of models ----------------------------------------------------------------------
    def add(self, spec: ModelSpec, backend: ChatBackend | None = None) -> None:
        """Know ``spec`` (replacing an equal-id spec's definition); optionally with a ready backend."""
        if spec.id in self._specs and self._specs[spec.id] != spec:
            old = self._backends.pop(spec.id, None)  # rebuilt lazily from the new spec
            if old is not None:
                self._retired.append(old)  # may still serve running calls; closed by aclose()
        self._specs[spec.id] = spec
        if backend is not None:
            self._backends[spec.id] = backend

    @property
    def models(self) -> list[str]:
        return list(self._specs)

    def spec(self, model_id: str) -> ModelSpec:
        try:
            return self._specs[model_id]
        except KeyError:
            raise UnknownModelError(model_id, self._specs) from None

    def backend(self, model_id: str) -> ChatBackend:
        """The (lazily built, then reused) backend of a known model."""
        backend = self._backends.get(model_id)
        if backend is None:
            backend = self._build(self.spec(model_id))
            self._backends[model_id] = backend
        return backend

    def breaker(self, model_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(model_id)
        if breaker is None:
            breaker = CircuitBreaker(self.breaker_policy, self._clock)
            self._breakers[model_id] = breaker
        return breaker

    def breaker_states(self) -> dict[str, BreakerState]:
        return {model_id: b.state for model_id, b in self._breakers.items()}

    async def aclose(self) -> None:
        backends, self._backends = [*self._backends.values(), *self._retired], {}
        self._retired = []
        for backend in backends:
            await backend.aclose()

    # -- calling ---------------------------------------------------------------------------------
    def _candidates(self, candidates: Sequence[str | ModelSpec]) -> list[ModelSpec]:
        out: list[ModelSpec] = []
        seen: set[str] = set()
        for item in candidates:
            if isinstance(item, ModelSpec):
                if self._specs.get(item.id) != item:
                    self.add(item)
                spec = item
            else:
                spec = self.spec(item)
            if spec.id not in seen:
                seen.add(spec.id)
                out.append(spec)
        if not out:
            raise FallbackExhaustedError("No candidate models were given.", attempts=[])
        return out

    @staticmethod
    def _request_for(spec: ModelSpec, request: ChatRequest) -> ChatRequest:
        timeout = spec.timeout_s if request.timeout_s is None else min(spec.timeout_s, request.timeout_s)
        return dataclasses.replace(request, model=spec.upstream_name, timeout_s=timeout)

    def _record_failure(self, spec: ModelSpec, error: UpstreamError) -> None:
        breaker = self.breaker(spec.id)
        if counts_against_model(error):
            breaker.record_failure()
        else:
            breaker.release()

    async def _chain(
        self,
        candidates: Sequence[str | ModelSpec],
        request: ChatRequest,
        once: Callable[[ChatBackend, ChatRequest], Awaitable[T]],
    ) -> _Won[T]:
        """The fallback loop shared by complete and stream: fit, breaker, timeout, retries, attempts."""
        specs = self._candidates(candidates)
        needs = RequestNeeds.of(request)
        attempts: list[Attempt] = []
        for spec in specs:
            reason = misfit(spec, needs)
            if reason is not None:
                attempts.append(Attempt(spec.id, "skipped", 0.0, reason))
                continue
            breaker = self.breaker(spec.id)
            backend = self.backend(spec.id)
            call = self._request_for(spec, request)
            timeout_s = call.timeout_s or spec.timeout_s
            for retry in range(spec.max_retries + 1):
                if not breaker.try_acquire():
                    attempts.append(Attempt(spec.id, "skipped", 0.0, "circuit open", retry=retry))
                    break
                start = time.perf_counter()
                started_ns = time.time_ns()
                try:
                    try:
                        async with asyncio.timeout(timeout_s):
                            value = await once(backend, call)
                    except TimeoutError as exc:
                        raise UpstreamError(
                            f"{spec.id}: no answer within {timeout_s:g} s",
                            provider=spec.provider,
                            retryable=True,
                        ) from exc
                except UpstreamError as err:
                    latency_ms = (time.perf_counter() - start) * 1000.0
                    redact_error(err, secrets_of(spec.api_key, spec.headers))
                    self._record_failure(spec, err)
                    failed = Attempt(spec.id, "error", latency_ms, str(err), err.status_code, retry)
                    failed.started_ns = started_ns
                    attempts.append(failed)
                    delay = self.retry.delay_s(retry + 1, err, self._rng) if err.retryable else None
                    if delay is None or retry == spec.max_retries:
                        break
                    await self._sleep(delay)
                    continue
                except BaseException:  # cancelled (client gone) or a backend bug: free a half-open probe
                    breaker.release()
                    raise
                breaker.record_success()
                latency_ms = (time.perf_counter() - start) * 1000.0
                attempt = Attempt(spec.id, "ok", latency_ms, retry=retry, started_ns=started_ns)
                attempts.append(attempt)
                return _Won(value, spec, attempts, attempt, start, timeout_s)
        raise _exhausted(attempts)

    async def complete(self, candidates: Sequence[str | ModelSpec], request: ChatRequest) -> ChainResult:
        """Answer ``request`` with the first candidate that succeeds. Raises ``FallbackExhaustedError``."""

        async def once(backend: ChatBackend, call: ChatRequest) -> ChatResult:
            return await backend.complete(call)

        won = await self._chain(candidates, request, once)
        result = won.value
        if result.latency_ms is None:
            result = dataclasses.replace(result, latency_ms=won.attempt.latency_ms)
        estimated = not result.tokens_in or result.tokens_out is None
        if estimated:
            result = dataclasses.replace(
                result,
                tokens_in=result.tokens_in or estimate_prompt_tokens(request),
                tokens_out=_output_tokens(result.tokens_out, result.text),
            )
        return ChainResult(with_cost(result, won.spec), won.spec, won.attempts, estimated)

    async def open_stream(self, candidates: Sequence[str | ModelSpec], request: ChatRequest) -> ChainStream:
        """Start streaming from the first candidate that produces content; fall back until then.

        Returns once the model is known (``.model``) and its first content chunk is buffered, so the
        caller can send response headers. Raises ``FallbackExhaustedError`` when no candidate starts.
        """

        async def once(backend: ChatBackend, call: ChatRequest) -> _StreamStart:
            iterator = aiter(backend.stream(call))
            head: list[ChatChunk] = []
            try:
                while True:
                    try:
                        chunk = await anext(iterator)
                    except StopAsyncIteration:
                        return _StreamStart(iterator, head, ended=True)
                    head.append(chunk)
                    if _has_content(chunk):
                        return _StreamStart(iterator, head, ended=False)
            except BaseException:
                await _close(iterator)
                raise

        won = await self._chain(candidates, request, once)
        won.attempt.ttft_ms = won.attempt.latency_ms
        started = won.value
        guard = not getattr(self.backend(won.spec.id), "enforces_timeouts", False)
        return ChainStream(
            self,
            won.spec,
            started.iterator,
            started.head,
            started.ended,
            won.attempts,
            won.attempt,
            won.start,
            won.timeout_s,
            guard_chunks=guard,
            request=request,
        )


@dataclass
class _StreamStart:
    iterator: AsyncIterator[ChatChunk]
    head: list[ChatChunk]
    ended: bool


@dataclass
class _Won(Generic[T]):
    value: T
    spec: ModelSpec
    attempts: list[Attempt]
    attempt: Attempt
    start: float  # perf_counter at the start of the winning attempt
    timeout_s: float


def _output_tokens(reported: int | None, text: str) -> int:
    """``reported``, else an estimate from the answer's text (characters / 4)."""
    return reported if reported is not None else math.ceil(len(text) / CHARS_PER_TOKEN)


def _has_content(chunk: ChatChunk) -> bool:
    if chunk.delta or chunk.finish_reason is not None or chunk.tokens_out is not None:
        return True
    raw = chunk.raw or {}
    choices = raw.get("choices") or []
    delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
    return bool(isinstance(delta, dict) and (delta.get("tool_calls") or delta.get("function_call")))


async def _close(iterator: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(UpstreamError):  # the stream already failed; closing adds nothing
            await aclose()


def _exhausted(attempts: list[Attempt]) -> FallbackExhaustedError:
    errors = [a for a in attempts if a.status == "error"]
    summary = "; ".join(f"{a.model}: {a.error}" for a in attempts) or "no candidates"
    if not errors and attempts and all(a.error != "circuit open" for a in attempts):
        err = FallbackExhaustedError(
            f"No candidate model fits this request ({summary}).",
            attempts=attempts,
            hint="Shorten the prompt, lower max_tokens, or add a model with a larger context window "
            "or the needed capabilities.",
        )
        err.http_status = 400
        err.error_type = "invalid_request_error"
        return err
    last = errors[-1] if errors else None
    return FallbackExhaustedError(
        f"All candidate models failed ({summary}).",
        attempts=attempts,
        status_code=last.status_code if last else None,
        retryable=True,
        hint="Retry later; see the attempts for each model's error.",
    )


class ChainStream:
    """A stream from the model a fallback chain settled on. Iterate once; always ``await aclose()``.

    ``attempts`` (shared with the chain) ends with this model's attempt, which is updated when the
    stream ends: ``latency_ms`` becomes the total time, ``status`` ``"error"`` on a mid-stream failure.
    After the stream: ``text``, ``finish_reason``, ``tokens_in``, ``tokens_out``, ``cost_usd``. Usage is the
    upstream's (OpenAI-compatible backends ask for it with ``stream_options.include_usage``); when the
    upstream reports none (or a prompt of 0 tokens), the stream's end fills in estimates — prompt tokens as
    in ``backends/fit.py``, output tokens as characters / 4 — and sets ``usage_estimated``.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        model: ModelSpec,
        iterator: AsyncIterator[ChatChunk],
        head: list[ChatChunk],
        ended: bool,
        attempts: list[Attempt],
        attempt: Attempt,
        start: float,
        timeout_s: float,
        guard_chunks: bool = True,
        request: ChatRequest | None = None,
    ) -> None:
        self.model = model
        self.attempts = attempts
        self._parts: list[str] = []
        self.finish_reason: str | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.usage_estimated = False
        self._request = request
        self.upstream_cost_usd: float | None = None
        self.error: UpstreamError | None = None
        self.done = False
        self._pool = pool
        self._iterator = iterator
        self._head = head
        self._ended = ended
        self._attempt = attempt
        self._start = start
        self._timeout_s = timeout_s
        self._guard_chunks = guard_chunks
        self._runner: AsyncGenerator[ChatChunk, None] | None = None

    @property
    def cost_usd(self) -> float | None:
        """Upstream-reported cost, else usage × the model's prices (``None`` until usage is known)."""
        if self.upstream_cost_usd is not None:
            return self.upstream_cost_usd
        return spec_cost_usd(self.model, self.tokens_in, self.tokens_out)

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._parts)

    def _observe(self, chunk: ChatChunk) -> None:
        if chunk.delta:
            self._parts.append(chunk.delta)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.tokens_in is not None:
            self.tokens_in = chunk.tokens_in
        if chunk.tokens_out is not None:
            self.tokens_out = chunk.tokens_out
        usage = (chunk.raw or {}).get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("cost"), int | float):
            self.upstream_cost_usd = float(usage["cost"])

    def _estimate_missing_usage(self) -> None:
        if not self.tokens_in and self._request is not None:  # 0: an upstream that does not count
            self.tokens_in = estimate_prompt_tokens(self._request)
            self.usage_estimated = True
        if self.tokens_out is None:
            self.tokens_out = _output_tokens(None, self.text)
            self.usage_estimated = True

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        if self._runner is not None:
            raise RuntimeError("A ChainStream can be iterated only once.")
        self._runner = self._run()
        return self._runner

    async def _run(self) -> AsyncGenerator[ChatChunk, None]:
        for chunk in self._head:
            self._observe(chunk)
            yield chunk
        self._head = []
        try:
            while not self._ended:
                try:
                    if self._guard_chunks:
                        async with asyncio.timeout(self._timeout_s):
                            chunk = await anext(self._iterator)
                    else:  # the backend bounds every read itself (cheaper than a timer per chunk)
                        chunk = await anext(self._iterator)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    raise UpstreamError(
                        f"{self.model.id}: stream stalled for {self._timeout_s:g} s",
                        provider=self.model.provider,
                        retryable=True,
                    ) from exc
                self._observe(chunk)
                yield chunk
        except UpstreamError as err:
            redact_error(err, secrets_of(self.model.api_key, self.model.headers))
            self.error = err
            self._attempt.status = "error"
            self._attempt.error = f"mid-stream: {err}"
            self._attempt.status_code = err.status_code
            self._pool._record_failure(self.model, err)
            raise
        finally:
            self._attempt.latency_ms = (time.perf_counter() - self._start) * 1000.0
            self._estimate_missing_usage()
        self.done = True

    async def aclose(self) -> None:
        """Release the upstream connection (also when the client went away mid-stream)."""
        if not self.done and self.error is None:
            self._attempt.latency_ms = (time.perf_counter() - self._start) * 1000.0
        if self._runner is not None:
            await self._runner.aclose()
        await _close(self._iterator)
        self._estimate_missing_usage()


__all__ = [
    "Attempt",
    "BreakerPolicy",
    "ChainResult",
    "ChainStream",
    "CircuitBreaker",
    "RetryPolicy",
    "UpstreamPool",
    "counts_against_model",
]
