"""Credentials out of upstream error text, where it enters our code.

An upstream's error body is someone else's text: a misconfigured proxy may echo the request headers,
``Authorization: Bearer sk-…`` included. Every backend passes the text of an upstream failure through
:func:`redact_secrets` before it becomes an :class:`~routerforge.errors.UpstreamError` (and the pool again
before it becomes an attempt's ``error``), so the operator's provider key never reaches a client, the
request log or ``/metrics``.

Removed: the configured secret values themselves (the API key, extra header values), the value of any
``Authorization`` / ``api-key`` / ``x-api-key``-style header echo, ``Bearer …`` / ``Basic …`` tokens,
``sk-…`` keys and ``user:password@`` in URLs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import SecretStr

from routerforge.errors import UpstreamError

REDACTED = "[REDACTED]"
_VALUE = r"(?!\[REDACTED\])[^\s\"',;}\]\)]+"
_HEADER_ECHO = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api[-_]?key|x-goog-api-key|openai-api-key|cookie)"
    r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)(?:(?:bearer|basic|token)\s+)?" + _VALUE
)
_SCHEME_TOKEN = re.compile(
    r"(?i)\b(bearer\s+)(?!\[REDACTED\])[^\s\"',;}\]\)]{6,}|\b(basic\s+)[A-Za-z0-9+/]{8,}=*"
)
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
_URL_PASSWORD = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")
#: shorter configured values are not treated as secrets (they would match ordinary words)
MIN_SECRET_LEN = 6


def redact_secrets(text: str, secrets: Iterable[str | SecretStr | None] = ()) -> str:
    """``text`` with every credential replaced by ``[REDACTED]`` (see the module docstring)."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value and len(value) >= MIN_SECRET_LEN:
            text = text.replace(value, REDACTED)
    text = _HEADER_ECHO.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SCHEME_TOKEN.sub(lambda m: f"{m.group(1) or m.group(2)}{REDACTED}", text)
    text = _SK_KEY.sub(REDACTED, text)
    return _URL_PASSWORD.sub(REDACTED + "@", text)


def secrets_of(api_key: SecretStr | None, headers: Mapping[str, str] | None = None) -> list[str]:
    """The secret values a backend sends: its API key and the values of its extra headers."""
    out = [api_key.get_secret_value()] if api_key is not None else []
    return out + list((headers or {}).values())


def redact_error(err: UpstreamError, secrets: Iterable[str | SecretStr | None] = ()) -> UpstreamError:
    """``err`` with its message and hint redacted in place (returned for chaining)."""
    values = list(secrets)
    text = str(err)
    clean = redact_secrets(text, values)
    if clean != text:
        err.message = redact_secrets(err.message, values)
        err.hint = None if err.hint is None else redact_secrets(err.hint, values)
        err.args = (clean,)
    return err
