"""The ``routerforge`` command: thin commands over the layers, one error wrapper.

Each command group lives in its own module exposing ``register(app)``; modules import heavy layers inside
command functions so ``routerforge --help`` starts fast.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from routerforge import __version__
from routerforge.cli.context import AppState
from routerforge.errors import RouterForgeError

COMMAND_MODULES = (
    "routerforge.cli.data",
    "routerforge.cli.models",
    "routerforge.cli.routing",
    "routerforge.cli.evalrun",
    "routerforge.cli.quickstart",
    "routerforge.cli.serve",
    "routerforge.cli.recluster",
    "routerforge.cli.scale",
    "routerforge.cli.loop",
    "routerforge.cli.ui",
    "routerforge.cli.review",
)

app = typer.Typer(
    name="routerforge",
    help="Build LLM routers from evaluation results, measure them on held-out data, and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"routerforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML settings file (default: $ROUTERFORGE_HOME/config.yaml)."),
    ] = None,
    home: Annotated[
        Path | None, typer.Option("--home", help="Home directory (default: ~/.routerforge).")
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store URL (SQLite file or postgresql://...).")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    overrides: dict[str, object] = {"home": home, "data": {"store_url": store}}
    ctx.obj = AppState(config_file=config, overrides=overrides)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI; user mistakes print one line and exit non-zero, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except RouterForgeError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except typer.Abort:
        _print_error("Aborted.")
        return 130
    except KeyboardInterrupt:
        _print_error("Interrupted.")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # usage errors (a missing option, a value of the wrong type)
        usage = _usage_error(exc)
        if usage is None:
            raise
        if usage[0]:  # empty: the help text was printed for a bare command group
            _print_error(usage[0])
        return usage[1]
    return 0


def _usage_error(exc: Exception) -> tuple[str, int] | None:
    """(one-line message, exit code) for a click/typer usage error; ``None`` for anything else.

    typer >= 0.20 vendors click as ``typer._click``, whose exceptions derive from
    ``typer.exceptions.TyperException`` and not from ``click.ClickException``: catch both.
    """
    import click
    from typer.exceptions import TyperException

    if not isinstance(exc, click.ClickException | TyperException):
        return None
    message = " ".join(exc.format_message().split()).rstrip(".")
    if not message:
        return "", int(getattr(exc, "exit_code", 2))
    message += "."
    command = getattr(getattr(exc, "ctx", None), "command_path", None)
    if command:
        message += f" Run `{command} --help` for usage."
    return message, int(getattr(exc, "exit_code", 2))


def _print_error(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    one_line = " ".join(message.split())  # a message quoting a parser's multi-line error stays one line
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(one_line)}", markup=True
    )


if __name__ == "__main__":
    sys.exit(main())
