"""Semantic routes in ``bench``: routes files and routes learnt from the category column, per fold.

``routerforge bench --router semantic`` accepts the route source as a parameter:

* ``-p routes=FILE.yaml`` or ``-p routes=builtin:task_types`` — a routes file (``routers/routes_file.py``);
  ``-p "map={math: gpt-4}"`` maps routes to models (the key ``default`` sets the default model), as
  ``train semantic --map`` does. Targets must be models of the run.
* ``-p routes=category`` — one route per category of the fold's **training** prompts: its utterances are
  those prompts (at most ``max_derived_utterances``, evenly spaced), its target the model with the highest
  mean score on them (ties: the lower mean cost, then the model order). Held-out prompts are never read.
* no ``routes`` — the router learns routes from the scores itself (one per model, see ``routers/semantic``).

The utterances are embedded with the harness's encoder (the embedding cache makes training prompts free),
exactly as ``policy.trained.train_router`` embeds them for ``train semantic``. Every other family goes
through the registry unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from routerforge.data.matrix import ScoreMatrix
from routerforge.errors import ConfigError
from routerforge.evaluate.harness import Encoder, RouterSpec, registry_factory
from routerforge.routers.base import Router

CATEGORY = "category"
SEMANTIC = "semantic"
DEFAULT_MAX_UTTERANCES = 200


def category_routes(
    matrix: ScoreMatrix, rows: np.ndarray, *, max_utterances: int = DEFAULT_MAX_UTTERANCES
) -> list[dict[str, Any]]:
    """One route per category of ``matrix``'s ``rows`` (the training rows only): utterances = those rows'
    prompts (evenly spaced when more than ``max_utterances``), target = the category's best model on them."""
    rows = np.asarray(rows, dtype=np.int64)
    by: dict[str, list[int]] = {}
    for i in rows:
        category = matrix.categories[i]
        if category:
            by.setdefault(str(category), []).append(int(i))
    if not by:
        raise ConfigError(
            f"Dataset {matrix.name!r} has no categories in the training prompts, so routes=category has "
            "nothing to learn from.",
            hint="Import the data with a category column, or pass -p routes=FILE.yaml.",
        )
    if max_utterances < 1:
        raise ConfigError("max_derived_utterances must be at least 1.")
    with warnings.catch_warnings():  # all-NaN columns (no costs, a model never scored) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        global_cost = np.nanmean(matrix.costs[rows], axis=0) if matrix.costs.size else None
    routes = []
    for name in sorted(by):
        mine = np.array(by[name], dtype=np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            quality = np.nanmean(matrix.scores[mine], axis=0)
            cost = np.nanmean(matrix.costs[mine], axis=0) if matrix.costs.size else None
        if cost is None or not np.isfinite(cost).any():
            cost = global_cost
        key = [
            (
                -(quality[j] if np.isfinite(quality[j]) else -np.inf),
                float(cost[j]) if cost is not None and np.isfinite(cost[j]) else np.inf,
                j,
            )
            for j in range(matrix.n_models)
        ]
        best = min(key)[2]
        if len(mine) > max_utterances:
            mine = mine[np.linspace(0, len(mine) - 1, max_utterances).round().astype(np.int64)]
        routes.append(
            {
                "name": name,
                "utterances": [matrix.prompts[i] for i in mine],
                "target": matrix.models[best],
                "threshold": None,
            }
        )
    return routes


def _file_routes(spec: str, mapping: Any, models: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    from routerforge.routers.routes_file import load_routes

    if mapping is not None and not (
        isinstance(mapping, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
    ):
        raise ConfigError(
            f"semantic: map must be ROUTE: MODEL pairs, got {mapping!r}.",
            hint='Use -p "semantic.map={code: big-model, default: small-model}".',
        )
    routes = load_routes(spec).with_mapping(mapping or {})
    routes.check_models(models)
    return routes.to_params(), routes.default


class SemanticFoldFactory:
    """The harness's ``fold_factory``: semantic routers with their route source resolved on the fold's
    training rows (see the module docstring); other families from the registry.

    ``encoder`` embeds the utterances (the harness's encoder, already fitted on the training prompts).
    ``seen`` records, per call, the texts given to the encoder (tests check no held-out prompt is among them).
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.seen: list[list[str]] = []

    def __call__(self, spec: RouterSpec, train_rows: np.ndarray, matrix: ScoreMatrix) -> Router:
        if spec.name != SEMANTIC:
            return registry_factory(spec)
        params = dict(spec.params)
        source = params.pop("routes", None)
        mapping = params.pop("map", None)
        models = list(matrix.models)
        if isinstance(source, str) and source == CATEGORY:
            if mapping is not None:
                raise ConfigError("semantic: map applies to a routes file, not to routes=category.")
            cap = int(params.get("max_derived_utterances", DEFAULT_MAX_UTTERANCES))
            params["routes"] = category_routes(matrix, train_rows, max_utterances=cap)
        elif isinstance(source, str):
            params["routes"], default = _file_routes(source, mapping, models)
            if default is not None:
                params.setdefault("default", default)
        elif source is not None:
            if mapping is not None:
                raise ConfigError("semantic: map needs routes=FILE.yaml (or builtin:NAME).")
            params["routes"] = source  # already a list of routes (Python callers)
        elif mapping is not None:
            raise ConfigError("semantic: map needs routes=FILE.yaml (or builtin:NAME).")
        router = registry_factory(RouterSpec(spec.name, params, spec.label))
        texts = router.auxiliary_texts()
        if texts:
            self.seen.append(list(texts))
            router.set_auxiliary_vectors(self.encoder.dense(texts))
        return router
