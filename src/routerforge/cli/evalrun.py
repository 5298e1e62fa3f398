"""``routerforge eval run`` and ``routerforge data prompts import|list|show|generate``.

Thin commands: the work is in ``routerforge.evalrun`` (runs), ``routerforge.judges`` and
``routerforge.tasks`` (the built-in task suite).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.data.store import Store

eval_app = typer.Typer(
    name="eval", help="Run candidate models on a prompt set and judge the answers.", no_args_is_help=True
)
prompts_app = typer.Typer(
    name="prompts", help="Prompt sets: prompts with optional reference answers.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``routerforge eval ...`` and ``routerforge data prompts ...``."""
    from routerforge.cli.data import data_app

    app.add_typer(eval_app, name="eval")
    data_app.add_typer(prompts_app, name="prompts")


def _store(settings: Settings) -> Store:
    from routerforge.data.store import Store

    return Store.from_settings(settings)


def _split_names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@eval_app.command("run")
def run(
    ctx: typer.Context,
    prompts: Annotated[str, typer.Option("--prompts", help="The prompt set (a dataset holding prompts).")],
    models: Annotated[str, typer.Option("--models", help="Comma-separated model ids (local or registered).")],
    name: Annotated[str, typer.Option("--name", help="The eval set to write records into.")],
    judge: Annotated[
        str,
        typer.Option(
            "--judge", help="auto, exact, contains, numeric, choice, option, or a YAML/JSON template."
        ),
    ] = "auto",
    judge_model: Annotated[
        str | None,
        typer.Option("--judge-model", help="The model an LLM judge template calls (overrides it)."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Calls in flight per model.")] = 1,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", min=0, help="Hard spending cap in USD.")
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Answer length limit.")] = 64,
    nominal_prices: Annotated[
        bool, typer.Option("--nominal-prices", help="Give local models a made-up price per parameter.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """Evaluate models on a prompt set; rerunning the same command resumes where it stopped."""
    from routerforge.errors import SpendingCapError, UpstreamError, ValidationError
    from routerforge.evalrun.models import resolve_backend, resolve_candidates
    from routerforge.evalrun.progress import cost_progress
    from routerforge.evalrun.runner import run_eval
    from routerforge.judges.templates import build_judge

    if not name.strip():
        raise ValidationError("The eval set needs a non-empty name.", hint="Pass --name NAME.")
    names = _split_names(models)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValidationError(
            f"--models lists {', '.join(twice)} more than once.", hint="Name each model once."
        )
    settings = state(ctx).settings
    store = _store(settings)
    try:
        items = list(store.iter_prompts(prompts))  # an unknown prompt set fails before any model loads
        candidates = resolve_candidates(
            names,
            store=store,
            cache_dir=settings.cache_dir,
            max_tokens=max_tokens,
            nominal_prices=nominal_prices,
        )
        judge_backends: list[Any] = []

        def judge_backend(model: str) -> Any:
            backend = resolve_backend(model, store=store, cache_dir=settings.cache_dir)
            judge_backends.append(backend)
            return backend

        judge_obj = build_judge(judge, backend_factory=judge_backend, judge_model=judge_model)
        done = store.existing_cells(name) if store.has_dataset(name) else set()
        todo = sum(1 for p in items for c in candidates if (p.key, c.id) not in done)
        try:
            with cost_progress(todo, f"eval {name}", enabled=progress and not as_json) as hook:
                report = asyncio.run(
                    _run_and_close(
                        run_eval(
                            store,
                            prompts=items,
                            candidates=candidates,
                            judge=judge_obj,
                            name=name,
                            concurrency=concurrency,
                            max_cost_usd=max_cost,
                            on_progress=hook,
                        ),
                        [c.backend for c in candidates] + judge_backends,
                    )
                )
        except SpendingCapError as exc:
            partial = getattr(exc, "report", None)
            if partial is not None:
                _print_report(partial.to_dict(), as_json)
            raise
    finally:
        store.close()
    _print_report(report.to_dict(), as_json)
    if report.failed and not report.done:
        raise UpstreamError(
            f"All {report.failed} calls failed; first: {report.errors[0]}",
            hint="Check the models' base URLs, keys and network, then rerun the same command.",
        )


async def _run_and_close(coro: Any, backends: list[Any]) -> Any:
    try:
        return await coro
    finally:
        for backend in backends:
            await backend.aclose()


def _print_report(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(doc)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"Eval set {doc['name']}: {doc['done']} calls, {doc['skipped']} skipped, ${doc['cost_usd']:.6f}"
    )
    for column in ("model", "done", "failed", "mean score", "cost USD"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, stats in doc["per_model"].items():
        table.add_row(
            model,
            str(int(stats["done"])),
            str(int(stats["failed"])),
            "-" if stats["mean_score"] is None else f"{stats['mean_score']:.3f}",
            f"{stats['cost_usd']:.6f}",
        )
    console.print(table)
    if doc["judge_failures"]:
        console.print(
            f"{doc['judge_failures']} judge failures (stored without a score; a rerun retries them)."
        )
    for line in doc["errors"][:5]:
        console.print(f"[red]failed:[/] {line}", markup=True, highlight=False)


# -- routerforge data prompts ---------------------------------------------------------------------


@prompts_app.command("import")
def prompts_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A .jsonl or .csv file of prompts.")],
    name: Annotated[str, typer.Option("--name", help="The prompt set's name.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, jsonl or csv.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Import prompts (with optional reference answers and choices) as a prompt set."""
    from routerforge.errors import DataError
    from routerforge.evalrun.prompts import read_prompt_file

    store = _store(state(ctx).settings)
    try:
        count = store.add_prompts(
            name, read_prompt_file(path, fmt=fmt), description=f"prompts from {path.name}"
        )
    finally:
        store.close()
    if count == 0:
        raise DataError(f"{path} holds no prompts; nothing was written.", hint="Check the file and --format.")
    _done(as_json, {"name": name, "prompts": count}, f"Imported {count} prompts into {name!r}.")


@prompts_app.command("generate")
def prompts_generate(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The prompt set's name.")] = "tasks",
    size: Annotated[int, typer.Option("--size", min=1, help="How many prompts.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same prompts).")] = 0,
    kinds: Annotated[
        str | None, typer.Option("--kinds", help="Comma-separated task kinds (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Generate the built-in task suite (exact answers, graded difficulty) as a prompt set."""
    from routerforge.tasks import generate_tasks

    chosen = _split_names(kinds) if kinds is not None else None
    if chosen == []:
        from routerforge.errors import ValidationError

        raise ValidationError("--kinds names no task kind.", hint="Omit --kinds for all kinds, or list some.")
    items = generate_tasks(size, seed=seed, kinds=chosen)
    store = _store(state(ctx).settings)
    try:
        count = store.add_prompts(
            name, items, description=f"routerforge task suite, size {size}, seed {seed}"
        )
    finally:
        store.close()
    _done(as_json, {"name": name, "prompts": count}, f"Generated {count} task prompts into {name!r}.")


@prompts_app.command("list")
def prompts_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List prompt sets (datasets) with their prompt and record counts."""
    store = _store(state(ctx).settings)
    try:
        rows = [d.to_dict() for d in store.list_datasets()]
    finally:
        store.close()
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Prompt sets")
    for column in ("name", "prompts", "records", "description"):
        table.add_column(column, justify="right" if column in ("prompts", "records") else "left")
    for row in rows:
        table.add_row(row["name"], str(row["prompts"]), str(row["records"]), row["description"] or "")
    Console().print(table)


@prompts_app.command("show")
def prompts_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The prompt set.")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many prompts to show.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the first prompts of a prompt set."""
    from itertools import islice

    store = _store(state(ctx).settings)
    try:
        items = list(islice(store.iter_prompts(name), limit))
    finally:
        store.close()
    rows: list[dict[str, Any]] = [
        {
            "key": p.key,
            "text": p.text,
            "reference": p.reference,
            "choices": p.choices,
            "category": p.category,
            "split": p.split,
        }
        for p in items
    ]
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name} (first {len(rows)})")
    for column in ("key", "text", "reference", "category", "split"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["key"], row["text"], row["reference"] or "", row["category"] or "", row["split"] or ""
        )
    Console().print(table)


def _done(as_json: bool, doc: dict[str, Any], message: str) -> None:
    if as_json:
        print_json(doc)
    else:
        typer.echo(message)
