"""PostgreSQL time partitioning of the request log (``logging.partition: monthly | daily``; default ``none``).

A partitioned log is ``gw_requests`` and ``gw_attempts`` declared ``PARTITION BY RANGE (created_at)``
(an attempt's ``created_at`` is its request's, revision ``0140_log_partitions``), with one partition per
month or day named ``gw_requests_p202611`` / ``gw_requests_p20261129`` (and the same for ``gw_attempts``).
PostgreSQL requires a partitioned table's primary key to contain the partition key, so the keys are
``(id, created_at)``; ids stay unique in practice (24 random hex digits). A lookup by id alone (``GET
/v1/logs/{id}``, the dashboard's drill-down) probes the primary-key index of every partition — one
index probe per partition, ~0.05 ms each (measured in ``benchmarks/results/log_scale.md``).

How a store gets a partitioned log (docs/scale.md):

* **a new store**: when the gateway starts with ``logging.partition`` set and the log is empty, the two
  tables are recreated partitioned (one transaction, under an advisory lock so replicas starting together
  convert once);
* **an existing log**: ``routerforge partition-logs`` converts it: the plain tables are renamed
  ``*_plain``, partitioned ones take their names (so a running gateway writes into them at once), and the
  rows move over oldest first in batches (one transaction each: ``DELETE … RETURNING`` from the plain
  table into the partitioned one), so a killed conversion resumes where it stopped when run again.

Partitions are created ahead (``AHEAD``: 2 months or 7 days) at start, by each retention round, and by the
writer itself whenever a batch holds a time whose partition this process has not seen (one catalogue query,
then ``CREATE TABLE IF NOT EXISTS … PARTITION OF``): there is no default partition, so a row can never land
in one that would later block creating its month. Retention (:mod:`routerforge.gateway.retention`) drops
every partition that ends before the cutoff (rows counted first, their feedback deleted) and deletes the
rest of the cutoff's own partition in batches as before. SQLite has no partitioning: the setting is
ignored there with a warning at start.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine, Table, text
from sqlalchemy.schema import CreateIndex

from routerforge.errors import ConfigError, ValidationError
from routerforge.gateway.db import GwAttempt, GwRequest, utcnow

log = logging.getLogger(__name__)

Mode = Literal["none", "monthly", "daily"]
MODES: tuple[str, ...] = ("none", "monthly", "daily")
TABLES: tuple[str, ...] = ("gw_requests", "gw_attempts")
_MODELS: dict[str, Table] = {"gw_requests": GwRequest.__table__, "gw_attempts": GwAttempt.__table__}  # type: ignore[dict-item]
_COMMENT = "routerforge partition: "
_LOCK_KEY = 7_340_140  # pg advisory lock: converting or adding partitions (one process at a time)
AHEAD = {"monthly": 2, "daily": 7}
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def period_start(mode: str, t: dt.datetime) -> dt.datetime:
    if mode == "monthly":
        return dt.datetime(t.year, t.month, 1)
    if mode == "daily":
        return dt.datetime(t.year, t.month, t.day)
    raise ValidationError(f"Unknown partition mode {mode!r}.", hint=f"Use one of {', '.join(MODES)}.")


def next_start(mode: str, start: dt.datetime) -> dt.datetime:
    if mode == "monthly":
        return dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + dt.timedelta(days=1)


def partition_name(table: str, mode: str, start: dt.datetime) -> str:
    return f"{table}_p{start:%Y%m}" if mode == "monthly" else f"{table}_p{start:%Y%m%d}"


@dataclass(frozen=True)
class Partition:
    name: str  # of the gw_requests partition; the attempts' is gw_attempts_<same suffix>
    start: dt.datetime
    end: dt.datetime

    def of(self, table: str) -> str:
        return table + self.name[len("gw_requests") :]


def _scalar(conn: Any, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar()


def table_state(conn: Any) -> tuple[str | None, bool]:
    """(the partition mode of this database's log or None when it is not partitioned, whether a conversion
    is in progress: ``gw_requests_plain`` exists). Always (None, False) off PostgreSQL."""
    if conn.dialect.name != "postgresql":
        return None, False
    kind = _scalar(conn, "SELECT relkind FROM pg_class WHERE oid = to_regclass('gw_requests')")
    converting = _scalar(conn, "SELECT to_regclass('gw_requests_plain') IS NOT NULL")
    if kind != "p":
        return None, bool(converting)
    comment = _scalar(conn, "SELECT obj_description('gw_requests'::regclass, 'pg_class')") or ""
    mode = comment[len(_COMMENT) :] if comment.startswith(_COMMENT) else "monthly"
    return (mode if mode in AHEAD else "monthly"), bool(converting)


def list_partitions(conn: Any) -> list[Partition]:
    """The range partitions of ``gw_requests``, oldest first."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'gw_requests'::regclass"
        )
    ).all()
    out = []
    for name, bound in rows:
        m = _BOUND.search(bound or "")
        if m is not None:
            out.append(Partition(name, dt.datetime.fromisoformat(m[1]), dt.datetime.fromisoformat(m[2])))
    return sorted(out, key=lambda p: p.start)


def _create_partition(conn: Any, mode: str, start: dt.datetime) -> bool:
    """Create the partition of both tables starting at ``start`` unless it exists; True when created."""
    end = next_start(mode, start)
    created = False
    for table in TABLES:
        name = partition_name(table, mode, start)
        if _scalar(conn, "SELECT to_regclass(:n) IS NOT NULL", n=name):
            continue
        conn.execute(
            text(
                f"CREATE TABLE {name} PARTITION OF {table} "
                f"FOR VALUES FROM ('{start:%Y-%m-%d %H:%M:%S}') TO ('{end:%Y-%m-%d %H:%M:%S}')"
            )
        )
        created = True
    return created


def ensure_partitions(engine: Engine, mode: str, starts: Iterable[dt.datetime]) -> int:
    """Create the partitions (of both tables) beginning at ``starts`` that are missing; how many."""
    wanted = sorted(set(starts))
    if not wanted:
        return 0
    made = 0
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        for start in wanted:
            made += _create_partition(conn, mode, start)
    return made


def periods(mode: str, a: dt.datetime, b: dt.datetime) -> list[dt.datetime]:
    """Starts of the partitions covering ``[a, b]``."""
    out, s = [], period_start(mode, a)
    while s <= b:
        out.append(s)
        s = next_start(mode, s)
    return out


def ensure_ahead(engine: Engine, mode: str, now: dt.datetime | None = None) -> int:
    """The current partition and the next :data:`AHEAD` ones."""
    now = now or utcnow()
    s = period_start(mode, now)
    starts = [s]
    for _ in range(AHEAD[mode]):
        s = next_start(mode, s)
        starts.append(s)
    return ensure_partitions(engine, mode, starts)


class Coverage:
    """The writer's view: which partitions exist (per process, refreshed when a batch needs a new one)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._checked = False
        self.mode: str | None = None
        self._known: set[dt.datetime] = set()

    def reset(self) -> None:
        with self._lock:
            self._checked = False
            self._known.clear()

    def _check(self) -> None:
        if not self._checked:
            with self.engine.connect() as conn:
                self.mode, _ = table_state(conn)
            self._checked = True

    def partitioned(self) -> bool:
        """Whether the log is partitioned (looked up once per process): then every attempt has its
        request's ``created_at``, and readers bound their attempt lookups by time to skip partitions."""
        with self._lock:
            self._check()
            return self.mode is not None

    def cover(self, times: Iterable[dt.datetime]) -> None:
        """Make sure every time in ``times`` has its partition (a no-op on a plain log)."""
        with self._lock:
            self._check()
            if self.mode is None:
                return
            need = {period_start(self.mode, t) for t in times} - self._known
            if not need:
                return
            for s in list(need):  # and the ones after it, so this happens once per AHEAD periods
                for _ in range(AHEAD[self.mode]):
                    s = next_start(self.mode, s)
                    need.add(s)
            ensure_partitions(self.engine, self.mode, need)
            self._known |= need


# -- turning a plain log into a partitioned one ---------------------------------------------------------
def _indexes(conn: Any, table: str) -> list[str]:
    return list(
        conn.execute(
            text("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = to_regclass(:t)"),
            {"t": table},
        ).scalars()
    )


def _swap_in_partitioned(conn: Any, mode: str) -> None:
    """Rename both plain tables to ``*_plain`` (with their indexes) and create the partitioned ones under
    the original names, with the same columns, defaults, indexes and sequence; in the caller's transaction."""
    for table in TABLES:
        plain = f"{table}_plain"
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {plain}"))
        for idx in _indexes(conn, plain):
            conn.execute(text(f'ALTER INDEX {idx} RENAME TO "{idx.strip(chr(34))[:57]}_plain"'))
        conn.execute(
            text(f"CREATE TABLE {table} (LIKE {plain} INCLUDING DEFAULTS) PARTITION BY RANGE (created_at)")
        )
        conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN created_at SET NOT NULL"))
        conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, created_at)"))
        for index in _MODELS[table].indexes:
            conn.execute(CreateIndex(index))
        seq = _scalar(conn, "SELECT pg_get_serial_sequence(:t, 'id')", t=plain)
        if seq:  # gw_attempts.id: the sequence moves over with its numbering
            conn.execute(text(f"ALTER SEQUENCE {seq} OWNED BY {table}.id"))
        conn.execute(text(f"COMMENT ON TABLE {table} IS '{_COMMENT}{mode}'"))


def setup_partitioning(engine: Engine, mode: str, *, now: dt.datetime | None = None) -> str:
    """Apply ``logging.partition`` at gateway start; returns what was done (for the log).

    A new (empty) log is recreated partitioned; partitions are created ahead. An existing non-empty plain
    log is refused with the command that converts it."""
    if mode not in MODES:
        raise ConfigError(f"logging.partition must be one of {', '.join(MODES)}, got {mode!r}.")
    if engine.dialect.name != "postgresql":
        if mode != "none":
            log.warning(
                "logging.partition: %s is ignored on %s (PostgreSQL only); retention deletes in batches",
                mode,
                engine.dialect.name,
            )
            return f"ignored on {engine.dialect.name}"
        return "none"
    with engine.connect() as conn:
        current = table_state(conn)[0]
    if mode == "none":
        if current is not None:
            log.info("request log is partitioned (%s) although logging.partition is none: kept", current)
        return "none" if current is None else f"partitioned {current} (kept)"
    if current is not None and current != mode:
        raise ConfigError(
            f"The request log is partitioned {current}, but logging.partition is {mode}.",
            hint=f"Set logging.partition: {current} (changing the period of an existing log is not supported).",
        )
    done = "partitioned already"
    if current is None:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            current = table_state(conn)[0]
            if current is None:
                rows = _scalar(conn, "SELECT EXISTS (SELECT 1 FROM gw_requests)") or _scalar(
                    conn, "SELECT EXISTS (SELECT 1 FROM gw_attempts)"
                )
                if rows:
                    raise ConfigError(
                        f"logging.partition is {mode}, but the request log already holds rows in a plain "
                        "(unpartitioned) table.",
                        hint="Convert it with `routerforge partition-logs -c gateway.yaml` (batched, "
                        "resumable; the gateway may keep running), or set logging.partition: none.",
                    )
                _swap_in_partitioned(conn, mode)
                for table in TABLES:
                    conn.execute(text(f"DROP TABLE {table}_plain"))
                done = f"created partitioned ({mode})"
    made = ensure_ahead(engine, mode, now)
    return f"{done}; {made} partitions created ahead"


@dataclass
class ConvertReport:
    mode: str
    requests: int = 0
    attempts: int = 0
    batches: int = 0
    orphan_attempts: int = 0  # attempts whose request was not in the log (dropped at the end, counted)
    partitions: int = 0
    seconds: float = 0.0
    complete: bool = True
    started_now: bool = False
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "requests": self.requests,
            "attempts": self.attempts,
            "batches": self.batches,
            "orphan_attempts": self.orphan_attempts,
            "partitions": self.partitions,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
            "started_now": self.started_now,
        }


def convert_log(
    engine: Engine,
    mode: str,
    *,
    batch_size: int = 5000,
    max_batches: int | None = None,
    progress: Callable[[ConvertReport], None] | None = None,
) -> ConvertReport:
    """Convert a plain request log to a partitioned one (or resume a conversion): swap the tables, then
    move the rows oldest first, ``batch_size`` requests (with their attempts) per transaction."""
    if engine.dialect.name != "postgresql":
        raise ConfigError(
            f"Partitioning needs PostgreSQL; this store is {engine.dialect.name}.",
            hint="On SQLite keep logging.partition: none; retention deletes old rows in batches.",
        )
    if mode not in AHEAD:
        raise ValidationError(f"Partition mode must be monthly or daily, got {mode!r}.")
    if batch_size < 1:
        raise ValidationError(f"batch_size must be ≥ 1, got {batch_size}.")
    report = ConvertReport(mode=mode)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        current, converting = table_state(conn)
        if current is not None and current != mode:
            raise ConfigError(
                f"The request log is partitioned {current} already.",
                hint=f"Pass --mode {current}, or keep it as it is.",
            )
        if current is None:
            _swap_in_partitioned(conn, mode)
            report.started_now = converting = True
    if not converting:
        report.seconds = time.perf_counter() - started
        return report  # partitioned already, nothing left to move
    with engine.connect() as conn:
        lo, hi = conn.execute(text("SELECT min(created_at), max(created_at) FROM gw_requests_plain")).one()
    now = utcnow()
    report.partitions = ensure_partitions(engine, mode, periods(mode, lo or now, max(hi or now, now)))
    report.partitions += ensure_ahead(engine, mode, now)
    req_cols = ", ".join(c.name for c in _MODELS["gw_requests"].columns)
    att_cols = [c.name for c in _MODELS["gw_attempts"].columns]
    att_sel = ", ".join(
        f"m.{c}" if c != "created_at" else "coalesce(m.created_at, r.created_at)" for c in att_cols
    )
    while max_batches is None or report.batches < max_batches:
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    text("SELECT id FROM gw_requests_plain ORDER BY created_at LIMIT :n"), {"n": batch_size}
                ).scalars()
            )
            if not ids:
                break
            report.attempts += (
                conn.execute(
                    text(
                        "WITH m AS (DELETE FROM gw_attempts_plain WHERE request_id = ANY(:ids) RETURNING *) "
                        f"INSERT INTO gw_attempts ({', '.join(att_cols)}) SELECT {att_sel} "
                        "FROM m JOIN gw_requests_plain r ON r.id = m.request_id"
                    ),
                    {"ids": ids},
                ).rowcount
                or 0
            )
            report.requests += (
                conn.execute(
                    text(
                        "WITH m AS (DELETE FROM gw_requests_plain WHERE id = ANY(:ids) RETURNING *) "
                        f"INSERT INTO gw_requests ({req_cols}) SELECT {req_cols} FROM m"
                    ),
                    {"ids": ids},
                ).rowcount
                or 0
            )
        report.batches += 1
        if progress is not None:
            progress(report)
    else:
        report.complete = False
    if report.complete:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            if _scalar(conn, "SELECT to_regclass('gw_requests_plain') IS NOT NULL"):
                report.orphan_attempts = int(_scalar(conn, "SELECT count(*) FROM gw_attempts_plain") or 0)
                for table in TABLES:
                    conn.execute(text(f"DROP TABLE {table}_plain"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in TABLES:
                conn.execute(text(f"ANALYZE {table}"))
    report.seconds = time.perf_counter() - started
    return report


# -- retention: dropping whole partitions -----------------------------------------------------------------
@dataclass
class DropResult:
    partitions: list[str] = field(default_factory=list)
    requests: int = 0
    attempts: int = 0
    feedback: int = 0
    longest_ms: float = 0.0


def _leftovers(conn: Any) -> list[tuple[str, str, bool]]:
    """Log partitions a dropping round left behind when it was interrupted: (parent, name, still attached
    with its detach pending) for pending detaches, and detached ``gw_*_p*`` tables (parent "")."""
    pending = conn.execute(
        text(
            "SELECT p.relname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhdetachpending "
            "AND p.relname IN ('gw_requests', 'gw_attempts')"
        )
    ).all()
    loose = conn.execute(
        text(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
            "AND relnamespace = current_schema()::regnamespace "
            r"AND (relname ~ '^gw_requests_p[0-9]+$' OR relname ~ '^gw_attempts_p[0-9]+$')"
        )
    ).scalars()
    return [(parent, name, True) for parent, name in pending] + [("", name, False) for name in loose]


def drop_partitions_before(engine: Engine, cutoff: dt.datetime) -> DropResult:
    """Drop every partition (of both tables) that ends at or before ``cutoff``, oldest first.

    Each is first detached with ``DETACH PARTITION … CONCURRENTLY`` (which never blocks the writers'
    inserts or the readers: it waits for the queries that still see the partition), then, in one short
    transaction, its rows are counted, its requests' feedback deleted and the two tables dropped. A round
    interrupted half-way leaves a detached (or detach-pending) table that the next round finishes."""
    out = DropResult()
    with engine.connect() as conn:
        if table_state(conn)[0] is None:
            return out
        old = [p for p in list_partitions(conn) if p.end <= cutoff]
        leftovers = _leftovers(conn)
    todo: list[str] = ["gw_requests" + name[name.index("_p") :] for _p, name, _a in leftovers]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for parent, name, _attached in leftovers:
            if parent:
                conn.execute(text(f"ALTER TABLE {parent} DETACH PARTITION {name} FINALIZE"))
    for part in old:
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in TABLES:
                    name = part.of(table)
                    if _scalar(
                        conn, "SELECT relispartition FROM pg_class WHERE oid = to_regclass(:n)", n=name
                    ):
                        conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name} CONCURRENTLY"))
        except Exception as exc:  # another replica detaching the same partition: it finishes the job
            log.warning("request log: could not detach partition %s now: %s", part.name, type(exc).__name__)
            continue
        todo.append(part.name)
    for req in dict.fromkeys(todo):
        att = "gw_attempts" + req[len("gw_requests") :]
        t0 = time.perf_counter()
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                has_req = _scalar(conn, "SELECT to_regclass(:n) IS NOT NULL", n=req)
                has_att = _scalar(conn, "SELECT to_regclass(:n) IS NOT NULL", n=att)
                if not (has_req or has_att):
                    continue  # dropped by another replica meanwhile
                n_req = int(_scalar(conn, f"SELECT count(*) FROM {req}") or 0) if has_req else 0
                n_att = int(_scalar(conn, f"SELECT count(*) FROM {att}") or 0) if has_att else 0
                n_fb = 0
                if has_req:
                    n_fb = (
                        conn.execute(
                            text(f"DELETE FROM gw_feedback f USING {req} p WHERE f.request_id = p.id")
                        ).rowcount
                        or 0
                    )
                    conn.execute(text(f"DROP TABLE {req}"))
                if has_att:  # (still attached only if its detach failed: DROP detaches it too)
                    conn.execute(text(f"DROP TABLE {att}"))
        except Exception as exc:  # a lock timeout: the detached table is dropped by the next round
            log.warning("request log: could not drop partition %s now: %s", req, type(exc).__name__)
            continue
        out.partitions.append(req)
        out.requests += n_req
        out.attempts += n_att
        out.feedback += n_fb
        out.longest_ms = max(out.longest_ms, (time.perf_counter() - t0) * 1000)
    return out


__all__ = [
    "AHEAD",
    "MODES",
    "ConvertReport",
    "Coverage",
    "DropResult",
    "Partition",
    "convert_log",
    "drop_partitions_before",
    "ensure_ahead",
    "ensure_partitions",
    "list_partitions",
    "period_start",
    "periods",
    "setup_partitioning",
    "table_state",
]
