"""Streaming, resumable import of large eval sets with bounded memory.

:meth:`Store.import_records <routerforge.data.store.Store.import_records>` holds a whole import in memory
and writes it in one transaction (all or nothing): right for files of thousands to a few hundred thousand
records. :func:`stream_import` is for millions: it reads records in chunks of ``chunk_size``, resolves
duplicates inside each chunk by the rule, and writes each chunk in its own transaction, looking up only the
chunk's prompt ids (never the whole dataset's). Memory is bounded by the chunk, not by the file.

Resumable: after each committed chunk a checkpoint file (private, written to a temporary file and renamed)
records how many input records are in the store. A run that was killed starts again with the same input
and checkpoint, skips that many records (they are still parsed, not written) and goes on. Writes are
upserts keyed by (dataset, prompt key) and (prompt, model), so a chunk written twice (killed between its
commit and the checkpoint's rename) changes nothing: nothing is ever duplicated.

What differs from :meth:`Store.import_records`: duplicates of one (prompt, model) that fall in *different*
chunks are not merged by the rule; the later chunk's value replaces the earlier one (``last``). Sources
sorted by prompt (one line per outcome, a prompt's outcomes together) are merged exactly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select

from routerforge.data.records import EvalRecord
from routerforge.data.resolve import RULES, group_records, prompt_row, record_row
from routerforge.data.schema import PromptRow
from routerforge.data.sqlutil import upsert
from routerforge.errors import ValidationError
from routerforge.files import create_private_file, private_dir

if TYPE_CHECKING:
    from routerforge.data.store import Store

_P: Table = cast(Table, PromptRow.__table__)
DEFAULT_CHUNK = 20_000
_LOOKUP = 500  # keys per SELECT … IN (…): below SQLite's variable limit
CHECKPOINT_VERSION = 1

#: ``progress(records_done, chunk_report)`` after every committed chunk.
Progress = Callable[[int, "ChunkReport"], None]


@dataclass(frozen=True)
class ChunkReport:
    records: int  # input records of the chunk
    prompts: int  # distinct prompts written
    cells: int  # (prompt, model) cells written
    seconds: float


@dataclass
class StreamReport:
    """What one :func:`stream_import` run did (a resumed run counts only what it wrote itself)."""

    dataset: str
    rule: str
    chunk_size: int
    resumed_from: int = 0  # input records already in the store (checkpoint) when the run started
    outcomes: int = 0  # input records consumed by this run, skipped ones excluded
    duplicates: int = 0  # outcomes merged into another one of the same (prompt, model) in one chunk
    prompts_written: int = 0
    cells_written: int = 0
    chunks: int = 0
    total: int = 0  # input records in the store after this run (resumed_from + outcomes)
    seconds: float = 0.0
    models: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "rule": self.rule,
            "chunk_size": self.chunk_size,
            "resumed_from": self.resumed_from,
            "outcomes": self.outcomes,
            "duplicates": self.duplicates,
            "prompts_written": self.prompts_written,
            "cells_written": self.cells_written,
            "chunks": self.chunks,
            "total": self.total,
            "seconds": round(self.seconds, 3),
            "models": list(self.models),
        }


def read_checkpoint(path: Path, dataset: str, source: str | None) -> int:
    """Input records already imported according to ``path`` (0 when there is no checkpoint).

    A checkpoint of another dataset or source is a :class:`ValidationError`: resuming with other input
    would skip records that were never imported.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(
            f"Cannot read the import checkpoint {path}: {exc}.",
            hint="Delete it to start the import again from the first record (nothing is duplicated).",
        ) from exc
    if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
        raise ValidationError(f"{path} is not an import checkpoint of this routerforge version.")
    if doc.get("dataset") != dataset or doc.get("source") != source:
        raise ValidationError(
            f"The checkpoint {path} belongs to dataset {doc.get('dataset')!r} from {doc.get('source')!r}, "
            f"not to {dataset!r} from {source!r}.",
            hint="Use another checkpoint file, or delete this one to start again.",
        )
    done = doc.get("records")
    if not isinstance(done, int) or done < 0:
        raise ValidationError(f"The checkpoint {path} holds no valid record count.")
    return done


def write_checkpoint(path: Path, dataset: str, source: str | None, records: int) -> None:
    """Atomically record that the first ``records`` input records are in the store."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    create_private_file(tmp)
    doc = {"version": CHECKPOINT_VERSION, "dataset": dataset, "source": source, "records": records}
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def stream_import(
    store: Store,
    dataset: str,
    records: Iterable[EvalRecord],
    *,
    rule: str = "min",
    chunk_size: int = DEFAULT_CHUNK,
    checkpoint: str | Path | None = None,
    source: str | None = None,
    description: str | None = None,
    progress: Progress | None = None,
) -> StreamReport:
    """Import ``records`` into ``dataset`` chunk by chunk (one transaction each), resumably.

    ``checkpoint``: a file recording progress; with it, a run continues after the records a previous run
    committed (the input must be the same, in the same order: ``source`` names it and is checked).
    A bad record (:func:`check_record`) stops the run with the chunks before it committed; fix the input
    and run again with the same checkpoint.
    """
    if rule not in RULES:
        raise ValidationError(f"Unknown duplicate rule {rule!r}.", hint=f"Use one of: {', '.join(RULES)}.")
    if chunk_size < 1:
        raise ValidationError(f"chunk_size must be ≥ 1, got {chunk_size}.")
    started = time.perf_counter()
    report = StreamReport(dataset=dataset, rule=rule, chunk_size=chunk_size)
    path = Path(checkpoint) if checkpoint is not None else None
    done = read_checkpoint(path, dataset, source) if path is not None else 0
    report.resumed_from = done
    it: Iterator[EvalRecord] = iter(records)
    if done:
        skipped = sum(1 for _ in islice(it, done))
        if skipped < done:
            raise ValidationError(
                f"The checkpoint says {done} records were imported, but the input has only {skipped}.",
                hint="The input changed since the interrupted run: delete the checkpoint and import again.",
            )
    models: set[str] = set()
    while True:
        chunk = list(islice(it, chunk_size))
        if not chunk:
            break
        t0 = time.perf_counter()
        written = _write_chunk(store, dataset, chunk, rule, source, description, report)
        models.update(r.model for r in chunk)
        done += len(chunk)
        report.outcomes += len(chunk)
        report.chunks += 1
        if path is not None:
            write_checkpoint(path, dataset, source, done)
        if progress is not None:
            progress(done, ChunkReport(len(chunk), written[0], written[1], time.perf_counter() - t0))
    report.total = done
    report.models = sorted(models)
    report.seconds = time.perf_counter() - started
    return report


def _write_chunk(
    store: Store,
    dataset: str,
    chunk: Sequence[EvalRecord],
    rule: str,
    source: str | None,
    description: str | None,
    report: StreamReport,
) -> tuple[int, int]:
    grouped = group_records(chunk, rule)
    report.duplicates += grouped.duplicates
    prompts, cells = grouped.prompts, grouped.cells
    resolved = [cell.resolved(rule) for cell in cells.values()]
    with store.engine.begin() as conn:
        dataset_id = store.ensure_dataset(conn, dataset, source, description)
        rows = [prompt_row(item, dataset_id) for item in prompts.values()]
        upsert(
            conn,
            _P,
            rows,
            conflict=("dataset_id", "key"),
            replace=("text", "text_hash"),
            coalesce=("split", "category", "reference", "choices", "metadata"),
        )
        ids: dict[str, int] = {}
        keys = list(prompts)
        for start in range(0, len(keys), _LOOKUP):
            part = keys[start : start + _LOOKUP]
            found = conn.execute(
                select(_P.c.key, _P.c.id).where(_P.c.dataset_id == dataset_id, _P.c.key.in_(part))
            )
            ids.update((key, int(pid)) for key, pid in found)
        store.upsert_record_rows(conn, [record_row(r, ids[r.prompt_key]) for r in resolved])
    report.prompts_written += len(prompts)
    report.cells_written += len(resolved)
    return len(prompts), len(resolved)


__all__ = ["ChunkReport", "StreamReport", "read_checkpoint", "stream_import", "write_checkpoint"]
