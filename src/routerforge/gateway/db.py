"""Gateway tables (tenants, API keys, request log + attempts, feedback, shared counters) and their access.

Tables subclass the store's declarative ``Base`` so one Alembic history covers them (revisions
``0101_gateway`` and later in ``routerforge/migrations/versions``). :class:`GatewayDB` opens the database
with the store's engine factory (:func:`routerforge.data.sqlutil.make_engine`) and holds tenants, keys and
counters; the request log's queries are in :mod:`routerforge.gateway.requestlog`. It is synchronous: the app
calls it from worker threads (the log writer, key lookups on a cache miss) and never on the event loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from routerforge.data.schema import Base
from routerforge.data.sqlutil import dialect_insert, make_engine, normalise_url, upgrade_schema


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class GwTenant(Base):
    __tablename__ = "gw_tenants"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    training_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class GwApiKey(Base):
    __tablename__ = "gw_api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(
        String(128), ForeignKey("gw_tenants.name"), nullable=False, index=True
    )
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # the key's own limits (revision 0130): enforced besides its tenant's and organisation's
    daily_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    monthly_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)


class GwRequest(Base):
    __tablename__ = "gw_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    endpoint: Mapped[str] = mapped_column(String(32), nullable=False, default="chat")
    requested_model: Mapped[str] = mapped_column(String(256), nullable=False)
    synthetic_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    chosen_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    answered_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    messages: Mapped[Any] = mapped_column(JSON, nullable=True)
    response_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    predicted: Mapped[Any] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    knob: Mapped[float | None] = mapped_column(Float, nullable=True)
    policy: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decision: Mapped[Any] = mapped_column(JSON, nullable=True)
    tokens_in: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_out: Mapped[int | None] = mapped_column(Integer, nullable=True)
    usage_estimated: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    routing_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    upstream_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_ms: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_gw_requests_tenant_time", "tenant", "created_at"),
        Index(  # the dashboard's window scans (migration 0110_ui_indexes): created_at first, covering
            "ix_gw_requests_ui_time",
            "created_at",
            "synthetic_model",
            "requested_model",
            "answered_model",
            "chosen_model",
            "status",
            "tenant",
            "cost_usd",
            "routing_ms",
            "upstream_ms",
        ),
    )


class GwAttempt(Base):
    __tablename__ = "gw_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # its request's created_at (revision 0140): the partition key when the log is partitioned by time
    created_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class GwFeedback(Base):
    __tablename__ = "gw_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    rating: Mapped[float] = mapped_column(Float, nullable=False)
    labels: Mapped[Any] = mapped_column(JSON, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    # the rated request's created_at (revision 0150): with it a join to a log partitioned by time names
    # the request's partition; ratings recorded before 0150 keep NULL and are joined by id alone
    request_created_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_gw_feedback_created_at", "created_at"),)  # migration 0110_ui_indexes


class GwCounter(Base):
    """Shared counters (rate-limit windows, budget spend) when several processes share one database."""

    __tablename__ = "gw_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, index=True)


@dataclass
class KeyInfo:
    id: str
    tenant: str
    name: str | None
    prefix: str
    is_admin: bool
    requests_per_minute: int | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    daily_usd: float | None = None
    monthly_usd: float | None = None
    tokens_per_minute: int | None = None


def _key_info(row: Any) -> KeyInfo:
    return KeyInfo(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        prefix=row["prefix"],
        is_admin=bool(row["is_admin"]),
        requests_per_minute=row["requests_per_minute"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        daily_usd=row["daily_usd"],
        monthly_usd=row["monthly_usd"],
        tokens_per_minute=row["tokens_per_minute"],
    )


_KEYS = GwApiKey.__table__


class GatewayDB:
    """Synchronous access to the gateway tables."""

    def __init__(self, url: str, *, migrate: bool = True, durable_log: bool = False) -> None:
        """``durable_log``: the request log's writes (``log_engine``) are synced to disk before a commit
        returns (SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``); keys and counters
        keep the cheaper default on ``engine``."""
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.log_engine = make_engine(self.url, durable=True) if durable_log else self.engine
        self._counter_stmt: Any = None
        if migrate:
            try:
                upgrade_schema(self.engine)  # every table, the store's included: one Alembic history
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        self.engine.dispose()
        self.log_engine.dispose()

    # -- tenants --------------------------------------------------------------------------------
    def ensure_tenant(self, name: str, *, training_opt_out: bool | None = None) -> None:
        with self.engine.begin() as conn:  # insert-or-nothing: replicas starting together on a new database
            ins = dialect_insert(conn)(GwTenant).values(
                name=name, training_opt_out=bool(training_opt_out), created_at=utcnow()
            )
            created = conn.execute(ins.on_conflict_do_nothing(index_elements=[GwTenant.name])).rowcount
            if not created and training_opt_out is not None:
                conn.execute(
                    update(GwTenant).where(GwTenant.name == name).values(training_opt_out=training_opt_out)
                )

    def list_tenants(self) -> list[tuple[str, bool]]:
        with self.engine.connect() as conn:
            return [
                (r[0], bool(r[1])) for r in conn.execute(select(GwTenant.name, GwTenant.training_opt_out))
            ]

    # -- keys -----------------------------------------------------------------------------------
    def add_key(
        self,
        *,
        key_id: str,
        tenant: str,
        key_hash: str,
        prefix: str,
        name: str | None,
        is_admin: bool,
        requests_per_minute: int | None,
        daily_usd: float | None = None,
        monthly_usd: float | None = None,
        tokens_per_minute: int | None = None,
    ) -> KeyInfo:
        self.ensure_tenant(tenant)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(GwApiKey).values(
                    id=key_id,
                    tenant=tenant,
                    key_hash=key_hash,
                    prefix=prefix,
                    name=name,
                    is_admin=is_admin,
                    requests_per_minute=requests_per_minute,
                    created_at=now,
                    daily_usd=daily_usd,
                    monthly_usd=monthly_usd,
                    tokens_per_minute=tokens_per_minute,
                )
            )
        return KeyInfo(
            key_id,
            tenant,
            name,
            prefix,
            is_admin,
            requests_per_minute,
            now,
            None,
            daily_usd,
            monthly_usd,
            tokens_per_minute,
        )

    def key_by_hash(self, key_hash: str) -> KeyInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_KEYS).where(_KEYS.c.key_hash == key_hash)).mappings().first()
        return None if row is None else _key_info(row)

    def list_keys(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[KeyInfo]:
        stmt = select(_KEYS).order_by(GwApiKey.created_at)
        if tenant is not None:
            stmt = stmt.where(GwApiKey.tenant == tenant)
        if not include_revoked:
            stmt = stmt.where(GwApiKey.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_key_info(r) for r in conn.execute(stmt).mappings()]

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(GwApiKey)
                .where(GwApiKey.id == key_id, GwApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return bool(res.rowcount)

    # -- counters (used by ratelimit.SqlCounters) --------------------------------------------------
    def counter_add(self, key: str, amount: float, ttl_s: float) -> float:
        """Atomically add ``amount`` to counter ``key`` (created with a TTL) and return the new value."""
        expires = utcnow() + dt.timedelta(seconds=ttl_s)
        with self.engine.begin() as conn:
            stmt = self._counter_stmt
            if stmt is None:  # built once (compiled and cached by SQLAlchemy): ~5x cheaper per call
                ins = dialect_insert(conn)(GwCounter).values(
                    key=bindparam("k"), value=bindparam("v"), expires_at=bindparam("e")
                )
                stmt = self._counter_stmt = ins.on_conflict_do_update(
                    index_elements=[GwCounter.key], set_={"value": GwCounter.value + ins.excluded.value}
                ).returning(GwCounter.value)
            value = conn.execute(stmt, {"k": key, "v": amount, "e": expires}).scalar_one()
        return float(value)

    def counter_get(self, keys: Sequence[str]) -> list[float]:
        if not keys:
            return []
        with self.engine.connect() as conn:
            found = dict(
                conn.execute(
                    select(GwCounter.key, GwCounter.value).where(GwCounter.key.in_(list(keys)))
                ).all()
            )
        return [float(found.get(k, 0.0)) for k in keys]

    def counters_purge(self) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(delete(GwCounter).where(GwCounter.expires_at < utcnow()))
        return int(res.rowcount or 0)
