"""Importers: files in the formats people have → a stream of ``EvalRecord``.

``read_records(path, fmt="auto", strict=False, scale=None)`` returns ``(records, report)``: an iterator
that reads lazily (files are streamed, never loaded whole) and a :class:`ReadReport` filled as it is
consumed (rows read, records, skipped bad rows and the first few issues with file, line, column, reason).
With ``strict=True`` the iterator raises :class:`~routerforge.errors.DataError` at the first bad row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from routerforge.data.importers import battles, helm, long, mtbench, pulze, routellm, routerbench, rows, wide
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
from routerforge.data.importers.mapping import GROUP_FIELDS, ColumnMap
from routerforge.data.importers.options import ImportOptions
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
        Format("wide-csv", wide.read_csv, "one row per prompt, one 'scores.<model>' column per model"),
        Format("long-jsonl", long.read_jsonl, "one line per (prompt, model) outcome"),
        Format("long-csv", long.read_csv, "one row per (prompt, model) outcome"),
        Format("battles-jsonl", battles.read_jsonl, "pairwise battles: prompt, model_a, model_b, winner"),
        Format("battles-csv", battles.read_csv, "pairwise battles: prompt, model_a, model_b, winner"),
        Format("mtbench-jsonl", mtbench.read, "MT-Bench single-answer judgements (1-10 per turn)"),
        Format("helm", helm.read, "HELM per-instance results (run folders or a flat JSON/JSONL)"),
    )
}

# ``--format long`` etc.: the CSV or the JSONL variant, by the file's extension
ALIASES = {"long": "long", "wide": "wide", "battles": "battles", "mtbench": "mtbench-jsonl"}
# formats that read ``--map``, and the fields each one takes (``GROUP_FIELDS``: several columns per field)
MAPPABLE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "long-jsonl": (tuple(sorted(long.FIELDS)), ()),
    "long-csv": (tuple(sorted(long.FIELDS)), ()),
    "wide-jsonl": (tuple(sorted(wide.KNOWN - {"scores", "cost_usd", "responses"})), GROUP_FIELDS),
    "wide-csv": (tuple(sorted(wide.KNOWN - {"scores", "cost_usd", "responses"})), GROUP_FIELDS),
    "battles-jsonl": (battles.FIELDS, ()),
    "battles-csv": (battles.FIELDS, ()),
    "mtbench-jsonl": (mtbench.FIELDS, ()),
}


def detect_format(path: str | Path, column_map: ColumnMap | None = None) -> str:
    """The format name of a file or folder, from its extension and its columns or keys (as renamed by
    ``column_map`` when one is given)."""
    target = Path(path)
    if target.is_dir() and helm.find_runs(target):
        return "helm"
    if target.is_file() and target.name in helm.RUN_FILES:
        return "helm"
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
    rename = column_map.renamed if column_map is not None else list
    if column_map is not None and suffix in (".csv", ".jsonl", ".ndjson"):
        column_map.check_columns(rows.columns_of(sample), str(sample))  # a wrong --map says so first
    if suffix == ".csv":
        header = rename(csv_header(sample))
        columns = set(header)
        if battles.looks_like_battles(header):
            return "battles-csv"
        if "scores" in columns or any(c.startswith("scores.") for c in columns):
            return "wide-csv"
        if {"sample_id", "prompt"} <= columns and ("eval_name" in columns or any("|" in c for c in columns)):
            return "routerbench-csv"
        if {"prompt", "model"} <= columns:  # a long CSV (an unknown column is then named as such)
            return "long-csv"
        if "prompt" in columns and len(columns) > 1:
            return "routellm-csv"
    elif suffix in (".jsonl", ".ndjson"):
        first = first_json_object(sample)
        keys = set(rename(list(first)))
        if battles.looks_like_battles(list(keys)):
            return "battles-jsonl"
        if mtbench.looks_like_judgments(list(keys)):
            return "mtbench-jsonl"
        if "instance_id" in keys and "stats" in keys:
            return "helm"
        if {"question", "answering_model"} <= keys:
            return "pulze-jsonl"
        if "scores" in keys:
            return "wide-jsonl"
        if {"prompt", "model"} <= keys:
            return "long-jsonl"
    elif suffix == ".json":
        if _looks_like_helm_json(sample):
            return "helm"
        raise DataError(
            f"{sample} is a JSON file; eval records come as JSONL or CSV.",
            hint="A Pulze evaluation template is a judge (`routerforge eval run --judge FILE`); "
            "import its results/ folder instead.",
        )
    raise DataError(
        f"Cannot tell the format of {sample}.",
        hint=f"Pass --format, one of: {', '.join(FORMATS)}.",
    )


def _looks_like_helm_json(path: Path) -> bool:
    """A JSON file whose start names per-instance fields (read: its first 64 KB)."""
    with path.open("rb") as fh:
        head = fh.read(65536)
    return head.lstrip().startswith(b"[") and b'"instance_id"' in head


def resolve_format(fmt: str, target: Path, column_map: ColumnMap | None = None) -> str:
    """``auto`` → the detected format; ``long``/``wide``/``battles`` → their CSV or JSONL variant by the
    file's extension (for a folder: of the first data file in it); other names unchanged."""
    if fmt == "auto":
        return detect_format(target, column_map)
    base = ALIASES.get(fmt)
    if base is None or base.endswith("-jsonl"):
        return base or fmt
    sample = target
    if target.is_dir():
        found = find_files(target, (".csv", ".jsonl", ".ndjson"))
        sample = found[0]
    return f"{base}-csv" if sample.suffix.lower() == ".csv" else f"{base}-jsonl"


_SUFFIX_KIND = {".csv": "CSV", ".jsonl": "JSONL", ".ndjson": "JSONL", ".json": "JSONL"}


def _check_suffix(target: Path, fmt: str) -> None:
    """A file whose extension says CSV given a JSONL format (or the reverse) is a mistake worth naming."""
    kind = "CSV" if fmt.endswith("-csv") else "JSONL"
    found = _SUFFIX_KIND.get(target.suffix.lower()) if target.is_file() else None
    if fmt == "helm" and found == "JSONL":
        return
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
    column_map: ColumnMap | Sequence[str] | None = None,
    questions: str | Path | None = None,
    metric: str | None = None,
) -> tuple[Iterator[EvalRecord], ReadReport]:
    """Stream the eval records of ``path`` (a file or a folder) in format ``fmt`` (or ``"auto"``).

    ``scale`` declares the range the source's scores use (``(0, 10)`` or ``"0-10"``); scores are
    normalised to [0, 1] and a score outside [0, 1] with no declared scale is a bad row.
    ``pulze_score`` (Pulze results only): ``"judge"`` keeps their judge's score, ``"strict"`` compares the
    answer's option with the gold answer (see :mod:`routerforge.data.importers.pulze`).
    ``column_map`` (``["prompt=problem", ...]``, see :mod:`~routerforge.data.importers.mapping`) renames
    columns for the long, wide, battles and MT-Bench formats; ``questions`` is a questions JSONL giving
    the prompt texts of MT-Bench judgements and battles by ``question_id``; ``metric`` the HELM stat
    scored (default ``exact_match``).
    """
    if pulze_score not in pulze.SCORE_MODES:
        raise DataError(
            f"Unknown Pulze score {pulze_score!r}.", hint=f"Use one of: {', '.join(pulze.SCORE_MODES)}."
        )
    target = Path(path)
    mapping = column_map if isinstance(column_map, ColumnMap | None) else ColumnMap.parse(column_map)
    if not target.exists():
        raise DataError(
            f"{target} does not exist.", hint="Check the path given to `routerforge data import`."
        )
    name = resolve_format(fmt, target, mapping)
    if name not in FORMATS:
        raise DataError(
            f"Unknown format {fmt!r}.", hint=f"Use one of: auto, {', '.join([*FORMATS, *ALIASES])}."
        )
    options = _options(name, mapping, questions, metric, scale)
    if pulze_score != "judge" and name != "pulze-jsonl":
        raise DataError(
            f"--pulze-score {pulze_score} applies to Pulze results, not to {name}.",
            hint="Drop --pulze-score, or pass --format pulze-jsonl.",
        )
    _check_suffix(target, name)
    declared = parse_scale(scale) if isinstance(scale, str) else scale
    report = ReadReport(format=name, max_issues=max_issues)
    ctx = ReadContext(report=report, strict=strict, scale=declared, pulze_score=pulze_score, options=options)
    return FORMATS[name].read(target, ctx), report


def _options(
    name: str,
    mapping: ColumnMap | None,
    questions: str | Path | None,
    metric: str | None,
    scale: Scale | str | None,
) -> ImportOptions:
    """Check that each format-specific option applies to format ``name``."""
    if mapping is not None:
        if name not in MAPPABLE:
            raise DataError(
                f"--map applies to the long, wide, battles and MT-Bench formats, not to {name}.",
                hint="Drop --map, or pass --format long, wide, battles or mtbench-jsonl.",
            )
        fields, groups = MAPPABLE[name]
        mapping.check_targets(name, fields, groups)
    if questions is not None and name not in ("mtbench-jsonl", "battles-jsonl", "battles-csv"):
        raise DataError(
            f"--questions applies to MT-Bench judgements and battles, not to {name}.",
            hint="Drop --questions, or pass --format mtbench-jsonl or battles.",
        )
    if metric is not None and name != "helm":
        raise DataError(f"--metric applies to HELM results, not to {name}.", hint="Drop --metric.")
    if scale is not None and name.startswith("battles"):
        raise DataError(
            "--score-scale does not apply to battles (a battle's outcome is a win, a loss or a tie).",
            hint="Drop --score-scale.",
        )
    return ImportOptions(
        column_map=mapping,
        questions=Path(questions) if questions is not None else None,
        metric=metric or "exact_match",
    )


__all__ = [
    "ALIASES",
    "FORMATS",
    "MAPPABLE",
    "ColumnMap",
    "Format",
    "ImportOptions",
    "PulzeTemplate",
    "ReadReport",
    "RowIssue",
    "RubricDimension",
    "detect_format",
    "load_pulze_template",
    "parse_scale",
    "read_records",
    "resolve_format",
]
