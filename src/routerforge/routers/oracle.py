"""``oracle``: returns the true scores — for evaluation only (the physical limit of routing).

``fit`` receives the true score rows of the prompts it will later be asked about and keys them by
text hash; ``predict_scores`` looks them up. Identical texts are averaged. A missing cell (NaN) is
predicted as 0.0 (nothing known = not known to be correct). Asking about a prompt that was not given
to ``fit`` raises ``ValidationError``: an oracle cannot generalise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from routerforge.data.records import text_hash
from routerforge.errors import ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.registry import register_router


@register_router
class OracleRouter(Router):
    """Looks up each prompt's true scores by text hash (evaluation only)."""

    name = "oracle"
    _requires_dense = False

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        keys = [text_hash(t) for t in X.texts]
        unique = sorted(set(keys))
        pos = {k: i for i, k in enumerate(unique)}
        idx = np.array([pos[k] for k in keys], dtype=np.int64)
        m = scores.shape[1]
        sums = np.zeros((len(unique), m))
        counts = np.zeros((len(unique), m))
        observed = ~np.isnan(scores)
        np.add.at(sums, idx, np.where(observed, scores, 0.0))
        np.add.at(counts, idx, observed.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            table = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        self.keys_ = unique
        self.table_ = table
        self._pos = pos

    def _rows(self, X: PromptBatch) -> np.ndarray:
        pos = getattr(self, "_pos", None)
        if pos is None:
            pos = self._pos = {k: i for i, k in enumerate(self.keys_)}
        rows = []
        for text in X.texts:
            row = pos.get(text_hash(text))
            if row is None:
                raise ValidationError(
                    f"The oracle router has no true scores for the prompt {text[:60]!r}.",
                    hint="The oracle is for evaluation only: fit it on the prompts it will be asked about.",
                )
            rows.append(row)
        return np.asarray(rows, dtype=np.int64)

    def _predict(self, X: PromptBatch) -> np.ndarray:
        return self.table_[self._rows(X)].copy()

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        base.reason = "oracle: the true scores recorded for this prompt (evaluation only)."
        return base

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"oracle_table": self.table_, "oracle_keys": np.asarray(self.keys_, dtype="U32")}

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self.table_ = arrays["oracle_table"]
        self.keys_ = [str(k) for k in arrays["oracle_keys"]]
        self._pos = {k: i for i, k in enumerate(self.keys_)}
