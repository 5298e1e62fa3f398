"""``routerforge serve``, ``routerforge keys …``, ``routerforge logs`` and ``routerforge data import-logs``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from routerforge.cli.context import print_json, state

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.gateway.auth import KeyStore
    from routerforge.gateway.config import GatewayConfig

keys_app = typer.Typer(name="keys", help="Create, list and revoke gateway API keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``keys`` and ``logs`` to ``app``, and ``import-logs`` to ``routerforge data``."""
    app.command("serve")(serve_cmd)
    app.add_typer(keys_app, name="keys")
    app.command("logs")(logs_cmd)
    try:
        from routerforge.cli.data import data_app
    except ImportError:  # pragma: no cover - the data CLI is part of every install
        return
    data_app.command("import-logs")(import_logs_cmd)


def _gateway_config_path(settings: Settings, given: Path | None) -> Path | None:
    if given is not None:
        return given
    if settings.gateway.config_file is not None:
        return settings.gateway.config_file
    default = settings.home / "gateway.yaml"
    return default if default.is_file() else None


def _load(ctx: typer.Context, config: Path | None) -> tuple[Settings, GatewayConfig, Path | None]:
    from routerforge.gateway.config import load_gateway_config

    settings = state(ctx).settings
    path = _gateway_config_path(settings, config)
    return settings, load_gateway_config(path), path


def _keystore(settings: Settings, gw: GatewayConfig) -> KeyStore:
    from routerforge.gateway.auth import KeyStore, load_pepper
    from routerforge.gateway.db import GatewayDB

    return KeyStore(GatewayDB(settings.store_url), load_pepper(settings.home, gw.key_pepper_env))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); any other name or address is not."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_access_warning(gw: GatewayConfig, host: str) -> str | None:
    """The start-up warning when the gateway accepts any caller on an address others can reach."""
    if gw.require_auth or is_loopback(host):
        return None
    return (
        f"WARNING: require_auth is false and the gateway binds to {host}, beyond loopback: anyone who can "
        "reach this address can call the models (with any or no API key) on tenant 'default'. Set "
        "`require_auth: true` in the gateway config and create keys with `routerforge keys create`, or bind "
        "to 127.0.0.1."
    )


GatewayConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="gateway.yaml (default: gateway.config_file or $ROUTERFORGE_HOME/gateway.yaml).",
    ),
]


def serve_cmd(
    ctx: typer.Context,
    config: GatewayConfigOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (default 127.0.0.1: loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes (default 1).")] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="uvicorn access log.")
    ] = False,
) -> None:
    """Serve the OpenAI-compatible routing gateway."""
    import uvicorn

    from routerforge.errors import ConfigError
    from routerforge.gateway.app import create_app
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.ratelimit import build_counters

    settings, gw, path = _load(ctx, config)
    host = host or settings.gateway.host
    port = port or settings.gateway.port
    workers = workers or settings.gateway.workers
    typer.echo(
        f"routerforge gateway on http://{host}:{port}/v1 ({len(gw.models)} models, "
        f"{len(gw.synthetic_models)} synthetic, config: {path or 'none'}, workers: {workers})",
        err=True,
    )
    warning = open_access_warning(gw, host)
    if warning is not None:
        typer.echo(warning, err=True)
    http_options: dict[str, Any] = {  # slow and idle clients: gateway/server.py, limits in gateway.yaml
        "timeout_keep_alive": gw.limits.idle_timeout_s,
        "access_log": access_log,
        "log_level": "info",
        "timeout_graceful_shutdown": 10,
    }
    try:
        from routerforge.gateway.server import LimitedHttpToolsProtocol

        http_options["http"] = LimitedHttpToolsProtocol
    except ImportError:  # no httptools (e.g. Windows): h11, with its header size cap but no header deadline
        http_options.update(http="h11", h11_max_incomplete_event_size=gw.limits.max_header_bytes)
        typer.echo("WARNING: httptools is not installed: no deadline for slow request headers.", err=True)
    if workers == 1:
        app = create_app(settings, gw, config_path=path)  # path: polled by the hot reload
        app.state.service.routing.load_all()  # fail here, with a clear message, on a broken router dir
        uvicorn.run(app, host=host, port=port, **http_options)
        return
    db = GatewayDB(settings.store_url)
    kind = build_counters(gw.counters, db).kind
    db.close()
    if kind == "memory":
        raise ConfigError(
            f"--workers {workers} needs shared counters for rate limits and budgets, but the store is "
            f"{settings.store_url.split(':', 1)[0]} and counters.backend is {gw.counters.backend!r}.",
            hint="Use a PostgreSQL store, or set counters.backend: sql (SQLite file) or redis in gateway.yaml.",
        )
    env = {
        "ROUTERFORGE_HOME": str(settings.home),
        "ROUTERFORGE_DATA__STORE_URL": settings.store_url,
    }
    if path is not None:
        env["ROUTERFORGE_GATEWAY__CONFIG_FILE"] = str(Path(path).resolve())
    if state(ctx).config_file is not None:
        env["ROUTERFORGE_CONFIG"] = str(Path(state(ctx).config_file).resolve())  # type: ignore[arg-type]
    os.environ.update(env)  # read back by each worker through load_settings()
    uvicorn.run(
        "routerforge.gateway.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **http_options,
    )


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The tenant (space) the key belongs to.")],
    name: Annotated[str | None, typer.Option("--name", help="A label for the key.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May read every tenant's log.")] = False,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute for this key.")] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", help="Tokens (prompt + completion) per minute for this key.")
    ] = None,
    daily_usd: Annotated[
        float | None, typer.Option("--daily-usd", help="This key's own budget per UTC day (USD).")
    ] = None,
    monthly_usd: Annotated[
        float | None, typer.Option("--monthly-usd", help="This key's own budget per UTC month (USD).")
    ] = None,
    config: GatewayConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a key. The secret is printed once; only its hash is stored. A key's own budgets and limits
    are enforced besides its tenant's and organisation's."""
    settings, gw, _ = _load(ctx, config)
    secret, info = _keystore(settings, gw).create(
        tenant,
        name=name,
        admin=admin,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        daily_usd=daily_usd,
        monthly_usd=monthly_usd,
    )
    if as_json:
        print_json(
            {
                "id": info.id,
                "tenant": info.tenant,
                "key": secret,
                "admin": info.is_admin,
                "name": info.name,
                "daily_usd": info.daily_usd,
                "monthly_usd": info.monthly_usd,
                "tpm": info.tokens_per_minute,
            }
        )
        return
    typer.echo(secret)
    typer.echo(f"key {info.id} for tenant {tenant!r} created; the secret above is shown only once.", err=True)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's keys.")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    config: GatewayConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys (ids and prefixes only; secrets are never stored)."""
    settings, gw, _ = _load(ctx, config)
    keys = _keystore(settings, gw).db.list_keys(tenant, include_revoked=include_revoked)
    rows = [
        {
            "id": k.id,
            "tenant": k.tenant,
            "name": k.name,
            "prefix": k.prefix + "…",
            "admin": k.is_admin,
            "rpm": k.requests_per_minute,
            "tpm": k.tokens_per_minute,
            "daily_usd": k.daily_usd,
            "monthly_usd": k.monthly_usd,
            "created_at": k.created_at.isoformat(timespec="seconds"),
            "revoked_at": k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else None,
        }
        for k in keys
    ]
    if as_json:
        print_json(rows)
        return
    _table("API keys", rows)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key id (key_…) from `routerforge keys list`.")],
    config: GatewayConfigOpt = None,
) -> None:
    """Revoke a key (gateways stop accepting it within a few seconds)."""
    settings, gw, _ = _load(ctx, config)
    _keystore(settings, gw).revoke(key_id)
    typer.echo(f"revoked {key_id}", err=True)


def logs_cmd(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="2026-01-31, an ISO time, or relative: 15m, 2h, 7d.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="At most this many requests (newest first).")
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print full JSON rows (messages, attempts, …).")
    ] = False,
) -> None:
    """Show the gateway's request log."""
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.requestlog import RequestLog, parse_since

    settings = state(ctx).settings
    db = GatewayDB(settings.store_url)
    try:
        rows = RequestLog(db).query(tenant=tenant, since=parse_since(since), limit=limit)
    finally:
        db.close()
    if as_json:
        print_json(rows)
        return
    table_rows = [
        {
            "time": r["created_at"].isoformat(timespec="seconds"),
            "id": r["id"],
            "tenant": r["tenant"],
            "model": r["requested_model"],
            "answered": r["answered_model"] or "-",
            "status": r["status"],
            "attempts": len(r["attempts"]),
            "cost_usd": f"{r['cost_usd']:.6f}" if r["cost_usd"] is not None else "-",
            "ms": f"{r['total_ms']:.1f}" if r["total_ms"] is not None else "-",
        }
        for r in rows
    ]
    _table("Requests", table_rows)


def import_logs_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The dataset (eval set) to create or extend.")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's requests.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only requests since (2026-01-31, 7d, …).")
    ] = None,
    config: GatewayConfigOpt = None,
    recluster: Annotated[
        list[Path] | None,
        typer.Option("--recluster", help="Then refit this router directory on the dataset (repeatable)."),
    ] = None,
    recluster_min_new: Annotated[
        int,
        typer.Option(
            "--recluster-min-new",
            help="--recluster only when the dataset has at least this many new prompts.",
        ),
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Turn logged gateway requests that have feedback into an eval set (skips opted-out tenants)."""
    from routerforge.data.store import Store
    from routerforge.errors import ValidationError
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.export import records_from_logs
    from routerforge.gateway.requestlog import parse_since

    settings, gw, _ = _load(ctx, config)
    db = GatewayDB(settings.store_url)
    try:
        opted = [t.name for t in gw.tenants if t.training_opt_out]
        export = records_from_logs(db, tenant=tenant, since=parse_since(since), opted_out=opted)
    finally:
        db.close()
    payload: dict[str, Any] = {
        "dataset": name,
        "requests_with_feedback": export.requests_seen,
        "records": len(export.records),
        "skipped_opt_out": export.skipped_opt_out,
        "skipped_unusable": export.skipped_other,
        "tenants": sorted(export.tenants),
    }
    if not export.records:
        raise ValidationError(
            f"No usable logged requests with feedback ({export.requests_seen} with feedback, "
            f"{export.skipped_opt_out} from opted-out tenants).",
            hint="Send ratings with POST /v1/feedback first.",
        )
    store = Store.from_settings(settings)
    try:
        report = store.import_records(name, export.records, source="gateway-log")
    finally:
        store.close()
    payload["import"] = report.to_dict()
    if recluster:  # re-cluster routers once enough new feedback arrived (cli/recluster.py)
        from routerforge.cli.recluster import recluster_router

        payload["recluster"] = [
            recluster_router(settings, d, name, min_new=recluster_min_new) for d in recluster
        ]
    if as_json:
        print_json(payload)
        return
    typer.echo(
        f"imported {len(export.records)} records into {name!r} "
        f"(skipped {export.skipped_opt_out} from opted-out tenants, {export.skipped_other} unusable)"
    )


def _table(title: str, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    if not rows:
        Console().print(f"{title}: none")
        return
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r.values()))
    Console().print(table)
