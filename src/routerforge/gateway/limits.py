"""Reading and parsing a request body under the gateway's ``limits`` (``LimitsConfig``).

* :func:`read_body`: at most ``max_body_bytes`` (the declared ``Content-Length`` first, then the bytes
  actually read, so a chunked body is cut off too: 413) within ``body_timeout_s`` (408);
* :func:`parse_json`: strict JSON (no ``NaN``/``Infinity``, no number that overflows a float), at most
  ``max_json_depth`` deep (400, also for bodies deep enough to exhaust Python's recursion), every string
  normalised: a lone UTF-16 surrogate (``"\\ud800"``) or a NUL character becomes U+FFFD, so no text that
  cannot be encoded as UTF-8 (or stored by PostgreSQL) reaches a tokenizer, the log or an upstream;
* :func:`check_names`: identifiers a client sends in a URL or query (request ids, tenant names).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request

from routerforge.errors import (
    ClientDisconnectedError,
    NotFoundError,
    RequestTimeoutError,
    RequestTooLargeError,
    ValidationError,
)
from routerforge.gateway.config import LimitsConfig
from routerforge.gateway.schemas import MAX_NAME_CHARS

LIMITS_STATE = (
    "routerforge.limits"  # the app's lifespan state key the HTTP protocol reads (gateway/server.py)
)
_UNSAFE_CHARS = re.compile("[\ud800-\udfff\x00]")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")


def _too_large(limits: LimitsConfig, size: int | None) -> RequestTooLargeError:
    what = f"{size} bytes" if size is not None else "more bytes than that"
    return RequestTooLargeError(
        f"The request body holds {what}; this gateway accepts at most {limits.max_body_bytes} bytes.",
        hint="Send a smaller request (or ask the operator to raise limits.max_body_bytes).",
    )


async def read_body(request: Request, limits: LimitsConfig) -> bytes:
    """The request body, refused before it is read when ``Content-Length`` is over the limit and cut off
    as soon as the bytes read pass it; the whole body must arrive within ``body_timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.strip().isdigit():
            raise ValidationError(f"Content-Length {declared[:40]!r} is not a number of bytes.")
        if int(declared) > limits.max_body_bytes:
            raise _too_large(limits, int(declared))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):  # cheaper than anyio.fail_after per request
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise _too_large(limits, None)
                chunks.append(chunk)
    except TimeoutError as exc:
        raise RequestTimeoutError(
            f"The request body did not arrive within {limits.body_timeout_s:g} s ({size} bytes read).",
            hint="Send the whole body at once.",
        ) from exc
    except ClientDisconnect as exc:
        raise ClientDisconnectedError("The client disconnected while sending the request body.") from exc
    return b"".join(chunks)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def parse_json(raw: bytes, limits: LimitsConfig) -> Any:
    """The JSON value of ``raw``, refused (400) when malformed or nested deeper than ``max_json_depth``."""
    try:
        value = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except RecursionError as exc:
        raise _too_deep(limits) from exc
    except ValueError as exc:  # includes UnicodeDecodeError (bytes that are not UTF-8/16/32)
        raise ValidationError(f"The request body is not valid JSON: {exc}.", code="invalid_json") from exc
    # A surrogate or NUL can only come from a \u escape or (json.loads decodes with surrogatepass) from
    # the UTF-8 bytes of a surrogate (0xED 0xA0-0xBF); fewer brackets than the limit cannot nest deeper.
    unsafe = b"\\u" in raw or b"\xed" in raw
    if not unsafe and raw.count(b"[") + raw.count(b"{") <= limits.max_json_depth:
        return value
    return _walk(value, 1, limits, unsafe)


def _too_deep(limits: LimitsConfig) -> ValidationError:
    return ValidationError(
        f"The request body is nested deeper than {limits.max_json_depth} levels.", code="json_too_deep"
    )


def clean_text(text: str) -> str:
    """``text`` with lone surrogates and NUL characters replaced by U+FFFD."""
    return _UNSAFE_CHARS.sub("\ufffd", text) if _UNSAFE_CHARS.search(text) else text


def _walk(value: Any, depth: int, limits: LimitsConfig, clean: bool) -> Any:
    """Check the nesting depth; with ``clean``, return a copy with every string (keys too) cleaned."""
    if isinstance(value, str):
        return clean_text(value) if clean else value
    if isinstance(value, dict | list):
        if depth > limits.max_json_depth:
            raise _too_deep(limits)
        if isinstance(value, list):
            items = [_walk(v, depth + 1, limits, clean) for v in value]
            return items if clean else value
        pairs = {
            (clean_text(k) if clean else k): _walk(v, depth + 1, limits, clean) for k, v in value.items()
        }
        return pairs if clean else value
    return value


def check_body(payload: Any, limits: LimitsConfig) -> dict[str, Any]:
    """A parsed body that must be a JSON object; ``messages`` (when a list) at most ``max_messages`` long."""
    if not isinstance(payload, dict):
        raise ValidationError("The request body must be a JSON object.")
    messages = payload.get("messages")
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise ValidationError(
            f"The request holds {len(messages)} messages; this gateway accepts at most {limits.max_messages}.",
            param="messages",
            hint="Send fewer messages (or ask the operator to raise limits.max_messages).",
        )
    return payload


def check_request_id(request_id: str) -> str:
    """A request id from a URL or a body: anything not shaped like one is a request that does not exist."""
    if _REQUEST_ID.fullmatch(request_id) is None:
        shown = request_id[:40] + ("…" if len(request_id) > 40 else "")
        raise NotFoundError(f"No request {shown!r} in this tenant's log.")
    return request_id


def check_name(value: str, param: str) -> str:
    """A tenant or model name from a query: at most 255 printable characters."""
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ValidationError(f"{param} must be at most {MAX_NAME_CHARS} printable characters.", param=param)
    return value
