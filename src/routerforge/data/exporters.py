"""Exports of a stored dataset to wide JSONL (one line per prompt) and long JSONL (one line per outcome).

Files are written to a temporary file next to the target and renamed at the end, so a failed export
never leaves a half-written file. Importing an export gives the same score matrix back.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from itertools import groupby
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from routerforge.data.importers.wide import KNOWN as WIDE_KEYS
from routerforge.data.records import EvalRecord
from routerforge.errors import DataError

if TYPE_CHECKING:
    from routerforge.data.store import Store


def wide_lines(records: Iterator[EvalRecord]) -> Iterator[dict[str, Any]]:
    """Group records (ordered by prompt) into wide-JSONL objects."""
    for _, group in groupby(records, key=lambda r: r.prompt_key):
        rows = list(group)
        first = rows[0]
        line: dict[str, Any] = {"id": first.prompt_key, "prompt": first.prompt}
        scored = [r for r in rows if r.model]
        line["scores"] = {r.model: r.score for r in scored}
        costs = {r.model: r.cost_usd for r in scored if r.cost_usd is not None}
        if costs:
            line["cost_usd"] = costs
        for name in ("split", "category", "reference", "choices"):
            value = getattr(first, name)
            if value is not None:
                line[name] = value
        nested = {k: v for k, v in first.metadata.items() if k in WIDE_KEYS}
        line.update({k: v for k, v in first.metadata.items() if k not in WIDE_KEYS})
        if nested:
            line["metadata"] = nested
        yield line


def long_lines(records: Iterator[EvalRecord]) -> Iterator[dict[str, Any]]:
    for record in records:
        line: dict[str, Any] = {
            "prompt_key": record.prompt_key,
            "prompt": record.prompt,
            "model": record.model,
        }
        line["score"] = record.score
        for name in (
            "cost_usd",
            "latency_ms",
            "tokens_in",
            "tokens_out",
            "response",
            "dimensions",
            "judge",
            "source",
            "split",
            "category",
            "reference",
            "tags",
            "choices",
        ):
            value = getattr(record, name)
            if value is not None:
                line[name] = value
        if record.metadata:
            line["metadata"] = record.metadata
        yield line


def _write_wide(store: Store, dataset: str, fh: IO[str]) -> int:
    count = 0
    for line in wide_lines(store.iter_records(dataset, with_empty_prompts=True)):
        fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_long(store: Store, dataset: str, fh: IO[str]) -> int:
    count = 0
    for line in long_lines(store.iter_records(dataset)):
        fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count


EXPORTERS: dict[str, Callable[[Store, str, IO[str]], int]] = {
    "wide-jsonl": _write_wide,
    "long-jsonl": _write_long,
}


def export_dataset(store: Store, dataset: str, out: str | Path, fmt: str = "wide-jsonl") -> int:
    """Write ``dataset`` to ``out`` atomically; returns the number of lines written."""
    writer = EXPORTERS.get(fmt)
    if writer is None:
        raise DataError(f"Unknown export format {fmt!r}.", hint=f"Use one of: {', '.join(EXPORTERS)}.")
    target = Path(out)
    if target.is_dir():
        raise DataError(f"{target} is a directory; give a file name such as {target / (dataset + '.jsonl')}.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise DataError(
            f"Cannot write {target}: {exc.strerror or exc}.", hint="Give a file path in a writable folder."
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            count = writer(store, dataset, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


__all__ = ["EXPORTERS", "export_dataset", "long_lines", "wide_lines"]
