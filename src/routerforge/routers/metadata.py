"""Per-prompt metadata known at routing time (``category``, ``task``, ``tenant``, ``source``, …).

A :class:`~routerforge.routers.base.PromptBatch` may carry one ``{key: value}`` dict per prompt in
``meta`` (strings only; a missing key means "not given"). Training takes it from the data (the category
column plus the keys of :data:`ROUTING_KEYS` found in each record's metadata), routing from the caller
(``routerforge route --meta category=law``, the gateway's ``routing.metadata``, the SDK). Routers that do
not use metadata ignore it; ``prior`` (``routers/prior.py``) turns it into a per-value prior with a text
router as the residual, and ``ensemble`` can stack it with the other families.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from routerforge.errors import ValidationError

__all__ = [
    "MAX_META_KEYS",
    "MAX_META_VALUE_CHARS",
    "ROUTING_KEYS",
    "batch_meta",
    "clean_metadata",
    "parse_meta_items",
]

ROUTING_KEYS = ("category", "task", "tenant", "source")
MAX_META_KEYS = 16
MAX_META_VALUE_CHARS = 255
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


def clean_metadata(meta: Mapping[str, Any] | None, *, what: str = "metadata") -> dict[str, str]:
    """Validate one prompt's metadata: at most :data:`MAX_META_KEYS` keys (letters, digits, ``_.-``, ≤ 64
    characters), values strings, numbers or booleans of at most :data:`MAX_META_VALUE_CHARS` characters
    (stored as strings); ``None`` and empty values mean "not given" and are dropped."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise ValidationError(f"{what} must be an object of KEY: VALUE, got {type(meta).__name__}.")
    if len(meta) > MAX_META_KEYS:
        raise ValidationError(f"{what} has {len(meta)} keys; at most {MAX_META_KEYS} are allowed.")
    out: dict[str, str] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValidationError(
                f"{what}: invalid key {key!r}.",
                hint="Keys are 1–64 letters, digits, '_', '.' or '-', starting with a letter or '_'.",
            )
        if value is None or value == "":
            continue
        if isinstance(value, bool | int | float):
            value = str(value)
        if not isinstance(value, str):
            raise ValidationError(
                f"{what}.{key} must be a string, number or boolean, not {type(value).__name__}."
            )
        if len(value) > MAX_META_VALUE_CHARS:
            raise ValidationError(
                f"{what}.{key} has {len(value)} characters; at most {MAX_META_VALUE_CHARS} are allowed."
            )
        out[key] = value
    return out


def parse_meta_items(items: Iterable[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings (the CLI's repeatable ``--meta``) as validated metadata."""
    raw: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(
                f"Invalid --meta {item!r}.", hint="Use KEY=VALUE, e.g. --meta category=law."
            )
        raw[key.strip()] = value.strip()
    return clean_metadata(raw, what="--meta")


def batch_meta(
    categories: Sequence[str | None] | None = None,
    records: Sequence[Mapping[str, Any]] | None = None,
    keys: Sequence[str] = ROUTING_KEYS,
) -> list[dict[str, str]] | None:
    """One metadata dict per prompt from a data set's category column and per-record metadata (only the
    ``keys`` a caller can know at routing time; string values). ``None`` when no prompt has any."""
    n = len(categories) if categories is not None else len(records or [])
    out: list[dict[str, str]] = []
    for i in range(n):
        meta: dict[str, str] = {}
        rec = records[i] if records is not None and i < len(records) else {}
        for key in keys:
            value = rec.get(key) if isinstance(rec, Mapping) else None
            if isinstance(value, str) and value and len(value) <= MAX_META_VALUE_CHARS:
                meta[key] = value
        if categories is not None and categories[i]:
            meta["category"] = str(categories[i])[:MAX_META_VALUE_CHARS]
        out.append(meta)
    return out if any(out) else None
