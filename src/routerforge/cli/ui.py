"""``routerforge ui``: the dashboard served straight from the store (no running gateway needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from routerforge.cli.context import state
from routerforge.cli.serve import GatewayConfigOpt, _gateway_config_path, is_loopback


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_cmd)


def check_port(host: str, port: int) -> None:
    """Fail with a clear error when ``port`` is out of range or ``host:port`` cannot be bound."""
    import socket

    from routerforge.errors import ConfigError

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as exc:
        raise ConfigError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            hint="Pick another --port, or stop the process using it.",
        ) from exc


def ui_cmd(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port to serve the dashboard on.")] = 8080,
    host: Annotated[
        str, typer.Option("--host", help="Bind address (default 127.0.0.1: loopback only).")
    ] = "127.0.0.1",
    config: GatewayConfigOpt = None,
) -> None:
    """Serve the web dashboard (/ui) from the store, without a running gateway. Admin API keys only."""
    import uvicorn

    from routerforge.data.sqlutil import safe_url
    from routerforge.gateway.config import load_gateway_config
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.ui.standalone import create_ui_app

    settings = state(ctx).settings
    path: Path | None = _gateway_config_path(settings, config)
    gw = load_gateway_config(path)
    check_port(host, port)
    db = GatewayDB(settings.store_url)
    admins = [k for k in db.list_keys() if k.is_admin]
    if not admins:
        typer.echo(
            "WARNING: the store has no admin key, so nobody can log in. Create one with "
            "`routerforge keys create --tenant NAME --admin`.",
            err=True,
        )
    if not is_loopback(host):
        typer.echo(
            f"WARNING: serving the dashboard on {host} over plain HTTP: keys typed into the login form cross "
            "the network unencrypted. Put it behind TLS, or bind to 127.0.0.1.",
            err=True,
        )
    app = create_ui_app(settings, gw, db=db)
    typer.echo(
        f"routerforge dashboard on http://{host}:{port}/ui (store: {safe_url(settings.store_url)})",
        err=True,
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        db.close()
