"""``routerforge models``: candidate models with prices (defaults from LiteLLM's offline price map)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state

if TYPE_CHECKING:
    from routerforge.data.records import CandidateModel
    from routerforge.data.store import Store

models_app = typer.Typer(
    name="models", help="Candidate models, their prices and context windows.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``routerforge models ...`` to ``app``."""
    app.add_typer(models_app, name="models")


def _store(ctx: typer.Context) -> Store:
    from routerforge.data.store import Store

    return Store.from_settings(state(ctx).settings)


def _as_dict(model: CandidateModel) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(model)


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@models_app.command("list")
def list_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the candidate models."""
    store = _store(ctx)
    try:
        models = store.list_models()
    finally:
        store.close()
    if as_json:
        print_json([_as_dict(m) for m in models])
        return
    from rich.console import Console
    from rich.table import Table

    if not models:
        Console().print("No candidate models yet. Add one with `routerforge models add ID`.")
        return
    table = Table(title="Candidate models (USD per million tokens)")
    for column, justify in (
        ("id", "left"),
        ("provider / base URL", "left"),
        ("input", "right"),
        ("output", "right"),
        ("context", "right"),
        ("capabilities", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for m in models:
        caps = ", ".join(k for k, v in sorted(m.capabilities.items()) if v)
        table.add_row(
            m.id,
            m.provider or m.base_url or "",
            _price(m.input_usd_per_mtok),
            _price(m.output_usd_per_mtok),
            "-" if m.context_window is None else f"{m.context_window:,}",
            caps,
        )
    Console().print(table)


@models_app.command("add")
def add_cmd(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Model id used in datasets and routing.")],
    provider: Annotated[
        str | None, typer.Option("--provider", help="LiteLLM provider string, e.g. openai/gpt-4o-mini.")
    ] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible base URL.")] = None,
    input_price: Annotated[
        float | None, typer.Option("--input-price", min=0, help="USD per million input tokens.")
    ] = None,
    output_price: Annotated[
        float | None, typer.Option("--output-price", min=0, help="USD per million output tokens.")
    ] = None,
    context_window: Annotated[int | None, typer.Option("--context-window", min=1, help="Tokens.")] = None,
    capability: Annotated[
        list[str] | None,
        typer.Option("--capability", "-c", help="tools, vision, json... (repeat; prefix no- to unset)."),
    ] = None,
    lookup: Annotated[
        bool, typer.Option("--lookup/--no-lookup", help="Fill missing prices from LiteLLM's price map.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored model as JSON.")] = False,
) -> None:
    """Add or update a candidate model; flags override the defaults from LiteLLM's price map."""
    from routerforge.data.prices import with_default_prices
    from routerforge.data.records import CandidateModel

    capabilities: dict[str, bool] = {}
    for item in capability or []:
        name = item.strip().lower()
        if name.startswith("no-"):
            capabilities[name[3:]] = False
        elif name:
            capabilities[name] = True
    model = CandidateModel(
        id=model_id,
        provider=provider,
        base_url=base_url,
        input_usd_per_mtok=input_price,
        output_usd_per_mtok=output_price,
        context_window=context_window,
        capabilities=capabilities,
    )
    source = "flags"
    needs_lookup = None in (input_price, output_price, context_window)
    if lookup and needs_lookup and not (base_url and provider is None):
        model, price = with_default_prices(model)
        source = f"LiteLLM price map entry {price.key!r}" if price else "flags (not in LiteLLM's price map)"
    store = _store(ctx)
    try:
        store.upsert_model(model)
    finally:
        store.close()
    if as_json:
        print_json({**_as_dict(model), "defaults_from": source})
        return
    typer.echo(
        f"Saved {model.id}: input {_price(model.input_usd_per_mtok)}, output "
        f"{_price(model.output_usd_per_mtok)} USD/Mtok, context "
        f"{model.context_window if model.context_window is not None else '-'} (from {source})."
    )


@models_app.command("show")
def show_cmd(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one candidate model."""
    store = _store(ctx)
    try:
        model = store.get_model(model_id)
    finally:
        store.close()
    payload = _as_dict(model)
    if as_json:
        print_json(payload)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, title=model.id)
    for key, value in payload.items():
        table.add_row(key, "-" if value in (None, {}) else str(value))
    Console().print(table)


@models_app.command("remove")
def remove_cmd(ctx: typer.Context, model_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a candidate model."""
    store = _store(ctx)
    try:
        store.delete_model(model_id)
    finally:
        store.close()
    typer.echo(f"Removed {model_id}.")
