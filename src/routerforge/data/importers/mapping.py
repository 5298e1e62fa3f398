"""``--map FIELD=SOURCE``: import a CSV/JSONL whose columns have other names, without reshaping it.

``ColumnMap.parse(["prompt=problem", "model=solver", "score=correct"])`` renames the column ``problem`` to
the field ``prompt`` (and so on) before a format reads the row. Per-model fields of the wide formats
(``scores``, ``cost_usd``, ``responses``) take several columns: a pattern with one ``*`` (``acc_*``: the
column ``acc_gpt-4`` is model ``gpt-4``'s score) or a comma-separated list of columns (each column's
name is the model's). Unmapped columns keep their names. A mapped column that is missing is an error
naming it and the columns the file has.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from routerforge.errors import DataError

GROUP_FIELDS = ("scores", "cost_usd", "responses")  # per-model fields: {model: value}


@dataclass(frozen=True)
class ColumnGroup:
    """Columns holding one value per model: a pattern with one ``*`` or an explicit list."""

    pattern: str | None = None
    columns: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        return self.pattern if self.pattern is not None else ",".join(self.columns)

    def match(self, columns: Iterable[str]) -> dict[str, str]:
        """{model: column} among ``columns``."""
        if self.pattern is None:
            present = set(columns)
            return {c: c for c in self.columns if c in present}
        head, _, tail = self.pattern.partition("*")
        out = {}
        for column in columns:
            if len(column) > len(head) + len(tail) and column.startswith(head) and column.endswith(tail):
                out[column[len(head) : len(column) - len(tail)]] = column
        return out


@dataclass(frozen=True)
class ColumnMap:
    """Field → source column (``fields``) and per-model field → columns (``groups``)."""

    fields: dict[str, str]
    groups: dict[str, ColumnGroup]

    @classmethod
    def parse(cls, items: Iterable[str] | None) -> ColumnMap | None:
        """``["prompt=problem", "scores=acc_*"]`` → a map; no items → ``None``."""
        fields: dict[str, str] = {}
        groups: dict[str, ColumnGroup] = {}
        for item in items or ():
            target, sep, source = item.partition("=")
            target, source = target.strip(), source.strip()
            if not sep or not target or not source:
                raise DataError(
                    f"--map {item!r} is not of the form FIELD=COLUMN.",
                    hint="Examples: --map prompt=problem, --map model=solver, --map scores=acc_*.",
                )
            if target in fields or target in groups:
                raise DataError(f"--map gives the field {target!r} twice.", hint="Map each field once.")
            if target in GROUP_FIELDS:
                if source.count("*") > 1:
                    raise DataError(
                        f"--map {item!r}: a column pattern takes one '*' (the model's name).",
                        hint="Example: --map scores=acc_* (column acc_gpt-4 → model gpt-4).",
                    )
                groups[target] = (
                    ColumnGroup(pattern=source)
                    if "*" in source
                    else ColumnGroup(columns=tuple(c.strip() for c in source.split(",") if c.strip()))
                )
            elif "*" in source or "," in source:
                raise DataError(
                    f"--map {item!r}: only {', '.join(GROUP_FIELDS)} take several columns.",
                    hint=f"Map {target!r} to one column.",
                )
            else:
                fields[target] = source
        return cls(fields, groups) if fields or groups else None

    def describe(self) -> dict[str, str]:
        return {**self.fields, **{k: g.spec for k, g in self.groups.items()}}

    def check_targets(self, fmt: str, fields: Collection[str], groups: Collection[str] = ()) -> None:
        """Every mapped field must be one that ``fmt`` reads."""
        for target in [*self.fields, *self.groups]:
            if target in groups and target in self.groups:
                continue
            if target in fields and target in self.fields:
                continue
            known = sorted({*fields, *groups})
            raise DataError(
                f"--map {target}=… names no field of {fmt}.",
                hint=f"Fields of {fmt}: {', '.join(known)}.",
            )

    def source_of(self, column: str | None) -> str | None:
        """The file's column behind a field (for messages); other names unchanged."""
        if column is None:
            return None
        head, dot, rest = column.partition(".")
        if head in self.fields:
            return self.fields[head] + dot + rest
        return column

    def renamed(self, columns: Sequence[str]) -> list[str]:
        """The column names a format sees once the map is applied (for format detection)."""
        used = set(self.fields.values())
        out = [c for c in columns if c not in used]
        out += [f for f, s in self.fields.items() if s in columns]
        for target, group in self.groups.items():
            matched = group.match(columns)
            if matched:
                out = [c for c in out if c not in set(matched.values())] + [target]
        return out

    def check_columns(self, columns: Sequence[str], where: str, *, line: int | None = 1) -> None:
        """Raise when a mapped column is missing, or a mapped field hides a column of the same name."""
        present = set(columns)
        available = ", ".join(repr(c) for c in columns) or "none"
        for target, source in self.fields.items():
            if source not in present:
                raise DataError(
                    f"no column {source!r} (given by --map {target}={source}); the file has: {available}.",
                    path=where,
                    line=line,
                    column=source,
                    hint="Fix the --map option or the file's header.",
                )
            if target in present and target not in self.fields.values():
                raise DataError(
                    f"--map {target}={source} would hide the file's own column {target!r}.",
                    path=where,
                    line=line,
                    column=target,
                    hint=f"Drop the --map for {target!r}, or rename one of the two columns.",
                )
        for target, group in self.groups.items():
            matched = group.match(columns)
            missing = [c for c in group.columns if c not in present]
            if missing or not matched:
                what = f"no column {missing[0]!r}" if missing else f"no column matches {group.spec!r}"
                raise DataError(
                    f"{what} (given by --map {target}={group.spec}); the file has: {available}.",
                    path=where,
                    line=line,
                    column=missing[0] if missing else None,
                    hint="Fix the --map option or the file's header.",
                )
            if target in present:
                raise DataError(
                    f"--map {target}={group.spec} would hide the file's own column {target!r}.",
                    path=where,
                    line=line,
                    column=target,
                    hint=f"Drop the --map for {target!r}, or rename the column.",
                )

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with mapped columns renamed and per-model columns gathered into ``{model: value}``."""
        sources = set(self.fields.values())
        out = {k: v for k, v in row.items() if k not in sources}
        for target, source in self.fields.items():
            if source in row:
                out[target] = row[source]
        for target, group in self.groups.items():
            matched = group.match(list(row))
            for column in matched.values():
                out.pop(column, None)
            out[target] = {model: row[column] for model, column in matched.items()}
        return out
