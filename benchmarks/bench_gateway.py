"""Gateway overhead, throughput and memory on loopback — one command:

    .venv/bin/python benchmarks/bench_gateway.py [--quick] [--litellm-bin PATH]

Processes (all on 127.0.0.1): the instant fake upstream (``tests/fake_upstream.py``), the routerforge gateway
(``routerforge serve``, one worker, SQLite store, request log on) and, when a LiteLLM proxy binary is found, a
LiteLLM proxy in front of the same upstream. The load generator is a minimal keep-alive HTTP/1.1 client on
asyncio (so the client's own cost stays small and equal for every target).

Measured:
* added latency = p50/p99 through the gateway − p50/p99 of calling the upstream directly, at concurrency 1
  and 8, for a pass-through model and a knn synthetic model (``router-knn-0.5``; MiniLM ONNX embedding, or
  the static embedder with ``--embed static``: router trained and served with
  ``ROUTERFORGE_EMBED__PROVIDER=static``, results in ``gateway_static.json``/``.md``);
* proxied and route-only requests/s at concurrency 16 (bounded by a request count and a duration);
* the gateway process's resident memory (VmRSS / peak VmHWM) and whether torch is loaded (its shared
  libraries mapped into the process).

Writes ``benchmarks/results/gateway.json`` and ``benchmarks/results/gateway.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable
TARGETS = {
    "added_p50_ms_pass_through": 5.0,
    "added_p50_ms_knn": 10.0,
    "proxied_rps": 400.0,
    "route_only_rps": 300.0,
    "rss_mb": 300.0,
}


# -- a tiny keep-alive HTTP/1.1 client -------------------------------------------------------------
class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readline()
        else:
            data = await self.reader.readexactly(length or 0)
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


Bodies = list[bytes]


async def run_load(
    port: int,
    path: str,
    bodies: Bodies,
    headers: dict[str, str],
    *,
    concurrency: int,
    n: int,
    duration_s: float,
) -> dict[str, Any]:
    """``n`` requests (or until ``duration_s``) from ``concurrency`` connections, cycling through ``bodies``
    (distinct prompts, so no cache answers for the router); latencies in ms."""
    latencies: list[float] = []
    sent = [0]
    errors = 0
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + duration_s
    remaining = [n]

    async def worker() -> None:
        nonlocal errors
        conn = Conn("127.0.0.1", port)
        try:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                body = bodies[sent[0] % len(bodies)]
                sent[0] += 1
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.request(path, body, headers)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    errors += 1
                    await conn.close()
                    continue
                latencies.append((time.perf_counter() - t0) * 1000.0)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200:
                    errors += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    arr = np.array(latencies) if latencies else np.array([float("nan")])
    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
    }


# -- processes --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    port: int, path: str, timeout_s: float = 120.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}{path} within {timeout_s} s")


def rss_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = round(int(value.split()[0]) / 1024.0, 1)
    return {"rss_mb": out.get("VmRSS", float("nan")), "peak_rss_mb": out.get("VmHWM", float("nan"))}


def routing_ms_mean(port: int) -> float | None:
    """Mean routing time (embedding + router + policy) from the gateway's own Prometheus histogram."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("routerforge_routing_latency_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("routerforge_routing_latency_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return round(total / count * 1000.0, 3) if count else None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def tree_rss_mb(pid: int) -> dict[str, float]:
    """Summed RSS (and summed peak) of the serving process and its workers."""
    parts = [rss_mb(p) for p in process_tree(pid)]
    return {
        "rss_mb": round(sum(x["rss_mb"] for x in parts), 1),
        "peak_rss_mb": round(sum(x["peak_rss_mb"] for x in parts), 1),
        "processes": len(parts),
    }


def torch_loaded(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "libtorch" in maps or "/torch/" in maps


def train_knn(home: Path, n_prompts: int) -> dict[str, Any]:
    """A knn router on synthetic prompts (two models: cheap is good on chat, strong on maths)."""
    try:
        from routerforge.policy.trained import train_router
    except ImportError as exc:
        return {"trained": False, "why": f"policy.trained unavailable: {exc}"}
    from routerforge.config import load_settings
    from routerforge.data.matrix import ScoreMatrix

    rng = np.random.default_rng(0)
    topics = [
        "algebra",
        "geometry",
        "history",
        "poetry",
        "chemistry",
        "travel",
        "cooking",
        "physics",
        "law",
        "music",
    ]
    prompts, scores = [], []
    for i in range(n_prompts):
        topic = topics[i % len(topics)]
        hard = topic in ("algebra", "geometry", "chemistry", "physics")
        prompts.append(
            f"Question {i}: explain one idea of {topic} in plain words, case {rng.integers(1_000_000)}."
        )
        scores.append([0.3 if hard else 0.9, 0.95])
    matrix = ScoreMatrix(
        name="bench",
        keys=[str(i) for i in range(n_prompts)],
        prompts=prompts,
        models=["m-small", "m-large"],
        scores=np.clip(np.array(scores) + rng.normal(0, 0.05, (n_prompts, 2)), 0, 1),
        costs=np.full((n_prompts, 2), np.nan),
    )
    settings = load_settings(overrides={"home": home})
    t0 = time.perf_counter()
    train_router(
        "knn",
        matrix,
        np.arange(n_prompts),
        settings.embed,
        settings.routers_dir / "knn",
        cache_dir=settings.cache_dir,
    )
    return {
        "trained": True,
        "prompts": n_prompts,
        "embedder": settings.embed.provider,
        "fit_s": round(time.perf_counter() - t0, 2),
    }


def write_gateway_config(path: Path, upstream_port: int, counters: str = "auto") -> None:
    import yaml

    base = f"http://127.0.0.1:{upstream_port}/v1"
    path.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "id": "m-small",
                        "base_url": base,
                        "input_usd_per_mtok": 0.1,
                        "output_usd_per_mtok": 0.2,
                    },
                    {
                        "id": "m-large",
                        "base_url": base,
                        "input_usd_per_mtok": 5.0,
                        "output_usd_per_mtok": 15.0,
                    },
                ],
                "limits": {"requests_per_minute": 10_000_000},
                "counters": {"backend": counters, "prefix": "rf-bench-" + os.urandom(4).hex()},
                "metrics": {"access": "open"},  # loopback only: the benchmark reads the routing time
            }
        )
    )


def write_litellm_config(path: Path, upstream_port: int) -> None:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": "m-small",
                        "litellm_params": {
                            "model": "openai/m-small",
                            "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                            "api_key": "fake",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False, "drop_params": True},
            }
        )
    )


def find_litellm(given: str | None) -> str | None:
    beside = str(Path(sys.executable).with_name("litellm"))  # the venv this benchmark runs in
    for cand in (given, beside, "/tmp/litellm-venv/bin/litellm", shutil.which("litellm")):
        if cand and Path(cand).is_file():
            return cand
    return None


TOPICS = [
    "algebra",
    "geometry",
    "history",
    "poetry",
    "chemistry",
    "travel",
    "cooking",
    "physics",
    "law",
    "music",
]


def request_texts(salt: str, n: int = 6000) -> list[str]:
    """Distinct prompts never seen in training nor in another run (``salt``): every request embeds a new text."""
    return [
        f"Please explain ({salt} request {i}) a small idea of {TOPICS[(i * 7) % 10]} for a student."
        for i in range(n)
    ]


def chat_bodies(model: str, texts: list[str]) -> Bodies:
    return [
        json.dumps({"model": model, "messages": [{"role": "user", "content": t}], "max_tokens": 16}).encode()
        for t in texts
    ]


def route_bodies(model: str, texts: list[str], *, explain: bool) -> Bodies:
    return [json.dumps({"model": model, "prompt": t, "explain": explain}).encode() for t in texts]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_latency(
    port: int,
    path: str,
    body: Bodies,
    headers: dict[str, str],
    n: int,
    warmup: int,
    cpu_pids: list[int] | None = None,
) -> dict[str, Any]:
    """p50/p99 at concurrency 1 and 8; with ``cpu_pids`` (the serving processes) also their CPU time per
    request at concurrency 1, which, unlike wall times, does not grow with the machine's load."""
    await run_load(port, path, body, headers, concurrency=4, n=warmup, duration_s=60)
    out: dict[str, Any] = {}
    for c in (1, 8):
        before = sum(cpu_seconds(p) for p in cpu_pids or [])
        out[f"c{c}"] = await run_load(port, path, body, headers, concurrency=c, n=n, duration_s=60)
        if cpu_pids and c == 1 and out["c1"]["requests"]:
            used = sum(cpu_seconds(p) for p in cpu_pids) - before
            out["c1"]["server_cpu_ms_per_request"] = round(used * 1000.0 / out["c1"]["requests"], 3)
    return out


def added(gw: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    return {
        c: {
            "added_p50_ms": round(gw[c]["p50_ms"] - direct[c]["p50_ms"], 3),
            "added_p99_ms": round(gw[c]["p99_ms"] - direct[c]["p99_ms"], 3),
        }
        for c in ("c1", "c8")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Fewer requests (a smoke run).")
    parser.add_argument("--n-latency", type=int, default=400, help="Requests per latency point.")
    parser.add_argument("--max-requests", type=int, default=4000, help="Cap of each throughput run.")
    parser.add_argument("--duration", type=float, default=8.0, help="Cap in seconds of each throughput run.")
    parser.add_argument("--concurrency", type=int, default=16, help="Connections of the throughput runs.")
    parser.add_argument("--knn-prompts", type=int, default=1000)
    parser.add_argument("--no-litellm", action="store_true", help="Do not run LiteLLM's proxy.")
    parser.add_argument("--workers", type=int, default=1, help="routerforge serve --workers N.")
    parser.add_argument(
        "--counters",
        default=None,
        help="counters.backend (default: auto (sql on the SQLite store) for 1 worker, redis for more).",
    )
    parser.add_argument("--litellm-bin", default=None, help="Path of a `litellm` proxy executable.")
    parser.add_argument(
        "--embed",
        choices=("minilm-onnx", "static"),
        default=None,
        help="embed.provider of the knn router and the gateway (default: the settings' default, MiniLM ONNX).",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="gateway", help="Result file names: NAME.json and NAME.md.")
    args = parser.parse_args(argv)
    if args.embed == "static" and args.name == "gateway":
        args.name = "gateway_static"  # keep the MiniLM results of the default run
    if args.quick:
        args.n_latency, args.max_requests, args.duration, args.knn_prompts = 60, 300, 3.0, 200

    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-gw-"))
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTERFORGE_")}
    env["ROUTERFORGE_HOME"] = str(home)
    if args.embed:  # the router is trained (here) and served (the gateway) with this embedder
        env["ROUTERFORGE_EMBED__PROVIDER"] = os.environ["ROUTERFORGE_EMBED__PROVIDER"] = args.embed
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            k: getattr(args, k) for k in ("n_latency", "max_requests", "duration", "concurrency", "embed")
        },
        "targets": TARGETS,
    }
    try:
        os.environ["ROUTERFORGE_HOME"] = str(home)
        results["knn_router"] = train_knn(home, args.knn_prompts)
        up_port, gw_port = free_port(), free_port()
        up = subprocess.Popen(
            [PY, str(ROOT / "tests" / "fake_upstream.py"), "--port", str(up_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(up)
        wait_http(up_port, "/v1/models", proc=up)
        gw_cfg = tmp / "gateway.yaml"
        counters = args.counters or ("auto" if args.workers == 1 else "redis")
        write_gateway_config(gw_cfg, up_port, counters)
        results["settings"]["workers"] = args.workers
        results["settings"]["counters"] = counters
        rf = [PY, "-m", "routerforge.cli.main"]
        key_out = subprocess.run(
            [*rf, "keys", "create", "--tenant", "bench", "--json", "--config", str(gw_cfg)],
            env=env,
            capture_output=True,
            check=True,
        )
        key = json.loads(key_out.stdout)["key"]
        gw = subprocess.Popen(
            [*rf, "serve", "--config", str(gw_cfg), "--port", str(gw_port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(gw)
        wait_http(gw_port, "/readyz", proc=gw)
        results["rss_idle"] = tree_rss_mb(gw.pid)
        auth = {"authorization": f"Bearer {key}"}
        direct_body = chat_bodies("m-small", request_texts("direct"))

        async def bench() -> None:
            direct = await measure_latency(
                up_port, "/v1/chat/completions", direct_body, {}, args.n_latency, 100
            )
            results["direct_upstream"] = direct
            pt = await measure_latency(
                gw_port, "/v1/chat/completions", direct_body, auth, args.n_latency, 100, process_tree(gw.pid)
            )
            results["gateway_pass_through"] = {**pt, "added": added(pt, direct)}
            if results["knn_router"].get("trained"):
                knn_body = chat_bodies("router-knn-0.5", request_texts("knn-latency"))
                knn = await measure_latency(
                    gw_port, "/v1/chat/completions", knn_body, auth, args.n_latency, 100, process_tree(gw.pid)
                )
                results["gateway_knn"] = {
                    **knn,
                    "added": added(knn, direct),
                    "routing_ms_mean_from_metrics": routing_ms_mean(gw_port),
                }
            load = dict(concurrency=args.concurrency, n=args.max_requests, duration_s=args.duration)
            results["throughput"] = {
                "direct_upstream": await run_load(up_port, "/v1/chat/completions", direct_body, {}, **load),
                "proxied_pass_through": await run_load(
                    gw_port, "/v1/chat/completions", direct_body, auth, **load
                ),
            }
            if results["knn_router"].get("trained"):
                t = results["throughput"]
                t["proxied_knn"] = await run_load(
                    gw_port,
                    "/v1/chat/completions",
                    chat_bodies("router-knn-0.5", request_texts("knn-load")),
                    auth,
                    **load,
                )
                route = route_bodies("router-knn-0.5", request_texts("route"), explain=False)
                t["route_only_knn"] = await run_load(gw_port, "/v1/route", route, auth, **load)
                route_x = route_bodies("router-knn-0.5", request_texts("route-explain"), explain=True)
                t["route_only_knn_with_neighbours"] = await run_load(
                    gw_port, "/v1/route", route_x, auth, **load
                )

        asyncio.run(bench())
        results["rss_after_load"] = tree_rss_mb(gw.pid)
        results["torch_loaded"] = any(torch_loaded(p) for p in process_tree(gw.pid))
        gw.terminate()
        gw.wait(timeout=30)

        if args.no_litellm:
            results["litellm"] = {"ran": False, "why": "not requested (--no-litellm)"}
        else:
            litellm = find_litellm(args.litellm_bin)
            results["litellm"] = bench_litellm(litellm, tmp, up_port, env, args, direct_body)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(render_markdown(results))
    print(render_markdown(results))
    return 0


def bench_litellm(
    litellm: str | None, tmp: Path, up_port: int, env: dict[str, str], args: argparse.Namespace, body: Bodies
) -> dict[str, Any]:
    if litellm is None:
        return {"ran": False, "why": "no `litellm` proxy executable found (see docs/gateway.md)"}
    cfg = tmp / "litellm.yaml"
    write_litellm_config(cfg, up_port)
    port = free_port()
    master_key = "sk-bench-" + os.urandom(8).hex()
    lenv = {
        **env,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MASTER_KEY": master_key,
    }
    auth = {"authorization": f"Bearer {master_key}"}
    log_path = tmp / "litellm.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [litellm, "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
            env=lenv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_http(port, "/health/liveliness", timeout_s=180, proc=proc)
        except RuntimeError as exc:
            err = log_path.read_text(errors="replace")[-800:]
            return {"ran": False, "why": f"{exc}; {err}"}
        out: dict[str, Any] = {"ran": True, "version": litellm_version(litellm)}

        async def run() -> None:
            direct = await measure_latency(up_port, "/v1/chat/completions", body, {}, args.n_latency, 100)
            lat = await measure_latency(port, "/v1/chat/completions", body, auth, args.n_latency, 100)
            out["latency"] = {**lat, "added": added(lat, direct)}
            out["throughput"] = await run_load(
                port,
                "/v1/chat/completions",
                body,
                auth,
                concurrency=args.concurrency,
                n=args.max_requests,
                duration_s=args.duration,
            )

        asyncio.run(run())
        out["rss"] = rss_mb(proc.pid)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def litellm_version(litellm: str) -> str | None:
    py = Path(litellm).parent / "python"
    try:
        res = subprocess.run(
            [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return res.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def render_markdown(r: dict[str, Any]) -> str:
    def fmt(x: Any) -> str:
        return "n/a" if x is None else (f"{x:.2f}" if isinstance(x, float) else str(x))

    lines = ["# Gateway benchmark", ""]
    m = r["machine"]
    lines += [
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, load average at start "
        f"{m.get('load_average_at_start')} (the machine is shared; other jobs inflate every number). "
        f"Settings: {r['settings']}.",
        "",
    ]
    lines += ["## Added latency (gateway − direct upstream), ms", ""]
    lines += [
        "| target | conc. | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | added p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    direct = r.get("direct_upstream", {})
    rows = [
        ("routerforge pass-through", r.get("gateway_pass_through")),
        ("routerforge router-knn-0.5", r.get("gateway_knn")),
    ]
    lit = r.get("litellm", {})
    if lit.get("ran"):
        rows.append((f"LiteLLM proxy {lit.get('version') or ''}".strip(), lit.get("latency")))
    for name, res in rows:
        if not res:
            continue
        for c in ("c1", "c8"):
            lines.append(
                f"| {name} | {c[1:]} | {fmt(direct.get(c, {}).get('p50_ms'))} | {fmt(res[c]['p50_ms'])} | "
                f"**{fmt(res['added'][c]['added_p50_ms'])}** | {fmt(direct.get(c, {}).get('p99_ms'))} | "
                f"{fmt(res[c]['p99_ms'])} | {fmt(res['added'][c]['added_p99_ms'])} |"
            )
    cpu = [
        (name, res["c1"]["server_cpu_ms_per_request"])
        for name, res in rows[:2]
        if res and "server_cpu_ms_per_request" in res["c1"]
    ]
    if cpu:
        lines += [
            "",
            "Gateway CPU time per request at concurrency 1 (all its threads; does not grow with the load): "
            + "; ".join(f"{name} {ms:.2f} ms" for name, ms in cpu)
            + ".",
        ]
    lines += [
        "",
        "## Throughput (bounded loopback load)",
        "",
        "| run | requests | errors | req/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, res in (r.get("throughput") or {}).items():
        lines.append(
            f"| {name} | {res['requests']} | {res['errors']} | **{fmt(res['rps'])}** | "
            f"{fmt(res['p50_ms'])} | {fmt(res['p99_ms'])} |"
        )
    if lit.get("ran"):
        t = lit["throughput"]
        lines.append(
            f"| LiteLLM proxy | {t['requests']} | {t['errors']} | **{fmt(t['rps'])}** | "
            f"{fmt(t['p50_ms'])} | {fmt(t['p99_ms'])} |"
        )
    lines += ["", "## Memory", ""]
    lines.append(
        f"routerforge gateway: idle {fmt(r.get('rss_idle', {}).get('rss_mb'))} MB, after load "
        f"{fmt(r.get('rss_after_load', {}).get('rss_mb'))} MB (peak {fmt(r.get('rss_after_load', {}).get('peak_rss_mb'))} MB); "
        f"torch loaded: {r.get('torch_loaded')}."
    )
    if lit.get("ran"):
        lines.append(f"LiteLLM proxy: {fmt(lit.get('rss', {}).get('rss_mb'))} MB.")
    else:
        lines.append(f"LiteLLM proxy: not run ({lit.get('why')}).")
    lines += ["", "## Targets", ""]
    t = r.get("throughput") or {}
    checks = [
        (
            "added p50 pass-through ≤ 5 ms (c1)",
            (r.get("gateway_pass_through") or {}).get("added", {}).get("c1", {}).get("added_p50_ms"),
            5.0,
            "le",
        ),
        (
            "added p50 knn ≤ 10 ms (c1)",
            (r.get("gateway_knn") or {}).get("added", {}).get("c1", {}).get("added_p50_ms"),
            10.0,
            "le",
        ),
        ("proxied req/s ≥ 400", (t.get("proxied_pass_through") or {}).get("rps"), 400.0, "ge"),
        ("route-only req/s ≥ 300", (t.get("route_only_knn") or {}).get("rps"), 300.0, "ge"),
        ("peak RSS ≤ 300 MB", (r.get("rss_after_load") or {}).get("peak_rss_mb"), 300.0, "le"),
        ("gateway + knn peak RSS ≤ 250 MB", (r.get("rss_after_load") or {}).get("peak_rss_mb"), 250.0, "le"),
    ]
    for name, value, target, how in checks:
        ok = None if value is None else (value <= target if how == "le" else value >= target)
        lines.append(
            f"- {name}: {fmt(value)} → {'met' if ok else ('not measured' if ok is None else 'NOT met')}"
        )
    lines.append(f"- torch not imported: {'met' if r.get('torch_loaded') is False else 'NOT met'}")
    knn = r.get("knn_router", {})
    lines += ["", f"knn router: {knn}; embedder: {r['settings'].get('embed') or 'default (minilm-onnx)'}"]
    if r.get("gateway_knn"):
        lines.append(
            f"Mean routing time inside the gateway (embedding + knn + policy, from its metrics): "
            f"{fmt(r['gateway_knn'].get('routing_ms_mean_from_metrics'))} ms."
        )
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
