"""Train/test splits for honest evaluation: folds grouped by prompt text or category, the dataset's own
split, transfer to another dataset, and dropping listed prompts (e.g. contaminated ones).

Every split is a list of :class:`Fold` objects holding row positions; :func:`check_no_leakage` proves that no
held-out prompt text appears among the training prompts and the harness calls it for every fold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routerforge.data.matrix import ScoreMatrix
from routerforge.data.records import text_hash
from routerforge.data.split import group_ids
from routerforge.errors import DataError, ValidationError


@dataclass(frozen=True)
class Fold:
    """One train/test split: ``train`` and ``test`` are row positions (into the same matrix unless transfer)."""

    name: str
    train: np.ndarray
    test: np.ndarray


def grouped_kfold(groups: np.ndarray, k: int = 5, *, seed: int = 0) -> list[Fold]:
    """K folds such that rows sharing a group id never straddle folds.

    Groups are shuffled with ``seed`` and then assigned, largest first, to the fold with the fewest rows
    so far (balanced sizes, deterministic).
    """
    g = np.asarray(groups)
    uniq, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if k < 2:
        raise ValidationError(f"--folds must be at least 2, got {k}.")
    if uniq.size < k:
        raise ValidationError(
            f"Only {uniq.size} distinct groups; cannot make {k} folds.", hint="Use fewer folds."
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(uniq.size)
    order = perm[np.argsort(-counts[perm], kind="stable")]
    sizes = np.zeros(k, dtype=np.int64)
    fold_of_group = np.empty(uniq.size, dtype=np.int64)
    for gi in order:
        f = int(np.argmin(sizes))
        fold_of_group[gi] = f
        sizes[f] += counts[gi]
    fold_of_row = fold_of_group[inverse]
    rows = np.arange(g.size)
    return [Fold(f"fold{f}", rows[fold_of_row != f], rows[fold_of_row == f]) for f in range(k)]


def prompt_folds(matrix: ScoreMatrix, k: int = 5, *, seed: int = 0) -> list[Fold]:
    """K folds grouped by identical prompt text."""
    return grouped_kfold(matrix.text_groups(), k, seed=seed)


def category_folds(matrix: ScoreMatrix, k: int = 5, *, seed: int = 0) -> list[Fold]:
    """K folds holding out whole categories (e.g. MMLU subjects); identical texts are merged into one
    group too, so a prompt that appears under two categories never straddles folds."""
    cats = [c if c is not None else "" for c in matrix.categories]
    if len(set(cats)) < 2 or all(c == "" for c in cats):
        raise ValidationError(
            f"Dataset {matrix.name!r} has no categories to group by.", hint="Use --folds without --group-by."
        )
    labels = group_ids(matrix.prompts, cats)
    return grouped_kfold(labels, k, seed=seed)


def dataset_split(matrix: ScoreMatrix, *, train: str = "train", test: str = "test") -> list[Fold]:
    """The dataset's own split; prompts of the test split whose text also occurs in train are dropped from test."""
    tr, te = matrix.split_rows(train), matrix.split_rows(test)
    present = sorted({s for s in matrix.splits if s is not None})
    if tr.size == 0 or te.size == 0:
        raise ValidationError(
            f"Dataset {matrix.name!r} has no {train!r}/{test!r} split (splits present: {', '.join(present) or 'none'}).",
            hint="Use --folds 5 instead.",
        )
    seen = {text_hash(matrix.prompts[i]) for i in tr}
    te = np.array([i for i in te if text_hash(matrix.prompts[i]) not in seen], dtype=np.int64)
    return [Fold(f"{train}->{test}", tr, te)]


def transfer_split(train: ScoreMatrix, test: ScoreMatrix) -> tuple[Fold, np.ndarray]:
    """Train on all of ``train``, test on the rows of ``test`` whose text is not in ``train``.

    Returns the fold (``test`` positions refer to the ``test`` matrix) and the kept test rows.
    """
    seen = {text_hash(p) for p in train.prompts}
    keep = np.array([i for i, p in enumerate(test.prompts) if text_hash(p) not in seen], dtype=np.int64)
    return Fold(f"{train.name}->{test.name}", np.arange(train.n_prompts), keep), keep


def check_no_leakage(
    train_prompts: Iterable[str], test_prompts: Iterable[str], *, what: str = "fold"
) -> None:
    """Raise if any held-out prompt text (after stripping whitespace) is among the training prompts."""
    seen = {text_hash(p.strip()) for p in train_prompts}
    leaked = [p for p in test_prompts if text_hash(p.strip()) in seen]
    if leaked:
        raise ValidationError(
            f"{len(leaked)} held-out prompt(s) of {what} also appear in training, e.g. {leaked[0][:80]!r}."
        )


# ----------------------------------------------------------------------------------------- drop prompts
def read_prompt_list(path: Path) -> list[str]:
    """Prompts to exclude from a file: JSONL with an ``eval_prompt`` (RouteLLM's contaminated_prompts.jsonl)
    or ``prompt`` field, or plain text with one prompt per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"Cannot read the prompt list: {exc}", path=str(path)) from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].lstrip().startswith("{"):
        out: list[str] = []
        for n, line in enumerate(lines, 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg}", path=str(path), line=n) from exc
            value = obj.get("eval_prompt", obj.get("prompt")) if isinstance(obj, dict) else None
            if not isinstance(value, str):
                raise DataError("needs a string field 'eval_prompt' or 'prompt'", path=str(path), line=n)
            out.append(value)
        return out
    return lines


def drop_prompts(matrix: ScoreMatrix, prompts: Iterable[str]) -> tuple[ScoreMatrix, int, int]:
    """Remove rows whose text (whitespace-stripped) equals one of ``prompts``.

    Returns the new matrix, how many listed prompts matched at least one row, and how many rows were removed.
    """
    listed = {p.strip() for p in prompts}
    drop = [i for i, p in enumerate(matrix.prompts) if p.strip() in listed]
    matched = len({matrix.prompts[i].strip() for i in drop})
    keep = np.setdiff1d(np.arange(matrix.n_prompts), np.array(drop, dtype=np.int64))
    return matrix.take(keep), matched, len(drop)
