"""RouterBench CSVs (as kept by RouterDC): one score column per model, ``<model>|total_cost``,
``<model>|model_response``.

``prompt`` and responses are Python-list literals of strings (parsed with ``ast.literal_eval`` and joined
with newlines); ``eval_name`` is the category; the split comes from the file name (``*_train.csv``,
``*_test.csv``); ``oracle_model_to_route_to`` is ignored (it is derived from the scores). The key is
``sample_id``, or ``<sample_id>#<row id>`` when the file has RouterBench's unnamed row-id column: the
RouterDC subset repeats 14 sample ids with different rows (some in both train and test), so the row id
keeps all 3,178 rows apart.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from routerforge.data.importers.base import (
    ReadContext,
    csv_header,
    iter_csv,
    parse_float,
    parse_score,
)
from routerforge.data.records import EvalRecord
from routerforge.errors import DataError

SUFFIXES = (".csv",)
REQUIRED = ("sample_id", "prompt")
_INDEX_COLUMNS = ("", "Unnamed: 0")
_NOT_MODELS = {"sample_id", "prompt", "eval_name", "oracle_model_to_route_to", *_INDEX_COLUMNS}
_SPLITS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val", "dev": "val"}


def split_of(path: Path) -> str | None:
    tail = path.stem.rsplit("_", 1)[-1].lower()
    return _SPLITS.get(tail)


def join_literal(value: str) -> str:
    """``"['a', 'b']"`` → ``"a\\nb"``; a value that is not a list literal is returned as it is."""
    text = value.strip()
    if not text.startswith(("[", "(")):
        return value
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value
    if isinstance(parsed, list | tuple) and all(isinstance(p, str) for p in parsed):
        return "\n".join(parsed)
    return value


def read(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    for file in ctx.files(path, SUFFIXES):
        yield from _read_file(file, ctx)


def _read_file(file: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    where = str(file)
    header = csv_header(file)
    for column in REQUIRED:
        if column not in header:
            raise DataError(f"a RouterBench CSV needs a {column!r} column", path=where, line=1, column=column)
    models = [c for c in header if "|" not in c and c not in _NOT_MODELS]
    if not models:
        raise DataError("no model score columns", path=where, line=1)
    index_column = next((c for c in _INDEX_COLUMNS if c in header), None)
    split = split_of(file)
    for line, _, row in iter_csv(file, ctx):
        sample_id = row["sample_id"].strip()
        if not sample_id:
            ctx.reject(DataError("empty sample_id", path=where, line=line, column="sample_id"))
            continue
        text = join_literal(row["prompt"])
        if not text.strip():
            ctx.reject(DataError("empty prompt", path=where, line=line, column="prompt"))
            continue
        key = f"{sample_id}#{row[index_column].strip()}" if index_column is not None else sample_id
        try:
            cells = [
                (
                    m,
                    parse_score(row[m], ctx.scale, path=where, line=line, column=m),
                    parse_float(row.get(f"{m}|total_cost"), path=where, line=line, column=f"{m}|total_cost"),
                )
                for m in models
            ]
        except DataError as exc:
            ctx.reject(exc)
            continue
        category = row.get("eval_name") or None
        for model, score, cost in cells:
            response = row.get(f"{model}|model_response")
            ctx.report.records += 1
            yield EvalRecord(
                prompt_key=key,
                prompt=text,
                model=model,
                score=score,
                cost_usd=cost,
                response=join_literal(response) if response else None,
                source=where,
                split=split,
                category=category,
            )
