"""The improvement loop's own commands: ``routerforge drift`` and ``routerforge data prompts from-logs``.

The loop (README, "The improvement loop"): logged prompts → ``data prompts from-logs`` → ``eval run`` →
``train`` → ``review`` → ``promote``; ``drift`` says when to run it. The work is in
``routerforge.gateway.drift`` and ``routerforge.gateway.logprompts``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from routerforge.cli.context import print_json
from routerforge.cli.serve import GatewayConfigOpt, _load
from routerforge.errors import RouterForgeError

FAIL_ON = ("never", "warn", "alert")
_WINDOW = re.compile(r"([0-9]{1,7}(?:\.[0-9]{1,6})?)([mhd])")
_HOURS = {"m": 1 / 60, "h": 1.0, "d": 24.0}


class DriftThresholdReached(RouterForgeError):
    """``routerforge drift --fail-on``: a status reached the level asked for (exit code 4, for cron jobs)."""

    exit_code = 4


def register(app: typer.Typer) -> None:
    """Add ``routerforge drift`` and ``routerforge data prompts from-logs``."""
    from routerforge.cli.evalrun import prompts_app

    app.command("drift")(drift_cmd)
    prompts_app.command("from-logs")(prompts_from_logs_cmd)


def parse_window(value: str | None) -> float | None:
    """``30m`` / ``24h`` / ``7d`` → hours (``None``: the configured window)."""
    if value is None:
        return None
    from routerforge.errors import ValidationError

    match = _WINDOW.fullmatch(value.strip())
    hours = float(match.group(1)) * _HOURS[match.group(2)] if match else 0.0
    if hours <= 0:
        raise ValidationError(
            f"Cannot read --window {value[:40]!r}.", hint="Use a positive duration: 30m, 24h or 7d."
        )
    return hours


def drift_cmd(
    ctx: typer.Context,
    config: GatewayConfigOpt = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Only this synthetic model (repeatable; default: all)."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option("--window", help="Recent traffic: 30m, 24h, 7d (default: drift.window_hours)."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            "--last", min=1, help="At most this many newest requests (default: drift.max_requests)."
        ),
    ] = None,
    fail_on: Annotated[
        str, typer.Option("--fail-on", help="Exit 4 when a status reaches: never, warn or alert.")
    ] = "never",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Drift and quality alerts per synthetic model: coverage, chosen-model shares, feedback vs predicted."""
    from routerforge.errors import ArtifactError, ValidationError
    from routerforge.gateway.drift import STATUS_CODES, compute_drift

    if fail_on not in FAIL_ON:
        raise ValidationError(f"--fail-on {fail_on!r} is not one of: {', '.join(FAIL_ON)}.")
    hours = parse_window(window)
    settings, gw, _ = _load(ctx, config)
    if not gw.synthetic_models:
        raise ValidationError(
            "The gateway config names no synthetic model, so there is no router to check.",
            hint="Add one under `synthetic_models:` (docs/gateway.md), or pass --config.",
        )
    reports, errors = compute_drift(settings, gw, model or None, window_hours=hours, max_requests=last)
    payload = {
        "data": [reports[n].to_dict() for n in sorted(reports)],
        "errors": errors,
        "thresholds": gw.drift.model_dump(),
    }
    if as_json:
        print_json(payload)
    else:
        _print_drift(payload)
    if errors:
        raise ArtifactError(
            "Drift could not be computed for " + "; ".join(f"{n}: {e}" for n, e in sorted(errors.items()))
        )
    reached = sorted(
        n
        for n, r in reports.items()
        if fail_on != "never" and STATUS_CODES[r.status] >= STATUS_CODES[fail_on]
    )
    if reached:
        raise DriftThresholdReached(
            f"Drift status {fail_on} or worse for {', '.join(reached)} (--fail-on {fail_on})."
        )


def _print_drift(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    table = Table(title="Drift per synthetic model (values: low-coverage share, share TVD, feedback gap)")
    table.add_column("model", no_wrap=True)
    for column in ("status", "requests", "coverage", "share", "feedback"):
        table.add_column(column, justify="right" if column == "requests" else "left")
    for doc in payload["data"]:
        cells = []
        for name in ("coverage", "share", "feedback"):
            check = doc["checks"][name]
            value = "-" if check["value"] is None else f"{check['value']:+.3f}".lstrip("+")
            cells.append(f"{value} ({check['status']})")
        table.add_row(doc["synthetic_model"], doc["status"], str(doc["window"]["requests"]), *cells)
    console.print(table)
    for doc in payload["data"]:
        for name, check in doc["checks"].items():
            if check["reason"]:
                console.print(f"{doc['synthetic_model']} {name}: {check['reason']}", highlight=False)
    for name, error in payload["errors"].items():
        console.print(f"[red]{name}:[/] {error}", highlight=False)


def prompts_from_logs_cmd(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Option("--name", help="The prompt set to create or extend in the store.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also (or only) write the prompts to this JSONL file.")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's requests.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only requests since (2026-01-31, 15m, 2h, 7d).")
    ] = None,
    synthetic_model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only requests to this synthetic model.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Look at most at this many newest requests.")
    ] = 100_000,
    references: Annotated[
        str | None,
        typer.Option(
            "--references",
            help="A prompt set whose reference answers (and choices, judge rule) are copied to the same texts.",
        ),
    ] = None,
    test_fraction: Annotated[
        float,
        typer.Option(
            "--test-fraction",
            min=0.0,
            max=0.99,
            help="Share of the prompts put in split 'test' (by text hash; the rest: 'train').",
        ),
    ] = 0.2,
    config: GatewayConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Logged prompts (with or without feedback) → a prompt set for `eval run` (skips opted-out tenants)."""
    from routerforge.data.store import Store
    from routerforge.errors import DataError, ValidationError
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.logprompts import prompts_from_logs, write_prompts_jsonl
    from routerforge.gateway.requestlog import parse_since

    if name is None and out is None:
        raise ValidationError(
            "Say where the prompts go.",
            hint="Pass --name SET (a prompt set in the store), --out FILE, or both.",
        )
    if name is not None and not name.strip():
        raise ValidationError("The prompt set needs a non-empty name.", hint="Pass --name NAME.")
    if out is not None and out.is_dir():
        raise ValidationError(f"--out {out} is a folder.", hint="Give a .jsonl file name.")
    since_dt = parse_since(since)
    settings, gw, _ = _load(ctx, config)
    store = Store.from_settings(settings)
    try:
        refs = None
        if references is not None:
            if not store.has_dataset(references):
                raise DataError(
                    f"No prompt set {references!r} in the store.",
                    hint="`routerforge data prompts list` shows them.",
                )
            from routerforge.data.records import text_hash

            refs = {text_hash(p.text): p for p in store.iter_prompts(references)}
        db = GatewayDB(settings.store_url)
        try:
            opted = [t.name for t in gw.tenants if t.training_opt_out]
            found = prompts_from_logs(
                db,
                tenant=tenant,
                since=since_dt,
                synthetic_model=synthetic_model,
                opted_out=opted,
                limit=limit,
                references=refs,
                test_fraction=test_fraction,
            )
        finally:
            db.close()
        payload: dict[str, Any] = {"name": name, "out": None if out is None else str(out), **found.to_dict()}
        if not found.items:
            skipped = ", ".join(f"{v} {k}" for k, v in payload["skipped"].items() if v) or "none"
            raise DataError(
                f"No usable logged prompt among {found.requests_seen} requests (skipped: {skipped}); nothing "
                "was written.",
                hint="Send traffic through the gateway first, or widen --since / --tenant / --model.",
            )
        if name is not None:
            existing = {p.key for p in store.iter_prompts(name)} if store.has_dataset(name) else set[str]()
            store.add_prompts(name, found.items, description="prompts from the gateway's request log")
            payload["new"] = sum(1 for p in found.items if p.key not in existing)
        if out is not None:
            write_prompts_jsonl(found.items, out)
    finally:
        store.close()
    if as_json:
        print_json(payload)
        return
    skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in payload["skipped"].items() if v) or "none"
    where = " and ".join(x for x in (f"prompt set {name!r}" if name else "", str(out) if out else "") if x)
    typer.echo(
        f"{len(found.items)} prompts from {found.requests_seen} logged requests → {where} "
        f"({payload.get('new', len(found.items))} new, {found.with_reference} with a reference; skipped: {skipped})"
    )
