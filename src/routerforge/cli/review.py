"""``routerforge review``, ``routerforge promote`` and ``routerforge rollback`` (docs/review.md)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from routerforge.cli.context import print_json
from routerforge.cli.serve import GatewayConfigOpt


def register(app: typer.Typer) -> None:
    app.command("review")(review_cmd)
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)


def _setup(ctx: typer.Context, config: Path | None) -> tuple[Any, Any, Any]:
    """(settings, gateway config, GatewayDB) — the store holds the request log and the promotions."""
    from routerforge.cli.serve import _load
    from routerforge.gateway.db import GatewayDB

    settings, gw, _path = _load(ctx, config)
    return settings, gw, GatewayDB(settings.store_url)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def review_cmd(
    ctx: typer.Context,
    candidate: Annotated[
        str, typer.Option("--candidate", help="Candidate router directory (or a name under the routers dir).")
    ],
    serving: Annotated[
        str | None,
        typer.Option(
            "--serving",
            help="Synthetic model to compare with (default: the first one, else router-<candidate>).",
        ),
    ] = None,
    knob: Annotated[
        float | None, typer.Option("--knob", help="Candidate's policy knob (default: its calibrated one).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--policy", help="Candidate's policy kind: threshold | wtp | tolerance.")
    ] = None,
    last: Annotated[
        int | None, typer.Option("--last", help="Replay the last N logged requests of the serving model.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", help="Eval set: replay its prompts (or, with --last, look up true scores)."
        ),
    ] = None,
    eval_split: Annotated[
        str | None, typer.Option("--eval-split", help="Only this split of --dataset (e.g. test).")
    ] = None,
    from_shadow: Annotated[
        bool, typer.Option("--from-shadow", help="Compare the logged shadow decisions (no recomputation).")
    ] = False,
    answers: Annotated[
        bool,
        typer.Option(
            "--answers", help="Ask the upstream models for answers the log and dataset lack (costs money)."
        ),
    ] = False,
    show: Annotated[int, typer.Option("--show", min=0, max=10000, help="Disagreements listed.")] = 20,
    config: GatewayConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replay logged requests (or an eval set) through a candidate router and the serving one: where they
    disagree, the predicted cost change and the quality change where true scores exist."""
    from routerforge.errors import ValidationError
    from routerforge.gateway.config import PolicyConfig
    from routerforge.gateway.review import Reviewer

    if kind is not None:
        try:
            PolicyConfig(kind=kind, knob=knob)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValidationError(f"Invalid --policy/--knob: {exc}") from exc
    if knob is not None and knob < 0:
        raise ValidationError(f"--knob must be ≥ 0, got {knob}.")
    if eval_split is not None and dataset is None:
        raise ValidationError("--eval-split needs --dataset.")
    if last is None and dataset is None:
        raise ValidationError(
            "Give --last N (replay the request log) or --dataset D [--eval-split S] (an eval set)."
        )
    settings, gw, db = _setup(ctx, config)
    try:
        reviewer = Reviewer(
            settings, gw, candidate=candidate, serving=serving, kind=kind, knob=knob, engine=db.engine
        )
        report = reviewer.run(
            last=last,
            dataset=dataset,
            split=eval_split,
            from_shadow=from_shadow,
            max_items=show,
            answers=answers,
        )
    finally:
        db.close()
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _usd(value: float | None) -> str:
    return "–" if value is None else f"{value:.6f}"


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    s, c = report["serving"], report["candidate"]
    console.print(
        f"[bold]{report['n']}[/] prompts ({report['source']['kind']}): serving {escape(str(s['model']))} "
        f"({escape(Path(str(s['router'])).name)}) vs candidate {escape(Path(c['router']).name)}"
    )
    dis = report["disagreements"]
    share = "–" if dis["share"] is None else f"{dis['share']:.1%}"
    console.print(f"disagreements: [bold]{dis['count']}[/] ({share})")
    cost = report["cost_change"]
    if cost:
        rel = "" if cost["relative"] is None else f" ({cost['relative']:+.1%})"
        console.print(
            f"predicted cost per request: {_usd(cost['serving_usd_per_request'])} → "
            f"{_usd(cost['candidate_usd_per_request'])} USD{rel}"
        )
    q = report["quality_change"]
    if q:
        console.print(
            f"quality on {q['n_scored']} scored prompts: {q['serving']:.3f} → {q['candidate']:.3f} ({q['absolute']:+.3f})"
        )
    if report["skipped"]["count"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in report["skipped"]["reasons"].items())
        console.print(f"skipped {report['skipped']['count']}: {escape(reasons)}")
    if dis["items"]:
        table = Table(title="disagreements")
        table.add_column("prompt", max_width=50)
        table.add_column("serving", max_width=30)
        table.add_column("candidate", max_width=30)
        for d in dis["items"]:
            cells = []
            for side in ("serving", "candidate"):
                x = d[side]
                score = x["predicted_score"]
                text = f"{x['model']} ({'–' if score is None else f'{score:.2f}'})"
                if x.get("true_score") is not None:
                    text += f" true {x['true_score']:.2f}"
                if x.get("answer"):
                    text += "\n" + str(x["answer"])[:120]
                cells.append(escape(text))
            table.add_row(escape(d["prompt"][:200]), *cells)
        console.print(table)


def promote_cmd(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="The synthetic model (a `synthetic_models:` name in gateway.yaml).")
    ],
    router: Annotated[
        str, typer.Option("--router", help="Router directory (or a name under the routers dir).")
    ],
    knob: Annotated[
        float | None, typer.Option("--knob", help="Policy knob (default: the router's calibrated one).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--policy", help="Policy kind: threshold | wtp | tolerance.")
    ] = None,
    config: GatewayConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Serve MODEL with another router: validated (it loads; the config serves its models), recorded with an
    audit row, and picked up by every gateway process within reload.interval_s — no restart."""
    from routerforge.errors import ValidationError
    from routerforge.gateway.promote import promote

    if kind is not None and kind not in ("threshold", "wtp", "tolerance"):
        raise ValidationError(f"--policy must be threshold, wtp or tolerance, got {kind!r}.")
    settings, gw, db = _setup(ctx, config)
    try:
        out = promote(settings, gw, db.engine, model, router, kind=kind, knob=knob, actor=_actor())
    finally:
        db.close()
    if as_json:
        print_json(out)
        return
    if out["knob"] is not None:
        knob_text = f"{out['kind']} {out['knob']:g}"
    else:
        knob_text = f"{out['kind']}, calibrated knob" if out["kind"] else "policy as configured"
    typer.echo(f"{model} → {out['router']} ({knob_text}); state version {out['state_version']}.")


def rollback_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The synthetic model to roll back.")],
    config: GatewayConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Undo MODEL's last promotion: the router that served before it serves again (audited, hot-reloaded)."""
    from routerforge.gateway.promote import rollback

    _settings, gw, db = _setup(ctx, config)
    try:
        out = rollback(gw, db.engine, model, actor=_actor())
    finally:
        db.close()
    if as_json:
        print_json(out)
        return
    typer.echo(f"{model} → {out['router']} ({out['source']}); state version {out['state_version']}.")
