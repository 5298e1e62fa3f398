"""Streaming bulk fill of the gateway's request log, for benchmarks: millions of rows in bounded memory.

:func:`synthetic_chunks` yields the log of ``n`` synthetic requests spread over ``days`` days, oldest first,
``chunk`` requests at a time (rows of ``gw_requests``, their ``gw_attempts`` and 5 % of them rated in
``gw_feedback``), with the mix of ``bench_dashboard.py`` (4 synthetic models, 6 real ones, 20 tenants, a daily
cycle, 3 % errors, 2 % fallbacks) and random 24-hex-digit ids like the gateway's. :func:`fill` writes them:
PostgreSQL with ``COPY`` (psycopg), one transaction per chunk (a partitioned log gets its partitions first);
SQLite with ``executemany`` in transactions of ``chunk`` requests. Then it fills the dashboard's roll-up tables
with the app's own code (``gateway/ui/rollup.ensure`` and ``ensure_days``, what the first traffic view would
do), so the store holds what the gateway would have written for those requests.

Memory: one chunk of rows (~50,000 × ~1.5 kB) plus the 20,000 eval texts and 51 sampled ids; measured as the
filler's peak RSS by ``bench_log_scale.py``.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench_dashboard import (
    COLUMNS,
    _fill_eval_postgres,
    _ts,
    prompt_text,
    synthetic_row,
)

ATTEMPT_COLUMNS = ["request_id", "seq", "model", "status", "status_code", "latency_ms", "created_at"]
FEEDBACK_COLUMNS = ["request_id", "tenant", "rating", "labels", "created_at", "request_created_at"]
_CHOSEN, _ANSWERED, _STATUS, _UPSTREAM_MS = (
    COLUMNS.index(c) for c in ("chosen_model", "answered_model", "status", "upstream_ms")
)


@dataclass
class Chunk:
    requests: list[tuple[Any, ...]]
    attempts: list[tuple[Any, ...]]
    feedback: list[tuple[Any, ...]]


@dataclass
class FillReport:
    rows: int = 0
    attempts: int = 0
    feedback: int = 0
    oldest: dt.datetime | None = None
    newest: dt.datetime | None = None
    insert_s: float = 0.0
    rollup_s: float = 0.0
    hours_rolled_up: int = 0
    days_rolled_up: int = 0
    sample_ids: dict[int, str] = field(default_factory=dict)  # row index → id (for lookups by id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "attempts": self.attempts,
            "feedback": self.feedback,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "newest": self.newest.isoformat() if self.newest else None,
            "insert_s": round(self.insert_s, 1),
            "insert_rows_per_s": round(self.rows / self.insert_s) if self.insert_s else None,
            "rollup_s": round(self.rollup_s, 1),
            "hours_rolled_up": self.hours_rolled_up,
            "days_rolled_up": self.days_rolled_up,
            "sample_ids": {str(k): v for k, v in self.sample_ids.items()},
        }


def eval_texts(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [prompt_text(rng, i) for i in range(20000)]


def _times(rng: random.Random, n: int, t0: float, t1: float) -> list[float]:
    """``n`` sorted epoch seconds in ``[t0, t1)``, uniform thinned by a daily cycle (quieter at night)."""
    out: list[float] = []
    while len(out) < n:
        t = t0 + rng.random() * (t1 - t0)
        hour = (t / 3600.0) % 24
        if rng.random() < 0.55 + 0.45 * abs(12 - hour) / 12:
            out.append(t)
    out.sort()
    return out


def synthetic_chunks(
    n: int,
    now: dt.datetime,
    *,
    days: float = 30.0,
    chunk: int = 50_000,
    seed: int = 0,
    texts: list[str] | None = None,
    samples: dict[int, str] | None = None,
) -> Iterator[Chunk]:
    """The log of ``n`` requests over the ``days`` before ``now``, oldest first, ``chunk`` at a time.
    ``samples`` collects the ids of the requests at every ``n // 50``-th position and of the newest."""
    rng = random.Random(seed + 1)
    texts = texts or eval_texts(seed)
    end = now.replace(tzinfo=dt.UTC).timestamp()
    span = days * 86400.0
    start = end - span
    step = max(1, n // 50)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        t_lo, t_hi = start + span * lo / n, start + span * (lo + m) / n
        reqs: list[tuple[Any, ...]] = []
        atts: list[tuple[Any, ...]] = []
        fbs: list[tuple[Any, ...]] = []
        for j, t in enumerate(_times(rng, m, t_lo, t_hi)):
            i = lo + j
            created = dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None)
            rid = f"{rng.getrandbits(96):024x}"
            if samples is not None and (i % step == 0 or i == n - 1):
                samples[i] = rid
            row = synthetic_row(rng, i, texts, created, rid)
            reqs.append(row)
            tenant, chosen, answered, status = row[1], row[_CHOSEN], row[_ANSWERED], row[_STATUS]
            upstream_ms = row[_UPSTREAM_MS]
            atts.append((rid, 0, chosen, "ok" if status < 400 else "error", status, upstream_ms, created))
            if i % 20 == 0 and answered:
                fbs.append((rid, tenant, float(i % 5) / 4, "{}", created + dt.timedelta(minutes=5), created))
        yield Chunk(reqs, atts, fbs)


def _sqlite_path(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).database)


def _fill_sqlite(
    url: str, chunks: Iterator[Chunk], report: FillReport, texts: list[str], now: dt.datetime
) -> None:
    from bench_dashboard import _fill_eval_sqlite

    conn = sqlite3.connect(_sqlite_path(url))
    conn.execute("PRAGMA synchronous=OFF")  # a bulk load: durability per chunk is not the point here
    conn.execute("PRAGMA cache_size=-262144")  # 256 MB of page cache for the random-id primary key
    ins_r = f"INSERT INTO gw_requests ({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"
    ins_a = f"INSERT INTO gw_attempts ({','.join(ATTEMPT_COLUMNS)}) VALUES ({','.join('?' * len(ATTEMPT_COLUMNS))})"
    ins_f = (
        "INSERT INTO gw_feedback (request_id, tenant, rating, labels, comment, created_at, request_created_at) "
        "VALUES (?,?,?,?,NULL,?,?)"
    )
    for c in chunks:
        with conn:  # one transaction per chunk
            conn.executemany(ins_r, ((*r[:3], _ts(r[3]), *r[4:]) for r in c.requests))
            conn.executemany(ins_a, ((*a[:6], _ts(a[6])) for a in c.attempts))
            conn.executemany(ins_f, ((*f[:4], _ts(f[4]), _ts(f[5])) for f in c.feedback))
        _count(report, c)
    _fill_eval_sqlite(conn, texts, now)
    conn.close()


def _pg_conninfo(url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    info: dict[str, Any] = {"host": u.host, "port": u.port, "user": u.username, "dbname": u.database}
    if "options" in u.query:
        info["options"] = u.query["options"]
    return info


def _fill_postgres(
    url: str, chunks: Iterator[Chunk], report: FillReport, texts: list[str], now: dt.datetime
) -> None:
    import psycopg

    with psycopg.connect(**_pg_conninfo(url)) as conn:
        with conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            for c in chunks:
                with cur.copy(f"COPY gw_requests ({','.join(COLUMNS)}) FROM STDIN") as cp:
                    for r in c.requests:
                        cp.write_row(r)
                with cur.copy(f"COPY gw_attempts ({','.join(ATTEMPT_COLUMNS)}) FROM STDIN") as cp:
                    for a in c.attempts:
                        cp.write_row(a)
                with cur.copy(f"COPY gw_feedback ({','.join(FEEDBACK_COLUMNS)}) FROM STDIN") as cp:
                    for f in c.feedback:
                        cp.write_row(f)
                conn.commit()  # one transaction per chunk
                _count(report, c)
            _fill_eval_postgres(cur, texts, now)
        conn.commit()


def _count(report: FillReport, c: Chunk) -> None:
    report.rows += len(c.requests)
    report.attempts += len(c.attempts)
    report.feedback += len(c.feedback)
    if c.requests:
        report.oldest = report.oldest or c.requests[0][3]
        report.newest = c.requests[-1][3]


def fill(
    url: str, n: int, now: dt.datetime, *, days: float = 30.0, chunk: int = 50_000, seed: int = 0
) -> FillReport:
    """Fill the (migrated, empty) log at ``url`` with ``n`` synthetic requests, then its roll-ups."""
    from sqlalchemy import create_engine

    from routerforge.gateway.partitions import ensure_partitions, periods, table_state
    from routerforge.gateway.ui import rollup

    report = FillReport()
    texts = eval_texts(seed)
    chunks = synthetic_chunks(
        n, now, days=days, chunk=chunk, seed=seed, texts=texts, samples=report.sample_ids
    )
    engine = create_engine(url)
    try:
        t0 = time.perf_counter()
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                mode = table_state(conn)[0]
            if mode is not None:  # what the log writer would have created as the rows came in
                ensure_partitions(engine, mode, periods(mode, now - dt.timedelta(days=days), now))
            _fill_postgres(url, chunks, report, texts, now)
        else:
            _fill_sqlite(url, chunks, report, texts, now)
        report.insert_s = time.perf_counter() - t0
        # the dashboard's roll-ups, by the dashboard's own code (what its first traffic view would do)
        t0 = time.perf_counter()
        if report.oldest is not None:
            a, b = rollup.ceil_hour(report.oldest), rollup.settled_until(now)
            report.hours_rolled_up = rollup.ensure(engine, a, b)
            whole = rollup.whole_days(a, b)
            if whole is not None:
                report.days_rolled_up = rollup.ensure_days(engine, *whole)
        report.rollup_s = time.perf_counter() - t0
    finally:
        engine.dispose()
    return report
