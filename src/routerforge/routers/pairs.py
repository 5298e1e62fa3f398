"""The pairwise comparisons a score matrix holds, as flat arrays (for ``mf``'s pairwise loss and ``sw``).

A row of the matrix compares every two models scored on it: higher score wins, equal scores tie. A
battle stored by the battles importer is a row with exactly two scored models, so its one comparison
is the battle itself. The arrays list only observed pairs, so memory grows with the comparisons, not
with rows × model pairs (an arena set of 50,000 battles among 64 models holds 50,000 comparisons where a
dense table would hold 100 million cells).
"""

from __future__ import annotations

import numpy as np

_BLOCK_CELLS = 1 << 22  # rows × pairs looked at per block while collecting


def observed_pairs(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, i, j, s_i − s_j) for every row and model pair i < j scored on it, by row then pair."""
    n, m = scores.shape
    iu, ju = np.triu_indices(m, k=1)
    step = max(1, _BLOCK_CELLS // max(len(iu), 1))
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n, step):
        block = scores[start : start + step]
        diff = block[:, iu] - block[:, ju]
        r, k = np.nonzero(~np.isnan(diff))
        parts.append((r + start, iu[k], ju[k], diff[r, k]))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0)
    rows, i, j, diff = (np.concatenate(p) for p in zip(*parts, strict=True))
    return rows.astype(np.int64), i.astype(np.int64), j.astype(np.int64), diff.astype(np.float64)


def row_starts(rows: np.ndarray, n: int) -> np.ndarray:
    """``starts[r]:starts[r + 1]`` are the positions of row ``r`` in arrays sorted by row."""
    return np.searchsorted(rows, np.arange(n + 1), side="left").astype(np.int64)


def take_rows(starts: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in the pair arrays, position of the row in ``rows``) of every pair of ``rows``."""
    rows = np.asarray(rows, dtype=np.int64)
    counts = starts[rows + 1] - starts[rows]
    total = int(counts.sum())
    local = np.repeat(np.arange(len(rows)), counts)
    before = np.cumsum(counts) - counts
    positions = np.repeat(starts[rows] - before, counts) + np.arange(total)
    return positions, local
