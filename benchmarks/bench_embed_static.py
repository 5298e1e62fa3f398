"""Benchmark of the static embedder (``embed.provider: static``) against MiniLM ONNX: speed, memory, fidelity
and routing quality.

Run: ``.venv/bin/python benchmarks/bench_embed_static.py`` (``--parts`` for a subset; other parts already
in the JSON are kept) → ``benchmarks/results/embed_static.json`` and ``embed_static.md``; the routing
part also keeps each harness run in ``benchmarks/results/embed_static/<provider>/``.

Parts
- ``speed``: one prompt at a time, one thread (wall and CPU p50/p99) at 35, ~72 (MMLU median), 256 and
  512 tokens — embedding alone and the whole knn decision (strip, embed, predict, choose; a knn router
  trained on all MMLU prompts with ``max_tokens: 512``); throughput of whole sets on 2 cores; load time.
- ``memory``: peak RSS (VmHWM) of fresh processes: Python + numpy alone, each encoder loaded and used,
  and a serving process (a saved knn router loaded with ``TrainedRouter.load`` deciding 300 prompts).
- ``fidelity``: label-free agreement with MiniLM on 1,000 MMLU + 500 RouterBench prompts: overlap of the
  10 nearest neighbours and the correlation of pairwise cosines.
- ``routing``: the routing benchmarks (``bench_routing_mmlu.py``, ``…_mmlu_subjects.py``,
  ``…_routerbench.py``) with knn and mlp, once per provider (``ROUTERFORGE_EMBED__PROVIDER``), same
  harness, folds and seeds; the table lists both and the difference.
- ``build``: distil the table from scratch into a temporary directory (wall and CPU time, peak RSS).

The machine is shared: every part records the 1-minute load average before and after, and CPU times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_embed import PROMPT_30_WORDS, read_mmlu, read_routerbench  # noqa: E402
from bench_routing_common import DATA, RESULTS, ensure_dataset, settings_for  # noqa: E402

PARTS = ("speed", "memory", "fidelity", "routing", "build")
PROVIDERS = ("minilm-onnx", "static")
ROUTING_SCRIPTS = {
    "mmlu": "bench_routing_mmlu.py",
    "mmlu_subjects": "bench_routing_mmlu_subjects.py",
    "routerbench": "bench_routing_routerbench.py",
}
ROUTING_ROUTERS = ("knn", "mlp")
HOME = Path.home() / ".cache" / "routerforge-bench"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def peak_rss_snippet() -> str:
    return (
        "def peak_mb():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) / 1024\n"
    )


# -- prompts of given token lengths --------------------------------------------------------------------
def prompts_by_length(mmlu: list[str]) -> dict[str, str]:
    """Real MMLU text cut at exactly 256 and 512 tokens, the median-length MMLU prompt and a 32-word one."""
    from routerforge.embed.onnx import load_tokenizer

    tok = load_tokenizer().tokenizer
    lengths = [len(e.ids) for e in tok.encode_batch(mmlu[:2000], add_special_tokens=False)]
    median = int(np.median(lengths))
    typical = next(p for p, n in zip(mmlu, lengths, strict=False) if n == median)
    joined = "\n\n".join(mmlu[:60])
    enc = tok.encode(joined, add_special_tokens=False)
    out = {"short": PROMPT_30_WORDS, "mmlu_median": typical}
    for n in (256, 512):
        out[f"{n}_tokens"] = joined[: enc.offsets[n - 1][1]]
    return out


def time_calls(fn: Any, text: str, rounds: int, per_round: int) -> dict[str, float]:
    for _ in range(20):
        fn(text)
    p50, p99, cpu = [], [], []
    for _ in range(rounds):
        wall, cpus = [], []
        for _ in range(per_round):
            c0 = time.process_time()  # every thread of the process (a search pool, if any, included)
            t0 = time.perf_counter()
            fn(text)
            wall.append((time.perf_counter() - t0) * 1000)
            cpus.append((time.process_time() - c0) * 1000)
        p50.append(pct(wall, 50))
        p99.append(pct(wall, 99))
        cpu.append(pct(cpus, 50))
    return {
        "p50_ms": float(np.median(p50)),
        "p99_ms": float(np.median(p99)),
        "cpu_p50_ms": float(np.median(cpu)),
    }


def train_knn(provider: str, max_tokens: int, out_dir: Path, settings: Any) -> Path:
    """A knn router (defaults) trained on every MMLU prompt with ``provider``, saved in ``out_dir``."""
    from routerforge.data.store import Store
    from routerforge.policy.trained import train_router

    ensure_dataset(settings, "routellm-mmlu", DATA / "routellm-mmlu")
    store = Store.from_settings(settings)
    try:
        matrix = store.load_matrix("routellm-mmlu")
    finally:
        store.close()
    embed = settings.embed.model_copy(update={"provider": provider, "max_tokens": max_tokens})
    train_router("knn", matrix, None, embed, out_dir, cache_dir=settings.cache_dir, progress=True)
    return out_dir


def part_speed(quick: bool) -> dict[str, Any]:
    from routerforge.embed import StaticEmbedder
    from routerforge.policy.trained import TrainedRouter

    mmlu = read_mmlu(DATA / "routellm-mmlu")
    routerbench = read_routerbench(DATA / "routerbench-subset")
    texts = prompts_by_length(mmlu)
    t0 = time.perf_counter()
    emb = StaticEmbedder(max_tokens=512)
    emb.embed(["load"])
    load_s = time.perf_counter() - t0
    rounds, per_round = (2, 100) if quick else (5, 300)
    settings = settings_for(HOME)
    with tempfile.TemporaryDirectory() as tmp:
        trained = TrainedRouter.load(
            train_knn("static", 512, Path(tmp) / "knn", settings),
            settings=settings,
            embed_overrides={"threads": 1, "cache": False},
        )
        rows = {}
        for name, text in texts.items():
            tokens = len(emb.token_ids([text])[0])
            rows[name] = {
                "tokens": tokens,
                "embed": time_calls(lambda t: emb.embed([t]), text, rounds, per_round),
                "decision": time_calls(lambda t: trained.decide(t), text, rounds, per_round),
            }
    throughput = {}
    sets = {"mmlu": mmlu, "routerbench_raw": routerbench}
    for name, prompts in sets.items():
        for max_tokens in (256, 512):
            fresh = StaticEmbedder(max_tokens=max_tokens)
            fresh.embed(["load"])
            c0 = time.process_time()
            t0 = time.perf_counter()
            fresh.embed(prompts)
            wall = time.perf_counter() - t0
            throughput[f"{name}_max{max_tokens}"] = {
                "prompts": len(prompts),
                "seconds": wall,
                "prompts_per_s": len(prompts) / wall,
                "cpu_s": time.process_time() - c0,
            }
    return {
        "load_s": load_s,
        "single": rows,
        "throughput": throughput,
        "threads_single": 1,
        "cpus_throughput": os.cpu_count(),
        "targets": {"decision_p50_ms_512_tokens": 3.0, "prompts_per_s": 1000, "serving_peak_rss_mb": 250},
    }


MEMORY_CODE = r"""
import json, sys
{peak}
kind, arg = sys.argv[1], sys.argv[2]
import numpy as np
import routerforge
base = peak_mb()
single = None
prompts = json.loads(open(arg).read()) if kind != "serve-static" and kind != "serve-minilm-onnx" else None
if kind == "python":
    pass
elif kind == "static":
    from routerforge.embed import StaticEmbedder
    e = StaticEmbedder(max_tokens=512)
    for p in prompts[:300]:
        e.embed([p])
    single = peak_mb()
    e.embed(prompts)
elif kind == "minilm-onnx":
    from routerforge.embed import MiniLMOnnxEmbedder
    e = MiniLMOnnxEmbedder(threads=1)
    for p in prompts[:300]:
        e.embed([p])
    single = peak_mb()
else:
    from routerforge.config import load_settings
    from routerforge.policy.trained import TrainedRouter
    settings = load_settings(overrides={{"home": sys.argv[3]}})
    trained = TrainedRouter.load(arg, settings=settings, embed_overrides={{"threads": 1, "cache": False}})
    for p in json.loads(open(sys.argv[4]).read())[:300]:
        trained.decide(p)
print(json.dumps({{"baseline_mb": base, "peak_one_at_a_time_mb": single, "peak_mb": peak_mb()}}))
"""


def run_memory(kind: str, *args: str) -> dict[str, Any]:
    code = MEMORY_CODE.format(peak=peak_rss_snippet())
    out = subprocess.run(
        [sys.executable, "-c", code, kind, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_memory() -> dict[str, Any]:
    mmlu = read_mmlu(DATA / "routellm-mmlu")
    settings = settings_for(HOME)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "prompts.json"
        sample.write_text(json.dumps(mmlu[::7]), encoding="utf-8")
        result["python_numpy_routerforge"] = run_memory("python", str(sample))
        for provider in PROVIDERS:
            result[f"encoder_{provider}"] = run_memory(provider, str(sample))
            router_dir = train_knn(provider, settings.embed.max_tokens, Path(tmp) / provider, settings)
            result[f"serve_knn_{provider}"] = run_memory(
                f"serve-{provider}", str(router_dir), str(HOME), str(sample)
            )
    result["note"] = (
        "encoder_*: 300 prompts one at a time (+ the whole 2,006-prompt sample in one call for static); "
        "serve_knn_*: a knn router trained on all 14,042 MMLU prompts, loaded with TrainedRouter.load "
        "(threads 1, no vector cache) deciding 300 prompts one at a time. baseline_mb: after importing "
        "numpy and routerforge."
    )
    return result


def part_fidelity() -> dict[str, Any]:
    from routerforge.embed import BoilerplateStripper, CachedEmbedder, MiniLMOnnxEmbedder, StaticEmbedder

    settings = settings_for(HOME)
    rng = np.random.default_rng(0)
    mmlu = read_mmlu(DATA / "routellm-mmlu")
    rb = read_routerbench(DATA / "routerbench-subset")
    rb = BoilerplateStripper().fit(rb).apply_many(rb)
    texts = [mmlu[i] for i in rng.choice(len(mmlu), 1000, replace=False)]
    texts += [rb[i] for i in rng.choice(len(rb), 500, replace=False)]
    minilm = CachedEmbedder(MiniLMOnnxEmbedder(threads=2), settings.cache_dir).embed(texts)
    static = StaticEmbedder().embed(texts)
    k = 10
    upper = np.triu_indices(len(texts), 1)

    def neighbours(v: np.ndarray) -> np.ndarray:
        sim = v @ v.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1)[:, :k]

    def ranks(x: np.ndarray) -> np.ndarray:
        r = np.empty(len(x))
        r[np.argsort(x)] = np.arange(len(x))
        return r

    a, b = neighbours(minilm), neighbours(static)
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))
    sm, ss = (minilm @ minilm.T)[upper], (static @ static.T)[upper]
    from routerforge.embed import HashEmbedder

    hashed = HashEmbedder(dim=256).embed(texts)
    hash_overlap = float(
        np.mean([len(set(x) & set(y)) / k for x, y in zip(a, neighbours(hashed), strict=True)])
    )
    return {
        "prompts": len(texts),
        "neighbour_overlap_at_10": overlap,
        "pairwise_cosine_pearson": float(np.corrcoef(sm, ss)[0, 1]),
        "pairwise_cosine_spearman": float(np.corrcoef(ranks(sm), ranks(ss))[0, 1]),
        "hash256_neighbour_overlap_at_10": hash_overlap,
    }


def part_routing(out: Path, routers: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, script in ROUTING_SCRIPTS.items():
        for provider in PROVIDERS:
            folder = out / "embed_static" / provider
            env = {**os.environ, "ROUTERFORGE_EMBED__PROVIDER": provider}
            cmd = [sys.executable, str(HERE / script), "--out", str(folder)]
            for r in routers:
                cmd += ["--router", r]
            print(f"routing: {name} with {provider} ...", flush=True)
            before = load()
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True)
            stem = Path(script).stem
            doc = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
            result.setdefault(name, {})[provider] = {
                "embedder": doc.get("embedder"),
                "n_prompts": doc.get("n_prompts"),
                "wall_s": time.perf_counter() - t0,
                "loadavg_before": before,
                "loadavg_after": load(),
                "routers": {
                    r: {k: v for k, v in doc["routers"][r].items() if not isinstance(v, dict | list)}
                    | (
                        {"vs_baseline": doc["routers"][r]["vs_baseline"]}
                        if "vs_baseline" in doc["routers"][r]
                        else {}
                    )
                    for r in doc["routers"]
                },
                "baselines": {
                    n: {k: v for k, v in e.items() if not isinstance(v, dict | list)}
                    for n, e in (doc.get("baselines") or {}).items()
                },
                "file": str((folder / f"{stem}.json").relative_to(out.parent.parent)),
            }
    return result


def part_build() -> dict[str, Any]:
    code = (
        "import json, resource, sys, time\n"
        + peak_rss_snippet()
        + "from routerforge.embed.static import ensure_table\n"
        "t0 = time.perf_counter(); c0 = time.process_time()\n"
        "path = ensure_table(sys.argv[1], progress=False)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t0, 'cpu_s': time.process_time() - c0,"
        " 'peak_rss_mb': peak_mb(), 'bytes': path.stat().st_size}))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- report --------------------------------------------------------------------------------------------
def _cond(part: dict[str, Any]) -> str:
    b, a = part.get("loadavg_before"), part.get("loadavg_after")
    return f"{b[0]:.1f} → {a[0]:.1f}" if b and a else "n/a"


ROUTING_KEYS = {
    "mmlu": [("apgr", "APGR", "{:.3f}"), ("cpt50", "CPT(50%)", "{:.1%}"), ("cpt80", "CPT(80%)", "{:.1%}")],
    "mmlu_subjects": [("apgr", "APGR", "{:.3f}"), ("cpt50", "CPT(50%)", "{:.1%}")],
    "routerbench": [
        ("aiq", "AIQ", "{:.4f}"),
        ("quality_at_best_cost", "quality @ GPT-4 cost", "{:.4f}"),
        ("cost_share_at_best_quality", "cost share @ GPT-4 quality", "{:.1%}"),
    ],
}


def _fmt(fmt: str, value: Any) -> str:
    return "—" if value is None else fmt.format(value)


def _vs(v: dict[str, Any] | None) -> str:
    if not v:
        return "—"
    lo, hi = v["ci95"]
    verdict = "n.s." if not v["significant"] else ("better" if v["diff"] > 0 else "worse")
    return f"{v['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict} ({v['baseline']})"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Static embedder vs MiniLM ONNX",
        "",
        f"`{result['command']}` on {m['cpus']} CPUs ({m['platform']}, Python {m['python']}). The machine is "
        "shared: the load column is the 1-minute load average before → after (2 = both cores busy); "
        "CPU times do not grow with load, wall times do.",
        "",
    ]
    s = result.get("speed")
    if s:
        lines += [
            f"## Speed (measured {s['measured_at']}, load {_cond(s)})",
            "",
            f"Static table load (tokenizer + memory-mapped table, table present): {s['load_s'] * 1000:.0f} ms.",
            "One prompt at a time, one thread; *decision* = strip, embed, knn predict (k=100 over 14,042 MMLU "
            "prompts, Qdrant Edge exact search), price estimate and choice, through `TrainedRouter.decide`. "
            "CPU = CPU time of the whole process (every thread) per call.",
            "",
            "| prompt | tokens | embed p50 / p99 ms | embed CPU p50 ms | decision p50 / p99 ms | decision CPU p50 ms |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in s["single"].items():
            e, d = row["embed"], row["decision"]
            lines.append(
                f"| {name} | {row['tokens']} | {e['p50_ms']:.3f} / {e['p99_ms']:.3f} | {e['cpu_p50_ms']:.3f} | "
                f"{d['p50_ms']:.3f} / {d['p99_ms']:.3f} | {d['cpu_p50_ms']:.3f} |"
            )
        lines += [
            "",
            "| whole set, one call (tokenizer on all cores) | prompts | wall s | prompts/s | CPU s |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, t in s["throughput"].items():
            lines.append(
                f"| {name} | {t['prompts']:,} | {t['seconds']:.2f} | {t['prompts_per_s']:,.0f} | {t['cpu_s']:.2f} |"
            )
        lines.append("")
    mem = result.get("memory")
    if mem:
        lines += [
            f"## Peak RSS (VmHWM of fresh processes, measured {mem['measured_at']})",
            "",
            "| process | after imports MB | peak after 300 single prompts MB | peak MB |",
            "| --- | --- | --- | --- |",
        ]
        for name, row in mem.items():
            if isinstance(row, dict) and "peak_mb" in row:
                single = row.get("peak_one_at_a_time_mb")
                lines.append(
                    f"| {name} | {row['baseline_mb']:.0f} | {_fmt('{:.0f}', single)} | {row['peak_mb']:.0f} |"
                )
        lines += ["", mem["note"], ""]
    f = result.get("fidelity")
    if f:
        lines += [
            f"## Agreement with MiniLM (label-free, measured {f['measured_at']})",
            "",
            f"{f['prompts']:,} prompts (1,000 MMLU, 500 RouterBench with the boilerplate stripped): "
            f"overlap of the 10 nearest neighbours {f['neighbour_overlap_at_10']:.3f} "
            f"(hash embedder, 256 dims: {f['hash256_neighbour_overlap_at_10']:.3f}); correlation of pairwise "
            f"cosines: Pearson {f['pairwise_cosine_pearson']:.3f}, Spearman {f['pairwise_cosine_spearman']:.3f}.",
            "",
        ]
    r = result.get("routing")
    if r:
        lines += [
            "## Routing quality: static vs MiniLM (same harness, folds, seeds)",
            "",
            "Each cell: MiniLM → static (difference). Decision p50 is the harness's per-prompt latency, one "
            "thread, embedding included (MMLU-length prompts).",
            "",
        ]
        for name, by_provider in r.items():
            if name not in ROUTING_KEYS:
                continue  # measured_at, load averages
            base, mine = by_provider.get("minilm-onnx"), by_provider.get("static")
            if not base or not mine:
                continue
            keys = ROUTING_KEYS[name] + [
                ("predict_ms_p50", "decision p50 ms", "{:.2f}"),
                ("predict_cpu_ms_p50", "decision CPU p50 ms", "{:.2f}"),
            ]
            main_key, main_label, main_fmt = ROUTING_KEYS[name][0]
            baselines = ", ".join(
                f"{n} {_fmt(main_fmt, e.get(main_key))}" for n, e in (mine.get("baselines") or {}).items()
            )
            lines += [
                f"### {name} ({mine['n_prompts']} held-out prompts; runs: `{base['file']}`, `{mine['file']}`)",
                "",
                f"Trivial baselines ({main_label}): {baselines or 'not reported'}. Load average during the runs: "
                f"MiniLM {_cond(base)}, static {_cond(mine)} (wall latencies grow with it, CPU times do not).",
                "",
                "| router | "
                + " | ".join(label for _, label, _ in keys)
                + " | vs strongest baseline: MiniLM → static |",
                "|---" * (len(keys) + 2) + "|",
            ]
            for router in mine["routers"]:
                if router not in base["routers"] or router in ("random", "oracle"):
                    continue
                cells = []
                for key, _, fmt in keys:
                    a, b = base["routers"][router].get(key), mine["routers"][router].get(key)
                    diff = "" if a is None or b is None or "ms" in key else f" ({b - a:+.3f})"
                    cells.append(f"{_fmt(fmt, a)} → {_fmt(fmt, b)}{diff}")
                cells.append(
                    f"{_vs(base['routers'][router].get('vs_baseline'))} → {_vs(mine['routers'][router].get('vs_baseline'))}"
                )
                lines.append(f"| {router} | " + " | ".join(cells) + " |")
            lines.append("")
    b = result.get("build")
    if b:
        lines += [
            f"## Building the table (measured {b['measured_at']}, load {_cond(b)})",
            "",
            f"{b['seconds']:.0f} s wall, {b['cpu_s']:.0f} s CPU, peak RSS {b['peak_rss_mb']:.0f} MB, "
            f"{b['bytes'] / 1e6:.1f} MB on disk.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds (speed part)")
    parser.add_argument("--router", action="append", help="routing part: router families (default knn, mlp)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]  # empty: only rewrite the markdown
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    path = args.out / "embed_static.json"
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    result["command"] = ".venv/bin/python benchmarks/bench_embed_static.py"
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    runners = {
        "speed": lambda: part_speed(args.quick),
        "memory": part_memory,
        "fidelity": part_fidelity,
        "routing": lambda: part_routing(args.out, tuple(args.router or ROUTING_ROUTERS)),
        "build": part_build,
    }
    for part in parts:
        print(f"== {part}", flush=True)
        before = load()
        c0 = time.process_time()
        doc = runners[part]()
        doc["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        doc["loadavg_before"], doc["loadavg_after"] = before, load()
        doc["parent_cpu_s"] = time.process_time() - c0
        result[part] = doc
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        (args.out / "embed_static.md").write_text(markdown(result), encoding="utf-8")
        print(
            json.dumps({k: v for k, v in doc.items() if k != "routing"}, indent=1, default=str)[:3000],
            flush=True,
        )
    (args.out / "embed_static.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {path} and embed_static.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
