"""Hot reload and shadow routing on loopback — one command:

    .venv/bin/python benchmarks/bench_reload.py [--quick]

A real gateway (uvicorn in a thread, SQLite store, request log on) in front of the instant fake upstream
(``tests/fake_upstream.py``), two real knn routers trained on the tests' review data (hash embedder: this
measures the reload machinery, not embedding speed). Measured:

* promote → served: the time from ``promote()`` returning (the row committed) to the first response served
  by the promoted router, while 2 client threads send requests back to back, at ``reload.interval_s`` 2.0
  (the default) and 0.5; alternating promote / rollback; and the number of failed requests meanwhile;
* shadow overhead: p50/p99 latency of sequential chat requests with and without ``shadow: {share: 1.0}``.

Writes ``benchmarks/results/reload.json`` and ``benchmarks/results/reload.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))


def _gateway(raw: dict[str, Any], cfg: Path) -> Any:
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    return create_app(load_settings(), parse_gateway_config(raw), config_path=cfg)


def promote_latency(base_url: str, tmp: Path, interval_s: float, rounds: int) -> dict[str, Any]:
    import openai

    from gateway_server import LoopbackServer
    from review_setup import ALGEBRA, STRONG, WEAK, gateway_raw, write_config
    from routerforge.config import load_settings
    from routerforge.gateway.config import load_gateway_config
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.promote import promote, rollback

    raw = gateway_raw(base_url)
    raw["require_auth"] = False
    raw["reload"] = {"interval_s": interval_s}
    cfg = write_config(tmp / f"gateway-{interval_s}.yaml", raw)
    settings = load_settings()
    gw = load_gateway_config(cfg)
    served: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()
    out: list[float] = []
    with LoopbackServer(_gateway(raw, cfg)) as server:

        def load() -> None:
            client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
            while not stop.is_set():
                try:
                    r = client.chat.completions.with_raw_response.create(
                        model="smart", messages=[{"role": "user", "content": ALGEBRA}]
                    )
                    with lock:
                        served.append((time.monotonic(), r.headers["x-routerforge-model"]))
                except Exception as exc:  # counted: the benchmark reports failures
                    failures.append(repr(exc))

        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        db = GatewayDB(settings.store_url)
        for i in range(rounds):
            want = WEAK if i % 2 == 0 else STRONG
            if want == WEAK:
                promote(settings, gw, db.engine, "smart", "v2", actor="bench")
            else:
                rollback(gw, db.engine, "smart", actor="bench")
            t0 = time.monotonic()
            while True:
                with lock:
                    hit = [t for t, m in served if t > t0 and m == want]
                if hit:
                    out.append(hit[0] - t0)
                    break
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("the promotion did not reach the gateway in 60 s")
                time.sleep(0.01)
            time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        db.close()
    arr = np.array(out) * 1000
    return {
        "interval_s": interval_s,
        "rounds": rounds,
        "requests": len(served),
        "failed_requests": len(failures),
        "promote_to_served_ms": {
            "p50": float(np.percentile(arr, 50)),
            "max": float(arr.max()),
            "mean": float(arr.mean()),
        },
    }


def shadow_overhead(base_url: str, tmp: Path, n: int, tag: str = "") -> dict[str, Any]:
    import openai

    from gateway_server import LoopbackServer
    from review_setup import ALGEBRA, HISTORY, gateway_raw, write_config

    out: dict[str, Any] = {}
    for label, extra in (("no_shadow", {}), ("shadow_share_1", {"shadow": {"router": "v2", "share": 1.0}})):
        raw = gateway_raw(base_url, **extra)
        raw["require_auth"] = False
        cfg = write_config(tmp / f"gateway-{label}{tag}.yaml", raw)
        lat = []
        with LoopbackServer(_gateway(raw, cfg)) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
            for i in range(n + 20):
                text = (ALGEBRA if i % 2 else HISTORY) + f" #{i}"
                t0 = time.perf_counter()
                client.chat.completions.create(model="smart", messages=[{"role": "user", "content": text}])
                if i >= 20:  # warm-up excluded
                    lat.append((time.perf_counter() - t0) * 1000)
        arr = np.array(lat)
        out[label] = {
            "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)),
            "n": n,
        }
    out["added_p50_ms"] = out["shadow_share_1"]["p50_ms"] - out["no_shadow"]["p50_ms"]
    out["added_p99_ms"] = out["shadow_share_1"]["p99_ms"] - out["no_shadow"]["p99_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer rounds and requests.")
    args = parser.parse_args()
    rounds, n = (4, 100) if args.quick else (10, 400)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        home = tmp / "home"
        home.mkdir()
        os.environ["ROUTERFORGE_HOME"] = str(home)
        os.environ["ROUTERFORGE_EMBED__PROVIDER"] = "hash"
        from fake_upstream import FakeUpstream
        from review_setup import train_two

        train_two(home)
        with FakeUpstream() as up:
            reload_results = [promote_latency(up.base_url, tmp, s, rounds) for s in (2.0, 0.5)]
            shadow = shadow_overhead(up.base_url, tmp, n)
            from fake_upstream import Fault

            up.inject(Fault("slow", delay_s=0.05, times=None))  # an upstream that takes 50 ms
            shadow_slow = shadow_overhead(up.base_url, tmp, n // 2, "-slow")
            up.clear_faults()
    doc = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "quick": args.quick,
        "reload": reload_results,
        "shadow": shadow,
        "shadow_upstream_50ms": shadow_slow,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reload.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Hot reload and shadow routing (loopback, `benchmarks/bench_reload.py`)",
        "",
        "| reload.interval_s | promotions | promote → served p50 (ms) | max (ms) | requests meanwhile | failed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in reload_results:
        p = r["promote_to_served_ms"]
        lines.append(
            f"| {r['interval_s']:g} | {r['rounds']} | {p['p50']:.0f} | {p['max']:.0f} | {r['requests']} | "
            f"{r['failed_requests']} |"
        )
    lines += [
        "",
        "| sequential chat requests | upstream | p50 (ms) | p99 (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for up_label, sh in (("instant", shadow), ("50 ms", shadow_slow)):
        lines += [
            f"| no shadow | {up_label} | {sh['no_shadow']['p50_ms']:.2f} | {sh['no_shadow']['p99_ms']:.2f} |",
            f"| shadow share 1.0 | {up_label} | {sh['shadow_share_1']['p50_ms']:.2f} | "
            f"{sh['shadow_share_1']['p99_ms']:.2f} |",
            f"| added | {up_label} | {sh['added_p50_ms']:+.2f} | {sh['added_p99_ms']:+.2f} |",
        ]
    lines += [
        "",
        f"Machine: {doc['machine']['platform']}, {doc['machine']['cpus']} CPUs (shared with other work).",
    ]
    (RESULTS / "reload.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
