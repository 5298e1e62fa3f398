"""Promote a router to serve a named synthetic model, or roll the last promotion back — the one
implementation behind ``routerforge promote`` / ``rollback``, ``POST /v1/admin/promote`` / ``/v1/admin/rollback``
and the review page's button.

A promotion is recorded (gateway/assignments.py: assignment row, audit row, state version bump) only after
the router directory loads through :meth:`TrainedRouter.load` and every candidate model of the synthetic
model is both defined in gateway.yaml and predicted by the router. Every gateway process then picks it up
within ``reload.interval_s`` (gateway/reload.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from routerforge.config import Settings
from routerforge.errors import ArtifactError, ConfigError, NotFoundError, ValidationError
from routerforge.gateway.assignments import Assignments
from routerforge.gateway.config import GatewayConfig, PolicyConfig, SyntheticModelConfig


def synthetic_model(config: GatewayConfig, name: str) -> SyntheticModelConfig:
    for syn in config.synthetic_models:
        if syn.name == name:
            return syn
    names = [s.name for s in config.synthetic_models]
    raise NotFoundError(
        f"No synthetic model {name!r} in the gateway config.",
        hint=f"Named synthetic models: {', '.join(names) or 'none'} (promote works on `synthetic_models:` "
        "entries of gateway.yaml; pass the file with --config).",
    )


def router_path(settings: Settings, router: str) -> tuple[Path, str]:
    """(directory, the string recorded): a bare name under the routers dir stays a name (portable across
    replicas); anything else is recorded as an absolute path."""
    raw = router.strip()
    if not raw:
        raise ValidationError("The router directory is empty.", param="router")
    p = Path(raw).expanduser()
    if not p.is_absolute() and "/" not in raw and (settings.routers_dir / raw / "router.json").is_file():
        return settings.routers_dir / raw, raw
    p = p.resolve()
    if not (p / "router.json").is_file():
        raise NotFoundError(
            f"No trained router in {p}.",
            hint=f"Give a directory made by `routerforge train … --out DIR`, or a name under {settings.routers_dir}.",
        )
    return p, str(p)


def validate_candidate(
    settings: Settings,
    config: GatewayConfig,
    syn: SyntheticModelConfig,
    router: str,
    *,
    kind: str | None = None,
    knob: float | None = None,
) -> tuple[str, str | None, float | None, list[str]]:
    """Load ``router`` and check it can serve ``syn``: (recorded router, policy kind, knob, candidates)."""
    from routerforge.policy.trained import TrainedRouter

    directory, recorded = router_path(settings, router)
    try:
        trained = TrainedRouter.load(directory, settings)
    except (ArtifactError, OSError, ValueError, KeyError, TypeError) as exc:  # refused: a 400, not a 500
        raise ValidationError(f"The router in {directory} does not load: {exc}", param="router") from exc
    try:
        candidates = list(syn.models or trained.models)
        undefined = [m for m in candidates if config.model(m) is None]
        if undefined:
            raise ConfigError(
                f"Synthetic model {syn.name!r} would route to {undefined}, which the gateway config does not serve.",
                hint="Add them under `models:` in gateway.yaml first.",
            )
        unknown = [m for m in candidates if m not in trained.models]
        if unknown:
            raise ConfigError(
                f"Router {directory.name!r} has no predictions for {unknown} (it knows {trained.models}); "
                f"synthetic model {syn.name!r} routes to {candidates}."
            )
        if knob is not None:  # the knob needs a kind: the given one, the config's, else the router's own
            kind = kind or syn.policy.kind or trained.engine.policy(candidates=candidates).kind
            trained.engine.policy(kind, knob, candidates=candidates)  # validates the knob's range
        if kind is not None or knob is not None:
            try:
                PolicyConfig(kind=kind, knob=knob)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValidationError(f"Invalid policy: {exc}", param="knob") from exc
    finally:
        trained.close()
    return recorded, kind, knob, candidates


def promote(
    settings: Settings,
    config: GatewayConfig,
    engine: Engine,
    model: str,
    router: str,
    *,
    kind: str | None = None,
    knob: float | None = None,
    actor: str,
) -> dict[str, Any]:
    """Validate and record a promotion; returns what was recorded and the new state version."""
    syn = synthetic_model(config, model)
    recorded, kind, knob, candidates = validate_candidate(settings, config, syn, router, kind=kind, knob=knob)
    assignment, version = Assignments(engine).promote(
        model, recorded, kind=kind, knob=knob, actor=actor, config_router=syn.router
    )
    return {
        "action": "promote",
        **assignment.to_dict(),
        "candidates": candidates,
        "state_version": version,
    }


def rollback(config: GatewayConfig, engine: Engine, model: str, *, actor: str) -> dict[str, Any]:
    """Restore the assignment before the current one; ``router`` in the answer is what serves now."""
    syn = synthetic_model(config, model)
    restored, version = Assignments(engine).rollback(model, actor=actor)
    if restored is None:
        return {
            "action": "rollback",
            "synthetic_model": model,
            "router": syn.router,
            "kind": syn.policy.kind,
            "knob": syn.policy.knob,
            "source": "config",
            "state_version": version,
        }
    return {"action": "rollback", **restored.to_dict(), "source": "promotion", "state_version": version}


def serving(config: GatewayConfig, engine: Engine | None, model: str) -> dict[str, Any]:
    """What serves ``model`` now (after promotions) and where that comes from."""
    syn = synthetic_model(config, model)
    a = Assignments(engine).get(model) if engine is not None else None
    if a is None:
        return {
            "synthetic_model": model,
            "router": syn.router,
            "kind": syn.policy.kind,
            "knob": syn.policy.knob,
            "source": "config",
        }
    return {**a.to_dict(), "source": "promotion"}
