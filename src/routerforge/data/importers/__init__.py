"""Importers: files in the formats people have → a stream of ``EvalRecord``.

``read_records(path, fmt="auto", strict=False, scale=None)`` returns ``(records, report)``: an iterator
that reads lazily (files are streamed, never loaded whole) and a :class:`ReadReport` filled as it is
consumed (rows read, records, skipped bad rows and the first few issues with file, line, column, reason).
With ``strict=True`` the iterator raises :class:`~routerforge.errors.DataError` at the first bad row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from routerforge.data.importers import long, pulze, routellm, routerbench, wide
from routerforge.data.importers.base import (
    ReadContext,
    ReadReport,
    RowIssue,
    Scale,
    csv_header,
    find_files,
    first_json_object,
    parse_scale,
)
from routerforge.data.importers.pulze import PulzeTemplate, RubricDimension, load_pulze_template
from routerforge.data.records import EvalRecord
from routerforge.errors import DataError


@dataclass(frozen=True)
class Format:
    name: str
    read: Callable[[Path, ReadContext], Iterator[EvalRecord]]
    description: str


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "routellm-csv", routellm.read, "RouteLLM response CSVs: 'prompt' + one boolean column per model"
        ),
        Format(
            "routerbench-csv", routerbench.read, "RouterBench CSVs: score, '|total_cost', '|model_response'"
        ),
        Format("pulze-jsonl", pulze.read, "Pulze evaluation results JSONL"),
        Format("wide-jsonl", wide.read, "one line per prompt with a 'scores' object"),
        Format("long-jsonl", long.read_jsonl, "one line per (prompt, model) outcome"),
        Format("long-csv", long.read_csv, "one row per (prompt, model) outcome"),
    )
}


def detect_format(path: str | Path) -> str:
    """The format name of a file or folder, from its extension and its columns or keys."""
    target = Path(path)
    if target.is_dir():
        candidates = [
            p for p in find_files(target, (".csv", ".jsonl", ".ndjson"), exclude_dirs=("templates",))
        ]
        csvs = [p for p in candidates if p.suffix.lower() == ".csv"]
        sample = csvs[0] if csvs else candidates[0]
    else:
        if not target.exists():
            raise DataError(
                f"{target} does not exist.", hint="Check the path given to `routerforge data import`."
            )
        sample = target
    suffix = sample.suffix.lower()
    if sample.stat().st_size == 0:
        raise DataError(f"{sample} is empty.", hint="Check the path given to `routerforge data import`.")
    if suffix == ".csv":
        columns = set(csv_header(sample))
        if {"sample_id", "prompt"} <= columns and ("eval_name" in columns or any("|" in c for c in columns)):
            return "routerbench-csv"
        if {"prompt", "model"} <= columns:  # a long CSV (an unknown column is then named as such)
            return "long-csv"
        if "prompt" in columns and len(columns) > 1:
            return "routellm-csv"
    elif suffix in (".jsonl", ".ndjson"):
        keys = set(first_json_object(sample))
        if {"question", "answering_model"} <= keys:
            return "pulze-jsonl"
        if "scores" in keys:
            return "wide-jsonl"
        if {"prompt", "model"} <= keys:
            return "long-jsonl"
    elif suffix == ".json":
        raise DataError(
            f"{sample} is a JSON file; eval records come as JSONL or CSV.",
            hint="A Pulze evaluation template is a judge (`routerforge eval run --judge FILE`); "
            "import its results/ folder instead.",
        )
    raise DataError(
        f"Cannot tell the format of {sample}.",
        hint=f"Pass --format, one of: {', '.join(FORMATS)}.",
    )


_SUFFIX_KIND = {".csv": "CSV", ".jsonl": "JSONL", ".ndjson": "JSONL", ".json": "JSONL"}


def _check_suffix(target: Path, fmt: str) -> None:
    """A file whose extension says CSV given a JSONL format (or the reverse) is a mistake worth naming."""
    kind = "CSV" if fmt.endswith("-csv") else "JSONL"
    found = _SUFFIX_KIND.get(target.suffix.lower()) if target.is_file() else None
    if found is not None and found != kind:
        raise DataError(
            f"{target} is a {target.suffix} file but --format {fmt} reads {kind} files.",
            hint="Pass the matching --format, or --format auto.",
        )


def read_records(
    path: str | Path,
    fmt: str = "auto",
    *,
    strict: bool = False,
    scale: Scale | str | None = None,
    max_issues: int = 20,
    pulze_score: str = "judge",
) -> tuple[Iterator[EvalRecord], ReadReport]:
    """Stream the eval records of ``path`` (a file or a folder) in format ``fmt`` (or ``"auto"``).

    ``scale`` declares the range the source's scores use (``(0, 10)`` or ``"0-10"``); scores are
    normalised to [0, 1] and a score outside [0, 1] with no declared scale is a bad row.
    ``pulze_score`` (Pulze results only): ``"judge"`` keeps their judge's score, ``"strict"`` compares the
    answer's option with the gold answer (see :mod:`routerforge.data.importers.pulze`).
    """
    if pulze_score not in pulze.SCORE_MODES:
        raise DataError(
            f"Unknown Pulze score {pulze_score!r}.", hint=f"Use one of: {', '.join(pulze.SCORE_MODES)}."
        )
    target = Path(path)
    name = detect_format(target) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise DataError(f"Unknown format {fmt!r}.", hint=f"Use one of: auto, {', '.join(FORMATS)}.")
    if pulze_score != "judge" and name != "pulze-jsonl":
        raise DataError(
            f"--pulze-score {pulze_score} applies to Pulze results, not to {name}.",
            hint="Drop --pulze-score, or pass --format pulze-jsonl.",
        )
    _check_suffix(target, name)
    declared = parse_scale(scale) if isinstance(scale, str) else scale
    report = ReadReport(format=name, max_issues=max_issues)
    ctx = ReadContext(report=report, strict=strict, scale=declared, pulze_score=pulze_score)
    if not target.exists():
        raise DataError(
            f"{target} does not exist.", hint="Check the path given to `routerforge data import`."
        )
    return FORMATS[name].read(target, ctx), report


__all__ = [
    "FORMATS",
    "Format",
    "PulzeTemplate",
    "ReadReport",
    "RowIssue",
    "RubricDimension",
    "detect_format",
    "load_pulze_template",
    "parse_scale",
    "read_records",
]
