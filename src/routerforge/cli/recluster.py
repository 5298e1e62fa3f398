"""``routerforge recluster DIR --data NAME``: refit a trained router (re-cluster a ``cluster`` router) on a
dataset once enough new records arrived — also called by ``routerforge data import-logs --recluster DIR``.

The router keeps its family, parameters, embedder and calibration; its directory is replaced atomically.
"New" records are the dataset's prompts whose text the router was not trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state
from routerforge.errors import ValidationError

if TYPE_CHECKING:
    from routerforge.config import Settings


def register(app: typer.Typer) -> None:
    app.command("recluster")(recluster)


def recluster_router(settings: Settings, directory: Path, data: str, *, min_new: int = 0) -> dict[str, Any]:
    """Refit the router in ``directory`` on dataset ``data`` when it has at least ``min_new`` new prompts."""
    import numpy as np

    from routerforge.cli.routing import _load_matrix, load_catalog
    from routerforge.data.records import text_hash
    from routerforge.policy.trained import TrainedRouter, train_router

    trained = TrainedRouter.load(directory, settings)
    matrix = _load_matrix(settings, data)
    seen = trained.seen()
    new = sum(text_hash(p) not in seen for p in matrix.prompts)
    doc: dict[str, Any] = {"router": trained.name, "dir": str(directory), "data": data, "new_prompts": new}
    doc["min_new"] = min_new
    if new < min_new or new == 0:
        trained.close()
        return {**doc, "reclustered": False}
    if list(matrix.models) != trained.models:
        raise ValidationError(
            f"Dataset {data!r} has models {matrix.models}, but {directory} routes {trained.models}.",
            hint="Retrain with `routerforge train` to change the models.",
        )
    split = trained.manifest.get("split")
    rows = matrix.split_rows(split) if split and split in set(matrix.splits) else np.arange(matrix.n_prompts)
    params = dict(trained.manifest.get("params") or {})
    calibration = dict(trained.calibration or {})
    embed = trained.embed_settings or settings.embed
    trained.close()
    fresh = train_router(
        trained.name,
        matrix,
        rows,
        embed,
        directory,
        params,
        cache_dir=settings.cache_dir,
        catalog=load_catalog(settings),
        index=settings.index,
        split=split,
    )
    if calibration:
        fresh.save_calibration(calibration)
    out = {**doc, "reclustered": True, "n_train": len(rows)}
    clusters = getattr(fresh.router, "centres_", None)
    if clusters is not None:
        out["clusters"] = len(clusters)
    fresh.close()
    return out


def recluster(
    ctx: typer.Context,
    router_dir: Annotated[
        Path, typer.Argument(help="A trained router directory (usually a cluster router).")
    ],
    data: Annotated[str, typer.Option("--data", help="Dataset holding the old and the new records.")],
    min_new: Annotated[
        int, typer.Option("--min-new", help="Refit only when the dataset has at least this many new prompts.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-cluster (refit) a trained router on a dataset that has grown, keeping its parameters."""
    doc = recluster_router(state(ctx).settings, router_dir, data, min_new=min_new)
    if as_json:
        print_json(doc)
        return
    if doc["reclustered"]:
        typer.echo(
            f"refitted {doc['router']} on {doc['n_train']} prompts of {data!r} ({doc['new_prompts']} new)"
        )
    else:
        typer.echo(f"not refitted: {doc['new_prompts']} new prompts < --min-new {min_new}")
