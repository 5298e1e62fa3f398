"""Split a dataset into training and held-out prompts, grouped so that nothing straddles the two sides.

Rows are grouped first: identical prompt texts always share a group, and with ``by`` a column (``category``,
``split``, or a metadata key such as ``subject``) every row with the same value joins the group too, so a
whole value is held out. Groups are shuffled with a seed and put on the held-out side while that brings
the held-out share of rows closer to ``test_size``.

:func:`group_ids` is the one grouping by identical text: ``ScoreMatrix.text_groups`` and the benchmark
folds (``evaluate.splits``) use it too. :func:`split_dataset` writes the result to the store, either as
two new datasets (``NAME-train`` / ``NAME-heldout``) or as the ``split`` field of each prompt in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.data.records import EvalRecord, PromptItem, text_hash
from routerforge.errors import ValidationError

if TYPE_CHECKING:
    from routerforge.data.store import Store

TRAIN, TEST = "train", "test"  # the values written to each prompt's ``split`` field
PROMPT_COLUMNS = ("category", "split", "reference")  # columns of a prompt besides its metadata keys


# ----------------------------------------------------------------------------------------------- grouping
def group_ids(prompts: Sequence[str], labels: Sequence[str] | None = None) -> np.ndarray:
    """Group id per row, numbered in order of first appearance: rows with identical text share one id;
    with ``labels``, rows sharing a label share it too (the union of both relations, so a text that
    appears under two labels merges them)."""
    if labels is None:
        seen: dict[str, int] = {}
        return np.array([seen.setdefault(text_hash(p), len(seen)) for p in prompts], dtype=np.int64)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for label, text in zip(labels, prompts, strict=True):
        a, b = find("c:" + label), find("t:" + text_hash(text))
        if a != b:
            parent[b] = a
    roots: dict[str, int] = {}
    return np.array([roots.setdefault(find("c:" + c), len(roots)) for c in labels], dtype=np.int64)


def column_values(items: Sequence[PromptItem], column: str) -> list[str | None]:
    """The value of ``column`` for each prompt: a prompt column or a metadata key (``None`` when absent)."""
    if column in PROMPT_COLUMNS:
        return [getattr(item, column) for item in items]
    keys = {k for item in items for k in item.metadata}
    if column not in keys:
        available = [c for c in PROMPT_COLUMNS if any(getattr(i, c) for i in items)] + sorted(keys)
        raise ValidationError(
            f"Unknown column {column!r} for --by.",
            hint=f"Columns with values in this dataset: {', '.join(available) or 'none'}.",
        )
    return [None if item.metadata.get(column) is None else str(item.metadata[column]) for item in items]


# ------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class SplitPlan:
    """Row positions on each side and what the grouping did."""

    train: np.ndarray
    test: np.ndarray
    groups: np.ndarray  # group id per row
    by: str | None = None
    test_values: tuple[str, ...] = ()  # with ``by``: the column values held out
    missing_values: int = 0  # with ``by``: rows without a value (grouped as one value)

    @property
    def n_prompts(self) -> int:
        return int(self.groups.size)

    def counts(self, prompts: Sequence[str]) -> dict[str, Any]:
        """Prompts and groups on each side, and the duplicated texts kept on one side (JSON-ready)."""
        per_text = np.bincount(group_ids(prompts)) if prompts else np.zeros(0, dtype=np.int64)

        def side(rows: np.ndarray) -> dict[str, int]:
            return {"prompts": int(rows.size), "groups": int(np.unique(self.groups[rows]).size)}

        return {
            "prompts": self.n_prompts,
            "groups": int(np.unique(self.groups).size),
            "duplicate_texts": int((per_text > 1).sum()),  # texts on two or more rows, each on one side
            "duplicate_rows": int(per_text[per_text > 1].sum()),
            TRAIN: side(self.train),
            TEST: side(self.test),
            "test_fraction": round(self.test.size / max(self.n_prompts, 1), 4),
        }


def plan_split(
    items: Sequence[PromptItem], test_size: float, *, by: str | None = None, seed: int = 0
) -> SplitPlan:
    """Which prompts go to each side (see the module docstring). Raises when a side would be empty."""
    if not 0.0 < test_size < 1.0:
        raise ValidationError(
            f"--test-size must be between 0 and 1 (exclusive), got {test_size:g}.",
            hint="Example: --test-size 0.2 holds out a fifth of the prompts.",
        )
    if not items:
        raise ValidationError("The dataset has no prompts to split.", hint="Import some first.")
    prompts = [item.text for item in items]
    values: list[str | None] | None = None
    if by is None:
        groups = group_ids(prompts)
    else:
        values = column_values(items, by)
        if all(v is None or v == "" for v in values):
            raise ValidationError(f"No prompt has a value in column {by!r}.", hint="Split without --by.")
        groups = group_ids(prompts, ["" if v is None else v for v in values])
    n_groups = int(groups.max()) + 1 if groups.size else 0
    if n_groups < 2:
        if by is None:
            why = "they all have the same text"
        else:
            n_values = len({v or "" for v in values or []})
            why = f"{n_values} value(s) of {by!r}, linked where one text appears under several values"
        raise ValidationError(
            f"All {len(prompts)} prompt(s) fall into one group ({why}); nothing can be held out.",
            hint="A split needs at least two groups." + ("" if by is None else " Try another --by, or none."),
        )
    sizes = np.bincount(groups, minlength=n_groups)
    target = test_size * groups.size
    held = np.zeros(n_groups, dtype=bool)
    n_test = 0
    for g in np.random.default_rng(seed).permutation(n_groups):
        if abs(n_test + sizes[g] - target) < abs(n_test - target):
            held[g] = True
            n_test += int(sizes[g])
    if not held.any():  # every group is larger than twice the target: hold out the smallest one
        held[int(np.argmin(sizes))] = True
    if held.all():
        held[int(np.argmax(sizes))] = False
    is_test = held[groups]
    rows = np.arange(groups.size)
    test_values: tuple[str, ...] = ()
    if values is not None:
        test_values = tuple(sorted({v for v, t in zip(values, is_test, strict=True) if t and v}))
    return SplitPlan(
        train=rows[~is_test],
        test=rows[is_test],
        groups=groups,
        by=by,
        test_values=test_values,
        missing_values=sum(1 for v in values or [] if not v),
    )


# ---------------------------------------------------------------------------------------------- writing
def default_targets(name: str) -> tuple[str, str]:
    return f"{name}-train", f"{name}-heldout"


def split_dataset(
    store: Store,
    name: str,
    test_size: float,
    *,
    by: str | None = None,
    seed: int = 0,
    into: tuple[str, str] | None = None,
    inplace: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Split dataset ``name`` and write the result; returns the counts (JSON-ready).

    ``inplace`` sets each prompt's ``split`` field to ``train``/``test`` (refused when the dataset already
    has a split, unless ``force``). Otherwise two datasets ``into`` (default ``NAME-train``,
    ``NAME-heldout``) are created with copies of the prompts and their eval records, ``split`` set to
    ``train``/``test``; existing ones are refused unless ``force`` (then replaced).
    """
    if inplace and into is not None:
        raise ValidationError("Give --into or --inplace, not both.")
    items = list(store.iter_prompts(name))
    plan = plan_split(items, test_size, by=by, seed=seed)
    side_of = {items[i].key: TRAIN for i in plan.train} | {items[i].key: TEST for i in plan.test}
    existing = sorted({item.split for item in items if item.split})
    doc: dict[str, Any] = {
        "dataset": name,
        "test_size": test_size,
        "seed": seed,
        "by": by,
        **plan.counts([item.text for item in items]),
    }
    if by is not None:
        doc["held_out_values"] = list(plan.test_values)
        doc["rows_without_value"] = plan.missing_values
    if inplace:
        if existing and not force:
            raise ValidationError(
                f"Dataset {name!r} already has a split ({', '.join(existing)}).",
                hint="Pass --force to overwrite it, or write two new datasets (drop --inplace).",
            )
        store.add_prompts(name, [replace(item, split=side_of[item.key]) for item in items])
        doc |= {"mode": "inplace", "replaced_split": existing}
        doc[TRAIN]["dataset"] = doc[TEST]["dataset"] = name
        return doc
    train_name, test_name = into or default_targets(name)
    _check_targets(store, name, (train_name, test_name), force)
    records: dict[str, list[EvalRecord]] = {TRAIN: [], TEST: []}
    empty: dict[str, list[PromptItem]] = {TRAIN: [], TEST: []}
    for record in store.iter_records(name, with_empty_prompts=True):
        side = side_of[record.prompt_key]
        if record.model:
            records[side].append(replace(record, split=side))
    with_records = {r.prompt_key for side in records.values() for r in side}
    for item in items:
        if item.key not in with_records:
            empty[side_of[item.key]].append(replace(item, split=side_of[item.key]))
    how = f"grouped by identical text{f' and {by!r}' if by else ''}, seed {seed}"
    written: list[str] = []
    try:
        for side, target in ((TRAIN, train_name), (TEST, test_name)):
            if force and store.has_dataset(target):
                store.delete_dataset(target)
            description = f"{'held-out' if side == TEST else 'training'} part of {name!r} ({how})"
            written.append(target)
            report = store.import_records(target, records[side], rule="last", description=description)
            if empty[side]:
                store.add_prompts(target, empty[side], description=description)
            doc[side] |= {"dataset": target, "records": report.records}
    except BaseException:
        for target in written:  # all or nothing: no half-written pair of datasets
            if store.has_dataset(target):
                store.delete_dataset(target)
        raise
    doc |= {"mode": "into", "ignored_split": existing}
    return doc


def _check_targets(store: Store, name: str, targets: tuple[str, str], force: bool) -> None:
    if len(set(targets)) < 2 or name in targets or any(not t.strip() for t in targets):
        raise ValidationError(
            f"--into needs two different new names, other than {name!r} (got {', '.join(targets)}).",
            hint=f"Example: --into {','.join(default_targets(name))}, or --inplace to set the split field.",
        )
    taken = [t for t in targets if store.has_dataset(t)]
    if taken and not force:
        raise ValidationError(
            f"Dataset(s) {', '.join(map(repr, taken))} already exist.",
            hint="Pass --force to replace them, or choose other names with --into TRAIN,HELDOUT.",
        )
