"""``routerforge data``: import, list, inspect, split, export and delete datasets of eval records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state

if TYPE_CHECKING:
    from routerforge.data.records import EvalRecord
    from routerforge.data.store import Store

data_app = typer.Typer(
    name="data",
    help="Import, inspect, split, export and delete datasets of eval records.",
    no_args_is_help=True,
)

IMPORT_FORMATS = (
    "auto",
    "routellm-csv",
    "routerbench-csv",
    "pulze-jsonl",
    "wide-jsonl",
    "wide-csv",
    "long-jsonl",
    "long-csv",
    "battles-jsonl",
    "battles-csv",
    "mtbench-jsonl",
    "helm",
    "long",
    "wide",
    "battles",
)
EXPORT_FORMATS = ("wide-jsonl", "long-jsonl")


def register(app: typer.Typer) -> None:
    """Add ``routerforge data ...`` to ``app``."""
    app.add_typer(data_app, name="data")


def open_store(ctx: typer.Context) -> Store:
    from routerforge.data.store import Store

    return Store.from_settings(state(ctx).settings)


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    from routerforge.errors import ValidationError

    if value not in allowed:
        raise ValidationError(f"{option} {value!r} is not one of: {', '.join(allowed)}.")
    return value


def _with_progress(records: Iterator[EvalRecord], enabled: bool) -> Iterator[EvalRecord]:
    """Show a live count of records read (on stderr, only when it is a terminal)."""
    if not enabled:
        yield from records
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield from records
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("reading", total=None)
        for n, record in enumerate(records, start=1):
            if n % 500 == 0:
                progress.update(task, completed=n)
            yield record
        progress.update(task, description="writing")


@data_app.command("import")
def import_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A file or a folder of files.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name (created or merged into).")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help=f"Input format: {', '.join(IMPORT_FORMATS)}.")
    ] = "auto",
    strict: Annotated[
        bool, typer.Option("--strict", help="Abort at the first bad row; nothing is written.")
    ] = False,
    rule: Annotated[
        str | None,
        typer.Option(
            "--rule", help="Duplicate (prompt, model) outcomes: min, mean or last (default: settings, min)."
        ),
    ] = None,
    score_scale: Annotated[
        str | None,
        typer.Option(
            "--score-scale", help="Range the source's scores use, e.g. 0-10 or 0-100; scaled to [0, 1]."
        ),
    ] = None,
    pulze_score: Annotated[
        str,
        typer.Option(
            "--pulze-score",
            help="Pulze results: 'judge' keeps their (lenient) judge's score; 'strict' scores 1 only when the "
            "answer's option matches gold_answer.",
        ),
    ] = "judge",
    column_map: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="FIELD=COLUMN: read the field from a column of another name (long, wide, battles, mtbench); "
            "scores=PREFIX* or scores=COL1,COL2 for wide (repeatable).",
        ),
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions",
            help="MT-Bench judgements and battles: a question.jsonl giving prompts by question_id.",
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="HELM results: the stat to score by (default exact_match).")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="A note stored with the dataset.")
    ] = None,
    max_errors: Annotated[int, typer.Option("--max-errors", min=0, help="How many bad rows to list.")] = 20,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress display.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the import report as JSON.")] = False,
) -> None:
    """Import eval records from PATH into dataset NAME (atomic; re-importing the same file changes nothing)."""
    from routerforge.data.importers import read_records
    from routerforge.data.importers.base import count_missing_costs
    from routerforge.errors import DataError

    _choice(fmt, IMPORT_FORMATS, "--format")
    settings = state(ctx).settings
    chosen_rule = _choice(rule or settings.data.duplicate_rule, ("min", "mean", "last"), "--rule")
    _choice(pulze_score, ("judge", "strict"), "--pulze-score")
    records, read_report = read_records(
        path,
        fmt,
        strict=strict,
        scale=score_scale,
        max_issues=max_errors,
        pulze_score=pulze_score,
        column_map=column_map,
        questions=questions,
        metric=metric,
    )
    store = open_store(ctx)
    try:
        report = store.import_records(
            name,
            _with_progress(count_missing_costs(records, read_report), progress and not as_json),
            rule=chosen_rule,
            source=str(path.resolve()),
            description=description,
        )
    finally:
        store.close()
    if report.outcomes == 0:
        if read_report.issues:
            raise DataError(
                f"Nothing imported from {path}: {read_report.skipped:,} of {read_report.rows:,} rows are bad. "
                f"First: {str(read_report.issues[0]).rstrip('.')}.",
                hint="Fix the file (or check --format); nothing was written.",
            )
        raise DataError(
            f"No eval records found in {path} ({read_report.rows:,} rows read).",
            hint="Check --format and the file's columns; nothing was written.",
        )
    payload = {**report.to_dict(), "read": read_report.to_dict()}
    payload["dropped"] = {
        "bad_rows": read_report.skipped,
        "score_out_of_range": read_report.out_of_range,  # included in bad_rows
        "duplicate_outcomes": report.duplicates,
    }
    if as_json:
        print_json(payload)
        return
    _print_import(payload)


def _print_import(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    read = payload["read"]
    console.print(
        f"Imported [bold]{payload['dataset']}[/] ({read['format']}, {len(read['files'])} file(s)): "
        f"{payload['prompts']:,} prompts ({payload['new_prompts']:,} new), {payload['records']:,} records, "
        f"{len(payload['models'])} models; {payload['duplicates']:,} duplicate outcomes resolved by "
        f"'{payload['rule']}'."
    )
    _print_read_details(console, payload)
    _print_drops(console, payload)
    if read["skipped"]:
        table = Table(title=f"{read['skipped']:,} bad rows skipped (first {len(read['issues'])})")
        for column in ("file", "line", "column", "reason"):
            table.add_column(column)
        for issue in read["issues"]:
            table.add_row(
                Path(issue["path"]).name, str(issue["line"] or ""), issue["column"] or "", issue["reason"]
            )
        console.print(table)
        console.print("Use --strict to abort on the first bad row instead.")


def _print_drops(console: Any, payload: dict[str, Any]) -> None:
    """What was left out or merged, and the records an N-model benchmark will leave out (no cost)."""
    read, dropped = payload["read"], payload["dropped"]
    parts = []
    if dropped["bad_rows"]:
        scale = dropped["score_out_of_range"]
        why = f" ({scale:,} with a score outside [0, 1]: see --score-scale)" if scale else ""
        parts.append(f"{dropped['bad_rows']:,} bad rows skipped{why}")
    if dropped["duplicate_outcomes"]:
        parts.append(f"{dropped['duplicate_outcomes']:,} duplicate outcomes merged by '{payload['rule']}'")
    if parts:
        console.print("Dropped: " + "; ".join(parts) + ".")
    if 0 < read["missing_cost"] < read["records"]:
        console.print(
            f"{read['missing_cost']:,} of {read['records']:,} records have no cost: an N-model `bench` leaves "
            "their prompts out."
        )


def _print_read_details(console: Any, payload: dict[str, Any]) -> None:
    """Rows read and skipped, and what a format reports of itself (scale, battles, HELM metric)."""
    read = payload["read"]
    details = read.get("details") or {}
    console.print(
        f"Read {read['rows']:,} rows: {read['records']:,} records, {read['skipped']:,} bad rows skipped."
    )
    if "score_scale" in details:
        console.print(
            f"Scores on the scale {details['score_scale']} normalised to [0, 1] as {details['normalised']}."
        )
    if "battles" in details:
        winners = ", ".join(f"{k} {v:,}" for k, v in (details.get("winners") or {}).items())
        console.print(f"{details['battles']:,} battles ({winners}); stored as {details['scores']}.")
        console.print(
            f"Train pairwise: `routerforge train sw --data {payload['dataset']}` or "
            f"`routerforge train mf --data {payload['dataset']} --param mode=pairwise`."
        )
    if "metric" in details:
        runs = f" in {details['runs']:,} run folder(s)" if details.get("runs") else ""
        console.print(
            f"HELM: scored by {details['metric']!r}{runs}; "
            f"{details['perturbed_not_imported']:,} perturbed instances not imported."
        )
    for key, label in (("columns_not_kept", "Nested columns not kept"), ("files_not_read", "Files not read")):
        if details.get(key):
            console.print(f"{label}: {', '.join(str(v) for v in details[key])}.")


@data_app.command("list")
def list_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the datasets in the store."""
    store = open_store(ctx)
    try:
        datasets = [d.to_dict() for d in store.list_datasets()]
    finally:
        store.close()
    if as_json:
        print_json(datasets)
        return
    from rich.console import Console
    from rich.table import Table

    if not datasets:
        Console().print("No datasets yet. Import one with `routerforge data import PATH --name NAME`.")
        return
    table = Table(title="Datasets")
    for column, justify in (
        ("name", "left"),
        ("prompts", "right"),
        ("records", "right"),
        ("models", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("created")
    table.add_column("source", overflow="fold")
    for d in datasets:
        table.add_row(
            d["name"],
            f"{d['prompts']:,}",
            f"{d['records']:,}",
            str(d["models"]),
            (d["created"] or "")[:19],
            d["source"] or "",
        )
    Console().print(table)


@data_app.command("stats")
def stats_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, per-model mean score and cost, oracle score and splits of a dataset."""
    store = open_store(ctx)
    try:
        stats = store.dataset_stats(name)
    finally:
        store.close()
    if as_json:
        print_json(stats)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    splits = ", ".join(f"{k}: {v:,}" for k, v in stats["splits"].items())
    console.print(
        f"[bold]{name}[/]: {stats['prompts']:,} prompts, {stats['records']:,} records, "
        f"{len(stats['models'])} models, {stats['categories']} categories; splits {splits}"
    )
    table = Table()
    table.add_column("model")
    table.add_column("n", justify="right")
    table.add_column("mean score", justify="right")
    table.add_column("mean cost (USD)", justify="right")
    for m in stats["models"]:
        table.add_row(
            m["id"],
            f"{m['n']:,}",
            "-" if m["mean_score"] is None else f"{m['mean_score']:.3f}",
            "-" if m["mean_cost_usd"] is None else f"{m['mean_cost_usd']:.6f}",
        )
    oracle = stats["oracle_score"]
    table.add_row("[italic]oracle (best per prompt)[/]", "", "-" if oracle is None else f"{oracle:.3f}", "")
    console.print(table)


@data_app.command("split")
def split_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    test_size: Annotated[
        float, typer.Option("--test-size", help="Share of prompts to hold out, in (0, 1).")
    ] = 0.2,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Hold out whole values of this column: category (e.g. MMLU subjects), split, or a metadata key. "
            "Default: random prompts.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random choice of groups.")] = 0,
    into: Annotated[
        str | None,
        typer.Option(
            "--into", help="Names of the two new datasets: TRAIN,HELDOUT (default NAME-train,NAME-heldout)."
        ),
    ] = None,
    inplace: Annotated[
        bool,
        typer.Option(
            "--inplace", help="Set each prompt's split field to train/test instead of new datasets."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace existing target datasets, or an existing split field.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Split a dataset into training and held-out prompts; identical prompt texts never straddle the sides.

    By default writes two new datasets, NAME-train and NAME-heldout: train routers on the first
    (`routerforge train ROUTER --data NAME-train`), calibrate them on the second
    (`routerforge calibrate DIR --data NAME-heldout`).
    """
    from routerforge.data.split import split_dataset
    from routerforge.errors import ValidationError

    targets: tuple[str, str] | None = None
    if into is not None:
        parts = [p.strip() for p in into.split(",")]
        if len(parts) != 2:
            raise ValidationError(
                f"--into takes two names separated by a comma, got {into!r}.",
                hint=f"Example: --into {name}-train,{name}-heldout.",
            )
        targets = (parts[0], parts[1])
    store = open_store(ctx)
    try:
        doc = split_dataset(
            store, name, test_size, by=by, seed=seed, into=targets, inplace=inplace, force=force
        )
    finally:
        store.close()
    if as_json:
        print_json(doc)
        return
    _print_split(doc)


def _print_split(doc: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    train, test = doc["train"], doc["test"]
    how = f"whole values of {doc['by']!r}" if doc["by"] else "random prompts"
    console.print(
        f"Split [bold]{doc['dataset']}[/] ({doc['prompts']:,} prompts, {doc['groups']:,} groups; {how}, "
        f"seed {doc['seed']}): held out {test['prompts']:,} prompts ({100 * doc['test_fraction']:.1f} %, "
        f"target {100 * doc['test_size']:.0f} %)."
    )
    for label, side in (("train   ", train), ("held out", test)):
        records = f", {side['records']:,} records" if "records" in side else ""
        where = f"split '{'train' if side is train else 'test'}'" if doc["mode"] == "inplace" else "dataset"
        console.print(
            f"  {label} {side['prompts']:>7,} prompts, {side['groups']:,} groups{records} → {where} "
            f"[bold]{side['dataset']}[/]"
        )
    console.print(
        f"  {doc['duplicate_texts']:,} texts appear on more than one row ({doc['duplicate_rows']:,} rows); "
        "each is kept on one side."
    )
    if doc["by"]:
        values = doc["held_out_values"]
        shown = ", ".join(values[:8]) + (f", … ({len(values)} in all)" if len(values) > 8 else "")
        console.print(f"  held-out values of {doc['by']!r}: {shown or 'none'}")
        if doc["rows_without_value"]:
            console.print(f"  {doc['rows_without_value']:,} prompts without a value were grouped together.")
    if doc["mode"] == "inplace":
        if doc["replaced_split"]:
            console.print(f"  The previous split ({', '.join(doc['replaced_split'])}) was overwritten.")
        console.print(
            f"Next: `routerforge train ROUTER --data {doc['dataset']} --out DIR` trains on split 'train'; "
            f"`routerforge calibrate DIR --data {doc['dataset']}` uses the rest."
        )
        return
    if doc["ignored_split"]:
        console.print(
            f"  {doc['dataset']!r} had its own split ({', '.join(doc['ignored_split'])}); the new datasets "
            "replace it by train/test."
        )
    console.print(
        f"Next: `routerforge train ROUTER --data {train['dataset']} --out DIR`, then "
        f"`routerforge calibrate DIR --data {test['dataset']} --target strong-share=0.3`."
    )


@data_app.command("export")
def export_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    out: Annotated[Path, typer.Argument(help="Output file (written atomically).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="wide-jsonl or long-jsonl.")] = "wide-jsonl",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Export a dataset to wide JSONL (one line per prompt) or long JSONL (one line per outcome)."""
    from routerforge.data.exporters import export_dataset

    _choice(fmt, EXPORT_FORMATS, "--format")
    store = open_store(ctx)
    try:
        lines = export_dataset(store, name, out, fmt)
    finally:
        store.close()
    if as_json:
        print_json({"dataset": name, "path": str(out), "format": fmt, "lines": lines})
    else:
        typer.echo(f"Wrote {lines:,} lines ({fmt}) to {out}")


@data_app.command("delete")
def delete_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
) -> None:
    """Delete a dataset with its prompts and eval records."""
    store = open_store(ctx)
    try:
        store.delete_dataset(name)
    finally:
        store.close()
    typer.echo(f"Deleted dataset {name}.")
