"""The request log at 1M and 10M rows: SQLite, PostgreSQL, PostgreSQL partitioned by day — one command:

    .venv/bin/python benchmarks/bench_log_scale.py [--rows 1000000,10000000]
        [--stores sqlite,postgresql,postgresql-partitioned] [--reps 10]

For each store and size, in a fresh database (a SQLite file under ``--work``; a PostgreSQL database
``rf_bench_logscale`` on 127.0.0.1:5432, created and dropped here) migrated by Alembic (the partitioned
store then gets ``logging.partition: daily`` applied by the gateway's own ``setup_partitioning``):

1. **fill**: ``benchmarks/logfill.py`` in a child process streams ``--rows`` synthetic requests over 30 days
   (COPY on PostgreSQL, executemany on SQLite; chunks of 50,000) with their attempts and feedback, then the
   dashboard's roll-ups (the app's ``rollup.ensure`` / ``ensure_days``); its wall and CPU time and peak RSS
   come from ``os.wait4``. PostgreSQL then gets ``VACUUM ANALYZE`` (what autovacuum does after a load;
   timed separately). Disk size: the SQLite file; ``pg_database_size``.
2. **log queries** (``RequestLog``, as the gateway's ``/v1/requests`` API): newest 100, one tenant's newest
   100, one tenant's last hour, one request by id; p50/p95 over ``--reps`` runs after a warm-up.
3. **dashboard pages**: ``bench_dashboard.measure`` (every page's data and HTML, p50/p95).
4. **retention**: ``prune_request_log`` of the older half (cutoff 15 days back; on the partitioned store,
   whole daily partitions are dropped and the cutoff's own day is deleted in batches) while a writer
   inserts one row every 20 ms through ``RequestLog.write``: its latency p50/p99/max.

Results are merged into ``benchmarks/results/log_scale.json`` after every run (so a run stopped half-way
keeps what finished) and rendered to ``benchmarks/results/log_scale.md``. The load average is recorded at
the start and end of every run (2 shared cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
PG_DB = "rf_bench_logscale"
PARTITION = "daily"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs), 2),
        "p95_ms": round(xs[min(len(xs) - 1, max(0, round(0.95 * len(xs)) - 1))], 2),
        "max_ms": round(xs[-1], 2),
    }


class SampleRows:
    """What ``bench_dashboard.measure`` reads of its rows — ``len``, ``rows[i][0]`` (ids at every
    ``n // 50``-th position) and ``rows[-1][3]`` (the newest time) — without holding the rows."""

    def __init__(self, n: int, ids: dict[int, str], newest: dt.datetime) -> None:
        self.n, self.ids, self.newest = n, ids, newest

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        i = i % self.n
        return (self.ids[i], None, None, self.newest if i == self.n - 1 else None)


# -------------------------------------------------------------------------------------------- the filler
def child_fill(url: str, rows: int, now: str, chunk: int, out: Path) -> None:
    from logfill import fill

    report = fill(url, rows, dt.datetime.fromisoformat(now), chunk=chunk)
    out.write_text(json.dumps(report.to_dict()))


def run_fill(url: str, rows: int, now: dt.datetime, chunk: int, work: Path) -> dict[str, Any]:
    out = work / "fill.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, __file__, "--fill-child", url, str(rows), now.isoformat(), str(chunk), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv)
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"the filler failed (status {status})")
    doc = json.loads(out.read_text())
    doc["filler_wall_s"] = round(wall, 1)
    doc["filler_cpu_s"] = round(ru.ru_utime + ru.ru_stime, 1)
    doc["filler_peak_rss_mb"] = round(ru.ru_maxrss / 1024, 1)
    return doc


# ----------------------------------------------------------------------------------------------- stores
def disk_mb(url: str, sqlite_path: Path | None) -> float:
    if sqlite_path is not None:
        return round(
            sum(p.stat().st_size for p in sqlite_path.parent.glob(sqlite_path.name + "*")) / 2**20, 1
        )
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    return round(size / 2**20, 1)


# ------------------------------------------------------------------------------------------ measurements
def log_queries(db: Any, ids: list[str], now: dt.datetime, reps: int) -> dict[str, Any]:
    from routerforge.gateway.requestlog import RequestLog

    log = RequestLog(db)
    picks = iter(ids * (reps + 2))
    cases = {
        "newest 100": lambda: log.query(limit=100),
        "tenant newest 100": lambda: log.query(tenant="tenant-03", limit=100),
        "tenant last hour": lambda: log.query(
            tenant="tenant-03", since=now - dt.timedelta(hours=1), limit=100
        ),
        "get by id": lambda: log.get(next(picks)),
    }
    out: dict[str, Any] = {}
    for name, fn in cases.items():
        fn()
        lat = []
        for _ in range(reps):
            t0 = time.perf_counter()
            got = fn()
            lat.append((time.perf_counter() - t0) * 1000)
        assert got, name  # every query finds rows
        out[name] = pct(lat)
    return out


def prune_half(db: Any, now: dt.datetime, budget_s: float | None = None) -> dict[str, Any]:
    import numpy as np

    from routerforge.gateway.logentry import AttemptEntry, LogEntry
    from routerforge.gateway.requestlog import RequestLog
    from routerforge.gateway.retention import prune_request_log

    log = RequestLog(db)
    stop = threading.Event()
    lat: list[float] = []
    failed = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                log.write(
                    [
                        LogEntry(
                            id=f"live-{i:08d}", tenant="live", requested_model="m", status=200,
                            created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                            attempts=[AttemptEntry(model="m", status="ok", status_code=200, latency_ms=1.0)],
                        )
                    ]
                )  # fmt: skip
            except Exception:
                failed[0] += 1
            lat.append((time.perf_counter() - t0) * 1000)
            i += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.0)  # the writer's baseline
    load0 = _load()
    c0 = time.process_time()
    cutoff = now - dt.timedelta(days=15)
    if budget_s is None:
        report = prune_request_log(db, cutoff, batch_size=2000)
    else:  # stop after budget_s seconds (rounds of 25 batches), reported as incomplete
        t_end = time.perf_counter() + budget_s
        report = prune_request_log(db, cutoff, batch_size=2000, max_batches=25)
        while not report.complete and time.perf_counter() < t_end:
            more = prune_request_log(db, cutoff, batch_size=2000, max_batches=25)
            report.requests += more.requests
            report.attempts += more.attempts
            report.feedback += more.feedback
            report.batches += more.batches
            report.seconds += more.seconds
            report.longest_batch_ms = max(report.longest_batch_ms, more.longest_batch_ms)
            report.complete = more.complete
    cpu = time.process_time() - c0
    time.sleep(0.5)
    stop.set()
    thread.join()
    doc = report.to_dict()
    doc["rows_per_s"] = round(report.requests / report.seconds) if report.seconds else None
    doc["client_cpu_s"] = round(cpu, 1)
    doc["load_avg_start"] = load0
    doc["writer"] = {
        "writes": len(lat),
        "failed": failed[0],
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
        "max_ms": round(max(lat), 2) if lat else None,
    }
    return doc


def run_one(store: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    from bench_dashboard import measure, pg_create, pg_drop
    from sqlalchemy import text

    from routerforge.gateway.db import GatewayDB, utcnow
    from routerforge.gateway.partitions import list_partitions, setup_partitioning

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(work).free / 2**30
    need_gb = rows * 1.7e-6 * 1.2  # ~1.5 kB a row (measured at 1M) plus indexes, with margin
    doc: dict[str, Any] = {
        "store": store,
        "rows": rows,
        "load_avg_start": _load(),
        "free_gb_before": round(free_gb, 1),
    }
    if free_gb < need_gb + 5:
        doc.update(ran=False, why=f"{free_gb:.0f} GB free, {need_gb:.0f} GB needed")
        return doc
    sqlite_path: Path | None = None
    if store == "sqlite":
        sqlite_path = work / "log_scale.db"
        for p in work.glob("log_scale.db*"):
            p.unlink()
        url = f"sqlite:///{sqlite_path}"
    else:
        maybe = pg_create(PG_DB)
        if maybe is None:
            doc.update(ran=False, why="no PostgreSQL on 127.0.0.1:5432")
            return doc
        url = maybe
    try:
        now = utcnow()
        GatewayDB(url).close()  # the Alembic migrations
        if store == "postgresql-partitioned":
            db = GatewayDB(url, migrate=False)
            doc["partitioning"] = setup_partitioning(db.engine, PARTITION, now=now)
            db.close()
        _log(f"{store} {rows:,}: filling")
        doc["fill"] = fill = run_fill(url, rows, now, args.chunk, work)
        _log(f"{store} {rows:,}: {fill['insert_rows_per_s']:,} rows/s, roll-ups {fill['rollup_s']} s")
        db = GatewayDB(url, migrate=False)
        if store != "sqlite":
            t0 = time.perf_counter()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            doc["vacuum_analyze_s"] = round(time.perf_counter() - t0, 1)
        if store == "postgresql-partitioned":
            with db.engine.connect() as conn:
                doc["partitions"] = len(list_partitions(conn))
        doc["disk_mb"] = disk_mb(url, sqlite_path)
        ids = [fill["sample_ids"][k] for k in sorted(fill["sample_ids"], key=int)]
        _log(f"{store} {rows:,}: log queries")
        doc["log_queries"] = log_queries(db, ids[1:-1], now, args.reps)
        db.close()
        _log(f"{store} {rows:,}: dashboard pages")
        sample = SampleRows(
            rows,
            {int(k): v for k, v in fill["sample_ids"].items()},
            dt.datetime.fromisoformat(fill["newest"]),
        )
        doc["dashboard"] = measure(url, sample, now, args.reps)  # type: ignore[arg-type]
        merge({**doc, "ran": True, "load_avg_end": _load()}, args.out)  # kept if the prune is cut short
        _log(f"{store} {rows:,}: pruning the older half")
        db = GatewayDB(url, migrate=False)
        doc["prune"] = prune_half(db, now, args.prune_budget_s)
        doc["log_queries_after_prune"] = {
            k: v for k, v in log_queries(db, ids[len(ids) // 2 + 1 : -1], now, args.reps).items()
        }
        if store == "postgresql-partitioned":
            with db.engine.connect() as conn:
                doc["partitions_after_prune"] = len(list_partitions(conn))
        db.close()
        doc["disk_mb_after_prune"] = disk_mb(url, sqlite_path)
        doc["ran"] = True
    finally:
        if store == "sqlite":
            for p in work.glob("log_scale.db*"):
                p.unlink()
        else:
            pg_drop(PG_DB)
    doc["load_avg_end"] = _load()
    _log(f"{store} {rows:,}: done")
    return doc


# ------------------------------------------------------------------------------------------------ output
def merge(doc: dict[str, Any], out: Path = RESULTS) -> dict[str, Any]:
    path = out / "log_scale.json"
    state = json.loads(path.read_text()) if path.exists() else {"runs": []}
    state["runs"] = [r for r in state["runs"] if (r["store"], r["rows"]) != (doc["store"], doc["rows"])] + [
        doc
    ]
    state["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    state["updated"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n")
    (out / "log_scale.md").write_text(markdown(state))
    return state


STORES = ("sqlite", "postgresql", "postgresql-partitioned")


def markdown(state: dict[str, Any]) -> str:
    runs = sorted(
        (r for r in state["runs"] if r.get("ran")), key=lambda r: (r["rows"], STORES.index(r["store"]))
    )
    lines = [
        "# The request log at 1M and 10M rows",
        "",
        "Command: `.venv/bin/python benchmarks/bench_log_scale.py` (see its docstring). Synthetic requests "
        "over 30 days (20 tenants, 10 models, ~1.5 kB a row with messages, response and decision), one "
        "attempt each, 5 % rated; filled by `benchmarks/logfill.py` (COPY / executemany, chunks of 50,000) "
        f"plus the dashboard's roll-ups. PostgreSQL partitioned: `logging.partition: {PARTITION}`. "
        f"Machine: {state['machine']['cpus']} shared CPUs, Python {state['machine']['python']}; updated "
        f"{state['updated']}. Times are wall clock on a shared machine: see the load averages.",
        "",
    ]
    for r in state["runs"]:
        if not r.get("ran"):
            lines.append(f"- {r['store']} {r['rows']:,}: not run ({r.get('why')})")
        elif r.get("note"):
            lines.append(f"- {r['store']} {r['rows']:,}: {r['note']}")
    if not runs:
        return "\n".join(lines) + "\n"
    col = [f"{r['store']} {r['rows'] // 1_000_000}M" for r in runs]
    lines += [
        "",
        "## Fill, size, retention",
        "",
        "| | " + " | ".join(col) + " |",
        "| --- |" + " --- |" * len(runs),
    ]

    def row(label: str, get: Any) -> None:
        cells = []
        for r in runs:
            try:
                v = get(r)
            except (KeyError, TypeError):
                v = None
            cells.append("–" if v is None else (f"{v:,}" if isinstance(v, int) else str(v)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("rows filled", lambda r: r["fill"]["rows"])
    row("fill rows/s (insert only)", lambda r: r["fill"]["insert_rows_per_s"])
    row("fill wall s (insert + roll-ups)", lambda r: r["fill"]["filler_wall_s"])
    row("filler CPU s", lambda r: r["fill"]["filler_cpu_s"])
    row("filler peak RSS MB", lambda r: r["fill"]["filler_peak_rss_mb"])
    row(
        "roll-ups s (hours / days)",
        lambda r: f"{r['fill']['rollup_s']} ({r['fill']['hours_rolled_up']} / {r['fill']['days_rolled_up']})",
    )
    row("VACUUM ANALYZE s", lambda r: r.get("vacuum_analyze_s"))
    row("disk MB", lambda r: r["disk_mb"])
    row("partitions", lambda r: r.get("partitions"))
    row("prune older half: requests deleted", lambda r: r["prune"]["requests"])
    row("prune complete", lambda r: "yes" if r["prune"]["complete"] else "no (time budget)")
    row("prune s", lambda r: r["prune"]["seconds"])
    row("prune rows/s", lambda r: r["prune"]["rows_per_s"])
    row("partitions dropped", lambda r: r["prune"].get("partitions_dropped"))
    row("longest prune transaction ms", lambda r: r["prune"]["longest_batch_ms"])
    row(
        "writer during prune p50 / p99 / max ms",
        lambda r: (
            f"{r['prune']['writer']['p50_ms']} / {r['prune']['writer']['p99_ms']} / {r['prune']['writer']['max_ms']}"
        ),
    )
    row(
        "writer writes (failed)",
        lambda r: f"{r['prune']['writer']['writes']} ({r['prune']['writer']['failed']})",
    )
    row("disk MB after prune", lambda r: r.get("disk_mb_after_prune"))
    row("load average start → end", lambda r: f"{r['load_avg_start'][0]} → {r.get('load_avg_end', ['?'])[0]}")
    lines += ["", "## Log queries (`RequestLog`, p50 / p95 ms)", "", "| query | " + " | ".join(col) + " |",
              "| --- |" + " --- |" * len(runs)]  # fmt: skip
    for q in ("newest 100", "tenant newest 100", "tenant last hour", "get by id"):
        row(q, lambda r, q=q: f"{r['log_queries'][q]['p50_ms']} / {r['log_queries'][q]['p95_ms']}")
    for q in ("newest 100", "get by id"):
        row(
            f"{q} (after prune)",
            lambda r, q=q: (
                f"{r['log_queries_after_prune'][q]['p50_ms']} / {r['log_queries_after_prune'][q]['p95_ms']}"
            ),
        )
    lines += ["", "## Dashboard pages (`bench_dashboard.measure`, p50 / p95 ms)", "",
              "| page | " + " | ".join(col) + " |", "| --- |" + " --- |" * len(runs)]  # fmt: skip
    pages = [p for p in runs[0]["dashboard"] if not p.startswith("first view")]
    for p in pages:
        row(p, lambda r, p=p: f"{r['dashboard'][p]['p50_ms']} / {r['dashboard'][p]['p95_ms']}")
    lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--fill-child":
        url, rows, now, chunk, out = argv[1:6]
        child_fill(url, int(rows), now, int(chunk), Path(out))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,10000000")
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "rf-bench-log-scale"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--prune-budget-s",
        type=float,
        default=None,
        help="Stop the prune after this long (reported incomplete).",
    )
    ap.add_argument("--render", action="store_true", help="Only rewrite the markdown from the JSON.")
    args = ap.parse_args(argv)
    if args.render:
        state = json.loads((args.out / "log_scale.json").read_text())
        (args.out / "log_scale.md").write_text(markdown(state))
        return 0
    for rows in (int(x) for x in args.rows.split(",")):
        for store in args.stores.split(","):
            if store not in STORES:
                raise SystemExit(f"unknown store {store!r} (use {', '.join(STORES)})")
            doc = run_one(store, rows, args)
            merge(doc, args.out)
    _log(f"wrote {args.out / 'log_scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
