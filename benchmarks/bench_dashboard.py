"""How fast the dashboard's pages get their data on a request log of 1,000,000 rows — one command:

    .venv/bin/python benchmarks/bench_dashboard.py [--rows 1000000] [--reps 15] [--stores sqlite,postgresql]

For each store (a SQLite file in a temporary folder; a PostgreSQL database ``rf_bench_dashboard`` on
127.0.0.1:5432, created and dropped here) the schema is made by the Alembic migrations (so the dashboard's
indexes of revision ``0110_ui_indexes`` are there), then ``--rows`` synthetic requests spread over the
last 30 days (a daily cycle, 4 synthetic models, 6 real models, 20 tenants, 3 % errors, 2 % fallbacks, one
upstream attempt each, feedback on 5 %) are bulk-inserted (``executemany`` in one transaction on SQLite,
``COPY`` on PostgreSQL), with an eval store of 20,000 prompts × 3 models whose texts some requests reuse.

Then each page's data (the functions of ``routerforge.gateway.ui.queries`` the page calls, and the page's
HTML rendering) is timed ``--reps`` times after one warm-up: the traffic page for the 1h / 24h / 7d / 30d
windows, the request search (no filter, tenant, model, errors, text, next page), the drill-down (one
request with its attempts, feedback and eval answers). Target: p95 ≤ 300 ms per page.

Writes ``benchmarks/results/dashboard.json`` and ``benchmarks/results/dashboard.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DB = "rf_bench_dashboard"
TARGET_MS = 300.0

SYNTHETIC = ["smart", "cheap-first", "coder", "support"]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-haiku", "llama-3-70b", "mixtral-8x7b"]
TENANTS = [f"tenant-{i:02d}" for i in range(20)]
WORDS = [
    "explain",
    "the",
    "difference",
    "between",
    "a",
    "list",
    "and",
    "a",
    "tuple",
    "in",
    "python",
    "write",
    "a",
    "haiku",
    "about",
    "autumn",
    "leaves",
    "summarise",
    "this",
    "contract",
    "clause",
    "for",
    "a",
    "customer",
    "translate",
    "the",
    "following",
    "sentence",
    "into",
    "french",
    "what",
    "is",
    "the",
    "capital",
    "of",
    "australia",
    "solve",
    "the",
    "integral",
    "of",
    "x",
    "squared",
    "debug",
    "this",
    "stack",
    "trace",
    "from",
    "the",
    "payment",
    "service",
    "draft",
    "a",
    "polite",
    "reply",
    "to",
    "a",
    "refund",
    "request",
    "compare",
    "postgres",
    "and",
    "sqlite",
    "for",
    "a",
    "small",
    "app",
]


def prompt_text(rng: random.Random, i: int) -> str:
    return f"#{i % 50000} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30)))


def synthetic_row(
    rng: random.Random, i: int, texts: list[str], created: dt.datetime, rid: str | None = None
) -> tuple[Any, ...]:
    """One synthetic request row in ``COLUMNS`` order (shared by this benchmark and ``logfill.py``); its id is
    ``rid``, or drawn here after the request's fields."""
    syn = SYNTHETIC[rng.randrange(len(SYNTHETIC))] if rng.random() < 0.85 else None
    chosen = MODELS[min(int(rng.expovariate(0.6)), len(MODELS) - 1)]
    status = 200 if rng.random() > 0.03 else rng.choice([429, 500, 502, 499, 400])
    answered = None if status >= 400 else chosen
    if status == 200 and rng.random() < 0.02:
        answered = MODELS[(MODELS.index(chosen) + 1) % len(MODELS)]  # a fallback
    text = texts[rng.randrange(len(texts))] if rng.random() < 0.2 else prompt_text(rng, i)
    routing_ms = rng.lognormvariate(0.3, 0.5) if syn else None
    upstream_ms = rng.lognormvariate(6.5, 0.6) if answered else None
    tin, tout = rng.randint(20, 800), rng.randint(10, 600)
    cost = (tin * 2.5 + tout * 10) / 1e6 if answered else None
    predicted = {m: round(rng.random(), 4) for m in MODELS[:3]} if syn else None
    decision = (
        {
            "model": chosen,
            "synthetic_model": syn,
            "policy": "threshold",
            "knob": 0.5,
            "predicted": predicted,
            "reason": "p_strong 0.61 ≥ threshold 0.5",
            "details": {"knob_source": "calibration", "candidates": MODELS[:3]},
        }
        if syn
        else None
    )
    rid = rid or f"{i:08x}{rng.getrandbits(64):016x}"
    tenant = TENANTS[min(int(rng.expovariate(0.3)), len(TENANTS) - 1)]
    answer = (
        f"answer from {answered}: " + " ".join(rng.choice(WORDS) for _ in range(20)) if answered else None
    )
    return (
        rid, tenant, None, created, "chat", syn or chosen, syn, chosen, answered, status,
        None if status < 400 else f"upstream error {status}", False, text,
        json.dumps([{"role": "user", "content": text}]), answer,
        json.dumps(predicted) if predicted else None,
        decision["reason"] if decision else "pass-through", 0.5 if syn else None,
        "threshold" if syn else None, json.dumps(decision) if decision else None,
        tin, tout, False, cost, routing_ms, upstream_ms, (routing_ms or 0) + (upstream_ms or 0) + 1.0,
    )  # fmt: skip


def make_rows(n: int, now: dt.datetime, seed: int = 0) -> tuple[list[tuple[Any, ...]], list[str]]:
    """``n`` request rows (tuples in ``COLUMNS`` order), oldest first, and the eval prompt texts."""
    rng = random.Random(seed)
    eval_texts = [prompt_text(rng, i) for i in range(20000)]
    span = 30 * 86400.0
    rows = []
    # times: uniform over 30 days, thinned by a daily cycle (accept-reject), sorted
    times: list[float] = []
    while len(times) < n:
        t = rng.random() * span
        hour = ((now.timestamp() - span + t) / 3600.0) % 24
        if rng.random() < 0.55 + 0.45 * abs(12 - hour) / 12:
            times.append(t)
    times.sort()
    start = now - dt.timedelta(seconds=span)
    for i, t in enumerate(times):
        rows.append(synthetic_row(rng, i, eval_texts, start + dt.timedelta(seconds=t)))
    return rows, eval_texts


COLUMNS = [
    "id",
    "tenant",
    "key_id",
    "created_at",
    "endpoint",
    "requested_model",
    "synthetic_model",
    "chosen_model",
    "answered_model",
    "status",
    "error",
    "stream",
    "prompt",
    "messages",
    "response_text",
    "predicted",
    "reason",
    "knob",
    "policy",
    "decision",
    "tokens_in",
    "tokens_out",
    "usage_estimated",
    "cost_usd",
    "routing_ms",
    "upstream_ms",
    "total_ms",
]


def _ts(t: dt.datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (so string comparisons order correctly)."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def fill_sqlite(url: str, rows: list[tuple[Any, ...]], eval_texts: list[str], now: dt.datetime) -> float:
    import sqlite3

    from sqlalchemy.engine import make_url

    t0 = time.perf_counter()
    path = make_url(url).database
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA synchronous=OFF")
    marks = ",".join("?" * len(COLUMNS))
    with conn:
        conn.executemany(
            f"INSERT INTO gw_requests ({','.join(COLUMNS)}) VALUES ({marks})",
            ((*r[:3], _ts(r[3]), *r[4:]) for r in rows),
        )
        conn.executemany(
            "INSERT INTO gw_attempts (request_id, seq, model, status, status_code, latency_ms) VALUES (?,?,?,?,?,?)",
            ((r[0], 0, r[7], "ok" if r[9] < 400 else "error", r[9], r[25]) for r in rows if r[7]),
        )
        conn.executemany(
            "INSERT INTO gw_feedback (request_id, tenant, rating, labels, comment, created_at) VALUES (?,?,?,?,?,?)",
            (
                (r[0], r[1], float(i % 5) / 4, "{}", None, _ts(r[3] + dt.timedelta(minutes=5)))
                for i, r in enumerate(rows)
                if i % 20 == 0 and r[8]
            ),
        )
    _fill_eval_sqlite(conn, eval_texts, now)
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - t0


def _eval_rows(eval_texts: list[str]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    from routerforge.data.records import text_hash

    prompts = [(i + 1, 1, f"p{i}", t, text_hash(t)) for i, t in enumerate(eval_texts)]
    records = [
        (
            pid,
            m,
            float((pid * 7 + j) % 3 == 0),
            0.001 * (j + 1),
            100.0 * (j + 1),
            f"{m} eval answer to #{pid}",
        )
        for pid, *_rest in prompts
        for j, m in enumerate(MODELS[:3])
    ]
    return prompts, records


def _fill_eval_sqlite(conn: Any, eval_texts: list[str], now: dt.datetime) -> None:
    prompts, records = _eval_rows(eval_texts)
    with conn:
        conn.execute("INSERT INTO datasets (id, name, created) VALUES (1, 'bench-eval', ?)", (_ts(now),))
        conn.executemany(
            "INSERT INTO prompts (id, dataset_id, key, text, text_hash) VALUES (?,?,?,?,?)", prompts
        )
        conn.executemany(
            "INSERT INTO eval_records (prompt_id, model, score, cost_usd, latency_ms, response, created) "
            f"VALUES (?,?,?,?,?,?,'{_ts(now)}')",
            records,
        )


def fill_postgres(url: str, rows: list[tuple[Any, ...]], eval_texts: list[str], now: dt.datetime) -> float:
    import psycopg
    from sqlalchemy.engine import make_url

    t0 = time.perf_counter()
    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as conn:
        with conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            with cur.copy(f"COPY gw_requests ({','.join(COLUMNS)}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            with cur.copy(
                "COPY gw_attempts (request_id, seq, model, status, status_code, latency_ms) FROM STDIN"
            ) as cp:
                for r in rows:
                    if r[7]:
                        cp.write_row((r[0], 0, r[7], "ok" if r[9] < 400 else "error", r[9], r[25]))
            with cur.copy(
                "COPY gw_feedback (request_id, tenant, rating, labels, created_at) FROM STDIN"
            ) as cp:
                for i, r in enumerate(rows):
                    if i % 20 == 0 and r[8]:
                        cp.write_row((r[0], r[1], float(i % 5) / 4, "{}", r[3] + dt.timedelta(minutes=5)))
            _fill_eval_postgres(cur, eval_texts, now)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - t0


def _fill_eval_postgres(cur: Any, texts: list[str], now: dt.datetime) -> None:
    """The eval dataset behind the drill-down's answers (``_eval_rows``), by COPY on a psycopg cursor."""
    prompts, records = _eval_rows(texts)
    cur.execute("INSERT INTO datasets (id, name, created) VALUES (1, 'bench-eval', %s)", (now,))
    with cur.copy("COPY prompts (id, dataset_id, key, text, text_hash) FROM STDIN") as cp:
        for p in prompts:
            cp.write_row(p)
    with cur.copy(
        "COPY eval_records (prompt_id, model, score, cost_usd, latency_ms, response, created) FROM STDIN"
    ) as cp:
        for rec in records:
            cp.write_row((*rec, now))
    cur.execute("SELECT setval(pg_get_serial_sequence('prompts', 'id'), 20001)")


def timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
    """Wall-clock p50/p95/max over ``reps`` runs after a warm-up, and this process's CPU time p50/p95
    (SQLite runs in this process; PostgreSQL's server time is in wall time only)."""
    fn()  # warm-up (plans, caches)
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    wall.sort()
    cpu.sort()

    def p95(xs: list[float]) -> float:
        return round(xs[min(len(xs) - 1, max(0, round(0.95 * len(xs)) - 1))], 2)

    return {
        "p50_ms": round(statistics.median(wall), 2),
        "p95_ms": p95(wall),
        "max_ms": round(wall[-1], 2),
        "cpu_p50_ms": round(statistics.median(cpu), 2),
        "cpu_p95_ms": p95(cpu),
    }


def measure(url: str, rows: list[tuple[Any, ...]], now: dt.datetime, reps: int) -> dict[str, Any]:
    from routerforge.config import Settings
    from routerforge.gateway.config import GatewayConfig
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.ui import pages_requests, pages_traffic
    from routerforge.gateway.ui.context import UIContext
    from routerforge.gateway.ui.queries import DashboardQueries, RequestFilters, parse_window

    db = GatewayDB(url, migrate=False)
    q = DashboardQueries(db.engine)
    gw = GatewayConfig.model_validate(
        {"tenants": [{"name": t, "daily_usd": 5.0, "monthly_usd": 100.0} for t in TENANTS[:5]]}
    )
    ctx = UIContext(Settings(), gw, db, keys=None)  # type: ignore[arg-type]
    out: dict[str, Any] = {}

    def traffic(name: str) -> Callable[[], Any]:
        def run() -> Any:
            w = parse_window(name, now=now)
            return pages_traffic.render(ctx, w, q.traffic(w, pages_traffic.budget_tenants(ctx)))

        return run

    t0 = time.perf_counter()
    first = q.traffic(parse_window("30d", now=now), pages_traffic.budget_tenants(ctx), now=now)
    out["first view: roll up the settled hours"] = {
        "seconds": round(time.perf_counter() - t0, 2),
        "hours_rolled_up": first["rolled_up_now"],
    }
    for name in ("1h", "24h", "7d", "30d"):
        w = parse_window(name, now=now)
        with db.engine.connect() as conn:
            from sqlalchemy import func, select

            from routerforge.gateway.db import GwRequest

            n = conn.execute(
                select(func.count()).where(GwRequest.created_at >= w.since, GwRequest.created_at < w.until)
            ).scalar_one()
        out[f"traffic {name}"] = {"rows_in_window": int(n), **timed(traffic(name), reps)}

    w24 = parse_window("24h", now=now)
    w7 = parse_window("7d", now=now)
    newest = rows[-1][3]
    searches: dict[str, Callable[[], RequestFilters]] = {
        "search 24h, no filter": lambda: RequestFilters(window=w24),
        "search 7d, tenant": lambda: RequestFilters(window=w7, tenant="tenant-03"),
        "search 7d, model": lambda: RequestFilters(window=w7, model="claude-3-haiku"),
        "search 7d, errors": lambda: RequestFilters(window=w7, status="error"),
        "search 7d, text (common)": lambda: RequestFilters(window=w7, text="haiku about"),
        "search 7d, text (rare)": lambda: RequestFilters(window=w7, text="#49999 "),
        "search 7d, next page": lambda: RequestFilters(window=w7, before=newest - dt.timedelta(days=3)),
    }
    for label, make in searches.items():
        out[label] = timed(lambda make=make: (q.tenants_and_models(), q.search(make())), reps)
    ids = [rows[i][0] for i in range(0, len(rows), max(1, len(rows) // 50))]
    picks = iter(ids * (reps + 2))
    out["drill-down (request + eval answers)"] = timed(
        lambda: pages_requests.render_request(ctx, q, next(picks), False), reps
    )
    out["eval search"] = timed(lambda: q.search_eval("capital of australia"), reps)
    db.close()
    return out


def pg_create(name: str = PG_DB) -> str | None:
    """A fresh database ``name`` on the local PostgreSQL (``None`` when no server answers)."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))  # left by an interrupted run
            conn.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
    except Exception as exc:  # no server: reported as not run
        print(f"PostgreSQL not available: {exc}", file=sys.stderr)
        return None
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def pg_drop(name: str = PG_DB) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--render", action="store_true", help="Only rewrite the markdown from the JSON in --out.")
    args = ap.parse_args(argv)
    if args.render:
        doc = json.loads((args.out / "dashboard.json").read_text())
        (args.out / "dashboard.md").write_text(render_markdown(doc))
        return 0
    from routerforge.gateway.db import GatewayDB, utcnow

    now = utcnow()
    t0 = time.perf_counter()
    rows, eval_texts = make_rows(args.rows, now)
    gen_s = time.perf_counter() - t0
    results: dict[str, Any] = {
        "rows": args.rows,
        "reps": args.reps,
        "target_p95_ms": TARGET_MS,
        "generate_s": round(gen_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "stores": {},
    }
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="rf-bench-dash-") as tmp:
            if store == "sqlite":
                url = f"sqlite:///{tmp}/bench.db"
            elif store == "postgresql":
                maybe = pg_create()
                if maybe is None:
                    results["stores"][store] = {"ran": False, "why": "no PostgreSQL server on 127.0.0.1:5432"}
                    continue
                url = maybe
            else:
                raise SystemExit(f"unknown store {store!r}")
            try:
                GatewayDB(url).close()  # the Alembic migrations, the dashboard's indexes included
                fill = fill_sqlite if store == "sqlite" else fill_postgres
                fill_s = fill(url, rows, eval_texts, now)
                print(f"{store}: {args.rows:,} rows inserted in {fill_s:.1f} s", flush=True)
                pages = measure(url, rows, now, args.reps)
                size_mb = None
                if store == "sqlite":
                    size_mb = round(sum(p.stat().st_size for p in Path(tmp).glob("bench.db*")) / 1e6, 1)
                results["stores"][store] = {
                    "ran": True,
                    "insert_s": round(fill_s, 1),
                    "db_mb": size_mb,
                    "pages": pages,
                }
                print(json.dumps(pages, indent=1), flush=True)
            finally:
                if store == "postgresql":
                    pg_drop()
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dashboard.json").write_text(json.dumps(results, indent=2) + "\n")
    md = render_markdown(results)
    (args.out / "dashboard.md").write_text(md)
    print(md)
    return 0


def render_markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Dashboard page data on a 1,000,000-row request log",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_dashboard.py` ({r['rows']:,} rows over 30 days, "
        f"{r['reps']} timed runs per page after a warm-up). Machine: {r['machine']['cpus']} CPUs (shared; load "
        f"average at start {r['machine']['load_avg_at_start']}), Python {r['machine']['python']}. "
        f"Finished {r.get('finished_at')}. Target: p95 ≤ {r['target_p95_ms']:.0f} ms per page.",
        "",
        "Each row times what the page does for its data (the `gateway/ui/queries.py` calls) plus its HTML "
        "rendering, in-process (no HTTP). Wall-clock times on this shared machine include waiting for a CPU "
        "(see the load average); the CPU column is this process's CPU time (for SQLite, all of the work; for "
        "PostgreSQL, without the server's share).",
        "",
    ]
    stores = [s for s, v in r["stores"].items() if v.get("ran")]
    for s, v in r["stores"].items():
        if not v.get("ran"):
            lines.append(f"- {s}: not run ({v.get('why')})")
    if not stores:
        return "\n".join(lines) + "\n"
    head = (
        "| page | "
        + " | ".join(f"{s} p50 ms | {s} p95 ms | {s} CPU p95 ms" for s in stores)
        + " | rows in window |"
    )
    lines += [head, "| --- | " + " | ".join("--- | --- | ---" for _ in stores) + " | --- |"]
    names = [n for n in r["stores"][stores[0]]["pages"] if not n.startswith("first view")]
    for name in names:
        cells = []
        for s in stores:
            p = r["stores"][s]["pages"].get(name, {})
            mark = " ⚠" if p.get("p95_ms", 0) > r["target_p95_ms"] else ""
            cells.append(
                f"{p.get('p50_ms', '–')} | {p.get('p95_ms', '–')}{mark} | {p.get('cpu_p95_ms', '–')}"
            )
        rows_in = r["stores"][stores[0]]["pages"][name].get("rows_in_window", "")
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {rows_in:,} |"
            if rows_in != ""
            else f"| {name} | " + " | ".join(cells) + " | |"
        )
    lines.append("")
    for s in stores:
        v = r["stores"][s]
        first = v["pages"].get("first view: roll up the settled hours", {})
        lines.append(
            f"- {s}: bulk insert {v['insert_s']} s"
            + (f", database {v['db_mb']} MB" if v.get("db_mb") else "")
            + f"; the first traffic view rolled up {first.get('hours_rolled_up')} settled hours in "
            f"{first.get('seconds')} s (once; later views read the roll-ups)"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
