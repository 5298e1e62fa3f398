"""Long JSONL and long CSV: one line per (prompt, model) outcome with the fields of ``EvalRecord``.

Required: ``prompt`` and ``model``; ``score`` may be empty/null (a missing cell). ``prompt_key`` (or ``id``)
defaults to the text hash of the prompt. In CSV, ``dimensions``, ``tags``, ``metadata`` and ``choices`` hold
JSON. An unknown column or key is an error that names it, except under ``--map`` (columns with other
names, see :mod:`~routerforge.data.importers.mapping`), where the unmapped columns are kept as prompt
metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import (
    ReadContext,
    csv_header,
    parse_float,
    parse_int,
    parse_score,
)
from routerforge.data.importers.rows import iter_rows, reject
from routerforge.data.records import EvalRecord, text_hash
from routerforge.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
TEXT_FIELDS = ("response", "judge", "source", "split", "category", "reference")
FIELDS = {
    "prompt_key",
    "id",
    "prompt",
    "model",
    "score",
    "cost_usd",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "dimensions",
    "tags",
    "metadata",
    "choices",
    *TEXT_FIELDS,
}


def read_jsonl(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    for file in ctx.files(path, JSONL_SUFFIXES):
        for line, obj in iter_rows(file, ctx):
            yield from _one(obj, str(file), line, ctx, from_csv=False)


def read_csv(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    for file in ctx.files(path, CSV_SUFFIXES):
        where = str(file)
        header = csv_header(file)
        mapping = ctx.options.column_map
        if mapping is not None:
            mapping.check_columns(header, where)
            header = mapping.renamed(header)
        unknown = [c for c in header if c not in FIELDS]
        if unknown and mapping is None:
            raise DataError(
                f"unknown column {unknown[0]!r} in a long CSV.",
                path=where,
                line=1,
                column=unknown[0],
                hint=f"Known columns: {', '.join(sorted(FIELDS))}; or name yours with --map FIELD=COLUMN.",
            )
        for column in ("prompt", "model"):
            if column not in header:
                raise DataError(
                    f"a long CSV needs a {column!r} column",
                    path=where,
                    line=1,
                    column=column,
                    hint=f"Name the file's column with --map {column}=COLUMN; the file has: {', '.join(header)}.",
                )
        for line, row in iter_rows(file, ctx):
            yield from _one(row, where, line, ctx, from_csv=True)


def _one(
    obj: dict[str, Any], where: str, line: int, ctx: ReadContext, *, from_csv: bool
) -> Iterator[EvalRecord]:
    try:
        record = _record(obj, where, line, ctx, from_csv=from_csv)
    except DataError as exc:
        reject(ctx, exc)
        return
    ctx.report.records += 1
    yield record


def _json_field(obj: dict[str, Any], name: str, kind: type, where: str, line: int, from_csv: bool) -> Any:
    value = obj.get(name)
    if from_csv and isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{name!r} must hold JSON", path=where, line=line, column=name) from None
    if value is None:
        return None
    if not isinstance(value, kind):
        raise DataError(f"{name!r} must be a JSON {kind.__name__}", path=where, line=line, column=name)
    return value


def _record(obj: dict[str, Any], where: str, line: int, ctx: ReadContext, *, from_csv: bool) -> EvalRecord:
    unknown = [k for k in obj if k not in FIELDS]
    if unknown and ctx.options.column_map is None:
        raise DataError(
            f"unknown key {unknown[0]!r}",
            path=where,
            line=line,
            column=unknown[0],
            hint="Rename it, or import with --map (unmapped keys are then kept as metadata).",
        )
    text, model = obj.get("prompt"), obj.get("model")
    if not isinstance(text, str) or not text.strip():
        raise DataError("'prompt' must be a non-empty string", path=where, line=line, column="prompt")
    if not isinstance(model, str) or not model.strip():
        raise DataError("'model' must be a non-empty string", path=where, line=line, column="model")
    key = obj.get("prompt_key") or obj.get("id")
    dimensions = _json_field(obj, "dimensions", dict, where, line, from_csv)
    if dimensions is not None:
        dimensions = {
            str(k): parse_score(v, ctx.scale, path=where, line=line, column=f"dimensions.{k}")
            for k, v in dimensions.items()
        }
        dimensions = {k: v for k, v in dimensions.items() if v is not None}
    tags = _json_field(obj, "tags", list, where, line, from_csv)
    choices = _json_field(obj, "choices", list, where, line, from_csv)
    texts: dict[str, str | None] = {}
    for name in TEXT_FIELDS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{name!r} must be a string", path=where, line=line, column=name)
        texts[name] = value if value else None
    return EvalRecord(
        prompt_key=str(key) if key not in (None, "") else text_hash(text),
        prompt=text,
        model=model.strip(),
        score=parse_score(obj.get("score"), ctx.scale, path=where, line=line, column="score"),
        cost_usd=parse_float(obj.get("cost_usd"), path=where, line=line, column="cost_usd"),
        latency_ms=parse_float(obj.get("latency_ms"), path=where, line=line, column="latency_ms"),
        tokens_in=parse_int(obj.get("tokens_in"), path=where, line=line, column="tokens_in"),
        tokens_out=parse_int(obj.get("tokens_out"), path=where, line=line, column="tokens_out"),
        dimensions=dimensions or None,
        tags=[str(t) for t in tags] if tags is not None else None,
        metadata={
            **{k: obj[k] for k in unknown},
            **(_json_field(obj, "metadata", dict, where, line, from_csv) or {}),
        },
        choices=[str(c) for c in choices] if choices is not None else None,
        judge=texts["judge"],
        source=texts["source"] or where,
        split=texts["split"],
        category=texts["category"],
        reference=texts["reference"],
        response=texts["response"],
    )
