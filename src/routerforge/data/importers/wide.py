"""Wide JSONL and wide CSV: one line per prompt.

``{"id": "...", "prompt": "...", "scores": {"model-a": 1.0, "model-b": null}, "cost_usd": {"model-a": 0.002},
"split": "train", "category": "..."}`` — ``id`` (default: the text hash), ``cost_usd``, ``split``,
``category``, ``reference``, ``choices``, ``responses`` ({model: text}) and ``metadata`` (an object) are
optional; every other key is kept in the prompt's metadata. A null score is a missing cell.

Wide CSV: the same fields as columns, one column per model for the per-model fields: ``scores.<model>``,
``cost_usd.<model>``, ``responses.<model>`` (``choices`` and ``metadata`` hold JSON; an empty cell is a
missing value). ``--map`` names other columns (``--map prompt=question --map id=qid --map scores=acc_*``
or ``--map scores=gpt-4,llama-3``; see :mod:`~routerforge.data.importers.mapping`), in JSONL too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import ReadContext, csv_header, parse_float, parse_score
from routerforge.data.importers.mapping import GROUP_FIELDS, ColumnGroup, ColumnMap
from routerforge.data.importers.rows import iter_rows, json_value, reject
from routerforge.data.records import EvalRecord, text_hash
from routerforge.errors import DataError

SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
_JSON_COLUMNS = ("choices", "metadata")
KNOWN = {
    "id",
    "prompt",
    "scores",
    "cost_usd",
    "split",
    "category",
    "reference",
    "choices",
    "responses",
    "metadata",
}


def read(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    for file in ctx.files(path, SUFFIXES):
        yield from _read_rows(file, ctx)


def read_csv(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    for file in ctx.files(path, CSV_SUFFIXES):
        header = csv_header(file)
        given = ctx.options.column_map or ColumnMap({}, {})
        groups = dict(given.groups)
        for name in GROUP_FIELDS:  # the default per-model columns: scores.<model>, cost_usd.<model>, ...
            default = ColumnGroup(pattern=f"{name}.*")
            if name not in groups and default.match(header):
                groups[name] = default
        if "scores" not in groups:
            raise DataError(
                "a wide CSV needs one score column per model, named scores.<model>",
                path=str(file),
                line=1,
                hint=f"Or name them with --map scores=PREFIX* or --map scores=COL1,COL2; the file has: "
                f"{', '.join(header)}.",
            )
        options = dataclasses.replace(ctx.options, column_map=ColumnMap(dict(given.fields), groups))
        yield from _read_rows(file, dataclasses.replace(ctx, options=options), from_csv=True)


def _read_rows(file: Path, ctx: ReadContext, *, from_csv: bool = False) -> Iterator[EvalRecord]:
    where = str(file)
    for line, obj in iter_rows(file, ctx):
        if from_csv:
            obj = {k: json_value(v, from_csv=k in _JSON_COLUMNS) for k, v in obj.items() if v != ""}
        try:
            records = _records(obj, where, line, ctx)
        except DataError as exc:
            reject(ctx, exc)
            continue
        ctx.report.records += len(records)
        yield from records


def _optional_str(obj: dict[str, Any], name: str, where: str, line: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise DataError(f"{name!r} must be a string", path=where, line=line, column=name)
    return str(value)


def _mapping(obj: dict[str, Any], name: str, where: str, line: int) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"{name!r} must be an object {{model: value}}", path=where, line=line, column=name)
    return value


def _records(obj: dict[str, Any], where: str, line: int, ctx: ReadContext) -> list[EvalRecord]:
    text = obj.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise DataError("'prompt' must be a non-empty string", path=where, line=line, column="prompt")
    if "scores" not in obj:
        raise DataError("missing 'scores'", path=where, line=line, column="scores")
    scores = _mapping(obj, "scores", where, line)
    costs = _mapping(obj, "cost_usd", where, line)
    responses = _mapping(obj, "responses", where, line)
    key = _optional_str(obj, "id", where, line) or text_hash(text)
    choices = obj.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise DataError("'choices' must be a list of strings", path=where, line=line, column="choices")
    metadata = dict(_mapping(obj, "metadata", where, line))
    metadata.update({k: v for k, v in obj.items() if k not in KNOWN})
    split = _optional_str(obj, "split", where, line)
    category = _optional_str(obj, "category", where, line)
    reference = _optional_str(obj, "reference", where, line)
    records = []
    for model in list(dict.fromkeys([*scores, *costs])):
        score = parse_score(scores.get(model), ctx.scale, path=where, line=line, column=f"scores.{model}")
        cost = parse_float(costs.get(model), path=where, line=line, column=f"cost_usd.{model}")
        response = responses.get(model)
        records.append(
            EvalRecord(
                prompt_key=key,
                prompt=text,
                model=str(model),
                score=score,
                cost_usd=cost,
                response=response if isinstance(response, str) else None,
                source=where,
                split=split,
                category=category,
                reference=reference,
                metadata=metadata,
                choices=choices,
            )
        )
    return records
