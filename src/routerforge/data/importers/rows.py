"""Rows of a CSV or JSONL file as dicts, with ``--map`` applied (the readers that accept a column map)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import ReadContext, csv_header, first_json_object, iter_csv, iter_jsonl
from routerforge.errors import DataError


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def columns_of(path: Path) -> list[str]:
    """The header of a CSV file or the keys of a JSONL file's first object."""
    return csv_header(path) if is_csv(path) else list(first_json_object(path))


def iter_rows(file: Path, ctx: ReadContext) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for every row of ``file`` (CSV values are strings), renamed by ``ctx.options.column_map``.

    A mapped column missing from the CSV header (or from the first JSONL object) is an error naming it and
    the columns the file has; a JSONL line that lacks one simply lacks the field.
    """
    mapping = ctx.options.column_map
    where = str(file)
    if mapping is not None:
        mapping.check_columns(columns_of(file), where)
    rows: Iterator[tuple[int, dict[str, Any]]] = (
        ((line, row) for line, _, row in iter_csv(file, ctx)) if is_csv(file) else iter_jsonl(file, ctx)
    )
    for line, row in rows:
        yield line, (mapping.apply(row) if mapping is not None else row)


def reject(ctx: ReadContext, exc: DataError) -> None:
    """``ctx.reject`` with the field named as the file's column when ``--map`` renamed it."""
    mapping = ctx.options.column_map
    if mapping is not None and exc.column is not None:
        source = mapping.source_of(exc.column)
        if source != exc.column:
            renamed = copy.copy(exc)  # same class and attributes (a ScoreScaleError keeps its value)
            renamed.column = source
            message = DataError(exc.reason, path=exc.path, line=exc.line, column=source, hint=exc.hint)
            renamed.args = (str(message),)
            exc = renamed
    ctx.reject(exc)


def json_value(value: Any, *, from_csv: bool) -> Any:
    """A CSV cell that holds a JSON array or object, decoded (other values unchanged)."""
    if from_csv and isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def text_list(value: Any) -> list[str] | None:
    """A list of strings, also from the JSON text of one (``'["hi", "more"]'``); else ``None``."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None
