"""Benchmark of the backend layer: what OpenAICompatBackend and UpstreamPool add to a plain HTTP call.

Run: ``.venv/bin/python benchmarks/bench_backends.py`` (``--quick`` for a short smoke run).

The upstream is ``tests/fake_upstream.py`` started as a separate process (its CLI), so client and
server do not share a GIL. Measured at concurrency 1 and 8 (latency p50/p99, requests per second), the paths interleaved in 10\nrounds so that load from other processes on a shared machine affects them alike:

- ``httpx``: a bare pooled ``httpx.AsyncClient`` POST + ``json()`` (the floor);
- ``backend``: ``OpenAICompatBackend.complete`` (payload, error translation, parsing);
- ``pool``: ``UpstreamPool.complete`` with one candidate (fit check, breaker, timeout guard, cost);
- ``httpx-stream``: the same bare client reading the SSE stream line by line (the streaming floor);
- ``pool-stream``: ``UpstreamPool.open_stream`` drained to the end (SSE parsing, per-chunk timeout).

Writes ``benchmarks/results/backends.json`` and ``benchmarks/results/backends.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
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


async def _measure(
    calls: Mapping[str, Callable[[], Awaitable[Any]]], n: int, concurrency: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Run every path in ``rounds`` interleaved slices, so load changes on a shared machine hit all alike."""
    for call in calls.values():  # warm-up: connections, caches
        for _ in range(20):
            await call()
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    walls: dict[str, float] = dict.fromkeys(calls, 0.0)

    async def worker(name: str, call: Callable[[], Awaitable[Any]], count: int) -> None:
        for _ in range(count):
            start = time.perf_counter()
            await call()
            latencies[name].append((time.perf_counter() - start) * 1000.0)

    per_worker = max(1, n // rounds // concurrency)
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            await asyncio.gather(*(worker(name, call, per_worker) for _ in range(concurrency)))
            walls[name] += time.perf_counter() - start
    out = {}
    for name, values in latencies.items():
        values.sort()
        out[name] = {
            "requests": len(values),
            "p50_ms": statistics.median(values),
            "p99_ms": values[min(len(values) - 1, int(0.99 * len(values)))],
            "rps": len(values) / walls[name],
        }
    return out


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

    async def bare_stream() -> None:
        body = {"model": "m1", "messages": MESSAGES, "max_tokens": 16, "stream": True}
        async with client.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    json.loads(line[5:])

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
        calls = {
            "httpx": bare,
            "backend": via_backend,
            "pool": via_pool,
            "httpx-stream": bare_stream,
            "pool-stream": via_pool_stream,
        }
        for concurrency in (1, 8):
            measured = await _measure(calls, n, concurrency, rounds=10)
            for name, stats in measured.items():
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


class _NoopBackend:
    """Answers instantly in-process: isolates the pool's own CPU cost from HTTP and the upstream."""

    name = "noop"

    async def complete(self, request: ChatRequest) -> ChatResult:
        return ChatResult(text="Mars", model="m1", tokens_in=20, tokens_out=1)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(delta="")
        for word in ("The", " red", " planet", " is", " Mars."):
            yield ChatChunk(delta=word)
        yield ChatChunk(delta="", finish_reason="stop", tokens_in=20, tokens_out=5)

    async def aclose(self) -> None:
        return None


async def _pool_cpu_overhead(n: int) -> dict[str, float]:
    spec = ModelSpec(id="m1", input_usd_per_mtok=1, output_usd_per_mtok=2)
    pool = UpstreamPool([spec], build=lambda _spec: _NoopBackend())
    request = ChatRequest(model="", messages=MESSAGES, max_tokens=16)
    start = time.perf_counter()
    for _ in range(n):
        await pool.complete(["m1"], request)
    complete_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        stream = await pool.open_stream(["m1"], request)
        async for _chunk in stream:
            pass
        await stream.aclose()
    stream_us = (time.perf_counter() - start) / n * 1e6
    return {"complete_us": complete_us, "stream_7_chunks_us": stream_us}


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    floor = {(r["concurrency"], False): r["p50_ms"] for r in rows if r["path"] == "httpx"}
    floor.update({(r["concurrency"], True): r["p50_ms"] for r in rows if r["path"] == "httpx-stream"})
    lines = [
        "# Backend layer overhead",
        "",
        f"`{meta['command']}` on {meta['machine']} ({meta['cpus']} CPUs, shared), {meta['date']}.",
        "Upstream: `tests/fake_upstream.py` in its own process on loopback (instant answers).",
        "",
        "| path | concurrency | p50 ms | p99 ms | added p50 vs bare httpx (same mode), ms | req/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        added = r["p50_ms"] - floor[(r["concurrency"], "stream" in r["path"])]
        lines.append(
            f"| {r['path']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {added:+.2f} | {r['rps']:.0f} |"
        )
    cpu = meta["pool_cpu_overhead"]
    lines += [
        "",
        f"Pool CPU cost per call with an in-process no-op backend (no HTTP): complete "
        f"{cpu['complete_us']:.0f} µs, a 7-chunk stream {cpu['stream_7_chunks_us']:.0f} µs.",
        f"Load average during the run: {meta['load_average']} (other processes share the 2 cores: HTTP rows are noisy).",
    ]
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
        cpu = asyncio.run(_pool_cpu_overhead(n * 5))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    meta = {
        "command": "python benchmarks/bench_backends.py" + (" --quick" if args.quick else ""),
        "machine": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "requests_per_cell": n,
        "pool_cpu_overhead": cpu,
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backends.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / "backends.md").write_text(_markdown(rows, meta))
    print(f"wrote {RESULTS / 'backends.md'}")


if __name__ == "__main__":
    main()
