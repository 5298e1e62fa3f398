"""What drift detection costs (gateway/drift.py) — one command:

    .venv/bin/python benchmarks/bench_drift.py [--train 2000] [--window 1000] [--new 100]

A knn router trained on the built-in task suite with the default embedder (offline ONNX MiniLM, as served),
a request log of ``--window`` requests to its synthetic model (new prompts of the same suite, with the
choices the router makes for them; logging them is not timed), then one
:class:`~routerforge.gateway.drift.DriftMonitor` as the gateway runs it (one embedding thread). Measured:

* first run: router load, reference built (training prompts embedded, leave-one-out similarities, reference
  decisions on held-out prompts) and every window prompt embedded;
* steady run: nothing new (everything cached);
* incremental run: ``--new`` requests arrived since;
* restart: a new monitor (reference vectors from the disk cache; decisions and window prompts recomputed).

Also the statuses it reports (traffic from the training distribution: ``ok`` expected). Writes
``benchmarks/results/drift.json`` and ``benchmarks/results/drift.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def log_window(db: Any, routing: Any, prompts: list[str], start: int) -> None:
    """Log ``prompts`` as requests to ``smart`` with the choices the router really makes for them."""
    from routerforge.gateway.db import utcnow
    from routerforge.gateway.logentry import LogEntry
    from routerforge.gateway.requestlog import RequestLog

    target = routing.resolve("default", "smart")
    scores = target.router.predict_many(prompts)
    decisions = [routing.decide(target, t, scores=row) for t, row in zip(prompts, scores, strict=True)]
    now = utcnow()
    RequestLog(db).write(
        [
            LogEntry(
                id=f"bench{start + i:08d}",
                tenant="default",
                created_at=now,
                requested_model="smart",
                synthetic_model="smart",
                chosen_model=d.model,
                answered_model=d.model,
                predicted=d.predicted,
                status=200,
                prompt=text,
            )
            for i, (text, d) in enumerate(zip(prompts, decisions, strict=True))
        ]
    )


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="Training prompts (all in the reference).")
    parser.add_argument("--held", type=int, default=500, help="Held-out prompts (reference decisions).")
    parser.add_argument("--window", type=int, default=1000, help="Requests in the window.")
    parser.add_argument(
        "--new", type=int, default=100, help="Requests that arrive before the incremental run."
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rf-bench-drift-") as tmp:
        os.environ["ROUTERFORGE_HOME"] = str(Path(tmp) / "home")
        os.environ.pop("ROUTERFORGE_EMBED__PROVIDER", None)
        result = run(Path(tmp), args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "drift.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def run(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from routerforge.config import load_settings
    from routerforge.data.records import EvalRecord
    from routerforge.data.store import Store
    from routerforge.gateway.config import parse_gateway_config
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.drift import DriftMonitor
    from routerforge.gateway.routing import Routing
    from routerforge.policy.trained import train_router
    from routerforge.tasks import generate_tasks

    settings = load_settings(overrides={"embed": {"threads": 1}})
    n = args.train + args.held
    items = generate_tasks(n + args.window + args.new, seed=0, test_fraction=0.0)
    reference, traffic = items[:n], items[n:]
    records = []
    for i, item in enumerate(reference):
        hard = item.metadata.get("difficulty", 1) > 1  # a: right on easy prompts only; b: mostly right
        split = "train" if i < args.train else "test"
        records += [
            EvalRecord(item.key, item.text, "a", 0.0 if hard else 1.0, cost_usd=1e-4, split=split),
            EvalRecord(
                item.key, item.text, "b", 0.0 if not hard and i % 5 == 0 else 1.0, cost_usd=1e-3, split=split
            ),
        ]
    store = Store.from_settings(settings)
    try:
        store.import_records("bench", records)
        matrix = store.load_matrix("bench")
    finally:
        store.close()
    rows = [i for i, s in enumerate(matrix.splits) if s == "train"]
    train_s, trained = timed(
        lambda: train_router(
            "knn",
            matrix,
            rows,
            settings.embed,
            tmp / "router",
            {"k": 10},
            settings.cache_dir,
            index=settings.index,
            split="train",
        )
    )
    trained.close()
    raw = {
        "models": [{"id": m, "base_url": "http://127.0.0.1:9/v1"} for m in ("a", "b")],
        "synthetic_models": [{"name": "smart", "router": str(tmp / "router")}],
        "routing": {"embed_threads": 1},
    }
    gw = parse_gateway_config(raw)
    db = GatewayDB(settings.store_url)
    routing = Routing(settings, gw)
    try:
        log_window(db, routing, [p.text for p in traffic[: args.window]], 0)
        monitor = DriftMonitor(settings, lambda: (gw, routing), db)
        first_s, first = timed(monitor.refresh)
        steady_s, _ = timed(monitor.refresh)
        log_window(db, routing, [p.text for p in traffic[args.window :]], args.window)
        incremental_s, _ = timed(monitor.refresh)
        restart = DriftMonitor(settings, lambda: (gw, routing), db)
        restart_s, last = timed(restart.refresh)
    finally:
        routing.close()
        db.close()
    report = last["smart"].to_dict()
    return {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}",
        "embedder": settings.embed.provider,
        "train_prompts": args.train,
        "held_out_prompts": args.held,
        "window_requests": args.window,
        "new_requests": args.new,
        "train_router_s": round(train_s, 2),
        "first_run_s": round(first_s, 2),
        "steady_run_s": round(steady_s, 3),
        "incremental_run_s": round(incremental_s, 3),
        "restart_run_s": round(restart_s, 2),
        "status": report["status"],
        "checks": {
            name: {"status": c["status"], "value": c["value"], "p_value": c["p_value"]}
            for name, c in report["checks"].items()
        },
        "first_status": first["smart"].status,
    }


def markdown(r: dict[str, Any]) -> str:
    checks = ", ".join(f"{name} {c['status']} ({_num(c['value'])})" for name, c in r["checks"].items())
    return (
        "# Drift detection cost\n\n"
        f"`.venv/bin/python benchmarks/bench_drift.py` — {r['date']}, {r['machine']}; embedder {r['embedder']} "
        f"(1 thread); knn router on {r['train_prompts']:,} task-suite prompts, {r['held_out_prompts']} held out; "
        f"window of {r['window_requests']:,} requests from the same distribution.\n\n"
        "| run | what it does | seconds |\n| --- | --- | --- |\n"
        f"| first | load the router, embed {r['train_prompts']:,} training prompts, leave-one-out similarities, "
        f"decide {r['held_out_prompts']} held-out prompts, embed {r['window_requests']:,} window prompts "
        f"| {r['first_run_s']} |\n"
        f"| steady | nothing new: everything cached | {r['steady_run_s']} |\n"
        f"| incremental | {r['new_requests']} new requests embedded | {r['incremental_run_s']} |\n"
        f"| restart | new monitor: reference vectors from the disk cache, decisions and window recomputed "
        f"| {r['restart_run_s']} |\n\n"
        f"(training the router itself: {r['train_router_s']} s.) Reported status: **{r['status']}** — {checks}.\n"
    )


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
