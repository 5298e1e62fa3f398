"""RouteLLM response CSVs: a ``prompt`` column plus one boolean (or 0/1) column per model.

A folder of CSVs (one per subject, as RouteLLM's ``evals/mmlu/responses/``) or a single CSV. The category
is the file's subject (``mmlu_abstract_algebra.csv`` → ``abstract_algebra``); the prompt key is
``<subject>/<row number>`` (row numbers start at 0, as in RouteLLM's dataframes), so every row is its own
prompt even when two rows share a text — MMLU imports as 14,042 prompts, the count RouteLLM reports.
Grouped folds keep identical texts together (``ScoreMatrix.text_groups``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from routerforge.data.importers.base import ReadContext, csv_header, iter_csv, parse_score
from routerforge.data.records import EvalRecord
from routerforge.errors import DataError

SUFFIXES = (".csv",)
_IGNORED = {"", "Unnamed: 0", "index"}


def subject_of(path: Path) -> str:
    stem = path.stem
    for prefix in ("mmlu_",):
        stem = stem.removeprefix(prefix)
    return stem.removesuffix("_responses")


def read(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    for file in ctx.files(path, SUFFIXES):
        yield from _read_file(file, ctx)


def _read_file(file: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    subject = subject_of(file)
    where = str(file)
    header = csv_header(file)
    if "prompt" not in header:
        raise DataError("a RouteLLM CSV needs a 'prompt' column", path=where, line=1, column="prompt")
    models = [c for c in header if c != "prompt" and c not in _IGNORED]
    if not models:
        raise DataError("no model columns next to 'prompt'", path=where, line=1)
    for line, row_number, row in iter_csv(file, ctx):
        text = row["prompt"]
        if not text.strip():
            ctx.reject(DataError("empty prompt", path=where, line=line, column="prompt"))
            continue
        try:
            scores = [parse_score(row[m], ctx.scale, path=where, line=line, column=m) for m in models]
        except DataError as exc:
            ctx.reject(exc)
            continue
        key = f"{subject}/{row_number}"
        for model, score in zip(models, scores, strict=True):
            ctx.report.records += 1
            yield EvalRecord(
                prompt_key=key, prompt=text, model=model, score=score, category=subject, source=where
            )
