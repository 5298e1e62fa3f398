"""Wide JSONL: one line per prompt.

``{"id": "...", "prompt": "...", "scores": {"model-a": 1.0, "model-b": null}, "cost_usd": {"model-a": 0.002},
"split": "train", "category": "..."}`` — ``id`` (default: the text hash), ``cost_usd``, ``split``,
``category``, ``reference``, ``choices``, ``responses`` ({model: text}) and ``metadata`` (an object) are
optional; every other key is kept in the prompt's metadata. A null score is a missing cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import ReadContext, iter_jsonl, parse_float, parse_score
from routerforge.data.records import EvalRecord, text_hash
from routerforge.errors import DataError

SUFFIXES = (".jsonl", ".ndjson")
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
        where = str(file)
        for line, obj in iter_jsonl(file, ctx):
            try:
                records = _records(obj, where, line, ctx)
            except DataError as exc:
                ctx.reject(exc)
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
