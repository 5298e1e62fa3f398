"""What every importer shares: the read report, row errors, score parsing, file discovery, CSV rows."""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routerforge.data.importers.options import ImportOptions
from routerforge.data.records import EvalRecord
from routerforge.errors import DataError, ScoreScaleError

Scale = tuple[float, float]


@dataclass(frozen=True, slots=True)
class RowIssue:
    """One bad row: where it is and why it was rejected."""

    path: str
    line: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line is not None else "")
        if self.column is not None:
            where += f" column {self.column!r}"
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "column": self.column, "reason": self.reason}


@dataclass
class ReadReport:
    """Filled while the record iterator of :func:`read_records` is consumed."""

    format: str
    files: list[str] = field(default_factory=list)
    rows: int = 0  # data rows (CSV rows, JSONL lines) read, good or bad
    records: int = 0  # eval records yielded
    skipped: int = 0  # bad rows skipped (non-strict mode)
    out_of_range: int = 0  # of the skipped rows, those with a score outside [0, 1] (or the declared scale)
    largest_out_of_range: float | None = None  # the largest such raw score (to suggest a scale)
    missing_cost: int = 0  # records yielded without a cost (see :func:`count_missing_costs`)
    issues: list[RowIssue] = field(default_factory=list)  # the first ``max_issues`` bad rows
    max_issues: int = 20
    details: dict[str, Any] = field(default_factory=dict)  # format-specific facts (scale, battles, metric…)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": list(self.files),
            "rows": self.rows,
            "records": self.records,
            "skipped": self.skipped,
            "out_of_range": self.out_of_range,
            "missing_cost": self.missing_cost,
            "issues": [issue.to_dict() for issue in self.issues],
            "details": dict(self.details),
        }


@dataclass
class ReadContext:
    """Options and report passed to a format reader."""

    report: ReadReport
    strict: bool = False
    scale: Scale | None = None
    pulze_score: str = "judge"  # Pulze results: "judge" (their overall_score) or "strict" (see pulze.py)
    options: ImportOptions = field(default_factory=ImportOptions)  # --map, --questions, --metric
    first_out_of_range: ScoreScaleError | None = None  # in the file being read

    def files(
        self, path: Path, suffixes: tuple[str, ...], *, exclude_dirs: tuple[str, ...] = ()
    ) -> Iterator[Path]:
        """The files to read under ``path`` (see :func:`find_files`), each recorded in the report.

        When the reader is done with a file and most of its rows had a score outside [0, 1], the file is on
        another scale: :class:`DataError` naming ``--score-scale`` (nothing is imported).
        """
        for file in find_files(path, suffixes, exclude_dirs=exclude_dirs):
            self.report.files.append(str(file))
            rows, bad = self.report.rows, self.report.out_of_range
            self.first_out_of_range = None
            yield file
            self.check_scale(str(file), self.report.rows - rows, self.report.out_of_range - bad)

    def check_scale(self, where: str, rows: int, out_of_range: int) -> None:
        """Refuse a source where at least half of the ``rows`` had a score outside the range (skipping them
        would keep the few rows that happen to fall inside it, on the wrong scale)."""
        if out_of_range == 0 or 2 * out_of_range < rows:
            return
        declared = f"the declared scale {self.scale[0]:g}-{self.scale[1]:g}" if self.scale else "[0, 1]"
        first = self.first_out_of_range
        raise DataError(
            f"{out_of_range:,} of {rows:,} rows have a score outside {declared} (the largest: "
            f"{self.report.largest_out_of_range:g}): the scores are on another scale. Nothing was imported.",
            path=first.path if first and first.path else where,
            line=first.line if first else None,
            column=first.column if first else None,
            hint="Declare the source's scale with --score-scale LO-HI, e.g. --score-scale 1-10 or 0-100.",
        )

    def reject(self, error: DataError) -> None:
        """A row is bad: raise in strict mode, else count it and remember the first few."""
        if self.strict:
            raise error
        self.report.skipped += 1
        if isinstance(error, ScoreScaleError):
            self.report.out_of_range += 1
            self.first_out_of_range = self.first_out_of_range or error
            largest = self.report.largest_out_of_range
            self.report.largest_out_of_range = error.value if largest is None else max(largest, error.value)
        if len(self.report.issues) < self.report.max_issues:
            self.report.issues.append(
                RowIssue(str(error.path or "?"), error.line, error.column, error.reason)
            )


def parse_scale(text: str | None) -> Scale | None:
    """``"0-10"`` → ``(0.0, 10.0)``; also ``"1:5"``. ``None`` or ``"0-1"`` leave scores as they are."""
    if text is None or text.strip() == "":
        return None
    raw = text.strip()
    for sep in (":", "..", "-"):
        head, found, tail = raw.partition(sep)
        if found and head and tail:
            try:
                lo, hi = float(head), float(tail)
            except ValueError:
                break
            if not hi > lo:
                break
            return None if (lo, hi) == (0.0, 1.0) else (lo, hi)
    raise DataError(
        f"Score scale {text!r} is not of the form LO-HI with LO < HI.",
        hint="Examples: --score-scale 0-10, --score-scale 0-100, --score-scale 1-5.",
    )


_TRUE = {"true", "t", "yes", "y", "correct"}
_FALSE = {"false", "f", "no", "n", "incorrect"}
_MISSING = {"", "nan", "null", "none", "na", "n/a"}


def parse_score(value: Any, scale: Scale | None, *, path: str, line: int | None, column: str) -> float | None:
    """A score in [0, 1] or ``None`` (missing). Booleans count as 1/0; a declared scale is normalised."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _MISSING:
            return None
        if text in _TRUE:
            return 1.0
        if text in _FALSE:
            return 0.0
        try:
            number = float(text)
        except ValueError:
            raise DataError(
                f"score {value!r} is not a number or a boolean", path=path, line=line, column=column
            ) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise DataError(f"score {value!r} is not a number", path=path, line=line, column=column)
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise DataError(f"score {value!r} is not finite", path=path, line=line, column=column)
    if scale is not None:
        lo, hi = scale
        number = (number - lo) / (hi - lo)
    if not -1e-9 <= number <= 1 + 1e-9:
        declared = f"on the declared scale {scale[0]:g}-{scale[1]:g}" if scale else "with no declared scale"
        raise ScoreScaleError(
            f"score {value!r} is outside [0, 1] {declared}; declare the source scale with --score-scale (e.g. 0-10)",
            value=float(value) if not isinstance(value, str) else float(value.strip()),
            path=path,
            line=line,
            column=column,
        )
    return min(1.0, max(0.0, number))  # float noise only (within 1e-9): no score is ever clipped


def count_missing_costs(records: Iterable[EvalRecord], report: ReadReport) -> Iterator[EvalRecord]:
    """Pass ``records`` through, counting in ``report.missing_cost`` those without a cost (an empty or NaN
    cost): an N-model benchmark leaves their prompts out."""
    for record in records:
        if record.cost_usd is None:
            report.missing_cost += 1
        yield record


def parse_float(
    value: Any, *, path: str, line: int | None, column: str, minimum: float | None = 0.0
) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _MISSING):
        return None
    if isinstance(value, bool):
        raise DataError(f"{value!r} is not a number", path=path, line=line, column=column)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{value!r} is not a number", path=path, line=line, column=column) from None
    if math.isnan(number):
        return None
    if math.isinf(number) or (minimum is not None and number < minimum):
        raise DataError(f"{value!r} is out of range", path=path, line=line, column=column)
    return number


def parse_int(value: Any, *, path: str, line: int | None, column: str) -> int | None:
    number = parse_float(value, path=path, line=line, column=column)
    if number is None:
        return None
    if number != int(number):
        raise DataError(f"{value!r} is not a whole number", path=path, line=line, column=column)
    return int(number)


def find_files(path: Path, suffixes: tuple[str, ...], *, exclude_dirs: tuple[str, ...] = ()) -> list[Path]:
    """``path`` itself, or the files under the folder ``path`` whose name ends in one of ``suffixes``."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError(f"{path} does not exist.", hint="Check the path given to `routerforge data import`.")
    found = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name.lower().endswith(suffixes)
        and not any(part.startswith(".") or part in exclude_dirs for part in p.relative_to(path).parts)
    )
    if not found:
        raise DataError(
            f"{path} holds no {' or '.join(suffixes)} files.", hint="Check the path and --format."
        )
    return found


def text_lines(path: Path) -> Generator[str, None, None]:
    """The lines of a UTF-8 text file (a leading BOM dropped, line ends kept), read lazily.

    A line that is not UTF-8 raises :class:`DataError` naming the file and the line.
    """
    where = str(path)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield decode_line(raw, where, number)


def decode_line(raw: bytes, where: str, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at character {exc.start + 1}).",
            path=where,
            line=number,
            hint="Save the file as UTF-8.",
        ) from None


def iter_csv(path: Path, ctx: ReadContext) -> Iterator[tuple[int, int, dict[str, str]]]:
    """(first line number, data-row index from 0, row as a dict) for every well-formed row of a CSV file.

    Malformed rows (wrong field count, broken quoting, truncated file) go to ``ctx.reject``; text that is
    not UTF-8 aborts the file with a :class:`DataError`.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    where = str(path)
    with closing(text_lines(path)) as text:  # closed even when the caller stops early
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError("the file is empty (no header row)", path=where, line=1) from None
        except csv.Error as exc:
            raise DataError(f"the header row is not valid CSV: {exc}", path=where, line=1) from exc
        if len(set(header)) != len(header):
            dupes = sorted({h for h in header if header.count(h) > 1})
            raise DataError(f"duplicate column names {dupes}", path=where, line=1)
        last_line = reader.line_num
        index = -1
        while True:
            start = last_line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last_line = reader.line_num
                index += 1
                ctx.report.rows += 1
                ctx.reject(
                    DataError(f"malformed CSV ({exc}); is the file truncated?", path=where, line=start)
                )
                continue
            last_line = reader.line_num
            if not row:
                continue
            index += 1
            ctx.report.rows += 1
            if len(row) != len(header):
                ctx.reject(
                    DataError(
                        f"row has {len(row)} fields but the header has {len(header)}; "
                        + (
                            "is the line truncated?"
                            if len(row) < len(header)
                            else "quote fields that hold commas"
                        ),
                        path=where,
                        line=start,
                    )
                )
                continue
            yield start, index, dict(zip(header, row, strict=True))


def csv_header(path: Path) -> list[str]:
    """The header row of a CSV file ([] when it has none or it is not valid CSV)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with closing(text_lines(path)) as text:
        try:
            return next(csv.reader(text))
        except (StopIteration, csv.Error):
            return []


def iter_jsonl(path: Path, ctx: ReadContext) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every JSON object line; invalid lines go to ``ctx.reject``."""
    import json

    where = str(path)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            ctx.report.rows += 1
            try:
                obj = json.loads(decode_line(raw, where, number))
            except DataError as exc:
                ctx.reject(exc)
                continue
            except json.JSONDecodeError as exc:
                ctx.reject(
                    DataError(f"invalid JSON ({exc.msg} at character {exc.pos})", path=where, line=number)
                )
                continue
            if not isinstance(obj, dict):
                ctx.reject(
                    DataError(f"expected a JSON object, got {type(obj).__name__}", path=where, line=number)
                )
                continue
            if _has_lone_surrogate(obj):
                ctx.reject(
                    DataError(
                        "a string holds a lone UTF-16 surrogate escape (such as \\ud800), which is not text",
                        path=where,
                        line=number,
                        hint="Fix the producer of the file: escape surrogates only in pairs.",
                    )
                )
                continue
            yield number, obj


def _has_lone_surrogate(value: Any) -> bool:
    """True when any string in a decoded JSON value (keys included) cannot be encoded as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def first_json_object(path: Path) -> dict[str, Any]:
    """The first non-empty line of a JSONL file as an object ({} if it is not one)."""
    import json

    with closing(text_lines(path)) as text:
        for line in text:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return {}
                return obj if isinstance(obj, dict) else {}
    return {}
