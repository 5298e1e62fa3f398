"""Semantic routes files: named routes defined by example utterances (read by the ``semantic`` router).

A routes file is YAML::

    routes:
      - name: code                 # unique
        target: big-model          # optional: the model this route sends to (or set it in `mapping`)
        threshold: 0.55            # optional: fixed cosine threshold; learnt by `fit` when absent
        utterances:                # at least one example prompt
          - Write a Python function that ...
    mapping:                       # optional: route name -> model (overrides `target`)
      chit-chat: small-model
    default: small-model           # optional: the model for prompts that match no route

``builtin:NAME`` names a file shipped in ``routerforge/assets/routes/`` (``builtin:task_types``: twelve
common task types, no targets — map them with ``mapping`` or ``--map TYPE=MODEL``). Errors name the file
and line of the offending entry.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routerforge.errors import ConfigError

if TYPE_CHECKING:
    from routerforge.data.matrix import ScoreMatrix

BUILTIN_PREFIX = "builtin:"
ROUTE_KEYS = {"name", "target", "threshold", "utterances", "description"}
TOP_KEYS = {"routes", "mapping", "default"}


@dataclass(frozen=True)
class Route:
    """One named route: its example utterances, the model it sends to (``None``: reported only) and an
    optional fixed threshold on the route score (cosine)."""

    name: str
    utterances: tuple[str, ...]
    target: str | None = None
    threshold: float | None = None
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "utterances": list(self.utterances),
            "target": self.target,
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class RoutesFile:
    """Parsed routes plus the ``default`` model (``None``: no default)."""

    routes: tuple[Route, ...]
    default: str | None = None
    source: str = "<routes>"
    mapping: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.routes]

    def targets(self) -> list[str]:
        """The distinct models this file sends to (targets, then the default), in first-seen order."""
        out: list[str] = []
        for model in [r.target for r in self.routes] + [self.default]:
            if model is not None and model not in out:
                out.append(model)
        return out

    def with_mapping(self, mapping: Mapping[str, str]) -> RoutesFile:
        """Apply ``route name -> model`` (the key ``default`` sets the default model); unknown names fail."""
        unknown = sorted(set(mapping) - set(self.names) - {"default"})
        if unknown:
            raise ConfigError(
                f"{self.source}: --map names unknown route(s) {unknown}. Routes: {', '.join(self.names)}."
            )
        routes = tuple(replace(r, target=mapping.get(r.name, r.target)) for r in self.routes)
        return RoutesFile(
            routes=routes,
            default=mapping.get("default", self.default),
            source=self.source,
            mapping={**self.mapping, **mapping},
        )

    def check_models(self, models: list[str]) -> None:
        """Fail when a target or the default is not one of ``models`` (naming the line)."""
        for r in self.routes:
            if r.target is not None and r.target not in models:
                raise ConfigError(
                    f"{self.source}:{r.line}: route {r.name!r} targets unknown model {r.target!r}. "
                    f"Models in the data: {', '.join(models)}."
                )
        if self.default is not None and self.default not in models:
            raise ConfigError(
                f"{self.source}: default model {self.default!r} is not in the data ({', '.join(models)})."
            )

    def to_params(self) -> list[dict[str, Any]]:
        """The routes as plain JSON for the ``semantic`` router's ``routes`` parameter."""
        return [r.to_dict() for r in self.routes]


def builtin_routes_dir() -> Path:
    return Path(str(importlib.resources.files("routerforge") / "assets" / "routes"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_routes_dir().glob("*.yaml"))


def load_routes(spec: str | Path) -> RoutesFile:
    """Read a routes file (a path, or ``builtin:NAME``)."""
    text_spec = str(spec)
    if text_spec.startswith(BUILTIN_PREFIX):
        name = text_spec[len(BUILTIN_PREFIX) :]
        path = builtin_routes_dir() / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"No built-in routes file {name!r}. Available: {', '.join('builtin:' + n for n in builtin_names())}."
            )
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(
                f"Routes file {path} does not exist.", hint="Pass a YAML file or builtin:task_types."
            )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read routes file {path}: {exc}") from exc
    return parse_routes(text, source=str(path))


def parse_routes(text: str, *, source: str = "<routes>") -> RoutesFile:
    """Parse routes YAML; every error names ``source:line`` and what to fix."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if root is None or not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{source}: a routes file is a mapping with a `routes:` list.")
    top = {_scalar(k, source): (k, v) for k, v in root.value}
    for key, (knode, _) in top.items():
        if key not in TOP_KEYS:
            raise ConfigError(
                f"{source}:{knode.start_mark.line + 1}: unknown key {key!r}; expected {sorted(TOP_KEYS)}."
            )
    if (
        "routes" not in top
        or not isinstance(top["routes"][1], yaml.SequenceNode)
        or not top["routes"][1].value
    ):
        raise ConfigError(f"{source}: `routes:` must be a non-empty list of routes.")
    routes: list[Route] = []
    seen: dict[str, int] = {}
    for node in top["routes"][1].value:
        route = _route(node, source)
        if route.name in seen:
            raise ConfigError(
                f"{source}:{route.line}: duplicate route name {route.name!r} (first defined at line "
                f"{seen[route.name]}); route names must be unique."
            )
        seen[route.name] = route.line
        routes.append(route)
    default = None
    if "default" in top:
        default = _scalar(top["default"][1], source) or None
    mapping: dict[str, str] = {}
    if "mapping" in top:
        mnode = top["mapping"][1]
        if not isinstance(mnode, yaml.MappingNode):
            raise ConfigError(
                f"{source}:{mnode.start_mark.line + 1}: `mapping:` must map route names to models."
            )
        mapping = {_scalar(k, source): _scalar(v, source) for k, v in mnode.value}
    parsed = RoutesFile(routes=tuple(routes), default=default, source=source)
    return parsed.with_mapping(mapping) if mapping else parsed


def _scalar(node: Any, source: str) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{source}:{node.start_mark.line + 1}: expected a single value here.")
    return str(node.value).strip()


def _route(node: Any, source: str) -> Route:
    import yaml

    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{source}:{line}: each route is a mapping with `name` and `utterances`.")
    fields = {_scalar(k, source): v for k, v in node.value}
    unknown = sorted(set(fields) - ROUTE_KEYS)
    if unknown:
        raise ConfigError(f"{source}:{line}: unknown route key(s) {unknown}; expected {sorted(ROUTE_KEYS)}.")
    name = _scalar(fields["name"], source) if "name" in fields else ""
    if not name:
        raise ConfigError(f"{source}:{line}: a route needs a `name`.")
    unode = fields.get("utterances")
    if not isinstance(unode, yaml.SequenceNode) or not unode.value:
        raise ConfigError(
            f"{source}:{line}: route {name!r} has no utterances; add `utterances:` with example prompts."
        )
    utterances = tuple(_scalar(u, source) for u in unode.value)
    empty = [i for i, u in enumerate(utterances) if not u]
    if empty:
        raise ConfigError(
            f"{source}:{unode.value[empty[0]].start_mark.line + 1}: empty utterance in route {name!r}."
        )
    target = _scalar(fields["target"], source) if "target" in fields else None
    threshold = None
    if "threshold" in fields:
        raw = _scalar(fields["threshold"], source)
        try:
            threshold = float(raw)
        except ValueError:
            threshold = float("nan")
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(
                f"{source}:{fields['threshold'].start_mark.line + 1}: route {name!r} threshold {raw!r} must be "
                "a cosine similarity in [-1, 1]."
            )
    return Route(name=name, utterances=utterances, target=target or None, threshold=threshold, line=line)


def parse_map(items: list[str] | None) -> dict[str, str]:
    """``["code=big", "default=small"]`` → ``{"code": "big", "default": "small"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, model = item.partition("=")
        if not sep or not name.strip() or not model.strip():
            raise ConfigError(f"Invalid --map {item!r}.", hint="Use ROUTE=MODEL, e.g. --map code=gpt-4o.")
        out[name.strip()] = model.strip()
    return out


def routes_matrix(routes: RoutesFile) -> ScoreMatrix:
    """Training data made of the routes' utterances alone: each scores 1 on its route's target and 0 on
    the other models (NaN everywhere for a route without a target); the models are the targets."""
    import numpy as np

    from routerforge.data.matrix import ScoreMatrix

    models = routes.targets()
    if len(models) < 2:
        raise ConfigError(
            f"{routes.source}: the routes send to {models or 'no model'}; a router needs at least two models.",
            hint="Give routes `target:` models, or --map ROUTE=MODEL (and --map default=MODEL).",
        )
    prompts, rows, keys = [], [], []
    for route in routes.routes:
        row = np.full(len(models), np.nan)
        if route.target is not None:
            row[:] = 0.0
            row[models.index(route.target)] = 1.0
        for k, utterance in enumerate(route.utterances):
            prompts.append(utterance)
            rows.append(row)
            keys.append(f"{route.name}/{k}")
    scores = np.array(rows)
    return ScoreMatrix(
        name=f"routes:{Path(routes.source).stem}",
        keys=keys,
        prompts=prompts,
        models=models,
        scores=scores,
        costs=np.full(scores.shape, np.nan),
    )


def semantic_training(
    router: str,
    spec: str | None,
    maps: list[str] | None,
    params: dict[str, Any],
    matrix: ScoreMatrix | None,
) -> tuple[ScoreMatrix, dict[str, Any]]:
    """What ``routerforge train semantic --routes FILE [--map R=M] [--data NAME]`` trains on: the dataset
    (with a ``knn`` fallback unless ``-p fallback=…`` says otherwise) or, without one, the utterances."""
    if router != "semantic":
        raise ConfigError(f"--routes and --map are options of the semantic router, not of {router!r}.")
    if spec is None:
        raise ConfigError("--map needs --routes FILE (or --routes builtin:task_types).")
    routes = load_routes(spec).with_mapping(parse_map(maps))
    if matrix is None:
        matrix = routes_matrix(routes)
        params = {**params, "fallback": params.get("fallback")}
    else:
        routes.check_models(list(matrix.models))
        params = {"fallback": "knn", **params}
    return matrix, {**params, "routes": routes.to_params(), "default": routes.default}
