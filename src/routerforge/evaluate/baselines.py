"""The trivial baselines ``bench`` reports next to every router, and the paired comparison with them.

Each baseline is just another matrix of predicted scores, fitted on a fold's training prompts only, so the
decision engine chooses for it exactly as it does for a router:

* ``best_single`` — a constant that favours the model with the best mean training score (1 for it, 0 for
  the others, whatever the prompt): at λ = 0 the engine picks that model for every prompt, at a high λ the
  cheapest one (binary: a constant P(strong needed), so APGR 0.5);
* ``length`` — a ridge regression per model of the score on length features of the prompt (log characters,
  log words, log lines, squared log characters; standardised on the training prompts);
* ``category`` — each model's mean training score in the prompt's category (the dataset's category
  column), falling back to the model's overall mean for a category unseen in training; only when the data
  has categories.

:func:`compare` turns per-resample metric values (see the ``resampled_*`` functions of
:mod:`routerforge.evaluate.metrics`) into a router's difference to a baseline with a paired-bootstrap
interval; :func:`strongest` names the baseline with the best metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from routerforge.evaluate.metrics import paired_interval

BASELINE_NAMES = ("best_single", "length", "category")
RIDGE_ALPHA = 1.0


def has_categories(categories: Sequence[str | None]) -> bool:
    """Whether a category column carries anything (at least one non-empty value)."""
    return any(c for c in categories)


def length_features(texts: Sequence[str]) -> np.ndarray:
    """``(n, 4)``: log(1 + characters), log(1 + words), log(1 + lines) and the first one squared."""
    raw = np.array([[len(t), len(t.split()), t.count("\n") + 1] for t in texts], dtype=np.float64)
    logs = np.log1p(raw.reshape(-1, 3))
    return np.c_[logs, logs[:, 0] ** 2]


def _column_means(scores: np.ndarray) -> np.ndarray:
    """Each model's mean known score (0.5 for a model with no known score)."""
    known = ~np.isnan(scores)
    sums = np.where(known, scores, 0.0).sum(axis=0)
    counts = known.sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.5)


def predict_best_single(train_scores: np.ndarray, n_test: int) -> np.ndarray:
    """1 for the model with the highest mean training score (ties: the first), 0 for the others, on every
    held-out row. A constant, so it is the same in every fold whenever the best model is."""
    out = np.zeros((n_test, train_scores.shape[1]))
    out[:, int(np.argmax(_column_means(train_scores)))] = 1.0
    return out


def predict_length(
    train_texts: Sequence[str],
    train_scores: np.ndarray,
    test_texts: Sequence[str],
    alpha: float = RIDGE_ALPHA,
) -> np.ndarray:
    """Ridge regression of each model's score on :func:`length_features` (rows with a known score)."""
    x_train, x_test = length_features(train_texts), length_features(test_texts)
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0)
    sd[sd == 0] = 1.0
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    means = _column_means(train_scores)
    out = np.empty((len(test_texts), train_scores.shape[1]))
    eye = alpha * np.eye(x_train.shape[1])
    for j in range(train_scores.shape[1]):
        known = ~np.isnan(train_scores[:, j])
        if not known.any():
            out[:, j] = means[j]
            continue
        a, y = x_train[known], train_scores[known, j] - means[j]
        coef = np.linalg.solve(a.T @ a + eye, a.T @ y)
        out[:, j] = means[j] + x_test @ coef
    return out


def predict_category(
    train_categories: Sequence[str | None],
    train_scores: np.ndarray,
    test_categories: Sequence[str | None],
) -> np.ndarray:
    """Each model's mean training score in the row's category; the overall mean where that is unknown."""
    overall = _column_means(train_scores)
    labels = sorted({c or "" for c in train_categories})
    index = {c: k for k, c in enumerate(labels)}
    rows = np.array([index[c or ""] for c in train_categories], dtype=np.int64)
    known = ~np.isnan(train_scores)
    sums = np.zeros((len(labels), train_scores.shape[1]))
    counts = np.zeros_like(sums)
    np.add.at(sums, rows, np.where(known, train_scores, 0.0))
    np.add.at(counts, rows, known.astype(np.float64))
    table = np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)
    out = np.tile(overall, (len(test_categories), 1))
    for i, c in enumerate(test_categories):
        k = index.get(c or "")
        if k is not None and c:
            out[i] = table[k]
    return out


def strongest(values: Mapping[str, float | None]) -> str:
    """The baseline with the best (highest) metric (ties: the first); an undefined one never wins unless
    all are."""

    def key(name: str) -> float:
        value = values[name]
        return -np.inf if value is None else float(value)

    return max(values, key=key)


def compare(
    point: Mapping[str, float | None],
    resampled: Mapping[str, np.ndarray] | None,
    router: str,
    baseline: str,
    level: float = 0.95,
) -> dict[str, Any]:
    """``router`` against ``baseline``: ``diff`` (router − baseline on all held-out prompts), the
    paired-bootstrap ``ci95`` of the difference and ``significant`` (the interval excludes 0). Without
    resamples the interval and the flag are ``None``."""
    a, b = point.get(router), point.get(baseline)
    diff = None if a is None or b is None else float(a) - float(b)
    ci = paired_interval(resampled[router], resampled[baseline], level) if resampled is not None else None
    return {
        "baseline": baseline,
        "diff": diff,
        "ci95": list(ci) if ci is not None else None,
        "significant": None if ci is None else bool(ci[0] > 0 or ci[1] < 0),
    }
