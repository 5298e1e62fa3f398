"""Upstream error text is redacted of credentials before it becomes an UpstreamError or an attempt's error.

The fake upstream's ``echo_headers`` fault answers like a careless proxy: its error (JSON below 500, plain
text from 500, an in-band event mid-stream) repeats every request header, ``Authorization: Bearer <key>``
included. Through the real ``UpstreamPool`` and ``OpenAICompatBackend`` the key must appear nowhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from fake_upstream import FakeUpstream, Fault
from routerforge.backends.base import ChatRequest
from routerforge.backends.redact import REDACTED, redact_error, redact_secrets
from routerforge.backends.reliability import RetryPolicy, UpstreamPool
from routerforge.backends.spec import ModelSpec
from routerforge.errors import FallbackExhaustedError, UpstreamError

KEY = "sk-proj-Zq8bT4uYv2W9xK1mN0pL7rS3"
HEADER_SECRET = "hdr-secret-6f1c2d9e"  # an extra header an operator configured (e.g. a gateway token)


@pytest.mark.parametrize(
    "text",
    [
        f"headers: {{'authorization': 'Bearer {KEY}', 'x': 'y'}}",
        f'{{"Authorization": "Bearer {KEY}"}}',
        f"Authorization: Bearer {KEY}",
        f"proxy-authorization=Basic {KEY}",
        f"api-key: {KEY}",
        f"x-api-key={KEY}",
        f'"api_key": "{KEY}"',
        f"invalid token Bearer {KEY}.",
        f"Incorrect API key provided: {KEY}",
        f"cannot connect to https://user:{KEY}@host/v1",
    ],
)
def test_redact_secrets_patterns(text: str) -> None:
    out = redact_secrets(text)
    assert KEY not in out and KEY[3:15] not in out, out
    assert REDACTED in out


def test_redact_secrets_literal_values_and_plain_text() -> None:
    text = f"the key {KEY[3:]} and {HEADER_SECRET} were echoed"
    out = redact_secrets(text, [SecretStr(KEY[3:]), HEADER_SECRET, None, "ab"])
    assert out == f"the key {REDACTED} and {REDACTED} were echoed"
    plain = "Bearer token missing; basic auth is not supported; the model is overloaded"
    assert redact_secrets(plain) == plain  # ordinary words survive


def test_redact_error_rewrites_message_hint_and_str() -> None:
    err = UpstreamError(f"HTTP 401: Authorization: Bearer {KEY}", provider="p", hint=f"key {KEY}")
    redact_error(err, [KEY])
    assert KEY not in str(err) and KEY not in err.message and KEY not in (err.hint or "")
    assert err.provider == "p"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:  # no key check: it echoes whatever it gets
        yield up


@pytest.fixture
async def pool(upstream: FakeUpstream) -> AsyncIterator[UpstreamPool]:
    upstream.reset()
    spec = ModelSpec(
        id="m1",
        base_url=upstream.base_url,
        api_key=SecretStr(KEY),
        headers={"x-gateway-token": HEADER_SECRET},
        max_retries=1,
        timeout_s=5.0,
    )
    p = UpstreamPool([spec], retry=RetryPolicy(base_s=0.0, cap_s=0.0))
    yield p
    await p.aclose()


def _req() -> ChatRequest:
    return ChatRequest(model="", messages=[{"role": "user", "content": "hello there friend"}])


def _assert_clean(*texts: str | None) -> None:
    for text in texts:
        assert text is not None
        assert KEY not in text and HEADER_SECRET not in text, text
        assert "sk-proj" not in text, text


@pytest.mark.parametrize("status", [401, 500])
async def test_echoed_authorization_never_leaves_the_pool(
    pool: UpstreamPool, upstream: FakeUpstream, status: int
) -> None:
    upstream.inject(Fault("echo_headers", status=status, times=None))
    with pytest.raises(FallbackExhaustedError) as info:
        await pool.complete(["m1"], _req())
    assert upstream.count("m1") == (2 if status == 500 else 1)  # 500 is retried: both answers echoed
    assert "headers were" in str(info.value)  # the upstream's message is kept, minus the secrets
    _assert_clean(str(info.value), info.value.message, *(a.error for a in info.value.attempts))
    assert all(a.status_code == status for a in info.value.attempts)


async def test_echoed_authorization_mid_stream_is_redacted(
    pool: UpstreamPool, upstream: FakeUpstream
) -> None:
    upstream.inject(Fault("echo_headers", after_chunks=2))
    stream = await pool.open_stream(["m1"], _req())
    with pytest.raises(UpstreamError) as info:
        async for _ in stream:
            pass
    await stream.aclose()
    assert "headers:" in str(info.value)
    _assert_clean(str(info.value), *(a.error for a in stream.attempts if a.status == "error"))
    assert any(a.status == "error" for a in stream.attempts)
