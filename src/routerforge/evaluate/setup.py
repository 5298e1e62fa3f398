"""Build a benchmark setup from a ``bench`` invocation: load the data, drop listed prompts, make the folds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from routerforge.data.matrix import ScoreMatrix
from routerforge.errors import ValidationError
from routerforge.evaluate.harness import BenchSetup
from routerforge.evaluate.splits import (
    category_folds,
    dataset_split,
    drop_prompts,
    prompt_folds,
    read_prompt_list,
    transfer_split,
)


def build_setup(
    load_matrix: Callable[[str], ScoreMatrix],
    data: str,
    *,
    folds: int | None = None,
    split: str | None = None,
    test: str | None = None,
    group_by: str | None = None,
    strong: str | None = None,
    weak: str | None = None,
    drop_prompts_file: Path | None = None,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> BenchSetup:
    """The :class:`BenchSetup` for ``data``: K folds grouped by prompt (default 5), whole categories
    (``group_by="category"``), the dataset's own split (``split``) or transfer to ``test``."""
    if sum(x is not None for x in (folds, split, test)) > 1:
        raise ValidationError("Give only one of --folds, --split and --test.")
    if group_by not in (None, "category", "prompt"):
        raise ValidationError(f"--group-by must be 'category' or 'prompt', not {group_by!r}.")
    if group_by == "category" and (split is not None or test is not None):
        raise ValidationError(
            "--group-by category makes folds; it cannot be combined with --split or --test."
        )
    matrix = load_matrix(data)
    extra: dict[str, Any] = {}
    dropped: dict[str, int] = {}
    if drop_prompts_file is not None:
        listed = read_prompt_list(drop_prompts_file)
        matrix, matched, removed = drop_prompts(matrix, listed)
        extra["dropped_prompts"] = {
            "file": str(drop_prompts_file),
            "listed": len(listed),
            "matched": matched,
            "rows_removed": removed,
        }
        dropped["listed_prompts"] = removed
        if say is not None:
            say(f"--drop-prompts: {matched} of {len(listed)} listed prompts matched ({removed} rows removed)")
    test_matrix = None
    if test is not None:
        test_matrix = load_matrix(test)
        fold, keep = transfer_split(matrix, test_matrix)
        fold_list, name = [fold], f"transfer {data} -> {test}"
        dropped["test_text_in_train"] = test_matrix.n_prompts - int(keep.size)
    elif split is not None:
        fold_list, name = dataset_split(matrix, test=split), f"own split (test = {split!r})"
        dropped["test_text_in_train"] = int(matrix.split_rows(split).size - fold_list[0].test.size)
    elif group_by == "category":
        k = folds or 5
        fold_list, name = category_folds(matrix, k, seed=seed), f"{k} folds, whole categories held out"
    else:
        k = folds or 5
        fold_list, name = prompt_folds(matrix, k, seed=seed), f"{k} folds grouped by prompt text"
    return BenchSetup(matrix, fold_list, test_matrix, strong, weak, name, extra, dropped=dropped)
