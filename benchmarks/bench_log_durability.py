"""What ``logging.durability: commit`` costs against ``async``, on SQLite and PostgreSQL — one command:

    .venv/bin/python benchmarks/bench_log_durability.py [--quick] [--rounds 2]

Processes (all on 127.0.0.1): the instant fake upstream (``tests/fake_upstream.py``) and ``routerforge serve``
(one worker, request log on, pass-through model), restarted for every (store, durability) pair. Pairs run in
alternation, ``--rounds`` times, and the medians are reported, so a noisy neighbour on the shared cores
hits both modes alike. Per pair: p50/p99 latency at concurrency 1 and 8, and req/s at concurrency 16
(bounded by a request count and a duration). ``added`` = commit − async.

Beside the end-to-end runs, the log writer alone (in this process, no HTTP): how long ``record`` waits
for its row's commit with 1, 8 and 64 concurrent requests, rows committed per second, and the mean
group-commit size. In ``async`` mode ``record`` only appends to a queue (no wait).

Writes ``benchmarks/results/log_durability.json`` and ``benchmarks/results/log_durability.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_gateway import PY, RESULTS, ROOT, chat_bodies, free_port, request_texts, run_load, wait_http

MODES = ("async", "commit")


def postgres_url() -> tuple[str, Callable[[], None]] | None:
    """A fresh schema on the local PostgreSQL server (dropped by the returned callable), or None."""
    from sqlalchemy import create_engine, text

    admin = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    try:
        engine = create_engine(admin, connect_args={"connect_timeout": 3})
        schema = f"rf_bench_{uuid.uuid4().hex[:10]}"
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception:  # no server: the PostgreSQL rows are reported as not run
        return None

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return f"{admin}?options=-csearch_path%3D{schema}", drop


def fsync_ms(folder: Path, n: int = 100) -> dict[str, float]:
    """p50/p99 of one 4 KiB write + fsync in ``folder``: the floor of a synchronous commit on this disk."""
    times = []
    fd = os.open(folder / "fsync.probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        os.close(fd)
    times.sort()
    return {"p50_ms": round(times[n // 2], 3), "p99_ms": round(times[int(n * 0.99)], 3)}


def write_config(path: Path, upstream_port: int, durability: str) -> None:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "id": "m-small",
                        "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                        "input_usd_per_mtok": 0.1,
                        "output_usd_per_mtok": 0.2,
                    }
                ],
                "limits": {"requests_per_minute": 10_000_000},
                "counters": {"backend": "memory"},
                "require_auth": False,
                "logging": {"durability": durability},
            }
        )
    )


def run_pair(
    tmp: Path,
    env: dict[str, str],
    store_url: str,
    durability: str,
    up_port: int,
    args: argparse.Namespace,
    salt: str,
) -> dict[str, Any]:
    cfg = tmp / f"gateway-{durability}.yaml"
    write_config(cfg, up_port, durability)
    port = free_port()
    genv = {**env, "ROUTERFORGE_DATA__STORE_URL": store_url}
    gw = subprocess.Popen(
        [PY, "-m", "routerforge.cli.main", "serve", "--config", str(cfg), "--port", str(port)],
        env=genv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(port, "/readyz", proc=gw)
        body = chat_bodies("m-small", request_texts(salt))

        async def bench() -> dict[str, Any]:
            path = "/v1/chat/completions"
            await run_load(port, path, body, {}, concurrency=4, n=100, duration_s=30)  # warm-up
            out: dict[str, Any] = {}
            for c in (1, 8):
                out[f"c{c}"] = await run_load(
                    port, path, body, {}, concurrency=c, n=args.n_latency, duration_s=60
                )
            out["throughput"] = await run_load(
                port,
                path,
                body,
                {},
                concurrency=args.concurrency,
                n=args.max_requests,
                duration_s=args.duration,
            )
            return out

        return asyncio.run(bench())
    finally:
        gw.terminate()
        try:
            gw.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gw.kill()


def writer_bench(url: str, concurrency: int, n: int) -> dict[str, Any]:
    """``commit`` durability, the writer alone: ``concurrency`` tasks each awaiting ``record`` in a loop."""
    import datetime as dt

    import numpy as np

    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.logentry import AttemptEntry, LogEntry
    from routerforge.gateway.logwriter import LogWriter
    from routerforge.gateway.requestlog import RequestLog

    db = GatewayDB(url, durable_log=True)
    writer = LogWriter(RequestLog(db), durable=True)
    writer.start()
    waits: list[float] = []
    salt = uuid.uuid4().hex[:8]

    def entry(i: int) -> LogEntry:
        text = f"request {i}: a prompt of ordinary length for the log, " * 4
        return LogEntry(
            id=f"{salt}-{concurrency}-{i}",
            tenant="bench",
            created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            requested_model="m-small",
            chosen_model="m-small",
            answered_model="m-small",
            messages=[{"role": "user", "content": text}],
            prompt=text,
            response_text="an answer " * 20,
            tokens_in=60,
            tokens_out=40,
            cost_usd=1e-5,
            status=200,
            total_ms=3.0,
            attempts=[AttemptEntry("m-small", "ok", latency_ms=1.0)],
        )

    async def run() -> float:
        counter = iter(range(n))

        async def task() -> None:
            for i in counter:
                t0 = time.perf_counter()
                await writer.record(entry(i))
                waits.append((time.perf_counter() - t0) * 1000.0)

        t0 = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(concurrency)))
        return time.perf_counter() - t0

    try:
        seconds = asyncio.run(run())
    finally:
        writer.close()
        db.close()
    arr = np.array(waits)
    return {
        "concurrency": concurrency,
        "rows": n,
        "wait_p50_ms": round(float(np.percentile(arr, 50)), 3),
        "wait_p99_ms": round(float(np.percentile(arr, 99)), 3),
        "rows_per_s": round(n / seconds, 1),
        "mean_rows_per_commit": round(writer.written / max(1, writer.transactions), 2),
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(path: tuple[str, str]) -> float:
        return round(statistics.median(r[path[0]][path[1]] for r in runs), 3)

    out: dict[str, Any] = {}
    for part in ("c1", "c8", "throughput"):
        out[part] = {k: med((part, k)) for k in ("p50_ms", "p99_ms", "rps")}
        out[part]["errors"] = sum(r[part]["errors"] for r in runs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Fewer requests, one round (a smoke run).")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per (store, mode).")
    parser.add_argument("--n-latency", type=int, default=400, help="Requests per latency point.")
    parser.add_argument("--max-requests", type=int, default=3000, help="Cap of each throughput run.")
    parser.add_argument("--duration", type=float, default=6.0, help="Cap in seconds of each throughput run.")
    parser.add_argument("--concurrency", type=int, default=16, help="Connections of the throughput runs.")
    parser.add_argument("--writer-rows", type=int, default=2000, help="Rows per log-writer-alone run.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_latency, args.max_requests, args.duration, args.rounds, args.writer_rows = 60, 300, 2.0, 1, 200

    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-logdur-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTERFORGE_")}
    env["ROUTERFORGE_HOME"] = str(tmp / "home")
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            k: getattr(args, k) for k in ("rounds", "n_latency", "max_requests", "duration", "concurrency")
        },
        "stores": {},
    }
    results["machine"]["fsync"] = fsync_ms(tmp)
    up = subprocess.Popen(
        [PY, str(ROOT / "tests" / "fake_upstream.py"), "--port", str(up_port := free_port())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    drops: list[Callable[[], None]] = []
    try:
        wait_http(up_port, "/v1/models", proc=up)
        stores: dict[str, str | None] = {"sqlite": f"sqlite:///{tmp / 'bench.db'}"}
        pg = postgres_url()
        stores["postgresql"] = pg[0] if pg else None
        if pg:
            drops.append(pg[1])
        for store, url in stores.items():
            if url is None:
                results["stores"][store] = {"ran": False, "why": "no PostgreSQL server on 127.0.0.1:5432"}
                continue
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
            for rnd in range(args.rounds):
                for mode in MODES if rnd % 2 == 0 else tuple(reversed(MODES)):
                    print(f"{store} {mode} round {rnd + 1}", flush=True)
                    runs[mode].append(run_pair(tmp, env, url, mode, up_port, args, f"{store}-{mode}-{rnd}"))
            med = {m: median_of(runs[m]) for m in MODES}
            added = {
                c: {
                    "added_p50_ms": round(med["commit"][c]["p50_ms"] - med["async"][c]["p50_ms"], 3),
                    "added_p99_ms": round(med["commit"][c]["p99_ms"] - med["async"][c]["p99_ms"], 3),
                }
                for c in ("c1", "c8")
            }
            rps = (med["async"]["throughput"]["rps"], med["commit"]["throughput"]["rps"])
            results["stores"][store] = {
                "ran": True,
                "writer_commit": [writer_bench(url, c, args.writer_rows) for c in (1, 8, 64)],
                "median": med,
                "commit_minus_async": {
                    **added,
                    "rps_change_pct": round(100.0 * (rps[1] - rps[0]) / rps[0], 1) if rps[0] else None,
                },
                "runs": runs,
            }
    finally:
        up.terminate()
        up.wait(timeout=10)
        for drop in drops:
            drop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "log_durability.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "log_durability.md").write_text(render_markdown(results))
    print(render_markdown(results))
    return 0


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Request-log durability: `commit` vs `async`",
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, load average at start {m['load_average_at_start']} "
        f"(shared machine); one 4 KiB write + fsync on its disk: {m.get('fsync')}. Settings: {r['settings']}. "
        f"Finished {r.get('finished_at')}.",
        "One `routerforge serve` worker, pass-through chat requests to an instant fake upstream, medians over "
        "alternating rounds. `commit`: SQLite `synchronous=FULL` / PostgreSQL `synchronous_commit=on`, the "
        "response waits for its row's group commit.",
        "",
        "| store | mode | p50 c1 | p99 c1 | p50 c8 | p99 c8 | req/s (c16) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for store, res in r["stores"].items():
        if not res.get("ran"):
            lines.append(f"| {store} | not run: {res.get('why')} | | | | | | |")
            continue
        for mode in MODES:
            x = res["median"][mode]
            errors = x["c1"]["errors"] + x["c8"]["errors"] + x["throughput"]["errors"]
            lines.append(
                f"| {store} | {mode} | {x['c1']['p50_ms']} | {x['c1']['p99_ms']} | {x['c8']['p50_ms']} | "
                f"{x['c8']['p99_ms']} | {x['throughput']['rps']} | {errors} |"
            )
    lines += [
        "",
        "The log writer alone, `commit` (time `record` waits for its row's commit; `async` does not wait):",
        "",
        "| store | concurrent requests | wait p50 ms | wait p99 ms | rows/s | rows per commit |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for store, res in r["stores"].items():
        for w in res.get("writer_commit") or []:
            lines.append(
                f"| {store} | {w['concurrency']} | {w['wait_p50_ms']} | {w['wait_p99_ms']} | {w['rows_per_s']} | "
                f"{w['mean_rows_per_commit']} |"
            )
    lines += ["", "Cost of `commit` end to end (commit − async):", ""]
    for store, res in r["stores"].items():
        if res.get("ran"):
            d = res["commit_minus_async"]
            lines.append(
                f"- {store}: p50 +{d['c1']['added_p50_ms']} ms / p99 +{d['c1']['added_p99_ms']} ms at concurrency 1; "
                f"p50 +{d['c8']['added_p50_ms']} ms / p99 +{d['c8']['added_p99_ms']} ms at concurrency 8; "
                f"req/s {d['rps_change_pct']:+} %."
            )
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
