"""The gateway's own cost per request, as CPU time and (with ``--valgrind``) instructions — one command:

    .venv/bin/python benchmarks/bench_gateway_cpu.py [--valgrind] [--embed static|minilm-onnx]

Wall times on a shared 2-core machine move with whatever else runs; CPU time per request moves less, and the
instructions executed per request (counted by valgrind's callgrind, user space) hardly at all, so they are
the measure to compare two versions of the code by. Same processes as ``bench_gateway.py`` (the instant
fake upstream, ``routerforge serve`` with one worker, SQLite store, request log on, a knn router); the load is
one connection (concurrency 1), every request a new prompt, for five kinds of request: pass-through chat,
pass-through streamed chat, ``router-knn-0.5`` chat, streamed, and ``POST /v1/route``.

* CPU: user + system time of the gateway process (all threads) over ``--n`` requests, ``--rounds`` times
  (the median is reported);
* ``--valgrind``: the gateway runs under ``valgrind --tool=callgrind`` with instrumentation off, switched on
  (``callgrind_control``) only around each kind's ``--n`` requests: instructions per request;
* ``--pyspy PATH --profile KIND``: a py-spy (``PATH``) sampling profile of ``KIND`` (raw stacks) after the runs.

To compare with other code, point ``PYTHONPATH`` at another copy of ``src``. Writes
``benchmarks/results/gateway_cpu.json`` and ``.md`` (``--name``).
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gateway as bg  # the same processes, load generator and router as bench_gateway

KINDS = ("pass_through", "pass_through_stream", "knn", "knn_stream", "route")
PATHS = {"route": "/v1/route"}


def bodies(kind: str, salt: str, n: int) -> list[bytes]:
    texts = bg.request_texts(salt, n)
    model = "m-small" if kind.startswith("pass_through") else "router-knn-0.5"
    if kind == "route":
        return bg.route_bodies(model, texts, explain=False)
    if kind.endswith("_stream"):
        return [
            json.dumps(
                {
                    "model": model,
                    "messages": [{"role": "user", "content": t}],
                    "max_tokens": 16,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
            ).encode()
            for t in texts
        ]
    return bg.chat_bodies(model, texts)


def callgrind(*args: str) -> str:
    return subprocess.run(["callgrind_control", *args], capture_output=True, text=True).stdout


def instructions(prefix: Path, pid: int, label: str) -> int | None:
    """Total instructions of the dump named ``label`` (callgrind writes PREFIX.PID.N per dump)."""
    for f in sorted(prefix.parent.glob(f"{prefix.name}.{pid}.*")):
        text = f.read_text(errors="replace")
        if f"Trigger: dump {label}" in text:
            for line in text.splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="Requests per kind and round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--embed", choices=("minilm-onnx", "static"), default="static")
    parser.add_argument("--valgrind", action="store_true", help="Count instructions with callgrind.")
    parser.add_argument("--pyspy", default=None, help="Path of a py-spy executable (with --profile).")
    parser.add_argument("--profile", default=None, help="Kind to sample with py-spy after the runs.")
    parser.add_argument("--out", type=Path, default=bg.RESULTS)
    parser.add_argument("--name", default="gateway_cpu")
    args = parser.parse_args(argv)
    if args.valgrind:
        args.rounds = 1  # instruction counts do not move with the load: one round is enough
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    if args.valgrind and shutil.which("valgrind") is None:
        parser.error("--valgrind needs valgrind (apt-get install valgrind)")

    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-cpu-"))
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTERFORGE_")}
    env["ROUTERFORGE_HOME"] = os.environ["ROUTERFORGE_HOME"] = str(home)
    env["ROUTERFORGE_EMBED__PROVIDER"] = os.environ["ROUTERFORGE_EMBED__PROVIDER"] = args.embed
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {k: getattr(args, k) for k in ("n", "rounds", "embed", "valgrind")},
        "kinds": {},
    }
    prefix = tmp / "callgrind"
    try:
        results["knn_router"] = bg.train_knn(home, 1000)
        up_port, gw_port = bg.free_port(), bg.free_port()
        up = subprocess.Popen(
            [bg.PY, str(bg.ROOT / "tests" / "fake_upstream.py"), "--port", str(up_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(up)
        bg.wait_http(up_port, "/v1/models", proc=up)
        cfg = tmp / "gateway.yaml"
        bg.write_gateway_config(cfg, up_port)
        rf = [bg.PY, "-m", "routerforge.cli.main"]
        key_out = subprocess.run(
            [*rf, "keys", "create", "--tenant", "bench", "--json", "--config", str(cfg)],
            env=env,
            capture_output=True,
            check=True,
        )
        key = json.loads(key_out.stdout)["key"]
        wrap = (
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={prefix}.%p"]
            if args.valgrind
            else []
        )
        gw = subprocess.Popen(
            [*wrap, *rf, "serve", "--config", str(cfg), "--port", str(gw_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(gw)
        bg.wait_http(gw_port, "/readyz", timeout_s=1200 if args.valgrind else 120, proc=gw)
        auth = {"authorization": f"Bearer {key}"}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}

        async def bench() -> None:
            for kind in kinds:  # warm-up: connections, caches, first-use imports
                warm = bodies(kind, f"warm-{kind}", 100)
                await bg.run_load(
                    gw_port, PATHS.get(kind, "/v1/chat/completions"), warm, auth, concurrency=1, n=100,
                    duration_s=600,
                )  # fmt: skip
            for r in range(args.rounds):
                for kind in kinds:
                    load = bodies(kind, f"r{r}-{kind}", args.n)
                    if args.valgrind:
                        callgrind("-i", "on", str(gw.pid))
                    before = bg.cpu_seconds(gw.pid)
                    out = await bg.run_load(
                        gw_port, PATHS.get(kind, "/v1/chat/completions"), load, auth, concurrency=1,
                        n=args.n, duration_s=3600,
                    )  # fmt: skip
                    used = bg.cpu_seconds(gw.pid) - before
                    row: dict[str, Any] = {
                        "requests": out["requests"],
                        "errors": out["errors"],
                        "cpu_ms_per_request": round(used * 1000.0 / max(1, out["requests"]), 3),
                        "load_average": round(os.getloadavg()[0], 2),
                    }
                    if args.valgrind:
                        callgrind("-i", "off", str(gw.pid))
                        label = f"{kind}-r{r}"
                        callgrind("-d", label, str(gw.pid))
                        total = instructions(prefix, gw.pid, label)
                        if total is not None:
                            row["instructions_per_request"] = round(total / max(1, out["requests"]))
                    runs[kind].append(row)
                    print(kind, row, flush=True)
            if args.pyspy and args.profile:
                target = tmp / f"{args.profile}.pyspy.txt"
                spy = subprocess.Popen(
                    [args.pyspy, "record", "-p", str(gw.pid), "-r", "250", "-f", "raw", "-o", str(target)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(2)
                load = bodies(args.profile, "pyspy", 2000)
                await bg.run_load(
                    gw_port, PATHS.get(args.profile, "/v1/chat/completions"), load, auth, concurrency=1,
                    n=2000, duration_s=600,
                )  # fmt: skip
                spy.send_signal(2)
                spy.wait(60)
                if target.exists():
                    dest = args.out / f"{args.name}_{args.profile}.pyspy.txt"
                    shutil.copy(target, dest)
                    results["pyspy"] = str(dest)

        asyncio.run(bench())
        for kind, rows in runs.items():
            summary: dict[str, Any] = {
                "runs": rows,
                "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in rows),
            }
            if any("instructions_per_request" in r for r in rows):
                summary["instructions_per_request"] = statistics.median(
                    r["instructions_per_request"] for r in rows if "instructions_per_request" in r
                )
            results["kinds"][kind] = summary
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(render(results))
    print(render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Gateway CPU per request",
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, load average {m['load_average_at_start']} at the start, "
        f"{m.get('load_average_at_end')} at the end. Settings: {r['settings']}. One connection; the gateway "
        "process's CPU time (all threads) per request; instructions (user space, callgrind) when measured.",
        "",
    ]
    if r["settings"].get("valgrind"):
        lines += [
            "Measured under valgrind: the CPU times are valgrind's (tens of times slower); compare instructions.",
            "",
        ]
    if r.get("note"):
        lines += [r["note"], ""]
    lines += [
        "| request | CPU ms / request (median) | runs | instructions / request |",
        "| --- | --- | --- | --- |",
    ]
    for kind, s in r["kinds"].items():
        runs = ", ".join(f"{x['cpu_ms_per_request']:.2f}" for x in s["runs"])
        ins = s.get("instructions_per_request")
        lines.append(
            f"| {kind} | **{s['cpu_ms_per_request']:.2f}** | {runs} | {'—' if ins is None else f'{ins / 1e6:.2f} M'} |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
