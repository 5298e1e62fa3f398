"""HNSW graph of a Qdrant Edge shard at 100k and 1M prompts: build time, memory, disk, recall, query latency.

Run: ``.venv/bin/python benchmarks/bench_hnsw.py`` (``--sizes 100000,1000000``, ``--queries 200``,
``--work DIR``).

Data: the synthetic prompts of ``bench_scale.py`` (never the shared data), embedded with the static
encoder (``embed.provider: static``, 256 dims) into a memory-mapped ``vectors.npy`` under ``--work``
(reused when present). The query prompts are generated with another seed and are not in the index.

For each size, in a fresh process (its peak RSS is the VmHWM of that process): create an Edge shard
without a WAL (as ``index build`` does for scratch shards), upsert the first N vectors in batches of 4,096
through ``EdgeIndex.upsert`` (the Index protocol), then ``optimize()`` (builds the HNSW graph, Qdrant's
defaults m=16, ef_construct=100). Then, one query at a time on one thread: exact (exhaustive) search and
HNSW search at the default ef and at ef 128/256, k = 10 and 100; recall@k = overlap with the exact top k.

Writes ``benchmarks/results/hnsw.json`` and ``benchmarks/results/hnsw.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import write_dataset  # noqa: E402  (the same synthetic prompts)

BATCH = 4096
EMBED_CHUNK = 20_000


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _embedder() -> Any:
    from routerforge.config import EmbedSettings
    from routerforge.embed.factory import build_embedder

    return build_embedder(EmbedSettings(provider="static", cache=False))


def embed_all(work: Path, n: int, seed: int, name: str) -> np.ndarray:
    """Vectors of n synthetic prompts (seed), cached in work/name.npy."""
    out = work / f"{name}.npy"
    if out.exists():
        arr = np.load(out, mmap_mode="r")
        if arr.shape[0] >= n:
            return arr
    src = work / f"{name}.jsonl"
    if not src.exists() or sum(1 for _ in src.open()) < n:
        _log(f"writing {n:,} synthetic prompts (seed {seed})")
        write_dataset(src, n, seed=seed)
    embedder = _embedder()
    dim = int(embedder.dim)
    vectors = np.lib.format.open_memmap(
        out.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, dim)
    )
    start = time.perf_counter()
    chunk: list[str] = []
    done = 0
    with src.open(encoding="utf-8") as fh:
        for line in fh:
            if done + len(chunk) >= n:
                break
            chunk.append(json.loads(line)["prompt"])
            if len(chunk) == EMBED_CHUNK:
                vectors[done : done + len(chunk)] = embedder.embed(chunk)
                done += len(chunk)
                chunk = []
                _log(f"  embedded {done:,}/{n:,} ({done / (time.perf_counter() - start):,.0f}/s)")
        if chunk:
            vectors[done : done + len(chunk)] = embedder.embed(chunk)
            done += len(chunk)
    vectors.flush()
    del vectors
    out.with_suffix(".tmp.npy").replace(out)
    return np.load(out, mmap_mode="r")


def _du_mb(path: Path) -> float:
    return round(sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_and_query(vectors_path: str, queries_path: str, n: int, shard: str, out: str) -> None:
    """Child process: build the shard of the first n vectors, optimise, query; write a JSON report."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from routerforge.index.edge import EdgeIndex

    vectors = np.load(vectors_path, mmap_mode="r")
    queries = np.load(queries_path)
    dim = int(vectors.shape[1])
    report: dict[str, Any] = {"points": n, "dim": dim}
    index = EdgeIndex(shard, dim, wal=False, mode="replace")
    t0, c0 = time.perf_counter(), _cpu()
    for start in range(0, n, BATCH):
        end = min(start + BATCH, n)
        index.upsert(range(start, end), np.asarray(vectors[start:end]))
    index.flush()
    report["upsert"] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(_cpu() - c0, 1)}
    _log(f"  {n:,}: upserted in {report['upsert']['wall_s']} s")
    t0, c0 = time.perf_counter(), _cpu()
    index.optimize()
    report["hnsw_build"] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(_cpu() - c0, 1)}
    _log(f"  {n:,}: HNSW built in {report['hnsw_build']['wall_s']} s")
    report["disk_mb"] = _du_mb(Path(shard))
    report["rss_after_build_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    index.close()

    # Reopen as a server process would (loads the optimised segment), then query one at a time.
    searches: dict[str, Any] = {}
    exact = EdgeIndex(shard, dim, exact=True, mode="open")
    hnsw = {ef: EdgeIndex(shard, dim, hnsw_ef=ef, mode="open") for ef in (None, 128, 256)}
    for k in (10, 100):
        truth: list[set[int]] = []
        times: list[float] = []
        for q in queries:
            t = time.perf_counter()
            hits = exact.query(q[None, :], limit=k, mode="dense")[0]
            times.append((time.perf_counter() - t) * 1000)
            truth.append({h.id for h in hits})
        searches[f"exact_k{k}"] = {
            "p50_ms": round(float(np.median(times)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3),
            "recall": 1.0,
        }
        for ef, idx in hnsw.items():
            times, recall = [], []
            for q, want in zip(queries, truth, strict=True):
                t = time.perf_counter()
                hits = idx.query(q[None, :], limit=k, mode="dense")[0]
                times.append((time.perf_counter() - t) * 1000)
                recall.append(len({h.id for h in hits} & want) / max(1, len(want)))
            searches[f"hnsw_ef{ef or 'default'}_k{k}"] = {
                "p50_ms": round(float(np.median(times)), 3),
                "p99_ms": round(float(np.percentile(times, 99)), 3),
                "recall": round(float(np.mean(recall)), 4),
            }
    report["search"] = searches
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    for idx in (exact, *hnsw.values()):
        idx.close()
    Path(out).write_text(json.dumps(report))


def to_markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# HNSW graph of a Qdrant Edge shard: 100k → 1M prompts",
        "",
        f"`.venv/bin/python benchmarks/bench_hnsw.py` ({doc['finished']}, {doc['machine']}; load average "
        f"{doc['load_start']} at the start, {doc['load_end']} at the end — the machine's 2 cores are shared, "
        "so wall times grow with load; CPU times do not).",
        "",
        "Synthetic prompts of `bench_scale.py`, static encoder (256 dims); build = upsert through "
        "`EdgeIndex.upsert` (no WAL, batches of 4,096) then `optimize()` (HNSW, Qdrant defaults m=16, "
        "ef_construct=100), in a fresh process per size. Queries: "
        f"{doc['queries']} prompts not in the index, one at a time on one thread; recall@k = overlap with "
        "the exact top k.",
        "",
        "| points | upsert wall / CPU s | HNSW build wall / CPU s | disk MB | peak RSS MB (build) | peak RSS MB (all) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["runs"]:
        lines.append(
            f"| {r['points']:,} | {r['upsert']['wall_s']} / {r['upsert']['cpu_s']} | "
            f"{r['hnsw_build']['wall_s']} / {r['hnsw_build']['cpu_s']} | {r['disk_mb']} | "
            f"{r['rss_after_build_mb']} | {r['peak_rss_mb']} |"
        )
    lines += [
        "",
        "| points | search | k | p50 ms | p99 ms | recall@k |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["runs"]:
        for name, s in r["search"].items():
            kind, _, k = name.rpartition("_k")
            lines.append(
                f"| {r['points']:,} | {kind.replace('_', ' ')} | {k} | {s['p50_ms']} | {s.get('p99_ms', '—')} | "
                f"{s['recall']} |"
            )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("/tmp/routerforge-hnsw"))
    parser.add_argument(
        "--keep", action="store_true", help="Keep the shards (default: delete after each size)."
    )
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    load_start = [round(x, 1) for x in os.getloadavg()]
    vectors = embed_all(args.work, max(sizes), seed=0, name="prompts")
    del vectors
    queries = embed_all(args.work, args.queries, seed=12345, name="queries")
    np.save(args.work / "queries_sample.npy", np.asarray(queries[: args.queries]))
    runs = []
    ctx = mp.get_context("spawn")
    for n in sizes:
        _log(f"size {n:,}")
        shard = args.work / f"shard-{n}"
        out = args.work / f"report-{n}.json"
        proc = ctx.Process(
            target=build_and_query,
            args=(
                str(args.work / "prompts.npy"),
                str(args.work / "queries_sample.npy"),
                n,
                str(shard),
                str(out),
            ),
        )
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"size {n} failed (exit {proc.exitcode})")
        runs.append(json.loads(out.read_text()))
        if not args.keep:
            shutil.rmtree(shard, ignore_errors=True)
    doc = {
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        "load_start": load_start,
        "load_end": [round(x, 1) for x in os.getloadavg()],
        "queries": args.queries,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hnsw.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "hnsw.md").write_text(to_markdown(doc))
    _log(f"wrote {RESULTS / 'hnsw.md'}")


if __name__ == "__main__":
    main()
