"""Router assignments: which router directory (and policy) serves a named synthetic model, set by
``routerforge promote`` / ``rollback`` (or the admin endpoint), with an append-only audit and the gateway
*state version* every gateway process polls (gateway/reload.py).

Tables (Alembic revision ``0120_router_assignments``):

- ``gw_router_assignments``: one row per promoted synthetic model: router, policy kind and knob, who and
  when, and ``previous`` — the stack of assignments it replaced (newest last; ``{"router": null}`` stands
  for the router written in gateway.yaml). Rollback pops that stack.
- ``gw_router_audit``: one row per promote or rollback, never updated nor deleted by this code.
- ``gw_state``: named counters; ``routing`` is bumped in the same transaction as every assignment change
  and by API-key changes, so a replica sees a change with one indexed read.

Synchronous (call from worker threads), on the store's engine (:class:`~routerforge.gateway.db.GatewayDB`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, mapped_column

from routerforge.data.schema import Base
from routerforge.data.sqlutil import dialect_insert
from routerforge.errors import NotFoundError
from routerforge.gateway.db import utcnow

ROUTING_STATE = "routing"
MAX_HISTORY = 50  # assignments kept on a synthetic model's rollback stack


class GwRouterAssignment(Base):
    __tablename__ = "gw_router_assignments"

    synthetic_model: Mapped[str] = mapped_column(String(256), primary_key=True)
    router: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    knob: Mapped[float | None] = mapped_column(Float, nullable=True)
    assigned_by: Mapped[str] = mapped_column(String(256), nullable=False)
    assigned_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    previous: Mapped[Any] = mapped_column(JSON, nullable=True)


class GwRouterAudit(Base):
    __tablename__ = "gw_router_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(256), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    synthetic_model: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    router: Mapped[str | None] = mapped_column(Text, nullable=True)
    kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    knob: Mapped[float | None] = mapped_column(Float, nullable=True)
    previous_router: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    previous_knob: Mapped[float | None] = mapped_column(Float, nullable=True)
    state_version: Mapped[int] = mapped_column(Integer, nullable=False)


class GwState(Base):
    __tablename__ = "gw_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


_A: Any = GwRouterAssignment.__table__
_AUDIT: Any = GwRouterAudit.__table__
_S: Any = GwState.__table__


@dataclass
class Assignment:
    """The router serving a synthetic model instead of the one gateway.yaml names."""

    synthetic_model: str
    router: str
    kind: str | None = None
    knob: float | None = None
    assigned_by: str = ""
    assigned_at: dt.datetime | None = None
    previous: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "synthetic_model": self.synthetic_model,
            "router": self.router,
            "kind": self.kind,
            "knob": self.knob,
            "assigned_by": self.assigned_by,
            "assigned_at": self.assigned_at.isoformat() if self.assigned_at else None,
            "previous": self.previous[-1] if self.previous else None,
            "history_depth": len(self.previous),
        }


def _assignment(row: Any) -> Assignment:
    return Assignment(
        synthetic_model=row["synthetic_model"],
        router=row["router"],
        kind=row["kind"],
        knob=row["knob"],
        assigned_by=row["assigned_by"],
        assigned_at=row["assigned_at"],
        previous=list(row["previous"] or []),
    )


def bump_version(conn: Connection, name: str = ROUTING_STATE) -> int:
    """Increment state counter ``name`` inside the caller's transaction (an upsert); returns the new value."""
    now = utcnow()
    ins = dialect_insert(conn)(GwState).values(name=name, version=1, updated_at=now)
    stmt = ins.on_conflict_do_update(
        index_elements=[GwState.name], set_={"version": GwState.version + 1, "updated_at": now}
    ).returning(GwState.version)
    return int(conn.execute(stmt).scalar_one())


def state_version(engine: Engine, name: str = ROUTING_STATE) -> int:
    """The current value of state counter ``name`` (0 before the first change). One primary-key read."""
    with engine.connect() as conn:
        value = conn.execute(select(_S.c.version).where(_S.c.name == name)).scalar()
    return int(value or 0)


class Assignments:
    """Read and change router assignments (each change bumps the state version in its transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def version(self) -> int:
        return state_version(self.engine)

    def all(self) -> dict[str, Assignment]:
        with self.engine.connect() as conn:
            return {r["synthetic_model"]: _assignment(r) for r in conn.execute(select(_A)).mappings()}

    def get(self, synthetic_model: str) -> Assignment | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_A).where(_A.c.synthetic_model == synthetic_model)).mappings().first()
        return None if row is None else _assignment(row)

    def snapshot(self) -> tuple[int, dict[str, Assignment]]:
        """The state version and every assignment, read in one transaction."""
        with self.engine.connect() as conn:
            version = conn.execute(select(_S.c.version).where(_S.c.name == ROUTING_STATE)).scalar()
            rows = {r["synthetic_model"]: _assignment(r) for r in conn.execute(select(_A)).mappings()}
        return int(version or 0), rows

    def promote(
        self,
        synthetic_model: str,
        router: str,
        *,
        kind: str | None,
        knob: float | None,
        actor: str,
        config_router: str,
    ) -> tuple[Assignment, int]:
        """Serve ``synthetic_model`` with ``router`` (validated by the caller); returns it and the new version."""
        now = utcnow()
        with self.engine.begin() as conn:
            version = bump_version(conn)  # first: its row lock serialises every assignment change
            row = (
                conn.execute(select(_A).where(_A.c.synthetic_model == synthetic_model).with_for_update())
                .mappings()
                .first()
            )
            if row is None:
                previous: dict[str, Any] = {"router": None, "config_router": config_router}
                stack = [previous]
            else:
                old = _assignment(row)
                previous = {
                    "router": old.router,
                    "kind": old.kind,
                    "knob": old.knob,
                    "assigned_by": old.assigned_by,
                    "assigned_at": old.assigned_at.isoformat() if old.assigned_at else None,
                }
                stack = [*old.previous, previous][-MAX_HISTORY:]
            values = {
                "router": router,
                "kind": kind,
                "knob": knob,
                "assigned_by": actor,
                "assigned_at": now,
                "previous": stack,
            }
            if row is None:
                conn.execute(insert(_A).values(synthetic_model=synthetic_model, **values))
            else:
                conn.execute(update(_A).where(_A.c.synthetic_model == synthetic_model).values(**values))
            self._audit(conn, now, actor, "promote", synthetic_model, router, kind, knob, previous, version)
        return Assignment(synthetic_model, router, kind, knob, actor, now, stack), version

    def rollback(self, synthetic_model: str, *, actor: str) -> tuple[Assignment | None, int]:
        """Restore the assignment before the current one (``None``: gateway.yaml's router serves again)."""
        now = utcnow()
        with self.engine.begin() as conn:
            version = bump_version(conn)  # first: its row lock serialises every assignment change
            row = (
                conn.execute(select(_A).where(_A.c.synthetic_model == synthetic_model).with_for_update())
                .mappings()
                .first()
            )
            if row is None or not (row["previous"] or []):
                raise NotFoundError(
                    f"Synthetic model {synthetic_model!r} has no promotion to roll back.",
                    hint="`routerforge promote MODEL --router DIR` records one; gateway.yaml's router serves now.",
                )
            current = _assignment(row)
            stack = list(current.previous)
            back = stack.pop()
            restored: Assignment | None = None
            if back.get("router") is None:  # back to what gateway.yaml says
                conn.execute(delete(_A).where(_A.c.synthetic_model == synthetic_model))
            else:
                restored = Assignment(
                    synthetic_model,
                    str(back["router"]),
                    back.get("kind"),
                    back.get("knob"),
                    actor,
                    now,
                    stack,
                )
                conn.execute(
                    update(_A)
                    .where(_A.c.synthetic_model == synthetic_model)
                    .values(
                        router=restored.router,
                        kind=restored.kind,
                        knob=restored.knob,
                        assigned_by=actor,
                        assigned_at=now,
                        previous=stack,
                    )
                )
            was = {"router": current.router, "kind": current.kind, "knob": current.knob}
            self._audit(
                conn,
                now,
                actor,
                "rollback",
                synthetic_model,
                back.get("router") or back.get("config_router"),
                back.get("kind"),
                back.get("knob"),
                was,
                version,
            )
        return restored, version

    def bump(self) -> int:
        """Bump the state version alone (API key created or revoked; a manual "reload now")."""
        with self.engine.begin() as conn:
            return bump_version(conn)

    def audit(self, synthetic_model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        stmt = select(_AUDIT).order_by(_AUDIT.c.id.desc()).limit(limit)
        if synthetic_model is not None:
            stmt = stmt.where(_AUDIT.c.synthetic_model == synthetic_model)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        for r in rows:
            r["at"] = r["at"].isoformat()
        return rows

    @staticmethod
    def _audit(
        conn: Connection,
        at: dt.datetime,
        actor: str,
        action: str,
        synthetic_model: str,
        router: str | None,
        kind: str | None,
        knob: float | None,
        previous: dict[str, Any],
        version: int,
    ) -> None:
        conn.execute(
            insert(_AUDIT).values(
                at=at,
                actor=actor[:256],
                action=action,
                synthetic_model=synthetic_model,
                router=router,
                kind=kind,
                knob=knob,
                previous_router=previous.get("router") or previous.get("config_router"),
                previous_kind=previous.get("kind"),
                previous_knob=previous.get("knob"),
                state_version=version,
            )
        )
