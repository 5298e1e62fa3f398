"""Shared machinery of the routing benchmarks (``bench_routing_mmlu.py``, ``…_mmlu_subjects.py``,
``…_routerbench.py``): import the development data into a benchmark home (once), run the harness over every
available router family, and write ``benchmarks/results/<name>.json`` + ``<name>.md``.

The benchmark home defaults to ``~/.cache/routerforge-bench`` (outside the repository) so the embedding
cache survives between runs: the dataset is embedded once, not once per fold or per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
# Router families in the order they run (fast ones first, so partial results appear early); any other
# registered family runs after these. Baselines (random, oracle) are always computed by the harness.
FAMILIES = ("knn", "sw", "lexical", "ensemble", "cluster", "mf", "mlp")


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "routerforge-bench")
    parser.add_argument("--router", action="append", help="Router families (default: every available one).")
    parser.add_argument("--param", action="append", default=[], help="ROUTER.KEY=VALUE (repeatable).")
    parser.add_argument("--latency-sample", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000, help="Paired-bootstrap resamples.")
    parser.add_argument(
        "--label", action="append", default=[], help="ROUTER=LABEL: run ROUTER under this result name."
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="Keep the other routers of the existing results file (same data, folds and seed) and add or "
        "replace only the ones run now.",
    )
    args = parser.parse_args(argv)
    import shlex

    args.argv_text = shlex.join(sys.argv[1:] if argv is None else argv)
    return args


def settings_for(home: Path) -> Any:
    from routerforge.config import load_settings

    home.mkdir(parents=True, exist_ok=True)
    return load_settings(overrides={"home": home})


def ensure_dataset(settings: Any, name: str, path: Path, **read_options: Any) -> None:
    """Import ``path`` as dataset ``name`` into the benchmark store unless it is there already
    (``read_options``: keyword arguments of ``read_records``, e.g. ``pulze_score="strict"``)."""
    from routerforge.data.importers import read_records
    from routerforge.data.store import Store

    if not path.exists():
        sys.exit(f"development data not found at {path}")
    store = Store.from_settings(settings)
    try:
        if store.has_dataset(name):
            return
        records, report = read_records(path, **read_options)
        t0 = time.perf_counter()
        result = store.import_records(name, records, source=str(path))
        print(
            f"imported {name}: {result.to_dict()} in {time.perf_counter() - t0:.1f}s ({report.to_dict()['records']} records)"
        )
    finally:
        store.close()


def routers_to_run(requested: list[str] | None) -> list[str]:
    from routerforge.routers.registry import available_routers

    available = set(available_routers())
    default = [f for f in FAMILIES if f in available]
    # llm-policy runs a local LLM per held-out prompt (hours on these sets): only when asked for (--router)
    skip = ("random", "oracle", "llm-policy")
    default += [r for r in sorted(available) if r not in default and r not in skip]
    wanted = requested or default
    missing = [r for r in wanted if r not in available]
    if missing:
        print(f"skipping router families not available yet: {', '.join(missing)}")
    return [r for r in wanted if r in available]


def run(
    name: str,
    title: str,
    data: dict[str, Path],
    setup_kwargs: dict[str, Any],
    args: argparse.Namespace,
    targets: Callable[[dict[str, Any]], list[tuple[str, str, str, bool | None]]],
    command: str,
    read_options: dict[str, dict[str, Any]] | None = None,
    setup_builder: Callable[..., Any] | None = None,
    keep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the benchmark ``name`` and write its JSON and markdown results (``read_options``: per dataset,
    how to import it; ``setup_builder(build_setup, settings, seed, **setup_kwargs)`` replaces the setup, e.g.
    the dev protocol of ``bench_routing_dev.py``; ``keep`` receives ``rows``, ``models``, ``scores`` (true
    scores of the held-out rows), ``fold`` (their fold) and ``pred__<router>`` (pooled out-of-fold predictions))."""
    from rich.console import Console
    from rich.progress import Progress

    from routerforge.cli.routing import build_setup, latency_factory, parse_params, print_table
    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import EmbedderEncoder, RouterSpec, run_bench

    settings = settings_for(args.home)
    for dataset, path in data.items():
        ensure_dataset(settings, dataset, path, **(read_options or {}).get(dataset, {}))
    routers = routers_to_run(args.router)
    labels = dict(item.split("=", 1) for item in args.label)
    specs = [RouterSpec(r, parse_params(args.param, r), labels.get(r)) for r in routers]
    previous: dict[str, Any] = {}
    if args.merge and (args.out / f"{name}.json").is_file():
        previous = json.loads((args.out / f"{name}.json").read_text(encoding="utf-8"))
    if setup_builder is not None:
        setup = setup_builder(build_setup, settings, args.seed, **setup_kwargs)
    else:
        setup = build_setup(settings, seed=args.seed, **setup_kwargs)
    embedder = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    quick = build_embedder(settings.embed.model_copy(update={"cache": False, "threads": 1}), cache_dir=None)
    encoder = EmbedderEncoder(embedder, progress=True)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    doc: dict[str, Any] = {}
    # One harness call per router family (the embeddings come from the cache after the first), writing the
    # results after each, so a long family never holds back the others.
    for k, spec in enumerate(specs or [None]):
        part_keep: dict[str, Any] = {}
        with Progress(console=console) as progress:
            part = run_bench(
                setup,
                [spec] if spec is not None else [],
                encoder,
                latency=latency_factory(quick, encoder),
                latency_sample=args.latency_sample,
                seed=args.seed,
                progress=progress,
                bootstrap=args.bootstrap,
                keep=part_keep,
            )
        if keep is not None and spec is not None:
            import numpy as np

            models = part_keep["models"]
            keep["rows"], keep["models"] = part_keep["rows"], np.array(models)
            keep["scores"] = setup.test.select_models(models).scores[part_keep["rows"]]
            fold_of = np.full(setup.test.n_prompts, -1)
            for f, fold in enumerate(setup.folds):
                fold_of[np.asarray(fold.test, dtype=np.int64)] = f
            keep["fold"] = fold_of[part_keep["rows"]]
            keep[f"pred__{spec.key}"] = part_keep["predicted"][spec.key]
        if not doc and previous and spec is not None:  # --merge: the earlier routers, then this run's
            kept = {n: e for n, e in previous["routers"].items() if n not in ("random", "oracle", spec.key)}
            doc = {**part, "routers": {**kept, **part["routers"]}}
            dates = previous.get("merged_from", {}).get("router_dates", {})
            doc["merged_from"] = {
                "date_utc": previous.get("date_utc"),
                "routers": sorted(kept),
                "params": previous.get("params", {}),
                # when each kept router was measured (a merge of a merge keeps the original dates)
                "router_dates": {n: dates.get(n, previous.get("date_utc")) for n in sorted(kept)},
            }
        elif not doc:
            doc = part
        elif spec is not None:
            routers = {n: e for n, e in doc["routers"].items() if n not in ("random", "oracle")}
            routers[spec.key] = part["routers"][spec.key]
            doc["bootstrap"]["seconds"] += part["bootstrap"]["seconds"]
            doc["routers"] = {
                **routers,
                "random": part["routers"]["random"],
                "oracle": part["routers"]["oracle"],
            }
        doc["complete"] = k == len(specs) - 1 or not specs
        _finish(doc, name, title, args, specs, embedder, t0, targets, command)
    print_table(doc, console)
    print(f"wrote {args.out / (name + '.json')} and .md")
    return doc


def _finish(
    doc: dict[str, Any],
    name: str,
    title: str,
    args: argparse.Namespace,
    specs: list[Any],
    embedder: Any,
    t0: float,
    targets: Callable[[dict[str, Any]], list[tuple[str, str, str, bool | None]]],
    command: str,
) -> None:
    doc["embedder"] = embedder.id
    doc["params"] = {**doc.get("merged_from", {}).get("params", {}), **{s.key: s.params for s in specs}}
    doc["wall_s"] = time.perf_counter() - t0
    doc["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    extra = getattr(args, "argv_text", None)
    doc["command"] = f"{command} {extra}" if extra else command
    doc["date_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    doc["targets"] = [
        {"target": t, "value": v, "reference": ref, "met": met} for t, v, ref, met in targets(doc)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(markdown(doc, title), encoding="utf-8")


def markdown(doc: dict[str, Any], title: str) -> str:
    from routerforge.evaluate.report import (
        comparison_note,
        dropped_note,
        markdown_table,
        single_rows,
        table_rows,
    )

    lines = [
        f"# {title}",
        "",
        *(
            []
            if doc.get("complete", True)
            else ["**Partial results: the run is still going (or was stopped).**", ""]
        ),
        f"Command: `{doc['command']}` ({doc['date_utc']} UTC, {doc['machine']['cpus']} CPUs, "
        f"embedder `{doc['embedder']}`, total {doc['wall_s']:.0f} s).",
        "",
        *(
            [
                "Merged (`--merge`, same data, folds and seed): "
                + "; ".join(
                    f"{', '.join(n for n, d in doc['merged_from']['router_dates'].items() if d == date)} "
                    f"from the run of {date} UTC"
                    for date in sorted(set(doc["merged_from"]["router_dates"].values()), key=str)
                )
                + "; the others from this run.",
                "",
            ]
            if doc.get("merged_from")
            else []
        ),
        f"Data: `{doc['data']}`"
        + (f" → `{doc['test_data']}`" if doc.get("test_data") else "")
        + f"; split: {doc['split']}; {doc['n_prompts']} held-out prompts"
        + (
            f"; dropped prompts: {doc['dropped_prompts']['matched']} of {doc['dropped_prompts']['listed']} matched"
            if doc.get("dropped_prompts")
            else ""
        )
        + ".",
        "",
        markdown_table(*table_rows(doc)),
        "",
        *(f"{note}\n" for note in (comparison_note(doc), dropped_note(doc)) if note),
        "Single models:",
        "",
        markdown_table(*single_rows(doc)),
        "",
        "Targets:",
        "",
        markdown_table(
            ["target", "measured", "reference", "met"],
            [
                [t["target"], t["value"], t["reference"], {True: "yes", False: "**no**", None: "—"}[t["met"]]]
                for t in doc["targets"]
            ],
        ),
        "",
        "Fit time is the mean over folds; predict latency is per prompt, one at a time, single thread, "
        "embedding (uncached) included, on a sample of held-out prompts. Definitions: docs/evaluation.md.",
        "",
    ]
    return "\n".join(lines)


def best_router(doc: dict[str, Any], key: str, *, higher: bool = True) -> tuple[str | None, float | None]:
    """The non-baseline router with the best value of ``key``."""
    cands = [
        (n, e[key])
        for n, e in doc["routers"].items()
        if n not in ("random", "oracle") and e.get(key) is not None
    ]
    if not cands:
        return None, None
    return max(cands, key=lambda x: x[1]) if higher else min(cands, key=lambda x: x[1])


def baseline_target(doc: dict[str, Any], key: str) -> tuple[str, str, str, bool | None]:
    """Is the best router (by ``key``, the compared metric) significantly above every trivial baseline?"""
    name, _ = best_router(doc, key)
    if name is None or "vs_baselines" not in doc["routers"][name]:
        return ("best router significantly above every trivial baseline", "—", "", None)
    entry = doc["routers"][name]
    each = entry["vs_baselines"]
    lows = [v["ci95"][0] for v in each.values() if v["ci95"] is not None]
    value = f"{name} − " + "; ".join(
        f"{b} {v['diff']:+.3f}" + (f" [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]" if v["ci95"] else "")
        for b, v in each.items()
    )
    ref = ", ".join(f"{b} {e[key]:.3f}" for b, e in doc["baselines"].items() if e.get(key) is not None)
    met = None if len(lows) < len(each) else all(lo > 0 for lo in lows)
    return ("best router significantly above every trivial baseline (95 % paired bootstrap)", value, ref, met)


def latency_target(doc: dict[str, Any]) -> tuple[str, str, str, bool | None]:
    name, p50 = best_router(doc, "predict_ms_p50", higher=False)
    value = f"{p50:.1f} ms ({name})" if p50 is not None else "—"
    return (
        "predict p50 ≤ 10 ms (fastest router)",
        value,
        "semantic-router < 10 ms",
        None if p50 is None else p50 <= 10,
    )
