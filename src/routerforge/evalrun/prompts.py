"""Read prompt sets (JSONL or CSV) for evaluation runs.

Recognised columns (first match wins): key ``id``/``key``/``prompt_id``; text ``prompt``/``text``/
``question``; reference ``reference``/``answer``/``gold_answer``/``expected``; choices ``choices``
(a JSON list, or a ``|``-separated string in CSV); ``category``/``subject``; ``split``. Every other column
goes to the prompt's metadata. Prompts without a key get the hash of their text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import ReadContext, ReadReport, iter_csv, iter_jsonl
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
    """Yield the prompts of a ``.jsonl`` or ``.csv`` file (``fmt``: auto, jsonl, csv).

    Strict: the first bad line (invalid JSON, a truncated CSV row, text that is not UTF-8) raises
    :class:`DataError` naming the file and line, so a caller that consumes everything before writing
    writes nothing.
    """
    file = Path(path)
    if fmt not in ("auto", "jsonl", "csv"):
        raise DataError(f"Unknown prompt file format {fmt!r}.", hint="Use auto, jsonl or csv.")
    if file.is_dir():
        raise DataError(f"{file} is a folder.", hint="Give one .jsonl or .csv file of prompts.")
    if not file.is_file():
        raise DataError(f"{file} does not exist.", hint="Check the path of the prompt file.")
    kind = fmt if fmt != "auto" else ("csv" if file.suffix.lower() == ".csv" else "jsonl")
    where = str(file)
    ctx = ReadContext(report=ReadReport(format=f"prompts-{kind}"), strict=True)
    if kind == "csv":
        for line, _, row in iter_csv(file, ctx):
            yield _item(dict(row), where, line)
        return
    for line, obj in iter_jsonl(file, ctx):
        yield _item(obj, where, line)
