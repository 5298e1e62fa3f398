"""Data at scale: ``routerforge data import-stream``, ``routerforge index build|drop``, ``routerforge prune-logs``,
``routerforge partition-logs``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.index.base import Index, OpenMode

index_app = typer.Typer(
    name="index",
    help="Embed a dataset and build (or drop) its vector index, resumably.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``index``, ``prune-logs``, ``partition-logs`` and ``data import-stream`` to ``app``."""
    app.add_typer(index_app, name="index")
    app.command("prune-logs")(prune_logs_cmd)
    app.command("partition-logs")(partition_logs_cmd)
    from routerforge.cli.data import data_app

    data_app.command("import-stream")(import_stream_cmd)


@contextmanager
def _bar(description: str, enabled: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


# ------------------------------------------------------------------------------------ import-stream
def import_stream_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="File or folder of eval records (any `data import` format).")],
    name: Annotated[str, typer.Option("--name", help="Dataset to create or extend.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format (as `data import`).")] = "auto",
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Records per transaction (bounds memory).")
    ] = 20_000,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Progress file: a killed run started again with it continues after the committed records.",
        ),
    ] = None,
    rule: Annotated[
        str | None, typer.Option("--rule", help="Duplicates inside a chunk: min, mean or last.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad row.")] = False,
    score_scale: Annotated[
        str | None, typer.Option("--score-scale", help="Range of the source's scores, e.g. 0-10.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import a large file chunk by chunk (one transaction each, bounded memory), resumably.

    Unlike `data import` it is not all-or-nothing: each chunk commits, and duplicates of one (prompt, model)
    in different chunks are not merged (the later one wins). See docs/scale.md.
    """
    from routerforge.cli.data import IMPORT_FORMATS, _choice, open_store
    from routerforge.data.bulk import stream_import
    from routerforge.data.importers import read_records
    from routerforge.errors import DataError

    _choice(fmt, IMPORT_FORMATS, "--format")
    settings = state(ctx).settings
    chosen = _choice(rule or settings.data.duplicate_rule, ("min", "mean", "last"), "--rule")
    records, read_report = read_records(path, fmt, strict=strict, scale=score_scale)
    store = open_store(ctx)
    try:
        with _bar("importing", progress and not as_json) as update:
            report = stream_import(
                store,
                name,
                records,
                rule=chosen,
                chunk_size=chunk_size,
                checkpoint=checkpoint,
                source=str(path.resolve()),
                progress=lambda done, _chunk: update(done, None),
            )
    finally:
        store.close()
    if report.total == 0:
        raise DataError(
            f"No eval records found in {path} ({read_report.rows:,} rows read, {read_report.skipped:,} bad).",
            hint="Check --format and the file's columns; nothing was written.",
        )
    payload = {**report.to_dict(), "read": read_report.to_dict()}
    payload["dropped"] = {"bad_rows": read_report.skipped, "duplicate_outcomes": report.duplicates}
    if as_json:
        print_json(payload)
        return
    typer.echo(
        f"{name}: {report.outcomes:,} records in {report.chunks} chunks "
        f"({report.prompts_written:,} prompt rows, {report.cells_written:,} cells written"
        + (f", resumed after {report.resumed_from:,}" if report.resumed_from else "")
        + f") in {report.seconds:.1f} s; {read_report.skipped:,} bad rows skipped."
    )


# ------------------------------------------------------------------------------------------- index
def _open_target(
    settings: Settings, directory: Path, dim: int, collection: str | None, *, replace: bool
) -> Index:
    from routerforge.index.factory import open_index

    mode: OpenMode = "replace" if replace else "open_or_create"
    if settings.index.kind == "edge":
        return open_index(settings.index, dim=dim, path=directory / "shard", mode=mode)
    return open_index(settings.index, dim=dim, collection=collection or "routerforge", mode=mode)


def _collection_for(dataset: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset)[:60] or "dataset"
    return f"rf-data-{stem}"


@index_app.command("build")
def index_build_cmd(
    ctx: typer.Context,
    data: Annotated[str, typer.Option("--data", help="Dataset whose prompts are embedded and indexed.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Work directory: vectors.npy, checkpoints (and the Edge shard).")
    ],
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Embedding processes (1: in this process).")
    ] = 2,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Prompts per embedding task.")
    ] = 8192,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Points per index upsert.")] = 4096,
    collection: Annotated[
        str | None,
        typer.Option("--collection", help="Qdrant collection (index.kind qdrant; default rf-data-DATASET)."),
    ] = None,
    embed_only: Annotated[bool, typer.Option("--embed-only", help="Stop after embedding.")] = False,
    optimize: Annotated[
        bool,
        typer.Option(
            "--optimize/--no-optimize",
            help="Build the HNSW graph at the end (Edge shard; a Qdrant server builds it by itself).",
        ),
    ] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Embed every prompt of a dataset (several processes, bounded memory) and index the vectors
    (embed.provider / index.kind from the settings). Killed? Run it again: it resumes."""
    from routerforge.data.store import Store
    from routerforge.index.bulk import embed_dataset, index_vectors

    settings = state(ctx).settings
    store = Store.from_settings(settings)
    show = progress and not as_json
    try:
        with _bar(f"embedding ({workers} processes)", show) as update:
            embedded = embed_dataset(
                store,
                data,
                settings.embed,
                directory,
                workers=workers,
                chunk_size=chunk_size,
                progress=update,
            )
    finally:
        store.close()
    doc: dict[str, Any] = {"embed": embedded.to_dict()}
    if not embed_only:
        name = collection or _collection_for(data)
        index = _open_target(settings, directory, embedded.dim, name, replace=False)
        try:
            with _bar("indexing", show) as update:
                built = index_vectors(
                    index, directory, batch_size=batch_size, optimize=optimize, progress=update
                )
        finally:
            index.close()
        doc["index"] = {
            **built.to_dict(),
            "kind": settings.index.kind,
            "where": str(directory / "shard") if settings.index.kind == "edge" else name,
            "optimized": optimize,
        }
    if as_json:
        print_json(doc)
        return
    e = doc["embed"]
    typer.echo(
        f"embedded {e['prompts']:,} prompts ({e['chunks_embedded']} of {e['chunks']} chunks this run, "
        f"{e['embedder']}) in {e['seconds']:.1f} s"
    )
    if "index" in doc:
        i = doc["index"]
        typer.echo(
            f"indexed {i['upserted']:,} points into {i['where']} in {i['seconds']:.1f} s: {i['count']:,} in all"
        )


@index_app.command("drop")
def index_drop_cmd(
    ctx: typer.Context,
    collection: Annotated[
        str | None, typer.Option("--collection", help="Qdrant collection to delete (index.kind qdrant).")
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Work directory of `index build` (Edge shard) to delete.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Delete an index built by `index build`: a Qdrant collection or the Edge shard of a work directory."""
    from routerforge.errors import ValidationError
    from routerforge.index.factory import drop_index

    settings = state(ctx).settings
    if (collection is None) == (directory is None):
        raise ValidationError("Give exactly one of --collection (Qdrant) or --dir (Edge shard).")
    if collection is not None:
        if settings.index.kind != "qdrant":
            raise ValidationError(
                "--collection needs index.kind: qdrant and index.url.",
                hint="Or pass --dir for an Edge shard.",
            )
        existed = drop_index(settings.index, collection=collection)
        what = collection
    else:
        assert directory is not None
        existed = drop_index(None, path=directory / "shard")
        what = str(directory / "shard")
    if as_json:
        print_json({"dropped": what, "existed": existed})
        return
    typer.echo(f"{'dropped' if existed else 'nothing to drop at'} {what}")


# ---------------------------------------------------------------------------------------- prune-logs
def prune_logs_cmd(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delete requests older than this age (30d, 12h) or date (default: logging.retention_days).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="gateway.yaml, for logging.retention_days / prune_batch_size."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, max=100_000, help="Requests per transaction.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Delete old requests (with their attempts and feedback) from the gateway's request log, in small
    batches that never hold a long lock."""
    from routerforge.cli.serve import _load
    from routerforge.errors import ValidationError
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.requestlog import parse_since
    from routerforge.gateway.retention import count_older, cutoff_for, prune_request_log

    settings, gw, _path = _load(ctx, config)
    if older_than is not None:
        cutoff = parse_since(older_than.strip())  # 30d (an age) or a date / ISO time (a cutoff)
        if cutoff is None:
            raise ValidationError("--older-than is empty.", hint="Use e.g. 30d, 12h or 2026-01-31.")
    elif gw.logging.retention_days is not None:
        cutoff = cutoff_for(gw.logging.retention_days)
    else:
        raise ValidationError(
            "No retention given.", hint="Pass --older-than 30d or set logging.retention_days in gateway.yaml."
        )
    db = GatewayDB(settings.store_url)
    try:
        if dry_run:
            doc: dict[str, Any] = {
                "cutoff": cutoff.isoformat(timespec="seconds"),
                "would_delete": count_older(db, cutoff),
            }
        else:
            start = time.perf_counter()
            report = prune_request_log(db, cutoff, batch_size=batch_size or gw.logging.prune_batch_size)
            doc = report.to_dict()
            doc["seconds"] = round(time.perf_counter() - start, 3)
    finally:
        db.close()
    if as_json:
        print_json(doc)
        return
    if dry_run:
        typer.echo(f"{doc['would_delete']:,} requests are older than {doc['cutoff']} (nothing deleted)")
    else:
        typer.echo(
            f"deleted {doc['requests']:,} requests older than {doc['cutoff']} ({doc['attempts']:,} attempts, "
            f"{doc['feedback']:,} feedback) in {doc['batches']} batches, {doc['seconds']:.1f} s"
        )


# ------------------------------------------------------------------------------------- partition-logs
def partition_logs_cmd(
    ctx: typer.Context,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="monthly or daily (default: logging.partition of the gateway.yaml)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="gateway.yaml, for logging.partition.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Requests moved per transaction.")
    ] = 5000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert the request log (PostgreSQL) to tables partitioned by time, moving the rows over in
    batches; resumable (run it again after an interruption), and gateways may keep serving meanwhile."""
    from routerforge.cli.serve import _load
    from routerforge.errors import ValidationError
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.partitions import convert_log

    settings, gw, _path = _load(ctx, config)
    chosen = (mode or gw.logging.partition).strip()
    if chosen not in ("monthly", "daily"):
        raise ValidationError(
            f"No partition period: --mode is {mode!r} and logging.partition is {gw.logging.partition!r}.",
            hint="Pass --mode monthly (or daily), or set logging.partition in gateway.yaml.",
        )
    db = GatewayDB(settings.store_url)
    try:
        with _bar("moving rows", not as_json) as update:
            report = convert_log(
                db.engine, chosen, batch_size=batch_size, progress=lambda r: update(r.requests, None)
            )
    finally:
        db.close()
    doc = report.to_dict()
    if as_json:
        print_json(doc)
        return
    typer.echo(
        f"request log partitioned {chosen}: moved {doc['requests']:,} requests and {doc['attempts']:,} attempts "
        f"in {doc['batches']} batches ({doc['partitions']} partitions created, "
        f"{doc['orphan_attempts']:,} attempts without a request dropped), {doc['seconds']:.1f} s"
    )
