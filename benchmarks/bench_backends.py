"""Benchmark of the backend layer: what OpenAICompatBackend and UpstreamPool add to a plain HTTP call.

Run: ``.venv/bin/python benchmarks/bench_backends.py`` (``--quick`` for a short smoke run).

The upstream is ``tests/fake_upstream.py`` started as a separate process (its CLI), so client and
server do not share a GIL. Measured at concurrency 1 (latency p50/p99) and 8 (requests per second):

- ``httpx``: a bare pooled ``httpx.AsyncClient`` POST + ``json()`` (the floor);
- ``backend``: ``OpenAICompatBackend.complete`` (payload, error translation, parsing);
- ``pool``: ``UpstreamPool.complete`` with one candidate (fit check, breaker, timeout guard, cost);
- ``pool-stream``: ``UpstreamPool.open_stream`` drained to the end (SSE parsing, per-chunk timeout).

Writes ``benchmarks/results/backends.json`` and ``benchmarks/results/backends.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from routerforge.backends.base import ChatRequest
from routerforge.backends.openai_compat import OpenAICompatBackend
from routerforge.backends.reliability import UpstreamPool
from routerforge.backends.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MESSAGES = [{"role": "user", "content": "Which planet is known as the red planet? Answer in one word."}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_upstream(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_upstream.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the fake upstream did not start")


async def _measure(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> dict[str, float]:
    for _ in range(min(50, n)):  # warm-up: connections, caches
        await call()
    latencies: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1000.0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "rps": len(latencies) / wall,
    }


async def _run(base_url: str, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    client = httpx.AsyncClient(base_url=base_url, timeout=10)
    backend = OpenAICompatBackend(base_url, None, "m1", timeout_s=10)
    pool = UpstreamPool([ModelSpec(id="m1", base_url=base_url, input_usd_per_mtok=1, output_usd_per_mtok=2)])
    request = ChatRequest(model="", messages=MESSAGES, max_tokens=16)

    async def bare() -> None:
        response = await client.post(
            "/chat/completions", json={"model": "m1", "messages": MESSAGES, "max_tokens": 16}
        )
        response.json()

    async def via_backend() -> None:
        await backend.complete(request)

    async def via_pool() -> None:
        await pool.complete(["m1"], request)

    async def via_pool_stream() -> None:
        stream = await pool.open_stream(["m1"], request)
        try:
            async for _chunk in stream:
                pass
        finally:
            await stream.aclose()

    try:
        for concurrency in (1, 8):
            for name, call in (
                ("httpx", bare),
                ("backend", via_backend),
                ("pool", via_pool),
                ("pool-stream", via_pool_stream),
            ):
                stats = await _measure(call, n, concurrency)
                rows.append({"path": name, "concurrency": concurrency, **stats})
                print(
                    f"{name:12s} c={concurrency}: p50 {stats['p50_ms']:.2f} ms, "
                    f"p99 {stats['p99_ms']:.2f} ms, {stats['rps']:.0f} req/s",
                    flush=True,
                )
    finally:
        await client.aclose()
        await backend.aclose()
        await pool.aclose()
    return rows


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    floor = {r["concurrency"]: r["p50_ms"] for r in rows if r["path"] == "httpx"}
    lines = [
        "# Backend layer overhead",
        "",
        f"`{meta['command']}` on {meta['machine']} ({meta['cpus']} CPUs, shared), {meta['date']}.",
        "Upstream: `tests/fake_upstream.py` in its own process on loopback (instant answers).",
        "",
        "| path | concurrency | p50 ms | p99 ms | added p50 vs bare httpx, ms | req/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        added = r["p50_ms"] - floor[r["concurrency"]]
        lines.append(
            f"| {r['path']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {added:+.2f} | {r['rps']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A short smoke run (200 requests per cell).")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    n = 200 if args.quick else args.requests
    port = _free_port()
    proc = _start_upstream(port)
    try:
        rows = asyncio.run(_run(f"http://127.0.0.1:{port}/v1", n))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    meta = {
        "command": "python benchmarks/bench_backends.py" + (" --quick" if args.quick else ""),
        "machine": platform.platform(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "requests_per_cell": n,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backends.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / "backends.md").write_text(_markdown(rows, meta))
    print(f"wrote {RESULTS / 'backends.md'}")


if __name__ == "__main__":
    main()
