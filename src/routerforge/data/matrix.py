"""``ScoreMatrix``: an eval set seen as a prompts × models matrix with missing cells (NaN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routerforge.data.split import group_ids
from routerforge.errors import DataError, UnknownModelError


@dataclass
class ScoreMatrix:
    """Scores (and per-query costs) of ``models`` on ``prompts``.

    ``scores[i, j]`` is model j's score on prompt i in [0, 1] or NaN when missing; ``costs`` has the same
    shape, USD per query, NaN when unknown. Per-prompt columns (``keys``, ``prompts``, ``splits``,
    ``categories``, ``metadata``) line up with the rows.
    """

    name: str
    keys: list[str]
    prompts: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray
    splits: list[str | None] = field(default_factory=list)
    categories: list[str | None] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    latencies: np.ndarray | None = None  # ms per (prompt, model), NaN when unknown

    def __post_init__(self) -> None:
        n, m = len(self.prompts), len(self.models)
        if not self.splits:
            self.splits = [None] * n
        if not self.categories:
            self.categories = [None] * n
        if not self.metadata:
            self.metadata = [{} for _ in range(n)]
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.costs = np.asarray(self.costs, dtype=np.float64)
        if self.latencies is None:
            self.latencies = np.full((n, m), np.nan)
        self.latencies = np.asarray(self.latencies, dtype=np.float64)
        if self.scores.shape != (n, m) or self.costs.shape != (n, m) or self.latencies.shape != (n, m):
            raise DataError(
                f"Score matrix {self.name!r} has shape {self.scores.shape} and costs {self.costs.shape}, "
                f"expected ({n}, {m})."
            )
        for column in ("keys", "splits", "categories", "metadata"):
            if len(getattr(self, column)) != n:
                raise DataError(f"Score matrix {self.name!r}: column {column!r} has the wrong length.")

    # -- shape -----------------------------------------------------------------------------
    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def model_index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise UnknownModelError(
                model, self.models, hint=f"Dataset {self.name!r} has these models."
            ) from None

    # -- views -------------------------------------------------------------------------------
    def take(self, rows: Sequence[int] | np.ndarray) -> ScoreMatrix:
        """The rows ``rows`` (positions) as a new matrix."""
        idx = np.asarray(rows, dtype=np.int64)
        return ScoreMatrix(
            name=self.name,
            keys=[self.keys[i] for i in idx],
            prompts=[self.prompts[i] for i in idx],
            models=list(self.models),
            scores=self.scores[idx],
            costs=self.costs[idx],
            latencies=self.latencies[idx] if self.latencies is not None else None,
            splits=[self.splits[i] for i in idx],
            categories=[self.categories[i] for i in idx],
            metadata=[self.metadata[i] for i in idx],
        )

    def select_models(self, models: Sequence[str]) -> ScoreMatrix:
        cols = [self.model_index(m) for m in models]
        return ScoreMatrix(
            name=self.name,
            keys=list(self.keys),
            prompts=list(self.prompts),
            models=list(models),
            scores=self.scores[:, cols],
            costs=self.costs[:, cols],
            latencies=self.latencies[:, cols] if self.latencies is not None else None,
            splits=list(self.splits),
            categories=list(self.categories),
            metadata=list(self.metadata),
        )

    def split_rows(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)

    def text_groups(self) -> np.ndarray:
        """Group id per row: rows with identical prompt text share one id (for grouped folds)."""
        return group_ids(self.prompts)

    def mean_latency_ms(self) -> dict[str, float]:
        """Mean recorded latency of each model (models without any are left out)."""
        out: dict[str, float] = {}
        lat = self.latencies if self.latencies is not None else np.full(self.scores.shape, np.nan)
        for j, name in enumerate(self.models):
            col = lat[:, j][np.isfinite(lat[:, j])]
            if col.size:
                out[name] = float(col.mean())
        return out

    def complete_rows(self) -> np.ndarray:
        """Positions of rows with a score for every model."""
        return np.flatnonzero(~np.isnan(self.scores).any(axis=1))
