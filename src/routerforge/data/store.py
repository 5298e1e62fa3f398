"""The store of eval records: SQLite (WAL) by default, PostgreSQL by URL; schema managed by Alembic.

Imports are atomic (one transaction) and idempotent: within one import, duplicate (prompt, model)
outcomes are resolved by a rule (``min`` by default, ``mean``, ``last``); the resolved value then
*replaces* whatever the store held for that cell, so importing the same file twice changes nothing.
Prompts are upserted by (dataset, key); fields an import leaves empty keep their stored value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import Engine, Table, delete, func, select
from sqlalchemy.engine import Connection

from routerforge.data.matrix import ScoreMatrix
from routerforge.data.records import CandidateModel, EvalRecord, PromptItem
from routerforge.data.resolve import (
    BATCH,
    RULES,
    group_records,
    prompt_row,
    record_row,
)
from routerforge.data.schema import DatasetRow, EvalRecordRow, ModelRow, PromptRow, utcnow
from routerforge.data.sqlutil import make_engine, normalise_url, safe_url, upgrade_schema, upsert
from routerforge.errors import DataError, UnknownDatasetError, UnknownModelError, ValidationError

if TYPE_CHECKING:
    from routerforge.config import Settings

_P: Table = cast(Table, PromptRow.__table__)
_R: Table = cast(Table, EvalRecordRow.__table__)
_D: Table = cast(Table, DatasetRow.__table__)
_M: Table = cast(Table, ModelRow.__table__)


@dataclass
class ImportReport:
    """What one import did."""

    dataset: str
    rule: str
    outcomes: int = 0  # records received
    duplicates: int = 0  # outcomes merged into another one of the same (prompt, model)
    prompts: int = 0  # distinct prompts in this import
    new_prompts: int = 0  # of which were not in the dataset before
    records: int = 0  # (prompt, model) cells written
    models: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "rule": self.rule,
            "outcomes": self.outcomes,
            "duplicates": self.duplicates,
            "prompts": self.prompts,
            "new_prompts": self.new_prompts,
            "records": self.records,
            "models": list(self.models),
        }


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    created: datetime | None
    source: str | None
    description: str | None
    prompts: int
    records: int
    models: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created.isoformat() if self.created else None,
            "source": self.source,
            "description": self.description,
            "prompts": self.prompts,
            "records": self.records,
            "models": self.models,
        }


class Store:
    """Datasets of prompts and eval records, and candidate models, in one SQL database."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalise_url(url)
        self._safe_url = safe_url(self.url)
        self.engine: Engine = make_engine(self.url)
        if migrate:
            try:
                self.upgrade()
            except BaseException:
                self.engine.dispose()  # a store that cannot open keeps no connections
                raise

    # -- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store at ``settings.store_url`` (default: ``$ROUTERFORGE_HOME/routerforge.db``)."""
        return cls(settings.store_url)

    def upgrade(self) -> None:
        """Bring the schema up to date (``alembic upgrade heads``)."""
        upgrade_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._safe_url!r})"

    # -- datasets ----------------------------------------------------------------------------------
    def _dataset_id(self, conn: Connection, name: str) -> int:
        found = conn.execute(select(_D.c.id).where(_D.c.name == name)).scalar()
        if found is None:
            raise UnknownDatasetError(name, self._dataset_names(conn))
        return int(found)

    def _dataset_names(self, conn: Connection) -> list[str]:
        return list(conn.execute(select(_D.c.name).order_by(_D.c.name)).scalars())

    def _ensure_dataset(
        self, conn: Connection, name: str, source: str | None = None, description: str | None = None
    ) -> int:
        if not name or not name.strip():
            raise ValidationError("A dataset needs a non-empty name.", hint="Pass --name NAME.")
        found = conn.execute(select(_D.c.id).where(_D.c.name == name)).scalar()
        if found is not None:
            values = {k: v for k, v in (("source", source), ("description", description)) if v is not None}
            if values:
                conn.execute(_D.update().where(_D.c.id == found).values(**values))
            return int(found)
        result = conn.execute(
            _D.insert().values(name=name, created=utcnow(), source=source, description=description)
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def ensure_dataset(
        self, conn: Connection, name: str, source: str | None = None, description: str | None = None
    ) -> int:
        """The id of dataset ``name`` inside the caller's transaction, created when missing
        (:mod:`routerforge.data.bulk` writes chunk by chunk through this)."""
        return self._ensure_dataset(conn, name, source, description)

    def count_prompts(self, dataset: str) -> int:
        """How many prompts ``dataset`` holds (one indexed count, cheap at millions)."""
        with self.engine.connect() as conn:
            return self._count_prompts(conn, self._dataset_id(conn, dataset))

    def has_dataset(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(_D.c.id).where(_D.c.name == name)).scalar() is not None

    def list_datasets(self) -> list[DatasetInfo]:
        prompt_counts = select(_P.c.dataset_id, func.count().label("n")).group_by(_P.c.dataset_id).subquery()
        record_counts = (
            select(
                _P.c.dataset_id,
                func.count(_R.c.id).label("n"),
                func.count(func.distinct(_R.c.model)).label("m"),
            )
            .select_from(_R.join(_P, _R.c.prompt_id == _P.c.id))
            .group_by(_P.c.dataset_id)
            .subquery()
        )
        query = (
            select(
                _D.c.name,
                _D.c.created,
                _D.c.source,
                _D.c.description,
                prompt_counts.c.n,
                record_counts.c.n,
                record_counts.c.m,
            )
            .outerjoin(prompt_counts, prompt_counts.c.dataset_id == _D.c.id)
            .outerjoin(record_counts, record_counts.c.dataset_id == _D.c.id)
            .order_by(_D.c.name)
        )
        with self.engine.connect() as conn:
            return [
                DatasetInfo(name, created, source, description, int(p or 0), int(r or 0), int(m or 0))
                for name, created, source, description, p, r, m in conn.execute(query)
            ]

    def delete_dataset(self, name: str) -> None:
        with self.engine.begin() as conn:
            dataset_id = self._dataset_id(conn, name)
            prompt_ids = select(_P.c.id).where(_P.c.dataset_id == dataset_id)
            conn.execute(delete(_R).where(_R.c.prompt_id.in_(prompt_ids)))
            conn.execute(delete(_P).where(_P.c.dataset_id == dataset_id))
            conn.execute(delete(_D).where(_D.c.id == dataset_id))

    # -- writing -----------------------------------------------------------------------------------
    def import_records(
        self,
        dataset: str,
        records: Iterable[EvalRecord],
        *,
        rule: str = "min",
        source: str | None = None,
        description: str | None = None,
    ) -> ImportReport:
        """Resolve duplicates by ``rule`` and write everything in one transaction (all or nothing).

        The records are consumed before anything is written, so an exception raised by the iterator
        (a strict importer meeting a bad row) leaves the store untouched. No records: nothing is written
        (not even an empty dataset); the report says ``outcomes == 0``.
        """
        if rule not in RULES:
            raise ValidationError(
                f"Unknown duplicate rule {rule!r}.", hint=f"Use one of: {', '.join(RULES)}."
            )
        report = ImportReport(dataset=dataset, rule=rule)
        grouped = group_records(records, rule)
        report.outcomes += grouped.outcomes
        report.duplicates += grouped.duplicates
        prompts, cells = grouped.prompts, grouped.cells
        resolved = [cell.resolved(rule) for cell in cells.values()]
        report.prompts = len(prompts)
        report.records = len(resolved)
        report.models = sorted({r.model for r in resolved})
        if not resolved:
            return report
        with self.engine.begin() as conn:
            dataset_id = self._ensure_dataset(conn, dataset, source, description)
            before = self._count_prompts(conn, dataset_id)
            ids = self._upsert_prompts(conn, dataset_id, prompts.values())
            report.new_prompts = self._count_prompts(conn, dataset_id) - before
            self._upsert_records(conn, ids, resolved)
        return report

    def add_records(self, dataset: str, records: Iterable[EvalRecord]) -> int:
        """Incremental upsert (evaluation runs): each record replaces the stored (prompt, model) cell.

        Within the batch the last outcome of a cell wins. Creates the dataset when it does not exist.
        Returns the number of cells written.
        """
        return self.import_records(dataset, records, rule="last").records

    def add_prompts(
        self, dataset: str, items: Iterable[PromptItem], *, description: str | None = None
    ) -> int:
        """Upsert prompts (without eval records) by key; creates the dataset. Returns how many were given.

        The items are consumed before anything is written; no items: nothing is written.
        """
        unique: dict[str, PromptItem] = {}
        for item in items:
            if not item.key or not item.text:
                raise DataError(f"A prompt needs a key and a text (got key {item.key!r}).")
            unique[item.key] = item
        if not unique:
            return 0
        with self.engine.begin() as conn:
            dataset_id = self._ensure_dataset(conn, dataset, description=description)
            self._upsert_prompts(conn, dataset_id, unique.values())
        return len(unique)

    def _count_prompts(self, conn: Connection, dataset_id: int) -> int:
        return int(conn.execute(select(func.count()).where(_P.c.dataset_id == dataset_id)).scalar() or 0)

    def _upsert_prompts(
        self, conn: Connection, dataset_id: int, items: Iterable[PromptItem]
    ) -> dict[str, int]:
        rows = [prompt_row(item, dataset_id) for item in items]
        keep_if_empty = ("split", "category", "reference", "choices", "metadata")
        upsert(
            conn,
            _P,
            rows,
            conflict=("dataset_id", "key"),
            replace=("text", "text_hash"),
            coalesce=keep_if_empty,
        )
        found = conn.execute(select(_P.c.key, _P.c.id).where(_P.c.dataset_id == dataset_id))
        return {key: int(pid) for key, pid in found}

    def _upsert_records(self, conn: Connection, ids: dict[str, int], records: Sequence[EvalRecord]) -> None:
        self.upsert_record_rows(conn, [record_row(r, ids[r.prompt_key]) for r in records])

    def upsert_record_rows(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Write eval-record rows (:func:`~routerforge.data.resolve.record_row`); each replaces its
        (prompt, model) cell."""
        replace = (
            "score",
            "dimensions",
            "cost_usd",
            "latency_ms",
            "tokens_in",
            "tokens_out",
            "response",
            "judge",
            "source",
            "tags",
        )
        upsert(conn, _R, rows, conflict=("prompt_id", "model"), replace=replace, coalesce=())

    # -- reading -----------------------------------------------------------------------------------
    def iter_prompts(self, dataset: str) -> Iterator[PromptItem]:
        """The dataset's prompts in insertion order."""
        with self.engine.connect() as conn:
            dataset_id = self._dataset_id(conn, dataset)
            query = (
                select(
                    _P.c.key,
                    _P.c.text,
                    _P.c.reference,
                    _P.c.choices,
                    _P.c.category,
                    _P.c.split,
                    _P.c["metadata"],
                )
                .where(_P.c.dataset_id == dataset_id)
                .order_by(_P.c.id)
                .execution_options(yield_per=BATCH)
            )
            for key, text, reference, choices, category, split, meta in conn.execute(query):
                yield PromptItem(key, text, reference, choices, category, split, dict(meta or {}))

    def iter_records(self, dataset: str, *, with_empty_prompts: bool = False) -> Iterator[EvalRecord]:
        """Every eval record of the dataset with its prompt's fields, by prompt (insertion order) then model.

        With ``with_empty_prompts`` a prompt without records yields one record with ``model == ""``.
        """
        with self.engine.connect() as conn:
            dataset_id = self._dataset_id(conn, dataset)
            join = (
                _P.outerjoin(_R, _R.c.prompt_id == _P.c.id)
                if with_empty_prompts
                else _P.join(_R, _R.c.prompt_id == _P.c.id)
            )
            query = (
                select(
                    _P.c.key,
                    _P.c.text,
                    _P.c.split,
                    _P.c.category,
                    _P.c.reference,
                    _P.c.choices,
                    _P.c["metadata"],
                    _R.c.model,
                    _R.c.score,
                    _R.c.cost_usd,
                    _R.c.latency_ms,
                    _R.c.tokens_in,
                    _R.c.tokens_out,
                    _R.c.response,
                    _R.c.dimensions,
                    _R.c.judge,
                    _R.c.source,
                    _R.c.tags,
                )
                .select_from(join)
                .where(_P.c.dataset_id == dataset_id)
                .order_by(_P.c.id, _R.c.model)
                .execution_options(yield_per=BATCH)
            )
            for row in conn.execute(query):
                (key, text, split, category, reference, choices, meta, model, score, cost, latency) = row[:11]
                (tokens_in, tokens_out, response, dimensions, judge, source, tags) = row[11:]
                yield EvalRecord(
                    prompt_key=key,
                    prompt=text,
                    model=model or "",
                    score=score,
                    cost_usd=cost,
                    latency_ms=latency,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    response=response,
                    dimensions=dimensions,
                    judge=judge,
                    source=source,
                    split=split,
                    category=category,
                    reference=reference,
                    tags=tags,
                    metadata=dict(meta or {}),
                    choices=choices,
                )

    def existing_cells(self, dataset: str) -> set[tuple[str, str]]:
        """(prompt key, model) of every *scored* cell; unscored records are not counted (retry them)."""
        with self.engine.connect() as conn:
            dataset_id = self._dataset_id(conn, dataset)
            query = (
                select(_P.c.key, _R.c.model)
                .select_from(_R.join(_P, _R.c.prompt_id == _P.c.id))
                .where(_P.c.dataset_id == dataset_id, _R.c.score.is_not(None))
            )
            return {(key, model) for key, model in conn.execute(query)}

    def models_of(self, dataset: str) -> list[str]:
        """Models with at least one record in the dataset, sorted (in Python: the same on every database)."""
        with self.engine.connect() as conn:
            dataset_id = self._dataset_id(conn, dataset)
            query = (
                select(_R.c.model)
                .select_from(_R.join(_P, _R.c.prompt_id == _P.c.id))
                .where(_P.c.dataset_id == dataset_id)
                .distinct()
            )
            return sorted(conn.execute(query).scalars())

    def load_matrix(self, dataset: str, models: Sequence[str] | None = None) -> ScoreMatrix:
        """The dataset as a prompts × models matrix (NaN for missing cells), prompts in insertion order.

        ``models`` selects and orders the columns (default: every model of the dataset, sorted).
        """
        available = self.models_of(dataset)
        if models is None:
            columns = available
        else:
            for model in models:
                if model not in available:
                    raise UnknownModelError(model, available, hint=f"Dataset {dataset!r} has these models.")
            columns = list(models)
        col_of = {m: j for j, m in enumerate(columns)}
        with self.engine.connect() as conn:
            dataset_id = self._dataset_id(conn, dataset)
            prompt_rows = conn.execute(
                select(_P.c.id, _P.c.key, _P.c.text, _P.c.split, _P.c.category, _P.c["metadata"])
                .where(_P.c.dataset_id == dataset_id)
                .order_by(_P.c.id)
            ).all()
            row_of = {int(r[0]): i for i, r in enumerate(prompt_rows)}
            scores = np.full((len(prompt_rows), len(columns)), np.nan)
            costs = np.full_like(scores, np.nan)
            latencies = np.full_like(scores, np.nan)
            cells = conn.execute(
                select(_R.c.prompt_id, _R.c.model, _R.c.score, _R.c.cost_usd, _R.c.latency_ms)
                .select_from(_R.join(_P, _R.c.prompt_id == _P.c.id))
                .where(_P.c.dataset_id == dataset_id)
            )
            for prompt_id, model, score, cost, latency in cells:
                j = col_of.get(model)
                if j is None:
                    continue
                i = row_of[int(prompt_id)]
                if score is not None:
                    scores[i, j] = score
                if cost is not None:
                    costs[i, j] = cost
                if latency is not None:
                    latencies[i, j] = latency
        return ScoreMatrix(
            name=dataset,
            keys=[r[1] for r in prompt_rows],
            prompts=[r[2] for r in prompt_rows],
            models=columns,
            scores=scores,
            costs=costs,
            latencies=latencies,
            splits=[r[3] for r in prompt_rows],
            categories=[r[4] for r in prompt_rows],
            metadata=[dict(r[5] or {}) for r in prompt_rows],
        )

    def dataset_stats(self, dataset: str) -> dict[str, Any]:
        """Counts and per-model means (JSON-ready). ``oracle_score``: mean over scored prompts of the best score."""
        with self.engine.connect() as conn:
            dataset_id = self._dataset_id(conn, dataset)
            info = conn.execute(
                select(_D.c.created, _D.c.source, _D.c.description).where(_D.c.id == dataset_id)
            ).one()
            in_dataset = _P.c.dataset_id == dataset_id
            joined = _R.join(_P, _R.c.prompt_id == _P.c.id)
            n_prompts = self._count_prompts(conn, dataset_id)
            n_records = int(
                conn.execute(select(func.count()).select_from(joined).where(in_dataset)).scalar() or 0
            )
            per_model = conn.execute(
                select(
                    _R.c.model,
                    func.count(_R.c.score),
                    func.avg(_R.c.score),
                    func.avg(_R.c.cost_usd),
                    func.sum(_R.c.cost_usd),
                )
                .select_from(joined)
                .where(in_dataset)
                .group_by(_R.c.model)
            ).all()
            per_model = sorted(per_model, key=lambda row: row[0])
            best = (
                select(func.max(_R.c.score).label("best"))
                .select_from(joined)
                .where(in_dataset, _R.c.score.is_not(None))
                .group_by(_R.c.prompt_id)
                .subquery()
            )
            oracle, scored_prompts = conn.execute(select(func.avg(best.c.best), func.count())).one()
            splits = conn.execute(
                select(_P.c.split, func.count()).where(in_dataset).group_by(_P.c.split)
            ).all()
            splits = sorted(splits, key=lambda row: (row[0] is None, row[0] or ""))
            n_categories = conn.execute(
                select(func.count(func.distinct(_P.c.category))).where(in_dataset)
            ).scalar()
        return {
            "name": dataset,
            "created": info[0].isoformat() if info[0] else None,
            "source": info[1],
            "description": info[2],
            "prompts": n_prompts,
            "scored_prompts": int(scored_prompts or 0),
            "records": n_records,
            "models": [
                {
                    "id": model,
                    "n": int(n),
                    "mean_score": _round(mean),
                    "mean_cost_usd": _round(cost, 9),
                    "total_cost_usd": _round(total, 9),
                }
                for model, n, mean, cost, total in per_model
            ],
            "oracle_score": _round(oracle),
            "splits": {(name if name is not None else "none"): int(n) for name, n in splits},
            "categories": int(n_categories or 0),
        }

    # -- candidate models ----------------------------------------------------------------------------
    def upsert_model(self, model: CandidateModel) -> None:
        _check_model(model)
        row = {**asdict(model), "created": utcnow(), "updated": utcnow()}
        replace = tuple(k for k in row if k not in ("id", "created"))
        with self.engine.begin() as conn:
            upsert(conn, _M, [row], conflict=("id",), replace=replace, coalesce=())

    def get_model(self, model_id: str) -> CandidateModel:
        with self.engine.connect() as conn:
            row = conn.execute(select(_M).where(_M.c.id == model_id)).mappings().first()
            if row is None:
                known = list(conn.execute(select(_M.c.id).order_by(_M.c.id)).scalars())
                raise UnknownModelError(model_id, known, hint="Add it with `routerforge models add ID`.")
        return _candidate(row)

    def list_models(self) -> list[CandidateModel]:
        with self.engine.connect() as conn:
            return [_candidate(r) for r in conn.execute(select(_M).order_by(_M.c.id)).mappings()]

    def delete_model(self, model_id: str) -> None:
        self.get_model(model_id)
        with self.engine.begin() as conn:
            conn.execute(delete(_M).where(_M.c.id == model_id))


def _check_model(model: CandidateModel) -> None:
    """Reject what a user can get wrong when adding a model: a blank id, a bad price, URL or window."""
    if not model.id or model.id != model.id.strip():
        raise ValidationError(
            f"A candidate model needs an id without leading or trailing spaces (got {model.id!r}).",
            hint="Example: `routerforge models add gpt-4o-mini`.",
        )
    for name, price in (
        ("input", model.input_usd_per_mtok),
        ("output", model.output_usd_per_mtok),
    ):
        if price is not None and not (math.isfinite(price) and price >= 0):
            raise ValidationError(
                f"The {name} price of {model.id!r} must be a finite number >= 0 USD per million tokens "
                f"(got {price}).",
                hint=f"Pass --{name}-price with a value such as 0.15.",
            )
    if model.context_window is not None and model.context_window < 1:
        raise ValidationError(
            f"The context window of {model.id!r} must be at least 1 token (got {model.context_window})."
        )
    if model.base_url is not None and not model.base_url.startswith(("http://", "https://")):
        raise ValidationError(
            f"The base URL of {model.id!r} must start with http:// or https:// (got {model.base_url!r}).",
            hint="Example: --base-url http://127.0.0.1:8000/v1.",
        )


def _candidate(row: Any) -> CandidateModel:
    return CandidateModel(
        id=row["id"],
        provider=row["provider"],
        base_url=row["base_url"],
        input_usd_per_mtok=row["input_usd_per_mtok"],
        output_usd_per_mtok=row["output_usd_per_mtok"],
        context_window=row["context_window"],
        capabilities=dict(row["capabilities"] or {}),
    )


def _round(value: Any, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
