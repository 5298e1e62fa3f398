"""Benchmark of the data layer: importing the development data into the store, and reading it back.

Run: ``.venv/bin/python benchmarks/bench_data_import.py`` (needs ``../shared/data``; PostgreSQL is measured
too when the local server at 127.0.0.1:5432 accepts us).

For each dataset (RouteLLM MMLU, RouterBench subset, Pulze v1) and each database: the first import, a
re-import of the same files (idempotent: nothing changes), ``load_matrix`` and ``dataset_stats``; plus the
peak Python memory of an import (tracemalloc, measured in a separate import). Writes ``benchmarks/results/data_import.json`` and
``benchmarks/results/data_import.md``.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from routerforge.data.importers import read_records
from routerforge.data.store import Store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
DATASETS = (
    ("mmlu", "routellm-mmlu", "routellm-csv"),
    ("routerbench", "routerbench-subset", "routerbench-csv"),
    ("pulze", "pulze-v1", "pulze-jsonl"),
)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _import(store: Store, name: str, path: Path, fmt: str) -> Any:
    records, _ = read_records(path, fmt, strict=True)
    return store.import_records(name, records)


def _postgres() -> tuple[str, Callable[[], None]] | None:
    for user in ("postgres", "root"):
        admin = f"postgresql+psycopg://{user}@127.0.0.1:5432/test"
        try:
            engine = create_engine(admin, connect_args={"connect_timeout": 3})
            schema = f"rf_bench_{uuid.uuid4().hex[:10]}"
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except Exception:
            continue

        def drop(engine: Any = engine, schema: str = schema) -> None:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()

        return f"{admin}?options=-csearch_path%3D{schema}", drop
    return None


def bench(url: str, database: str) -> list[dict[str, Any]]:
    rows = []
    store = Store(url)
    try:
        for name, folder, fmt in DATASETS:
            path = SHARED / folder
            report, first = _timed(lambda: _import(store, name, path, fmt))  # noqa: B023
            _, again = _timed(lambda: _import(store, name, path, fmt))  # noqa: B023
            matrix, load = _timed(lambda: store.load_matrix(name))  # noqa: B023
            stats, stat_time = _timed(lambda: store.dataset_stats(name))  # noqa: B023
            tracemalloc.start()  # a separate import: tracemalloc slows Python down
            _import(store, f"{name}-memory", path, fmt)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append(
                {
                    "database": database,
                    "dataset": name,
                    "prompts": stats["prompts"],
                    "models": len(stats["models"]),
                    "records": report.records,
                    "import_s": round(first, 3),
                    "reimport_s": round(again, 3),
                    "records_per_s": round(report.records / first),
                    "peak_python_mb": round(peak / 2**20, 1),
                    "load_matrix_s": round(load, 3),
                    "stats_s": round(stat_time, 3),
                    "matrix_shape": list(matrix.scores.shape),
                }
            )
            print(rows[-1], flush=True)
    finally:
        store.close()
    return rows


def main() -> None:
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} not found: this benchmark needs the development data")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += bench(f"sqlite:///{Path(tmp) / 'bench.db'}", "sqlite")
    pg = _postgres()
    if pg is not None:
        url, drop = pg
        try:
            rows += bench(url, "postgresql")
        finally:
            drop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": 2}
    (RESULTS / "data_import.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    columns = list(rows[0])
    lines = [
        "# Data import benchmark",
        "",
        "`.venv/bin/python benchmarks/bench_data_import.py` — first import, idempotent re-import, "
        "`load_matrix` and `dataset_stats` on the development data; peak Python memory (tracemalloc) of a separate import. Shared 2-core machine: times are noisy.",
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    (RESULTS / "data_import.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'data_import.md'}")


if __name__ == "__main__":
    main()
