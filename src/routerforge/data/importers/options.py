"""Options of the importers that only some formats read: ``--map``, ``--questions``, ``--metric``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from routerforge.data.importers.mapping import ColumnMap


@dataclass(frozen=True)
class ImportOptions:
    """``column_map``: ``--map FIELD=SOURCE`` (long, wide, battles, MT-Bench); ``questions``: a questions
    JSONL giving prompt texts by ``question_id`` (MT-Bench, battles); ``metric``: the HELM stat to score by."""

    column_map: ColumnMap | None = None
    questions: Path | None = None
    metric: str = "exact_match"
