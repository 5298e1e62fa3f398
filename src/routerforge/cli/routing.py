"""Routing commands: ``train``, ``route``, ``bench``, ``calibrate`` and ``router export|import``.

Thin commands: the work is in ``policy.trained`` (train/load a router with its embedder),
``policy`` (choosing a model) and ``evaluate`` (splits, harness, calibration, reports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state
from routerforge.cli.routing_archive import DEFAULT_MAX_FILES, DEFAULT_MAX_MIB
from routerforge.errors import ConfigError, ValidationError

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.data.matrix import ScoreMatrix

ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="Router parameter KEY=VALUE, or ROUTER.KEY=VALUE for one router (repeatable)."
    ),
]
StrongOpt = Annotated[
    str | None, typer.Option("--strong", help="Strong model of a binary (strong/weak) setup.")
]
WeakOpt = Annotated[str | None, typer.Option("--weak", help="Weak model of a binary (strong/weak) setup.")]

router_app = typer.Typer(help="Export and import trained routers as one archive.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("train")(train)
    app.command("route")(route)
    app.command("bench")(bench)
    app.command("calibrate")(calibrate)
    app.add_typer(router_app, name="router")


# ------------------------------------------------------------------------------------------- helpers
def parse_params(items: list[str] | None, router: str | None = None) -> dict[str, Any]:
    """``["k=50", "knn.alpha=0.3"]`` → the parameters for ``router`` (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Invalid --param {item!r}.", hint="Use KEY=VALUE or ROUTER.KEY=VALUE, e.g. knn.k=50."
            )
        key = key.strip()
        if "." in key:
            target, key = key.split(".", 1)
            if target != router:
                continue
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key] = raw
    return out


def _load_matrix(settings: Settings, name: str) -> ScoreMatrix:
    from routerforge.data.store import Store

    store = Store.from_settings(settings)
    try:
        return store.load_matrix(name)
    finally:
        store.close()


def load_catalog(settings: Settings) -> dict[str, Any]:
    """Registered candidate models (``routerforge models add``) by id: their list prices feed every decision."""
    from routerforge.data.store import Store

    store = Store.from_settings(settings)
    try:
        return {m.id: m for m in store.list_models()}
    finally:
        store.close()


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------- train
def train(
    ctx: typer.Context,
    router: Annotated[str, typer.Argument(help="Router family (registry name), e.g. knn, mlp, mf, sw.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the router into.")],
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset to train on (optional for semantic --routes).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Train on this split only (default: 'train' when the dataset has it)."),
    ] = None,
    param: ParamOpt = None,
    routes: Annotated[
        str | None,
        typer.Option(
            "--routes", help="semantic: routes YAML file, or builtin:task_types (see docs/routers.md)."
        ),
    ] = None,
    route_map: Annotated[
        list[str] | None,
        typer.Option("--map", help="semantic: ROUTE=MODEL, or default=MODEL for no route (repeatable)."),
    ] = None,
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="llm-policy: prompted (default), sft or dpo (sft/dpo need [train])."),
    ] = None,
    describe: Annotated[
        str | None,
        typer.Option(
            "--describe",
            help="An installed local model (e.g. smollm2-135m) that rewrites each prompt as a task description "
            "before embedding (for cluster; slow: one local generation per prompt).",
        ),
    ] = None,
    gateway_yaml: Annotated[
        Path | None,
        typer.Option(
            "--gateway-yaml", help="Also write a gateway.yaml that serves this router (must not exist)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a router on a dataset and save it as a directory of plain files.

    ``semantic --routes FILE`` without ``--data`` trains on the routes' utterances alone (no fallback).
    """
    import numpy as np

    from routerforge.policy.trained import train_router
    from routerforge.routers.registry import router_class

    settings = state(ctx).settings
    router_class(router)  # unknown router: clear error before loading anything
    if gateway_yaml is not None and gateway_yaml.exists():
        raise ValidationError(
            f"{gateway_yaml} exists already; routerforge does not overwrite a gateway config.",
            hint="Pass another --gateway-yaml path, or add the printed snippet to your config by hand.",
        )
    params = parse_params(param, router)
    if stage is not None:
        params["stage"] = stage  # a router without stages rejects it with the list of its parameters
    if routes is not None or route_map:
        from routerforge.routers.routes_file import semantic_training

        matrix, params = semantic_training(
            router, routes, route_map, params, None if data is None else _load_matrix(settings, data)
        )
        data = matrix.name
    elif data is None:
        raise ValidationError("--data is required.", hint="Name a dataset (`routerforge data list`).")
    else:
        matrix = _load_matrix(settings, data)
    if matrix.n_models < 2:
        raise ValidationError(
            f"Dataset {data!r} has {matrix.n_models} model(s); a router needs at least two."
        )
    if split is None and "train" in set(matrix.splits):
        split = "train"
    rows = matrix.split_rows(split) if split is not None else np.arange(matrix.n_prompts)
    if rows.size == 0:
        present = sorted({s for s in matrix.splits if s})
        raise ValidationError(
            f"Dataset {data!r} has no prompts in split {split!r} (splits: {present or 'none'})."
        )
    trained = train_router(
        router,
        matrix,
        rows,
        settings.embed,
        out,
        params,
        cache_dir=settings.cache_dir,
        progress=not as_json,
        catalog=load_catalog(settings),
        index=settings.index,
        split=split,
        describe=describe,
    )
    strong, weak = trained.engine.pair()
    snippet = gateway_snippet(out, trained.models)
    info: dict[str, Any] = {
        "out": str(out),
        "router": router,
        "data": data,
        "split": split,
        "n_train": int(rows.size),
        "models": trained.models,
        "strong": strong,
        "weak": weak,
        "priced": trained.prices.has_prices(),
        "serve": snippet,
        "gateway_yaml": None if gateway_yaml is None else str(gateway_yaml),
    }
    if gateway_yaml is not None:
        from routerforge.files import write_private

        write_private(gateway_yaml, snippet.encode("utf-8"), exclusive=True)
    if as_json:
        print_json(info)
        return
    console = _console()
    console.print(f"Trained [bold]{router}[/] on {rows.size} prompts of {data!r} → {out}")
    console.print(f"strong model (higher mean training score): {strong}; weak: {weak}")
    if not info["priced"]:
        console.print(
            "[yellow]No prices for some models[/]: only the threshold policy can route them. Register prices "
            "with `routerforge models add ID --input-price … --output-price …` and train again."
        )
    if gateway_yaml is not None:
        console.print(f"Wrote {gateway_yaml}: set each model's base_url and api_key_env, then")
        console.print(
            f"  routerforge serve --config {gateway_yaml}   # model: router-{out.name}", markup=False
        )
    else:
        console.print("To serve it, put this in gateway.yaml (set base_url/api_key_env of each model):")
        console.print(info["serve"], markup=False, highlight=False)


def gateway_snippet(router_dir: Path, models: list[str]) -> str:
    """A gateway.yaml fragment that serves ``router_dir`` as a synthetic model with its calibrated knob."""
    import yaml

    name = f"router-{Path(router_dir).name}"
    doc = {
        "models": [
            {"id": m, "base_url": "http://127.0.0.1:9000/v1", "api_key_env": "UPSTREAM_API_KEY"}
            for m in models
        ],
        "synthetic_models": [{"name": name, "router": str(Path(router_dir).resolve())}],
    }
    return yaml.safe_dump(doc, sort_keys=False)


# --------------------------------------------------------------------------------------------- route
def route(
    ctx: typer.Context,
    router_dir: Annotated[Path, typer.Argument(help="A trained router directory.")],
    prompt: Annotated[str, typer.Argument(help="The prompt to route.")],
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Binary: call the strong model when P(strong needed) ≥ this."),
    ] = None,
    lam: Annotated[
        float | None, typer.Option("--lambda", help="N models: maximise score − λ·price (USD).")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option("--tolerance", help="N models: cheapest model within this of the best prediction."),
    ] = None,
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Restrict the candidates (repeatable).")
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="YAML rules applied before the router (see docs/policies.md)."),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option("--max-cost", min=0, help="Only models estimated to cost at most this (USD)."),
    ] = None,
    max_latency: Annotated[
        float | None,
        typer.Option(
            "--max-latency", min=0, help="Only models whose mean recorded latency is at most this (ms)."
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(
            "--meta", help="What is known about the prompt, KEY=VALUE (e.g. category=law; repeatable)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Route one prompt: the chosen model, the predicted score of every model, the knob and why.

    Without a knob the router's calibrated one is used (``routerforge calibrate``), else the default.
    """
    from routerforge.policy.rules import RuleSet
    from routerforge.policy.trained import TrainedRouter
    from routerforge.routers.metadata import parse_meta_items

    metadata = parse_meta_items(meta) or None
    knobs = {"threshold": threshold, "wtp": lam, "tolerance": tolerance}
    given = {k: v for k, v in knobs.items() if v is not None}
    if len(given) > 1:
        raise ValidationError("Give at most one of --threshold, --lambda and --tolerance.")
    kind, knob = next(iter(given.items())) if given else (None, None)
    settings = state(ctx).settings
    trained = TrainedRouter.load(router_dir, settings)
    ruleset = RuleSet.from_file(rules) if rules is not None else None
    if ruleset is not None:
        ruleset.check_models(trained.models)
    decision = trained.decide(
        prompt,
        kind=kind,
        knob=knob,
        candidates=models or None,
        rules=ruleset,
        max_cost_usd=max_cost,
        max_latency_ms=max_latency,
        metadata=metadata,
    )
    if metadata:
        decision.details["metadata"] = metadata
    explanation = trained.explain(prompt, metadata)
    decision.details["explanation"] = {
        "router": explanation.router,
        "reason": explanation.reason,
        "details": explanation.details,
    }
    if as_json:
        doc = decision.to_dict()
        if "routes" in explanation.details:  # semantic: the matched route (or null) and every matching one
            doc["route"], doc["routes"] = explanation.details.get("route"), explanation.details["routes"]
        if explanation.router == "llm-policy":  # "policy" already names the decision rule (threshold/wtp/…)
            doc["llm_policy"], doc["reasoning"] = (
                explanation.details["policy"],
                explanation.details["reasoning"],
            )
        print_json(doc)
        return
    from rich.table import Table

    console = _console()
    table = Table(title=f"{prompt[:60]!r}")
    table.add_column("model")
    table.add_column("predicted score", justify="right")
    table.add_column("price (USD)", justify="right")
    for model, score in decision.predicted.items():
        mark = " ←" if model == decision.model else ""
        price = (decision.prices_usd or {}).get(model)
        table.add_row(model + mark, f"{score:.3f}", "" if price is None else f"{price:.6f}")
    console.print(table)
    source = decision.details.get("knob_source", "")
    knob_text = "" if decision.policy == "rule" else f" {decision.knob:g}"
    console.print(f"[bold]{decision.model}[/] ({decision.policy}{knob_text}, {source}): {decision.reason}")
    console.print(f"[dim]{explanation.reason}[/]")


# --------------------------------------------------------------------------------------------- bench
def bench(
    ctx: typer.Context,
    data: Annotated[str, typer.Option("--data", help="Dataset to train (and, without --test, test) on.")],
    router: Annotated[
        list[str], typer.Option("--router", "-r", help="Router family to evaluate (repeatable).")
    ],
    folds: Annotated[
        int | None, typer.Option("--folds", help="K folds grouped by prompt text (default 5).")
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Use the dataset's own split: test on this one.")
    ] = None,
    test: Annotated[
        str | None, typer.Option("--test", help="Train on --data, test on this dataset (transfer).")
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option("--group-by", help="'category': hold out whole categories (e.g. MMLU subjects)."),
    ] = None,
    strong: StrongOpt = None,
    weak: WeakOpt = None,
    drop_prompts: Annotated[
        Path | None,
        typer.Option("--drop-prompts", help="Exclude these prompts (JSONL 'eval_prompt' or one per line)."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results JSON to this file.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write PNG plots and index.html here.")
    ] = None,
    param: ParamOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for folds and the random baseline.")] = 0,
    latency_sample: Annotated[
        int, typer.Option("--latency-sample", help="Held-out prompts timed one by one.")
    ] = 200,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            min=0,
            help="Paired-bootstrap resamples for each router's interval against the strongest trivial "
            "baseline (seeded by --seed; 0: no interval).",
        ),
    ] = 1000,
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="'cascade': also replay a cascade over the held-out prompts."),
    ] = None,
    cascade_threshold: Annotated[
        float, typer.Option("--cascade-threshold", help="Escalate while the verifier's score is below this.")
    ] = 0.5,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules", help="YAML rules applied to every held-out prompt before the routers' choice."
        ),
    ] = None,
) -> None:
    """Benchmark routers on held-out prompts: APGR/CPT (binary) or AIQ and cost–quality (N models), next to
    the trivial baselines (best single model, prompt length, category) with a paired-bootstrap interval."""
    from rich.progress import Progress

    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import EmbedderEncoder, RouterSpec, run_bench
    from routerforge.routers.registry import router_class

    settings = state(ctx).settings
    if policy not in (None, "cascade"):
        raise ValidationError(
            f"--policy {policy!r} is not a bench policy.",
            hint="bench always sweeps the threshold (two models) or λ (N models); --policy cascade adds a cascade.",
        )
    for name in router:
        router_class(name)
    from routerforge.policy.rules import RuleSet

    ruleset = RuleSet.from_file(rules) if rules is not None else None
    keep: dict[str, Any] = {}
    setup = build_setup(
        settings,
        data,
        folds=folds,
        split=split,
        test=test,
        group_by=group_by,
        strong=strong,
        weak=weak,
        drop_prompts=drop_prompts,
        seed=seed,
    )
    setup.catalog = load_catalog(settings)
    specs = [RouterSpec(name, parse_params(param, name)) for name in dict.fromkeys(router)]
    embedder = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    quick = build_embedder(settings.embed.model_copy(update={"cache": False, "threads": 1}), cache_dir=None)
    console = _console()
    encoder = EmbedderEncoder(embedder, progress=True)
    from routerforge.evaluate.semantic_routes import SemanticFoldFactory

    with Progress(console=console, transient=False) as progress:
        doc = run_bench(
            setup,
            specs,
            encoder,
            latency=latency_factory(quick, encoder),
            latency_sample=latency_sample,
            seed=seed,
            progress=progress,
            bootstrap=bootstrap,
            keep=keep,
            rules=ruleset,
            fold_factory=SemanticFoldFactory(encoder),  # semantic: -p routes=FILE|builtin:NAME|category
        )
    if policy == "cascade":
        import numpy as np

        from routerforge.evaluate.cascade import cascade_results
        from routerforge.evaluate.harness import true_costs

        test_m = setup.test.select_models(keep["models"])
        rows = keep["rows"]
        cascade_results(
            doc,
            keep,
            test_m.scores[rows],
            np.asarray(true_costs(test_m, setup.catalog))[rows],
            cascade_threshold,
        )
    doc["embedder"] = getattr(embedder, "id", settings.embed.provider)
    print_table(doc, console)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        _write_json(json_out, doc)
    if report is not None:
        from routerforge.evaluate.report import write_report

        console.print(f"report: {write_report(doc, report)}")


def build_setup(settings: Settings, data: str, *, drop_prompts: Path | None = None, **kwargs: Any) -> Any:
    """The benchmark setup a ``bench`` invocation describes (shared with the benchmark scripts)."""
    from routerforge.evaluate.setup import build_setup as make_setup

    return make_setup(
        lambda name: _load_matrix(settings, name),
        data,
        drop_prompts_file=drop_prompts,
        say=lambda msg: _console().print(msg),
        **kwargs,
    )


def latency_factory(embedder: Any, encoder: Any) -> Any:
    """Per-prompt routing through the ``TrainedRouter`` path with an uncached, single-thread embedder:
    strip, embed (dense + BM25 query vector when the router uses it), predict, choose a model.
    ``encoder`` (the harness's :class:`EmbedderEncoder`) supplies the fitted stripper and BM25 state."""
    import numpy as np

    def factory(router: Any) -> Any:
        trained = encoder.trained(router, embedder)

        def one(text: str) -> int:
            predicted, _prices = trained.score([text])  # embedding, prediction and the price estimate
            return int(np.argmax(predicted[0]))

        return one

    return factory


def print_table(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from routerforge.evaluate.report import comparison_note, dropped_note, single_rows, table_rows

    header, rows = table_rows(doc)
    table = Table(title=f"{doc['data']} — {doc.get('split', '')} — {doc['n_prompts']} held-out prompts")
    for h in header:
        table.add_column(h, justify="left" if h in ("router", "model") else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for note in (comparison_note(doc), dropped_note(doc)):
        if note:
            console.print(note, markup=False)
    header, rows = single_rows(doc)
    singles = Table(title="single models")
    for h in header:
        singles.add_column(h, justify="left" if h == "model" else "right")
    for r in rows:
        singles.add_row(*r)
    console.print(singles)


# ----------------------------------------------------------------------------------------- calibrate
def calibrate(
    ctx: typer.Context,
    router_dir: Annotated[Path, typer.Argument(help="A trained router directory.")],
    data: Annotated[str, typer.Option("--data", help="Dataset whose held-out prompts are used.")],
    target: Annotated[
        str, typer.Option("--target", help="strong-share=0.3 | cost-per-1k=2.5 | quality=0.95 | pgr=0.8")
    ],
    strong: StrongOpt = None,
    weak: WeakOpt = None,
    save: Annotated[
        bool, typer.Option("--save/--no-save", help="Write calibration.json into the router.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Pick the policy knob that hits a target on held-out prompts, and report expected cost and quality.

    The router directory's own decision engine is calibrated (same predictions, prices and strong/weak
    definition as `route` and the gateway); with --save the gateway serves the router at this knob.
    """
    from routerforge.evaluate.calibration import calibrate_router, parse_target
    from routerforge.policy.trained import TrainedRouter

    settings = state(ctx).settings
    goal = parse_target(target)
    trained = TrainedRouter.load(router_dir, settings)
    matrix = _load_matrix(settings, data)
    result = calibrate_router(trained, matrix, goal, strong=strong, weak=weak, catalog=load_catalog(settings))
    result.details["data"] = data
    if save:
        trained.save_calibration(result.to_dict() | result.details)
    if as_json:
        print_json(result.to_dict())
        return
    knob = ", ".join(f"{k} = {v:.6g}" for k, v in result.knob.items())
    exp = ", ".join(f"{k} {v:.4g}" for k, v in result.expected.items() if v is not None)
    status = "" if result.reached else " [yellow](target not reachable; closest point)[/]"
    _console().print(f"{knob} → expected {exp} on {result.n_heldout} held-out prompts{status}")


# ------------------------------------------------------------------------------------ export / import
@router_app.command("export")
def export_router(
    router_dir: Annotated[Path, typer.Argument(help="A trained router directory.")],
    archive: Annotated[Path, typer.Argument(help="The .tar.gz file to write.")],
) -> None:
    """Pack a router directory into one .tar.gz archive."""
    from routerforge.routers.artifact import read_router_json

    read_router_json(router_dir)  # refuse to export something that is not a router
    from routerforge.cli.routing_archive import write_archive

    write_archive(router_dir, archive)
    _console().print(f"exported {router_dir} → {archive}")


@router_app.command("import")
def import_router(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="A .tar.gz written by `routerforge router export`.")],
    router_dir: Annotated[Path, typer.Argument(help="Directory to create (must not exist or be empty).")],
    max_mib: Annotated[
        int, typer.Option("--max-mib", min=1, help="Refuse archives that unpack to more than this many MiB.")
    ] = DEFAULT_MAX_MIB,
    max_files: Annotated[
        int, typer.Option("--max-files", min=1, help="Refuse archives with more entries than this.")
    ] = DEFAULT_MAX_FILES,
) -> None:
    """Unpack and validate a router archive into a new directory (atomically).

    The archive is data only: no links or paths outside the directory, size and entry caps, and its
    embedder must be one you configured (an http embedder only at your own embed.url)."""
    from routerforge.cli.routing_archive import extract_archive

    settings = state(ctx).settings
    extract_archive(archive, router_dir, settings.embed, max_bytes=max_mib << 20, max_files=max_files)
    _console().print(f"imported {archive} → {router_dir}")
