"""Duplicate resolution inside one import, and the rows the store writes for prompts and records."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from routerforge.data.records import EvalRecord, PromptItem, text_hash
from routerforge.data.schema import utcnow
from routerforge.errors import DataError

DuplicateRule = Literal["min", "mean", "last"]
RULES: tuple[str, ...] = ("min", "mean", "last")
BATCH = 1000


class Cell:
    """The outcomes of one (prompt, model) seen so far in one import, resolved by the rule."""

    __slots__ = ("n_cost", "n_score", "record", "sum_cost", "sum_score")

    def __init__(self, record: EvalRecord) -> None:
        self.record = record
        self.n_score = 0 if record.score is None else 1
        self.sum_score = record.score or 0.0
        self.n_cost = 0 if record.cost_usd is None else 1
        self.sum_cost = record.cost_usd or 0.0

    def add(self, record: EvalRecord, rule: str) -> None:
        if record.score is not None:
            self.n_score += 1
            self.sum_score += record.score
        if record.cost_usd is not None:
            self.n_cost += 1
            self.sum_cost += record.cost_usd
        current = self.record
        if rule == "min":
            if current.score is None or (record.score is not None and record.score < current.score):
                self.record = record
        else:  # "last" keeps the newest outcome; "mean" too, then averages score and cost
            self.record = record

    def resolved(self, rule: str) -> EvalRecord:
        record = self.record
        if rule == "mean" and (self.n_score > 1 or self.n_cost > 1):
            record = replace(
                record,
                score=self.sum_score / self.n_score if self.n_score else None,
                cost_usd=self.sum_cost / self.n_cost if self.n_cost else None,
            )
        return record


def check_record(record: EvalRecord) -> None:
    if not record.prompt_key or not record.model:
        raise DataError(
            f"An eval record needs a prompt key and a model (got {record.prompt_key!r}, {record.model!r})."
        )
    if record.score is not None and not (0.0 <= record.score <= 1.0 and not math.isnan(record.score)):
        raise DataError(
            f"Score {record.score!r} of model {record.model!r} on prompt {record.prompt_key!r} is outside [0, 1].",
            hint="Normalise scores to [0, 1] (importers take --score-scale).",
        )


def prompt_row(item: PromptItem | EvalRecord, dataset_id: int) -> dict[str, Any]:
    if isinstance(item, PromptItem):
        key, text = item.key, item.text
    else:
        key, text = item.prompt_key, item.prompt
    return {
        "dataset_id": dataset_id,
        "key": key,
        "text": text,
        "text_hash": text_hash(text),
        "split": item.split,
        "category": item.category,
        "reference": item.reference,
        "choices": item.choices,
        "metadata": item.metadata or None,
    }


def record_row(record: EvalRecord, prompt_id: int) -> dict[str, Any]:
    return {
        "prompt_id": prompt_id,
        "model": record.model,
        "score": record.score,
        "dimensions": record.dimensions,
        "cost_usd": record.cost_usd,
        "latency_ms": record.latency_ms,
        "tokens_in": record.tokens_in,
        "tokens_out": record.tokens_out,
        "response": record.response,
        "judge": record.judge,
        "source": record.source,
        "tags": record.tags,
        "created": utcnow(),
    }


def merge_prompt(into: PromptItem, record: EvalRecord) -> None:
    """Fill the prompt's empty fields from a later record of the same prompt."""
    into.split = into.split or record.split
    into.category = into.category or record.category
    into.reference = into.reference or record.reference
    into.choices = into.choices or record.choices
    if record.metadata:
        into.metadata = {**record.metadata, **into.metadata}


@dataclass
class Grouped:
    """Records grouped by prompt and by (prompt, model) cell, before the duplicate rule resolves each cell."""

    prompts: dict[str, PromptItem] = field(default_factory=dict)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    outcomes: int = 0
    duplicates: int = 0


def group_records(records: Iterable[EvalRecord], rule: str) -> Grouped:
    """Check every record, merge the prompts' fields and collect each (prompt, model)'s outcomes under ``rule``
    (the one place import and streamed import group records)."""
    out = Grouped()
    for record in records:
        check_record(record)
        out.outcomes += 1
        item = out.prompts.get(record.prompt_key)
        if item is None:
            out.prompts[record.prompt_key] = PromptItem(
                key=record.prompt_key,
                text=record.prompt,
                reference=record.reference,
                choices=record.choices,
                category=record.category,
                split=record.split,
                metadata=dict(record.metadata),
            )
        else:
            merge_prompt(item, record)
        cell = out.cells.get((record.prompt_key, record.model))
        if cell is None:
            out.cells[(record.prompt_key, record.model)] = Cell(record)
        else:
            out.duplicates += 1
            cell.add(record, rule)
    return out


def batches(rows: Sequence[dict[str, Any]], size: int = BATCH) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
