"""The request log's queries: write batches of :class:`LogEntry`, read rows back, record feedback.

:class:`RequestLog` is synchronous (call it from worker threads). The ``*_for`` methods apply what a caller
may see: their own tenant's rows, every tenant's for admin keys. ``flush`` (the log writer's) runs before a
read so a caller always finds the request it has just made.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import insert, select

from routerforge.errors import NotFoundError, PermissionDeniedError, ValidationError
from routerforge.gateway.auth import Principal
from routerforge.gateway.db import GatewayDB, GwAttempt, GwFeedback, GwRequest, utcnow
from routerforge.gateway.logentry import LogEntry
from routerforge.gateway.partitions import Coverage
from routerforge.gateway.schemas import FeedbackRequest

_REQ = GwRequest.__table__
_ATT = GwAttempt.__table__
_FB = GwFeedback.__table__
REQUEST_COLUMNS: tuple[str, ...] = tuple(c.key for c in _REQ.columns)
_ATTEMPT_FIELDS = ("model", "status", "status_code", "latency_ms", "error")


def _attempt_dict(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in _ATTEMPT_FIELDS}


class RequestLog:
    def __init__(self, db: GatewayDB, *, flush: Callable[[], None] | None = None) -> None:
        self.db = db
        self.flush = flush or (lambda: None)
        # a time-partitioned PostgreSQL log (gateway/partitions.py): partitions made before a batch needs them
        self.coverage = Coverage(db.log_engine)

    # -- writes ---------------------------------------------------------------------------------
    def write(self, entries: Sequence[LogEntry]) -> None:
        """Insert ``entries`` and their attempts in one transaction, every column of every row."""
        if not entries:
            return
        rows = [{k: getattr(e, k) for k in REQUEST_COLUMNS} for e in entries]
        attempts = [
            {"request_id": e.id, "seq": seq, "created_at": e.created_at, **asdict(a)}
            for e in entries
            for seq, a in enumerate(e.attempts)
        ]
        self.coverage.cover(e.created_at for e in entries)
        try:
            with self.db.log_engine.begin() as conn:
                conn.execute(insert(GwRequest), rows)  # executemany of one cached statement
                if attempts:
                    conn.execute(insert(GwAttempt), attempts)
        except Exception:
            self.coverage.reset()  # the log may have been converted or partitions dropped: look again
            raise

    def add_feedback(
        self,
        *,
        request_id: str,
        tenant: str,
        rating: float,
        labels: dict[str, Any],
        comment: str | None,
        request_created_at: dt.datetime | None = None,
    ) -> int:
        with self.db.engine.begin() as conn:
            res = conn.execute(
                insert(GwFeedback).values(
                    request_id=request_id,
                    tenant=tenant,
                    rating=rating,
                    labels=labels,
                    comment=comment,
                    created_at=utcnow(),
                    request_created_at=request_created_at,
                )
            )
            pk = res.inserted_primary_key
        return int(pk[0]) if pk else 0

    # -- reads ----------------------------------------------------------------------------------
    def get(self, request_id: str) -> dict[str, Any] | None:
        """One row with its ``attempts``, or ``None``."""
        with self.db.engine.connect() as conn:
            row = conn.execute(select(_REQ).where(_REQ.c.id == request_id)).mappings().first()
            if row is None:
                return None
            stmt = select(_ATT).where(_ATT.c.request_id == request_id).order_by(_ATT.c.seq)
            if self.coverage.partitioned():  # its attempts are in its request's partition only
                stmt = stmt.where(_ATT.c.created_at == row["created_at"])
            atts = conn.execute(stmt)
            out = dict(row)
            out["attempts"] = [_attempt_dict(a) for a in atts.mappings()]
        return out

    def query(
        self,
        *,
        tenant: str | None = None,
        since: dt.datetime | None = None,
        limit: int = 100,
        with_feedback: bool = False,
    ) -> list[dict[str, Any]]:
        """Rows, newest first, each with its ``attempts``."""
        stmt = select(_REQ).order_by(_REQ.c.created_at.desc()).limit(limit)
        if tenant is not None:
            stmt = stmt.where(_REQ.c.tenant == tenant)
        if since is not None:
            stmt = stmt.where(_REQ.c.created_at >= since)
        if with_feedback:
            stmt = stmt.where(_REQ.c.id.in_(select(_FB.c.request_id)))
        with self.db.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
            by_id: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
            if by_id:
                atts = select(_ATT).where(_ATT.c.request_id.in_(list(by_id))).order_by(_ATT.c.seq)
                if self.coverage.partitioned():  # only the partitions the rows are in
                    times = [r["created_at"] for r in rows]
                    atts = atts.where(_ATT.c.created_at >= min(times), _ATT.c.created_at <= max(times))
                for a in conn.execute(atts).mappings():
                    by_id[a["request_id"]].append(_attempt_dict(a))
        for r in rows:
            r["attempts"] = by_id[r["id"]]
        return rows

    def feedback_for(self, request_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        ids = list(request_ids)
        out: dict[str, list[dict[str, Any]]] = {}
        if not ids:
            return out
        stmt = select(_FB).where(_FB.c.request_id.in_(ids)).order_by(_FB.c.created_at)
        with self.db.engine.connect() as conn:
            for f in conn.execute(stmt).mappings():
                out.setdefault(f["request_id"], []).append(
                    {
                        "rating": f["rating"],
                        "labels": f["labels"] or {},
                        "comment": f["comment"],
                        "tenant": f["tenant"],
                    }
                )
        return out

    # -- what a caller may see --------------------------------------------------------------------
    def find_for(self, principal: Principal, request_id: str) -> dict[str, Any]:
        """A logged request of the caller's tenant (admins: any)."""
        row = self.get(request_id)
        if row is None:
            self.flush()
            row = self.get(request_id)
        if row is None or (row["tenant"] != principal.tenant and not principal.is_admin):
            raise NotFoundError(f"No request {request_id!r} in this tenant's log.")
        return row

    def rate_for(self, principal: Principal, fb: FeedbackRequest) -> dict[str, Any]:
        """Record feedback on one of the caller's tenant's requests."""
        row = self.find_for(principal, fb.request_id)
        if row["tenant"] != principal.tenant and not principal.is_admin:
            raise PermissionDeniedError("Feedback can only be given on your own tenant's requests.")
        fid = self.add_feedback(
            request_id=fb.request_id,
            tenant=row["tenant"],
            rating=fb.rating,
            labels=fb.labels,
            comment=fb.comment,
            request_created_at=row["created_at"],
        )
        return {"id": fid, "request_id": fb.request_id, "status": "recorded"}

    def list_for(
        self, principal: Principal, *, tenant: str | None, since: dt.datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """The caller's tenant's rows (admin keys: ``tenant``'s, or every tenant's)."""
        if tenant is not None and tenant != principal.tenant and not principal.is_admin:
            raise PermissionDeniedError("Only an admin key may read another tenant's log.")
        self.flush()
        scope = tenant if tenant is not None else (None if principal.is_admin else principal.tenant)
        return self.query(tenant=scope, since=since, limit=limit)


_RELATIVE = re.compile(r"([0-9]{1,12})([smhd])")
_SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str | None) -> dt.datetime | None:
    """``2026-01-31``, an ISO timestamp, or a relative ``15m`` / ``2h`` / ``7d`` (naive UTC). ASCII digits
    only; a relative time before year 1 means "everything" (year 1)."""
    if not value:
        return None
    relative = _RELATIVE.fullmatch(value)
    if relative is not None:
        seconds = int(relative.group(1)) * _SINCE_UNITS[relative.group(2)]
        now = utcnow()
        if seconds >= (now - dt.datetime.min).total_seconds():
            return dt.datetime.min
        return now - dt.timedelta(seconds=seconds)
    shown = value[:40] + ("…" if len(value) > 40 else "")
    try:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        raise ValidationError(
            f"Cannot read since={shown!r}.",
            param="since",
            hint="Use 2026-01-31, an ISO time, or 15m / 2h / 7d.",
        ) from exc
    return parsed
