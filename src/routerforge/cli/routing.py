"""Routing commands: ``train``, ``route``, ``bench``, ``calibrate`` and ``router export|import``.

Thin commands: the work is in ``routers.pipeline`` (train/load a router with its embedder),
``policy`` (choosing a model) and ``evaluate`` (splits, harness, calibration, reports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state
from routerforge.errors import ArtifactError, ConfigError, ValidationError

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.data.matrix import ScoreMatrix

ROUTING_JSON = "routing.json"  # what `train` knows about the data: dataset, split, models, mean costs
TRAINING_HASHES = "training_prompts.npy"  # text hashes of the training prompts (held-out checks)
CALIBRATION_JSON = "calibration.json"  # the calibrated knob the gateway uses

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


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"Cannot read {path}: {exc}") from exc
    return doc if isinstance(doc, dict) else {}


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------- train
def train(
    ctx: typer.Context,
    router: Annotated[str, typer.Argument(help="Router family (registry name), e.g. knn, mlp, mf, sw.")],
    data: Annotated[str, typer.Option("--data", help="Dataset to train on.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the router into.")],
    split: Annotated[
        str | None,
        typer.Option("--split", help="Train on this split only (default: 'train' when the dataset has it)."),
    ] = None,
    param: ParamOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a router on a dataset and save it as a directory of plain files."""
    import numpy as np

    from routerforge.data.records import text_hash
    from routerforge.policy.pricing import CostModel, mean_costs
    from routerforge.routers.registry import router_class

    settings = state(ctx).settings
    router_class(router)  # unknown router: clear error before loading anything
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
    params = parse_params(param, router)
    from routerforge.routers.pipeline import train_router

    trained = train_router(
        router, matrix, rows, settings.embed, out, params, cache_dir=settings.cache_dir, progress=not as_json
    )
    np.save(out / TRAINING_HASHES, np.array([text_hash(matrix.prompts[i]) for i in rows], dtype="U32"))
    info = {
        "data": data,
        "split": split,
        "n_train": int(rows.size),
        "models": list(matrix.models),
        "mean_cost_usd": mean_costs(matrix.models, matrix.costs[rows]),
        "router": router,
        "params": params,
    }
    train_costs = matrix.costs[rows]
    if np.isfinite(train_costs).any():  # per-prompt price estimates for routing decisions
        CostModel().fit(trained.batch([matrix.prompts[i] for i in rows]).dense, train_costs).save(out)
    _write_json(out / ROUTING_JSON, info)
    if as_json:
        print_json({"out": str(out), **info})
    else:
        _console().print(f"Trained [bold]{router}[/] on {rows.size} prompts of {data!r} → {out}")


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
    strong: StrongOpt = None,
    weak: WeakOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Route one prompt: the chosen model, the predicted score of every model, the knob and why."""
    from routerforge.policy.decision import decide
    from routerforge.policy.pricing import CostModel, estimated_prices
    from routerforge.routers.pipeline import TrainedRouter

    if sum(x is not None for x in (threshold, lam, tolerance)) > 1:
        raise ValidationError("Give at most one of --threshold, --lambda and --tolerance.")
    settings = state(ctx).settings
    trained = TrainedRouter.load(router_dir, settings)
    models = list(trained.models)
    batch = trained.batch([prompt])
    predicted = trained.router.predict_scores(batch)
    explanation = trained.router.explain(batch)
    info = _read_json(router_dir / ROUTING_JSON)
    prices = estimated_prices(
        [prompt], models, batch.dense, CostModel.load(router_dir), fallback_mean_usd=info.get("mean_cost_usd")
    )
    decision = decide(
        models,
        prompt,
        predicted,
        threshold=threshold,
        lam=lam,
        tolerance=tolerance,
        strong=strong,
        weak=weak,
        calibration=_read_json(router_dir / CALIBRATION_JSON),
        prices={m: float(v) for m, v in zip(models, prices[0], strict=True)},
    )
    decision.details["explanation"] = {
        "router": explanation.router,
        "reason": explanation.reason,
        "details": explanation.details,
    }
    if as_json:
        print_json(decision.to_dict())
        return
    from rich.table import Table

    console = _console()
    table = Table(title=f"{prompt[:60]!r}")
    table.add_column("model")
    table.add_column("predicted score", justify="right")
    for model, score in decision.predicted.items():
        mark = " ←" if model == decision.model else ""
        table.add_row(model + mark, f"{score:.3f}")
    console.print(table)
    knob = ", ".join(f"{k}={v:g}" for k, v in decision.knob.items())
    console.print(f"[bold]{decision.model}[/] ({decision.policy}, {knob}): {decision.reason}")
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
) -> None:
    """Benchmark routers on held-out prompts: APGR/CPT (binary) or AIQ and cost–quality (N models)."""
    from rich.progress import Progress

    from routerforge.embed.factory import build_embedder
    from routerforge.evaluate.harness import EmbedderEncoder, RouterSpec, run_bench
    from routerforge.routers.registry import router_class

    settings = state(ctx).settings
    for name in router:
        router_class(name)
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
    specs = [RouterSpec(name, parse_params(param, name)) for name in dict.fromkeys(router)]
    embedder = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    quick = build_embedder(settings.embed.model_copy(update={"cache": False, "threads": 1}), cache_dir=None)
    console = _console()
    encoder = EmbedderEncoder(embedder, progress=True)
    with Progress(console=console, transient=False) as progress:
        doc = run_bench(
            setup,
            specs,
            encoder,
            latency=latency_factory(quick, encoder),
            latency_sample=latency_sample,
            seed=seed,
            progress=progress,
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
            return int(np.argmax(trained.predict([text])[0]))

        return one

    return factory


def print_table(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from routerforge.evaluate.report import single_rows, table_rows

    header, rows = table_rows(doc)
    table = Table(title=f"{doc['data']} — {doc.get('split', '')} — {doc['n_prompts']} held-out prompts")
    for h in header:
        table.add_column(h, justify="left" if h in ("router", "model") else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
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
    """Pick the policy knob that hits a target on held-out prompts, and report expected cost and quality."""
    import numpy as np

    from routerforge.evaluate.calibration import calibrate_router, parse_target
    from routerforge.policy.pricing import CostModel, estimated_prices
    from routerforge.routers.pipeline import TrainedRouter

    settings = state(ctx).settings
    goal = parse_target(target)
    trained = TrainedRouter.load(router_dir, settings)
    models = list(trained.models)
    matrix = _load_matrix(settings, data)
    hashes_path = router_dir / TRAINING_HASHES
    if not hashes_path.is_file():
        raise ArtifactError(
            f"{router_dir} does not record its training prompts ({TRAINING_HASHES}), so held-out prompts "
            "cannot be told apart.",
            hint="Train it with `routerforge train`.",
        )
    seen = {str(h) for h in np.load(hashes_path, allow_pickle=False).tolist()}
    mean_cost = _read_json(router_dir / ROUTING_JSON).get("mean_cost_usd")
    cost_model = CostModel.load(router_dir)
    result = calibrate_router(
        trained.predict,
        matrix,
        models,
        seen,
        goal,
        strong=strong,
        weak=weak,
        mean_cost_usd=mean_cost,
        price_fn=lambda texts: estimated_prices(
            texts, models, trained.batch(texts).dense, cost_model, fallback_mean_usd=mean_cost
        ),
    )
    result.details["data"] = data
    if save:
        _write_json(router_dir / CALIBRATION_JSON, result.to_dict() | result.details)
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
    archive: Annotated[Path, typer.Argument(help="A .tar.gz written by `routerforge router export`.")],
    router_dir: Annotated[Path, typer.Argument(help="Directory to create (must not exist or be empty).")],
) -> None:
    """Unpack and validate a router archive into a new directory (atomically)."""
    from routerforge.cli.routing_archive import extract_archive

    extract_archive(archive, router_dir)
    _console().print(f"imported {archive} → {router_dir}")
