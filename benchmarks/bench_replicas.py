"""Gateway replicas on several "hosts" (network namespaces, veth pairs) sharing PostgreSQL and Redis — one
command (root, iproute2 and socat needed; see tests/netns_lab.py):

    .venv/bin/python benchmarks/bench_replicas.py [--quick] [--runs 5]

Topology: the fake upstream in one namespace, 1–3 ``routerforge serve`` replicas (one worker each) in one
namespace each, the load generator (httpx, asyncio) in another; PostgreSQL (store, keys, request log,
``logging.durability: commit``) and Redis (rate limits, budget reservations) reached over the veth network
through TCP forwarders in the root namespace.

Measured:

* **throughput** with 1, 2 and 3 replicas: answered requests/s at a fixed client concurrency, round robin
  over the replicas, against an instant upstream; client latency p50/p95 and the gateway's *added* latency
  p50/p95 (``total_ms − upstream_ms`` of each request's log row);
* **budget exactness**: bursts of concurrent requests (round robin over the replicas) on a fresh tenant
  budget, several runs per scenario. ``overshoot = max(0, spent − budget)`` is compared with the
  estimation error of the answered requests, ``Σ max(0, actual − reserved estimate)``: with reservations
  the overshoot can never exceed it. Scenarios: *honest* (the upstream respects the prices the estimate
  assumes: overshoot 0), *underestimated* (the upstream writes far more than ``max_tokens``, so each
  request costs ~3× its reservation).

The machine is small (2 cores) and shared with other work: the absolute numbers are noisy and bounded by
CPU (load generator, replicas, upstream, PostgreSQL and Redis all share the same 2 cores), so more replicas
cannot add throughput here; the point of the scaling rows is that replicas agree, not that they scale.

Writes ``benchmarks/results/replicas.json`` and ``benchmarks/results/replicas.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))

from netns_lab import Lab, netns_unavailable  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
BUDGET_USD = 2.5
SCENARIOS = {
    # model, prompt, max_tokens; "dollar": 10,000 USD/Mtok prompt, 0 completion: ~1.01 USD per request
    "honest": ("dollar", "y" * 400, None),
    # "overrun": 5,000 USD/Mtok both ways; max_tokens 1 but the fake upstream answers ~202 words
    "underestimated": ("overrun", "w " * 200, 1),
}


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Shorter phases (smoke run).")
    parser.add_argument("--runs", type=int, default=5, help="Burst runs per budget scenario.")
    parser.add_argument("--duration-s", type=float, default=10.0, help="Throughput phase length.")
    parser.add_argument("--concurrency", type=int, default=16, help="Client concurrency (throughput).")
    parser.add_argument("--burst", type=int, default=20, help="Concurrent requests per budget burst.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.duration_s, args.runs = 4.0, 2
    reason = netns_unavailable()
    if reason is not None:
        sys.exit(f"bench_replicas: {reason}")
    import sqlalchemy

    from routerforge.gateway.auth import KeyStore
    from routerforge.gateway.budgets import estimate_request
    from routerforge.gateway.config import parse_gateway_config
    from routerforge.gateway.db import GatewayDB

    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    dbname = "rf_bench_replicas_" + secrets.token_hex(4)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {dbname}")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"rf_bench_replicas_{secrets.token_hex(3)}"
    workdir.mkdir(parents=True)
    pepper = secrets.token_hex(16)
    lab = Lab(workdir, replicas=3)
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "shared": True,
            "load_average_start": os.getloadavg()[0],
        },
        "settings": vars(args) | {"out": str(args.out)},
    }
    try:
        lab.up()
        instant = lab.upstream(0.0, 9100, "upstream")
        slow = lab.upstream(0.3, 9101, "upstream_slow")
        n_tenants = 2 * args.runs * 3
        config: dict[str, Any] = {
            "models": [
                {"id": "instant", "base_url": instant, "input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.2},
                {
                    "id": "dollar",
                    "base_url": slow,
                    "input_usd_per_mtok": 10_000.0,
                    "output_usd_per_mtok": 0.0,
                    "max_retries": 0,
                },
                {
                    "id": "overrun",
                    "base_url": slow,
                    "input_usd_per_mtok": 5_000.0,
                    "output_usd_per_mtok": 5_000.0,
                    "max_retries": 0,
                },
            ],
            "tenants": [{"name": "load"}]
            + [{"name": f"bud{i}", "daily_usd": BUDGET_USD} for i in range(n_tenants)],
            "counters": {
                "backend": "redis",
                "redis_url": f"redis://{lab.gateway_ip}:16379/0",
                "prefix": "rfbench-" + secrets.token_hex(4),
            },
            "limits": {"requests_per_minute": 1_000_000},
            "key_pepper_env": "RF_BENCH_PEPPER",
        }
        path = workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        store = f"postgresql+psycopg://postgres@{lab.gateway_ip}:15432/{dbname}"
        urls = [lab.replica(i, path, store, {"RF_BENCH_PEPPER": pepper}) for i in (1, 2, 3)]
        for i, url in enumerate(urls, start=1):
            lab.wait_replica(i, url, timeout_s=120)
        local = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
        keys = KeyStore(GatewayDB(local), pepper.encode())
        engine = sqlalchemy.create_engine(local)

        def rows(key_id: str) -> list[tuple[Any, ...]]:
            with engine.connect() as conn:
                return list(
                    conn.exec_driver_sql(
                        "SELECT id, status, total_ms, upstream_ms, cost_usd FROM gw_requests WHERE key_id = %s",
                        (key_id,),
                    ).all()
                )

        def load(key: str, k: int, *extra: str) -> list[dict[str, Any]]:
            flags = [a for u in urls[:k] for a in ("--url", u)]
            return lab.load([*flags, "--key", key, *extra], timeout_s=args.duration_s + 120)

        # -- throughput with 1, 2, 3 replicas ------------------------------------------------------------
        throughput = []
        for k in (1, 2, 3):
            key, info = keys.create("load")
            load(key, k, "--n", "20", "--concurrency", "4", "--model", "instant", "--content", "warm up")
            key, info = keys.create("load")
            res = load(
                key,
                k,
                "--duration-s",
                str(args.duration_s),
                "--concurrency",
                str(args.concurrency),
                "--model",
                "instant",
                "--content",
                "What is the capital of France? Answer in one word.",
            )
            ok = [r for r in res if r["status"] == 200]
            span = max(r["t"] for r in res) - min(r["t0"] for r in res)
            logged = rows(info.id)
            added = [float(t - u) for _, s, t, u, _ in logged if s == 200 and t is not None and u is not None]
            throughput.append(
                {
                    "replicas": k,
                    "requests": len(res),
                    "answered": len(ok),
                    "errors": len(res) - len(ok),
                    "rps": len(ok) / span if span > 0 else None,
                    "client_p50_ms": percentile([r["ms"] for r in ok], 50),
                    "client_p95_ms": percentile([r["ms"] for r in ok], 95),
                    "added_p50_ms": percentile(added, 50),
                    "added_p95_ms": percentile(added, 95),
                    "logged_answered": sum(1 for _, s, *_ in logged if s == 200),
                }
            )
            print(json.dumps(throughput[-1]), flush=True)
        out["throughput"] = throughput

        # -- budget exactness under concurrent bursts ----------------------------------------------------
        parsed = parse_gateway_config(config)
        specs = {m.id: m.to_spec() for m in parsed.models}
        runs = []
        tenant = 0
        for scenario, (model, content, max_tokens) in SCENARIOS.items():
            messages = [{"role": "user", "content": content}]
            chars = len(json.dumps(messages, separators=(",", ":"), ensure_ascii=False))
            est = estimate_request(
                [specs[model]], chars, max_tokens, default_output_tokens=parsed.budgets.default_output_tokens
            ).usd
            for k in (2, 3):
                for run in range(args.runs):
                    key, info = keys.create(f"bud{tenant}")
                    tenant += 1
                    extra = ["--max-tokens", str(max_tokens)] if max_tokens is not None else []
                    res = load(
                        key,
                        k,
                        "--n",
                        str(args.burst),
                        "--concurrency",
                        str(args.burst),
                        "--model",
                        model,
                        "--content",
                        content,
                        *extra,
                    )
                    logged = rows(info.id)
                    costs = [float(c or 0.0) for _, s, _, _, c in logged if s == 200]
                    spent = sum(costs)
                    error = sum(max(0.0, c - est) for c in costs)
                    runs.append(
                        {
                            "scenario": scenario,
                            "replicas": k,
                            "run": run,
                            "burst": args.burst,
                            "budget_usd": BUDGET_USD,
                            "estimate_usd": est,
                            "answered": sum(1 for r in res if r["status"] == 200),
                            "refused_429": sum(1 for r in res if r["status"] == 429),
                            "other": sum(1 for r in res if r["status"] not in (200, 429)),
                            "spent_usd": spent,
                            "overshoot_usd": max(0.0, spent - BUDGET_USD),
                            "estimation_error_usd": error,
                            "within_bound": max(0.0, spent - BUDGET_USD) <= error + 1e-9,
                        }
                    )
                    print(json.dumps(runs[-1]), flush=True)
        out["budget"] = runs
        out["budget_without_reservations"] = (
            "20 concurrent requests through two replicas on a 2.5 USD budget at 1 USD each got 10 answered "
            "(7.5 USD over; issue 11)"
        )
        engine.dispose()
        keys.db.close()
    finally:
        lab.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        admin.dispose()
    out["machine"]["load_average_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replicas.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "replicas.md").write_text(markdown(out))
    print(f"wrote {args.out / 'replicas.json'} and {args.out / 'replicas.md'}")


def _f(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(out: dict[str, Any]) -> str:
    s = out["settings"]
    lines = [
        "# Gateway replicas: throughput and budget exactness (`benchmarks/bench_replicas.py`)",
        "",
        f"Replicas in network namespaces on one machine ({out['machine']['cpus']} cores, shared with other "
        f"work — load average {out['machine']['load_average_start']:.1f} at the start, "
        f"{out['machine']['load_average_end']:.1f} at the end: numbers are noisy and CPU-bound; the load "
        "generator, every replica, the upstream, PostgreSQL and Redis share the same cores, so adding "
        "replicas cannot add throughput here). PostgreSQL store (request log with commit durability) and "
        "Redis counters over veth. Upstream: instant fake.",
        "",
        f"## Throughput (client concurrency {s['concurrency']}, {s['duration_s']:g} s per row)",
        "",
        "| replicas | answered | errors | req/s | client p50 ms | client p95 ms | added p50 ms | added p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["throughput"]:
        lines.append(
            f"| {r['replicas']} | {r['answered']} | {r['errors']} | {_f(r['rps'])} | {_f(r['client_p50_ms'])} "
            f"| {_f(r['client_p95_ms'])} | {_f(r['added_p50_ms'])} | {_f(r['added_p95_ms'])} |"
        )
    lines += [
        "",
        "Added latency: the gateway's own time per request from routing to the committed log row "
        "(`total_ms − upstream_ms` of its log row; key lookup, the rate-limit counter and body parsing come "
        "before and are not in it). Client latency is dominated by queueing on the saturated CPU.",
        "",
        f"## Budget exactness ({s['burst']} concurrent requests per burst, budget {BUDGET_USD} USD)",
        "",
        "| scenario | replicas | runs | reserved estimate USD | answered (min–max) | spent USD (max) "
        "| overshoot USD (max) | estimation error USD (max) | overshoot ≤ error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in out["budget"]:
        groups.setdefault((r["scenario"], r["replicas"]), []).append(r)
    for (scenario, k), rs in groups.items():
        answered = [r["answered"] for r in rs]
        lines.append(
            f"| {scenario} | {k} | {len(rs)} | {rs[0]['estimate_usd']:.3f} | {min(answered)}–{max(answered)} "
            f"| {max(r['spent_usd'] for r in rs):.3f} | {max(r['overshoot_usd'] for r in rs):.3f} "
            f"| {max(r['estimation_error_usd'] for r in rs):.3f} | {all(r['within_bound'] for r in rs)} |"
        )
    lines += [
        "",
        "*honest*: the upstream's usage matches what the estimate assumes (prompt characters / 4, "
        "`max_tokens`): no overshoot. *underestimated*: the upstream ignores `max_tokens` (1) and answers "
        "~200 tokens, so each request costs ~3× its reservation; the overshoot stays within the summed "
        "estimation error of the answered requests, as designed.",
        "",
        f"Before reservations: {out['budget_without_reservations']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
