"""``logging.durability: commit``: kill -9 of a loaded gateway loses no row of a request the client saw answered.

The gateway runs as a real ``routerforge serve`` process on a loopback port in front of the fake upstream;
concurrent clients send chat and streamed requests, the process is killed with SIGKILL mid-load, and the
SQLite file is opened again. The ``async`` run (a writer that never flushes before the kill) shows that
the check does see lost rows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from fake_upstream import FakeUpstream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(record=False) as up:
        yield up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gateway(
    home: Path, upstream: FakeUpstream, logging: dict[str, object]
) -> tuple[subprocess.Popen[bytes], int, Path]:
    config = home / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [{"id": "small", "base_url": upstream.base_url, "input_usd_per_mtok": 1.0}],
                "limits": {"requests_per_minute": 1_000_000},
                "require_auth": False,
                "logging": logging,
            }
        )
    )
    db = home / "log.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTERFORGE_")}
    env.update(ROUTERFORGE_HOME=str(home), ROUTERFORGE_DATA__STORE_URL=f"sqlite:///{db}")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "routerforge.cli.main", "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "routerforge serve exited at start"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port, db
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "routerforge serve did not become ready"
        time.sleep(0.1)


async def load_until_killed(proc: subprocess.Popen[bytes], port: int, kill_after: int) -> set[str]:
    """Concurrent chat and streamed requests; SIGKILL once ``kill_after`` were answered. Returns the ids
    of the requests whose answer the client received in full (the JSON body; the stream's ``[DONE]``)."""
    answered: set[str] = set()
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            i = 0
            while not stop.is_set():
                i += 1
                stream = (n + i) % 3 == 0
                body = {
                    "model": "small",
                    "stream": stream,
                    "messages": [{"role": "user", "content": f"w{n} r{i}"}],
                }
                try:
                    r = await client.post("/v1/chat/completions", json=body)
                except httpx.HTTPError:
                    continue  # the gateway is gone: no answer
                done = r.text.endswith("data: [DONE]\n\n") if stream else '"chat.completion"' in r.text
                if r.status_code == 200 and done:
                    answered.add(r.headers["x-routerforge-request-id"])
                    if len(answered) >= kill_after and proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
                        stop.set()

    workers = [asyncio.create_task(worker(n)) for n in range(16)]
    await asyncio.wait_for(stop.wait(), timeout=60)
    await asyncio.gather(*workers)
    return answered


@pytest.mark.parametrize("durability", ["commit", "async"])
def test_kill_9_under_load_loses_no_answered_row(
    tmp_path: Path, upstream: FakeUpstream, durability: str
) -> None:
    logging: dict[str, object] = {"durability": durability}
    if durability == "async":
        logging.update(batch_size=100_000, flush_interval_s=3600)  # nothing is written before the kill
    proc, port, db = start_gateway(tmp_path, upstream, logging)
    try:
        answered = asyncio.run(load_until_killed(proc, port, kill_after=150))
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    conn = sqlite3.connect(db)
    try:
        stored = {rid for (rid,) in conn.execute("SELECT id FROM gw_requests WHERE status = 200")}
    finally:
        conn.close()
    lost = answered - stored
    assert len(answered) >= 150
    if durability == "commit":
        assert not lost, f"{len(lost)} of {len(answered)} answered requests have no log row"
    else:
        assert lost == answered  # the check sees lost rows: without commit durability they are gone
