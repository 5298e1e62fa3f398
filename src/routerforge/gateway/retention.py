"""Request-log retention: delete requests older than a cutoff in small batches, never in one long lock.

Each batch is one short transaction that deletes the ``batch_size`` oldest requests before the cutoff
together with their attempts and feedback (found through the index that leads with ``created_at``,
``ix_gw_requests_ui_time`` of revision ``0110_ui_indexes``; attempts and feedback by their
``request_id`` indexes). Between batches the log writer and readers go on: on SQLite the writer waits for
at most one batch (measured: < 0.25 s for 2,000 requests), on PostgreSQL rows being deleted lock nothing a
writer needs. On PostgreSQL a prune that deleted rows ends with ``ANALYZE`` of the three tables, so the
planner never works from the statistics of a much larger table.

On a PostgreSQL log partitioned by time (``logging.partition``, :mod:`routerforge.gateway.partitions`) every
partition that ends before the cutoff is dropped whole first (its rows counted, its requests' feedback
deleted; ``DROP TABLE`` costs the same for 10 rows or 10 million), then the rest of the cutoff's own
partition is deleted in batches as above; each round also creates the partitions ahead.

Used by ``routerforge prune-logs`` (once) and, when ``logging.retention_days`` is set in the gateway's
YAML, by :class:`RetentionPruner`, a daemon thread of the gateway that prunes every
``logging.prune_interval_s`` seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, select

from routerforge.errors import ValidationError
from routerforge.gateway.db import GatewayDB, GwAttempt, GwFeedback, GwRequest, utcnow
from routerforge.gateway.partitions import drop_partitions_before, ensure_ahead, table_state

log = logging.getLogger(__name__)

_REQ: Table = cast(Table, GwRequest.__table__)
_ATT: Table = cast(Table, GwAttempt.__table__)
_FB: Table = cast(Table, GwFeedback.__table__)
DEFAULT_BATCH = 2000
# SQLite: a WAL checkpoint (TRUNCATE) every this many batches. Without it the log writer's and the pruner's
# alternating transactions starve the automatic (passive) checkpoints and the WAL grows with every page a
# prune touches: measured 30 GB of WAL after ~3M of 5M rows deleted from a 10M-row log.
SQLITE_CHECKPOINT_EVERY = 25


@dataclass
class PruneReport:
    cutoff: dt.datetime
    requests: int = 0
    attempts: int = 0
    feedback: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch_ms: float = 0.0
    complete: bool = True  # False when max_batches stopped it before the cutoff was reached
    partitions_dropped: int = 0  # whole partitions dropped (a partitioned PostgreSQL log)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(timespec="seconds"),
            "requests": self.requests,
            "attempts": self.attempts,
            "feedback": self.feedback,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "longest_batch_ms": round(self.longest_batch_ms, 3),
            "complete": self.complete,
            "partitions_dropped": self.partitions_dropped,
        }


def cutoff_for(retention_days: float, now: dt.datetime | None = None) -> dt.datetime:
    """The time before which requests are deleted (naive UTC, like the log's ``created_at``)."""
    if not retention_days > 0:
        raise ValidationError(f"The retention must be more than 0 days, got {retention_days}.")
    return (now or utcnow()) - dt.timedelta(days=retention_days)


def prune_request_log(
    db: GatewayDB,
    cutoff: dt.datetime,
    *,
    batch_size: int = DEFAULT_BATCH,
    max_batches: int | None = None,
    pause_s: float = 0.0,
    progress: Callable[[PruneReport], None] | None = None,
) -> PruneReport:
    """Delete every request created before ``cutoff`` (with its attempts and feedback), oldest first, in
    transactions of at most ``batch_size`` requests, pausing ``pause_s`` between them."""
    if batch_size < 1:
        raise ValidationError(f"batch_size must be ≥ 1, got {batch_size}.")
    if cutoff.tzinfo is not None:
        cutoff = cutoff.astimezone(dt.UTC).replace(tzinfo=None)
    report = PruneReport(cutoff=cutoff)
    started = time.perf_counter()
    partitioned = False
    sqlite = db.engine.dialect.name == "sqlite"
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            mode = table_state(conn)[0]
        if mode is not None:
            partitioned = True
            ensure_ahead(db.engine, mode)
            dropped = drop_partitions_before(db.engine, cutoff)
            report.partitions_dropped = len(dropped.partitions)
            report.requests += dropped.requests
            report.attempts += dropped.attempts
            report.feedback += dropped.feedback
            report.longest_batch_ms = dropped.longest_ms
            if progress is not None and dropped.partitions:
                progress(report)
    while max_batches is None or report.batches < max_batches:
        t0 = time.perf_counter()
        with db.engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(_REQ.c.id)
                    .where(_REQ.c.created_at < cutoff)
                    .order_by(_REQ.c.created_at)
                    .limit(batch_size)
                ).scalars()
            )
            if not ids:
                break
            att = delete(_ATT).where(_ATT.c.request_id.in_(ids))
            if partitioned:  # the time bound lets PostgreSQL skip the newer partitions
                att = att.where(_ATT.c.created_at < cutoff)
            report.attempts += conn.execute(att).rowcount or 0
            report.feedback += conn.execute(delete(_FB).where(_FB.c.request_id.in_(ids))).rowcount or 0
            report.requests += (
                conn.execute(delete(_REQ).where(_REQ.c.id.in_(ids), _REQ.c.created_at < cutoff)).rowcount or 0
            )
        report.batches += 1
        if sqlite and report.batches % SQLITE_CHECKPOINT_EVERY == 0:
            _checkpoint(db)
        report.longest_batch_ms = max(report.longest_batch_ms, (time.perf_counter() - t0) * 1000)
        if progress is not None:
            progress(report)
        if len(ids) < batch_size:
            break
        if pause_s > 0:
            time.sleep(pause_s)
    else:
        report.complete = False
    if sqlite and report.batches % SQLITE_CHECKPOINT_EVERY:
        _checkpoint(db)
    if report.requests and db.engine.dialect.name == "postgresql":
        # keep the planner's statistics current after a large delete (autovacuum does it too, later)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in (_REQ, _ATT, _FB):
                conn.exec_driver_sql(f"ANALYZE {table.name}")
    report.seconds = time.perf_counter() - started
    return report


def _checkpoint(db: GatewayDB) -> None:
    """Copy the WAL back into the database file and empty it; waits (busy timeout) for the log writer's
    transaction in progress, then holds writers back for the copy (tens of ms for 25 batches)."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()


def count_older(db: GatewayDB, cutoff: dt.datetime) -> int:
    """How many requests were created before ``cutoff`` (for ``prune-logs --dry-run``)."""
    with db.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(_REQ).where(_REQ.c.created_at < cutoff)).scalar()
            or 0
        )


class RetentionPruner:
    """A daemon thread pruning requests older than ``retention_days`` every ``interval_s`` seconds."""

    def __init__(
        self,
        db: GatewayDB,
        retention_days: float,
        *,
        interval_s: float = 3600.0,
        batch_size: int = DEFAULT_BATCH,
        pause_s: float = 0.05,
    ) -> None:
        cutoff_for(retention_days)  # validates
        self.db = db
        self.retention_days = retention_days
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.pause_s = pause_s
        self.last: PruneReport | None = None
        self.deleted = 0  # requests deleted since start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> PruneReport:
        report = prune_request_log(
            self.db, cutoff_for(self.retention_days), batch_size=self.batch_size, pause_s=self.pause_s
        )
        self.last = report
        self.deleted += report.requests
        if report.requests:
            log.info(
                "request log: pruned %d requests older than %s in %d batches",
                report.requests,
                report.cutoff.isoformat(timespec="seconds"),
                report.batches,
            )
        return report

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a failed prune never stops the gateway; the next round tries again
                log.exception("request-log pruning failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="routerforge-log-retention", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


__all__ = ["PruneReport", "RetentionPruner", "count_older", "cutoff_for", "prune_request_log"]
