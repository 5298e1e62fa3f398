"""Read prompt sets (JSONL or CSV) for evaluation runs.

Recognised columns (first match wins): key ``id``/``key``/``prompt_id``; text ``prompt``/``text``/
``question``; reference ``reference``/``answer``/``gold_answer``/``expected``; choices ``choices``
(a JSON list, or a ``|``-separated string in CSV); ``category``/``subject``; ``split``. Every other column
goes to the prompt's metadata. Prompts without a key get the hash of their text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerforge.data.records import PromptItem, text_hash
from routerforge.errors import DataError

KEY_COLUMNS = ("id", "key", "prompt_id")
TEXT_COLUMNS = ("prompt", "text", "question")
REFERENCE_COLUMNS = ("reference", "answer", "gold_answer", "expected")
CATEGORY_COLUMNS = ("category", "subject")


def _first(row: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        if name in row and row[name] not in (None, ""):
            return name, row[name]
    return None, None


def _choices(value: Any, path: str, line: int) -> list[str] | None:
    if value in (None, ""):
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                raise DataError(
                    "choices is not a JSON list", path=path, line=line, column="choices"
                ) from None
            return [str(v) for v in parsed]
        return [part.strip() for part in text.split("|")]
    raise DataError("choices must be a list", path=path, line=line, column="choices")


def _item(row: dict[str, Any], path: str, line: int) -> PromptItem:
    text_col, text = _first(row, TEXT_COLUMNS)
    if text_col is None or not isinstance(text, str):
        raise DataError(f"no prompt text (one of {', '.join(TEXT_COLUMNS)})", path=path, line=line)
    key_col, key = _first(row, KEY_COLUMNS)
    ref_col, reference = _first(row, REFERENCE_COLUMNS)
    cat_col, category = _first(row, CATEGORY_COLUMNS)
    used = {text_col, key_col, ref_col, cat_col, "choices", "split", "metadata"}
    metadata = {k: v for k, v in row.items() if k not in used and v not in (None, "")}
    if isinstance(row.get("metadata"), dict):
        metadata.update(row["metadata"])
    return PromptItem(
        key=str(key) if key is not None else text_hash(text),
        text=text,
        reference=str(reference) if reference is not None else None,
        choices=_choices(row.get("choices"), path, line),
        category=str(category) if category is not None else None,
        split=str(row["split"]) if row.get("split") else None,
        metadata=metadata,
    )


def read_prompt_file(path: str | Path, *, fmt: str = "auto") -> Iterator[PromptItem]:
    """Yield the prompts of a ``.jsonl`` or ``.csv`` file (``fmt``: auto, jsonl, csv)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file} does not exist.")
    kind = fmt if fmt != "auto" else ("csv" if file.suffix.lower() == ".csv" else "jsonl")
    where = str(file)
    with file.open(encoding="utf-8", newline="") as handle:
        if kind == "csv":
            for line, row in enumerate(csv.DictReader(handle), start=2):
                yield _item(dict(row), where, line)
            return
        if kind != "jsonl":
            raise DataError(f"Unknown prompt file format {fmt!r}.", hint="Use auto, jsonl or csv.")
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg})", path=where, line=line) from None
            if not isinstance(row, dict):
                raise DataError("each line must be a JSON object", path=where, line=line)
            yield _item(row, where, line)
