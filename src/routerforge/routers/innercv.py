"""Inner cross-validation on a router's training prompts (never anything else).

Used by routers that choose a setting or learn a combination from out-of-fold predictions (``prior``'s
prior strength and residual targets, ``ensemble``'s stacking): :func:`inner_folds` splits the *training*
rows a router's ``fit`` received into K folds grouped by identical text, so a text never straddles an
inner fold. Held-out prompts of an outer evaluation never reach ``fit``, so they never reach these folds
(``tests/test_prior.py`` checks it with a spy router through the benchmark harness).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def inner_folds(texts: Sequence[str], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train rows, held-out rows) pairs over ``range(len(texts))``, grouped by identical text
    (groups shuffled with ``seed``, assigned largest first to the smallest fold). Fewer folds when there
    are fewer distinct texts than ``k``; none when there is only one."""
    keys: dict[str, int] = {}
    group = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        h = hashlib.sha256(text.strip().encode("utf-8")).hexdigest()
        group[i] = keys.setdefault(h, len(keys))
    n_groups = len(keys)
    k = min(int(k), n_groups)
    if k < 2:
        return []
    sizes = np.bincount(group, minlength=n_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    fold = fold_of_group[group]
    rows = np.arange(len(texts))
    return [(rows[fold != f], rows[fold == f]) for f in range(k)]
