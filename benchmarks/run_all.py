"""Run every benchmark in turn (each also runs alone: ``.venv/bin/python benchmarks/bench_X.py``).

Results land in ``benchmarks/results/`` as JSON plus a short markdown table. Run on a quiet machine: the
numbers are wall-clock medians and move with whatever else runs on the cores.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_embed.py",
    "bench_data_import.py",
    "bench_routing_routerbench.py",
    "bench_routing_mmlu.py",
    "bench_routing_mmlu_subjects.py",
    "bench_routing_pulze.py",
    "bench_backends.py",
    "bench_gateway.py",
    "bench_reload.py",
    "bench_drift.py",
    "bench_local_models.py",
]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        start = time.perf_counter()
        print(f"== {script}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script)])
        print(f"== {script}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(script)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
