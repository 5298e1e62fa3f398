"""How time and memory grow with data size: import, embed, index, train, bench; and the request log.

Run: ``.venv/bin/python benchmarks/bench_scale.py`` (defaults: 10k → 100k → 1M prompts, train/bench up to
100k, request log 1M rows; ``--sizes``, ``--train-max``, ``--log-rows`` change them; ``--only data|log``).

Data: a synthetic eval set made here (never the shared data): N prompts of varied text (20 topics, 4
phrasings, random words and numbers), each scored for 3 models (quality depends on topic and length) with
per-model costs: 3N eval records, in one wide-JSONL file.

Every step is the real CLI in its own process (``routerforge data import-stream``, ``index build
--embed-only``, ``index build`` (resumes: embeds nothing, indexes), ``train knn``, ``bench``), with the
static embedder (``embed.provider: static``; MiniLM would take hours at 1M on 2 cores) and 2 embedding
processes; wall time and peak RSS (``ru_maxrss`` of the step's process tree: the largest single process)
come from ``os.wait4``. The index step also reports the Edge shard's size on disk.

Request log: rows written through ``RequestLog.write`` in batches of 200 (the log writer's transactions)
into SQLite (and PostgreSQL when 127.0.0.1:5432 accepts us), spread over 60 days; then the gateway's
queries, and ``prune_request_log`` of the older half while a writer keeps inserting one row at a time
(its worst latency shows whether pruning holds long locks).

Writes ``benchmarks/results/scale.json`` and ``benchmarks/results/scale.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLI = [str(Path(sys.executable).parent / "routerforge")]
MODELS = ("small-fast", "mid-general", "large-expert")
COST_PER_KTOK = (0.0002, 0.002, 0.02)
TOPICS = (
    "algebra", "geometry", "probability", "chemistry", "biology", "physics", "history", "geography",
    "economics", "law", "medicine", "poetry", "grammar", "python", "databases", "networking",
    "cooking", "travel", "music", "philosophy",
)  # fmt: skip
TEMPLATES = (
    "Explain {a} and {b} in {topic} to a student, with an example using {n}.",
    "Write a short {topic} answer: how does {a} relate to {b}? Consider case {n}.",
    "In {topic}, compare {a} with {b} and {c}; give {n} reasons.",
    "Solve this {topic} problem step by step: {a} {b} {c} with value {n}.",
)
WORDS = [
    "analysis",
    "system",
    "value",
    "process",
    "structure",
    "method",
    "theory",
    "model",
    "change",
    "factor",
    "function",
    "balance",
    "pattern",
    "signal",
    "energy",
    "market",
    "network",
    "language",
    "memory",
    "evidence",
    "argument",
    "rule",
    "limit",
    "growth",
    "pressure",
    "cycle",
    "layer",
    "sample",
    "error",
    "variance",
    "rate",
    "flow",
    "order",
    "reaction",
    "cell",
    "force",
    "field",
    "charge",
    "law",
    "trade",
    "risk",
    "proof",
    "claim",
    "source",
    "index",
    "query",
    "cache",
    "packet",
    "route",
    "tone",
    "rhythm",
    "flavor",
    "climate",
    "border",
    "empire",
    "treaty",
]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- data
def write_dataset(path: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """N prompts, wide JSONL, written in blocks (bounded memory)."""
    rng = np.random.default_rng(seed)
    skill = rng.uniform(0.2, 0.95, size=(len(TOPICS), len(MODELS)))
    skill[:, 2] = np.maximum(skill[:, 2], skill[:, 1])  # the expensive model is rarely worse
    block = 50_000
    start = time.perf_counter()
    with path.open("w", encoding="utf-8") as fh:
        for lo in range(0, n, block):
            m = min(block, n - lo)
            topics = rng.integers(0, len(TOPICS), m)
            templates = rng.integers(0, len(TEMPLATES), m)
            words = rng.integers(0, len(WORDS), (m, 3 + 8))
            extra = rng.integers(0, 9, m)
            nums = rng.integers(0, 100_000, m)
            noise = rng.normal(0, 0.15, (m, len(MODELS)))
            lines = []
            for i in range(m):
                t = int(topics[i])
                w = [WORDS[j] for j in words[i]]
                text = TEMPLATES[templates[i]].format(topic=TOPICS[t], a=w[0], b=w[1], c=w[2], n=int(nums[i]))
                if extra[i]:
                    text += " Also mention " + " ".join(w[3 : 3 + int(extra[i])]) + "."
                length = len(text) / 400.0
                quality = np.clip(skill[t] - length * np.array([0.3, 0.15, 0.05]) + noise[i], 0, 1)
                scores = (rng.random(len(MODELS)) < quality).astype(float)
                tokens = len(text) / 4 + 200
                doc = {
                    "id": f"p{lo + i}",
                    "prompt": text,
                    "category": TOPICS[t],
                    "scores": dict(zip(MODELS, scores.tolist(), strict=True)),
                    "cost_usd": {
                        mm: round(c * tokens / 1000, 8) for mm, c in zip(MODELS, COST_PER_KTOK, strict=True)
                    },
                }
                lines.append(json.dumps(doc))
            fh.write("\n".join(lines) + "\n")
    return {
        "prompts": n,
        "records": n * len(MODELS),
        "bytes": path.stat().st_size,
        "seconds": time.perf_counter() - start,
    }


def run_step(name: str, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a CLI step in its own process; wall time, CPU time and peak RSS (largest process of its tree)."""
    _log(f"{name}: {' '.join(argv[1:])}")
    out_path = Path(env["ROUTERFORGE_HOME"]) / f"{name}.out"
    err_path = Path(env["ROUTERFORGE_HOME"]) / f"{name}.err"
    start = time.perf_counter()
    with out_path.open("w") as out_fh, err_path.open("w") as err_fh:
        proc = subprocess.Popen(argv, env=env, stdout=out_fh, stderr=err_fh)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {err_path.read_text()[-2000:]}")
    out = out_path.read_text()
    doc: dict[str, Any] = {
        "step": name,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    try:
        doc["report"] = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        doc["report"] = None
    _log(f"  {name}: {doc['wall_s']} s, CPU {doc['cpu_s']} s, peak RSS {doc['peak_rss_mb']} MB")
    return doc


def _du(path: Path) -> dict[str, float]:
    allocated = apparent = 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return {"allocated_mb": round(allocated / 2**20, 1), "apparent_mb": round(apparent / 2**20, 1)}


def bench_data(
    sizes: list[int], train_max: int, work: Path, workers: int, optimize_max: int
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        home = work / f"home-{n}"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        env = {
            **os.environ,
            "ROUTERFORGE_HOME": str(home),
            "ROUTERFORGE_EMBED__PROVIDER": "static",
            "PYTHONUNBUFFERED": "1",
        }
        data_file = work / f"synth-{n}.jsonl"
        _log(f"== {n:,} prompts: writing {data_file}")
        gen = write_dataset(data_file, n)
        name = f"synth{n}"
        row: dict[str, Any] = {
            "prompts": n,
            "records": gen["records"],
            "file_mb": round(gen["bytes"] / 2**20, 1),
        }
        steps = [
            run_step(
                "import",
                [*CLI, "data", "import-stream", str(data_file), "--name", name, "--format", "wide-jsonl",
                 "--chunk-size", "20000", "--checkpoint", str(home / "import.ckpt"), "--no-progress", "--json"],
                env,
            ),
            run_step(
                "embed",
                [*CLI, "index", "build", "--data", name, "--dir", str(home / "bulk"), "--workers", str(workers),
                 "--embed-only", "--no-progress", "--json"],
                env,
            ),
            run_step(
                "index",
                [*CLI, "index", "build", "--data", name, "--dir", str(home / "bulk"), "--workers", str(workers),
                 "--no-progress", "--json", "--optimize" if n <= optimize_max else "--no-optimize"],
                env,
            ),
        ]  # fmt: skip
        steps[-1]["disk"] = _du(home / "bulk" / "shard")
        steps[-1]["vectors_mb"] = round((home / "bulk" / "vectors.npy").stat().st_size / 2**20, 1)
        if n <= train_max:
            steps.append(
                run_step(
                    "train",
                    [*CLI, "train", "knn", "--data", name, "--out", str(home / "router"), "--param", "k=50"],
                    env,
                )
            )
            steps.append(
                run_step(
                    "bench",
                    [*CLI, "bench", "--data", name, "-r", "knn", "--folds", "2", "--bootstrap", "0",
                     "--latency-sample", "50", "--param", "k=50", "--json", str(home / "bench.json")],
                    env,
                )
            )  # fmt: skip
            with contextlib.suppress(OSError, ValueError):
                steps[-1]["report"] = _bench_summary(json.loads((home / "bench.json").read_text()))
        row["steps"] = steps
        rows.append(row)
        data_file.unlink(missing_ok=True)
        shutil.rmtree(home / "router", ignore_errors=True)
        _write(rows_data=rows)
    return rows


def _bench_summary(doc: dict[str, Any]) -> dict[str, Any]:
    keep = {}
    for key in ("n_prompts", "folds", "models"):
        if key in doc:
            keep[key] = doc[key]
    return keep


# ---------------------------------------------------------------------------------------- request log
def _pg_url() -> tuple[str, Any] | None:
    from sqlalchemy import create_engine, text

    for user in ("postgres", "root"):
        admin = f"postgresql+psycopg://{user}@127.0.0.1:5432/test"
        try:
            engine = create_engine(admin, connect_args={"connect_timeout": 3})
            schema = f"rf_scale_{uuid.uuid4().hex[:10]}"
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except Exception:
            continue

        def drop(engine: Any = engine, schema: str = schema) -> None:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()

        return f"{admin}?options=-csearch_path%3D{schema}", drop
    return None


def bench_log(url: str, store: str, rows: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from routerforge.gateway.db import GatewayDB, GwRequest
    from routerforge.gateway.logentry import AttemptEntry, LogEntry
    from routerforge.gateway.requestlog import RequestLog
    from routerforge.gateway.retention import prune_request_log

    db = GatewayDB(url)
    log = RequestLog(db)
    rng = np.random.default_rng(1)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    tenants = [f"team-{i}" for i in range(20)]
    batch = 200
    start = time.perf_counter()
    # oldest first, as a gateway writes them: 60 days back to now
    span = 60 * 86400
    for lo in range(0, rows, batch):
        m = min(batch, rows - lo)
        entries = []
        for i in range(m):
            k = lo + i
            created = now - dt.timedelta(seconds=span * (1 - k / rows))
            entries.append(
                LogEntry(
                    id=f"req-{k:010d}",
                    tenant=tenants[int(rng.integers(20))],
                    created_at=created,
                    requested_model="router-default",
                    chosen_model=MODELS[k % 3],
                    answered_model=MODELS[k % 3],
                    prompt="What is the capital of France? " * 3,
                    status=200,
                    tokens_in=40,
                    tokens_out=120,
                    cost_usd=0.0004,
                    total_ms=320.0,
                    attempts=[
                        AttemptEntry(model=MODELS[k % 3], status="ok", status_code=200, latency_ms=300.0)
                    ],
                )
            )
        log.write(entries)
        if lo and lo % 200_000 == 0:
            _log(f"  {store}: {lo:,} rows written")
    insert_s = time.perf_counter() - start
    doc: dict[str, Any] = {
        "store": store,
        "rows": rows,
        "insert_s": round(insert_s, 1),
        "insert_rows_per_s": round(rows / insert_s),
    }
    queries: dict[str, float] = {}

    def timed(label: str, fn: Any) -> None:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        queries[label] = round(best * 1000, 2)

    def run_queries() -> dict[str, float]:
        queries.clear()
        timed("newest_100", lambda: log.query(limit=100))
        timed("tenant_newest_100", lambda: log.query(tenant="team-3", limit=100))
        timed(
            "tenant_since_1h",
            lambda: log.query(tenant="team-3", since=now - dt.timedelta(hours=1), limit=100),
        )
        timed("get_one", lambda: log.get(f"req-{rows // 2:010d}"))
        return dict(queries)

    if store == "postgresql":
        # right after a bulk load the planner's statistics still describe an empty table (autovacuum's
        # ANALYZE comes later, and keeps them current under steady traffic): measured both ways
        doc["query_ms_before_analyze"] = run_queries()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE gw_requests")
            conn.exec_driver_sql("ANALYZE gw_attempts")
    doc["query_ms"] = run_queries()
    # prune the older half while a writer inserts one row every 20 ms
    stop = threading.Event()
    lat: list[float] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            log.write([LogEntry(id=f"live-{i}", tenant="live", created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                                requested_model="m", status=200)])  # fmt: skip
            lat.append((time.perf_counter() - t0) * 1000)
            i += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    report = prune_request_log(db, now - dt.timedelta(days=30), batch_size=2000)
    stop.set()
    thread.join()
    with db.engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(GwRequest.__table__)).scalar()
    doc["prune"] = report.to_dict()
    doc["prune"]["rows_per_s"] = round(report.requests / report.seconds) if report.seconds else None
    doc["rows_left"] = int(left or 0)
    doc["writer_during_prune"] = {
        "writes": len(lat),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
        "max_ms": round(max(lat), 2) if lat else None,
    }
    db.close()
    _log(f"  {store}: {doc}")
    return doc


def bench_logs(
    rows: int, work: Path, stores: tuple[str, ...] = ("sqlite", "postgresql")
) -> list[dict[str, Any]]:
    out = []
    path = work / "log.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if "sqlite" in stores:
        out.append(bench_log(f"sqlite:///{path}", "sqlite", rows))
        out[-1]["file_mb"] = round(path.stat().st_size / 2**20, 1)
        path.unlink(missing_ok=True)
    pg = _pg_url() if "postgresql" in stores else None
    if pg is not None:
        url, drop = pg
        try:
            out.append(bench_log(url, "postgresql", rows))
        finally:
            drop()
    (work / "log_rows.json").write_text(json.dumps(out, indent=2))
    _write(rows_log=out)
    return out


# -------------------------------------------------------------------------------------------- output
def _write(
    rows_data: list[dict[str, Any]] | None = None, rows_log: list[dict[str, Any]] | None = None
) -> None:
    """Merge into ``scale.json`` (re-read each time: a data run and a log run may overlap): data rows by size."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "scale.json"
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(path.read_text())
    if rows_data is not None:
        sizes = {row["prompts"] for row in rows_data}
        state["data"] = sorted(
            [r for r in state.get("data") or [] if r["prompts"] not in sizes] + rows_data,
            key=lambda r: r["prompts"],
        )
    if rows_log is not None:
        stores = {row["store"] for row in rows_log}
        state["request_log"] = [
            r for r in state.get("request_log") or [] if r["store"] not in stores
        ] + rows_log
    state["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }
    state["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="minutes")
    path.write_text(json.dumps(state, indent=2) + "\n")
    (RESULTS / "scale.md").write_text(markdown(state))


def markdown(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    lines = [
        "# Scale: time and memory against data size",
        "",
        f"`.venv/bin/python benchmarks/bench_scale.py` on {m.get('cpus')} CPUs shared with other work "
        f"(load {', '.join(f'{x:.1f}' for x in m.get('load_avg', []))} at the end), Python {m.get('python')}; "
        f"finished {doc.get('finished')}. Synthetic eval set (3 models per prompt), static embedder (256 dims), "
        "2 embedding processes, Qdrant Edge shard. Peak RSS: largest single process of the step.",
        "",
    ]
    data = doc.get("data") or []
    if data:
        lines += [
            "| prompts | records | step | wall s | CPU s | peak RSS MB | notes |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in data:
            for s in row["steps"]:
                note = ""
                rep = s.get("report") or {}
                if s["step"] == "import":
                    note = f"{rep.get('chunks', '?')} chunks of 20,000; {row['file_mb']} MB JSONL"
                elif s["step"] == "embed" and "embed" in rep:
                    e = rep["embed"]
                    note = (
                        f"{e['prompts'] / max(e['seconds'], 1e-9):,.0f} prompts/s, {e['workers']} processes"
                    )
                elif s["step"] == "index":
                    d = s.get("disk", {})
                    built = (rep.get("index") or {}).get("optimized", True)
                    note = (
                        f"{'HNSW graph built' if built else 'no HNSW graph (--no-optimize)'}; "
                        f"shard {d.get('allocated_mb')} MB on disk ({d.get('apparent_mb')} MB apparent); "
                        f"vectors.npy {s.get('vectors_mb')} MB"
                    )
                elif s["step"] == "train":
                    note = "knn (k=50, hybrid, exact dense search: no HNSW graph), embeds through the vector cache"
                elif s["step"] == "bench":
                    note = "knn vs baselines, 2 folds: a fit on 50% and exact-search predictions for the other 50%"
                lines.append(
                    f"| {row['prompts']:,} | {row['records']:,} | {s['step']} | {s['wall_s']} | {s['cpu_s']} | "
                    f"{s['peak_rss_mb']} | {note} |"
                )
        lines.append("")
    logs = doc.get("request_log") or []
    if logs:
        lines += [
            "## Request log",
            "",
            "Rows written by `RequestLog.write` in batches of 200 (one attempt row each), spread over 60 days; "
            "queries best of 3; prune = delete the older 30 days (half) in batches of 2,000 while a writer "
            "inserts one row every 20 ms.",
            "",
            "| store | rows | insert rows/s | newest 100 ms | tenant newest 100 ms | tenant last hour ms | get ms "
            "| pruned | prune s | rows/s | longest batch ms | writer p99 / max ms during prune |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in logs:
            q, p, w = r["query_ms"], r["prune"], r["writer_during_prune"]
            lines.append(
                f"| {r['store']} | {r['rows']:,} | {r['insert_rows_per_s']:,} | {q['newest_100']} | "
                f"{q['tenant_newest_100']} | {q['tenant_since_1h']} | {q['get_one']} | {p['requests']:,} | "
                f"{p['seconds']} | {p['rows_per_s']:,} | {p['longest_batch_ms']} | {w['p99_ms']} / {w['max_ms']} |"
            )
        lines.append("")
        for r in logs:
            if "query_ms_before_analyze" in r:
                b = r["query_ms_before_analyze"]
                lines.append(
                    f"{r['store']}: the queries above ran after `ANALYZE` (what autovacuum does under steady "
                    f"traffic). Right after the bulk load, with the planner's statistics of an empty table, the "
                    f"same queries took {b['newest_100']} / {b['tenant_newest_100']} / {b['tenant_since_1h']} / "
                    f"{b['get_one']} ms (plans made for an empty table)."
                )
                lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--train-max", type=int, default=100_000)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("data", "log"), default=None)
    parser.add_argument("--log-stores", default="sqlite,postgresql", help="Request-log stores to measure.")
    parser.add_argument(
        "--optimize-max", type=int, default=100_000, help="Build the HNSW graph up to this size (slow at 1M)."
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/routerforge-scale"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.only != "log":
        bench_data(
            [int(x) for x in args.sizes.split(",")],
            args.train_max,
            args.work,
            args.workers,
            args.optimize_max,
        )
    if args.only != "data" and args.log_rows > 0:
        bench_logs(args.log_rows, args.work, tuple(args.log_stores.split(",")))
    _log(f"wrote {RESULTS / 'scale.md'}")


if __name__ == "__main__":
    main()
