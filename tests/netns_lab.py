"""Several "hosts" on this machine: Linux network namespaces joined by veth pairs on a bridge (iproute2).

Used by ``tests/test_replicas_netns.py`` and ``benchmarks/bench_replicas.py``. Needs root (``ip netns``).

Topology (addresses from a random 10.X.Y.0/24 so parallel runs do not collide)::

    root namespace  bridge rfb<tag> 10.X.Y.1  +  TCP forwarders (socat) 10.X.Y.1:15432 -> 127.0.0.1:5432
                                                                        10.X.Y.1:16379 -> 127.0.0.1:6379
    rf<tag>u  10.X.Y.10  the fake upstream (tests/fake_upstream.py)
    rf<tag>g  10.X.Y.11  the load generator (this file's ``load`` command)
    rf<tag>r1 10.X.Y.21  gateway replica 1 (``routerforge serve``)   rf<tag>r2 10.X.Y.22 …

PostgreSQL and Redis listen on 127.0.0.1 only and trust local connections; rather than reconfigure them
system-wide, a forwarder in the root namespace bridges them onto the veth network (the replicas connect to
10.X.Y.1). Everything is removed on :meth:`Lab.close` — processes, namespaces (their veths go with them),
the bridge — also when the setup fails half-way.

``python tests/netns_lab.py load --url http://10.X.Y.21:8000 --key rf-… --n 20 --concurrency 20`` (run with
``ip netns exec rf<tag>g``) fires chat requests and prints one JSON line per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
ROUTERFORGE = str(ROOT / ".venv" / "bin" / "routerforge")


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


def netns_unavailable() -> str | None:
    """Why this machine cannot run the lab (``None``: it can)."""
    if sys.platform != "linux" or shutil.which("ip") is None:
        return "needs Linux with iproute2 (`ip`)"
    if shutil.which("socat") is None:
        return "needs socat (the TCP forwarder to PostgreSQL/Redis on 127.0.0.1)"
    if not Path(ROUTERFORGE).exists():
        return f"{ROUTERFORGE} is missing (make setup)"
    probe = "rfprobe" + secrets.token_hex(3)
    try:
        _run("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        err = getattr(exc, "stderr", "") or str(exc)
        return f"`ip netns add` is not permitted here: {err.strip()}"
    with contextlib.suppress(subprocess.CalledProcessError):
        _run("ip", "netns", "del", probe)
    return None


class Lab:
    """Namespaces, bridge, forwarders and the processes started in them; ``close()`` undoes everything."""

    def __init__(self, workdir: Path, replicas: int) -> None:
        self.workdir = workdir
        self.tag = secrets.token_hex(2)
        octets = secrets.randbelow(150) + 100, secrets.randbelow(250) + 1
        self.net = f"10.{octets[0]}.{octets[1]}"
        self.bridge = f"rfb{self.tag}"
        self.gateway_ip = f"{self.net}.1"
        self.namespaces: dict[str, str] = {}  # role -> namespace
        self.ips: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.roles = ["u", "g", *(f"r{i + 1}" for i in range(replicas))]

    # -- network --------------------------------------------------------------------------------------
    def up(self) -> Lab:
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for n, role in enumerate(self.roles):
                ns = f"rf{self.tag}{role}"
                host = 10 + n if role in ("u", "g") else 20 + int(role[1:])
                ip = f"{self.net}.{host}"
                _run("ip", "netns", "add", ns)
                self.namespaces[role], self.ips[role] = ns, ip
                outer, inner = f"rf{self.tag}{role}o", f"rf{self.tag}{role}i"
                _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
                _run("ip", "link", "set", inner, "netns", ns)
                _run("ip", "link", "set", outer, "master", self.bridge)
                _run("ip", "link", "set", outer, "up")
                _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
                _run("ip", "-n", ns, "link", "set", inner, "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            self.forward(15432, 5432, "pg")
            self.forward(16379, 6379, "redis")
        except BaseException:
            self.close()
            raise
        return self

    def forward(self, port: int, target: int, name: str) -> None:
        """A TCP forwarder in the root namespace: bridge address ``port`` -> 127.0.0.1 ``target``."""
        self.spawn(
            f"fwd-{name}",
            None,
            [
                "socat",
                f"TCP-LISTEN:{port},bind={self.gateway_ip},fork,reuseaddr,backlog=512",
                f"TCP:127.0.0.1:{target}",
            ],
        )

    # -- processes ------------------------------------------------------------------------------------
    def spawn(
        self, name: str, role: str | None, cmd: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        full = cmd if role is None else ["ip", "netns", "exec", self.namespaces[role], *cmd]
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            full, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=ROOT
        )
        log.close()
        self.procs[name] = proc
        return proc

    def upstream(self, delay_s: float = 0.0, port: int = 9100, name: str = "upstream") -> str:
        """Start the fake upstream (every answer after ``delay_s``) in its namespace; its base URL."""
        cmd = [PYTHON, str(ROOT / "tests" / "fake_upstream.py"), "--host", self.ips["u"], "--port", str(port)]
        self.spawn(name, "u", [*cmd, "--delay-s", str(delay_s)])
        url = f"http://{self.ips['u']}:{port}"
        wait_http(url + "/v1/models", self.procs[name], self.workdir / f"{name}.log")
        return url + "/v1"

    def replica(self, i: int, config: Path, store_url: str, env: dict[str, str], port: int = 8000) -> str:
        """Start ``routerforge serve`` in replica namespace ``i`` (1-based); returns its base URL."""
        role = f"r{i}"
        home = self.workdir / f"home{i}"
        home.mkdir(exist_ok=True)
        full_env = {"ROUTERFORGE_HOME": str(home), "ROUTERFORGE_DATA__STORE_URL": store_url, **env}
        cmd = [ROUTERFORGE, "serve", "--config", str(config), "--host", self.ips[role], "--port", str(port)]
        self.spawn(f"replica{i}", role, cmd, full_env)
        return f"http://{self.ips[role]}:{port}"

    def wait_replica(self, i: int, url: str, timeout_s: float = 60.0) -> None:
        wait_http(url + "/readyz", self.procs[f"replica{i}"], self.workdir / f"replica{i}.log", timeout_s)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def load(self, args: list[str], timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Run this file's ``load`` command in the load generator's namespace; its JSON lines."""
        cmd = ["ip", "netns", "exec", self.namespaces["g"], PYTHON, __file__, "load", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed ({out.returncode}): {out.stderr[-2000:]}")
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    def load_background(self, args: list[str], name: str = "load") -> subprocess.Popen[str]:
        cmd = ["ip", "netns", "exec", self.namespaces["g"], PYTHON, __file__, "load", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.procs[name] = proc  # type: ignore[assignment]
        return proc

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
        self.namespaces.clear()

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_http(url: str, proc: subprocess.Popen[Any], log: Path, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s: {log.read_text()[-2000:]}")


# -- the load generator (runs inside the load generator's namespace) ------------------------------------
async def _load(args: argparse.Namespace) -> None:
    import httpx

    urls = args.url
    body: dict[str, Any] = {"model": args.model, "messages": [{"role": "user", "content": args.content}]}
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    headers = {"authorization": f"Bearer {args.key}"}
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency)
    deadline = time.monotonic() + args.duration_s if args.duration_s else None
    counter = iter(range(10**9))
    lock = asyncio.Lock()

    async def one(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        tries = len(urls) if args.failover else 1
        for t in range(tries):
            url = urls[(i + t) % len(urls)]
            t0 = time.time()
            start = time.perf_counter()
            try:
                r = await client.post(url + "/v1/chat/completions", headers=headers, json=body)
            except httpx.TransportError as exc:  # the replica is gone: the next one (a load balancer's retry)
                if t + 1 < tries:
                    continue
                return {"i": i, "url": url, "status": 0, "error": type(exc).__name__, "tries": t + 1}
            ms = (time.perf_counter() - start) * 1000.0
            out: dict[str, Any] = {"i": i, "url": url, "status": r.status_code, "ms": ms, "tries": t + 1}
            out["t0"], out["t"] = t0, time.time()
            out["request_id"] = r.headers.get("x-routerforge-request-id")
            if r.status_code != 200:
                try:
                    out["error"] = r.json()["error"]
                except (ValueError, KeyError):
                    out["error"] = r.text[:200]
            return out
        raise AssertionError("unreachable")

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            async with lock:
                i = next(counter)
            if deadline is None and i >= args.n:
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            res = await one(client, i)
            print(json.dumps(res), flush=True)
            if args.interval_s:
                await asyncio.sleep(args.interval_s)

    async with httpx.AsyncClient(timeout=args.timeout_s, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load", help="Fire chat requests; one JSON line per request.")
    load.add_argument("--url", action="append", required=True, help="A replica (repeat: round robin).")
    load.add_argument("--key", required=True)
    load.add_argument("--model", default="dollar")
    load.add_argument("--content", default="y" * 400)
    load.add_argument("--max-tokens", type=int, default=None)
    load.add_argument("--n", type=int, default=20, help="Requests (unless --duration-s).")
    load.add_argument("--duration-s", type=float, default=None)
    load.add_argument("--concurrency", type=int, default=20)
    load.add_argument("--interval-s", type=float, default=0.0, help="Pause of each worker between requests.")
    load.add_argument("--timeout-s", type=float, default=30.0)
    load.add_argument("--failover", action="store_true", help="On a connection error try the next replica.")
    args = parser.parse_args(argv)
    asyncio.run(_load(args))


if __name__ == "__main__":
    main()
