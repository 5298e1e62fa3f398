"""``ensemble``: a weighted average of the predicted score matrices of other routers.

Routers that look at prompts differently make different mistakes: a neighbour router (``sw``/``knn``)
sees the topic, a lexical model sees wording and numbers, an ``mlp`` sees both through the embedding.
Averaging their predicted scores (plain weighted mean, so the result is still an expected score in
[0, 1] and every policy works with it) is the best router measured on RouteLLM MMLU (see
``docs/routers.md``).

``members`` is a list of ``{"name": <registry name>, "params": {...}, "weight": w}``; the default is
``sw`` (top 100 neighbours) + ``lexical`` with equal weights. Members get the ensemble's
``random_state`` unless their params set one. The artifact stores each member in its own sub-directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from routerforge.errors import ArtifactError, ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.registry import create_router, load_router, register_router

DEFAULT_MEMBERS: list[dict[str, Any]] = [
    {"name": "sw", "params": {"top_k": 100}, "weight": 0.5},
    {"name": "lexical", "params": {}, "weight": 0.5},
]


def _member_dir(directory: Path, k: int) -> Path:
    return directory / f"member_{k}"


@register_router
class EnsembleRouter(Router):
    """Weighted mean of member routers' predicted scores."""

    name = "ensemble"

    def __init__(self, *, members: list[dict[str, Any]] | None = None, random_state: int = 0) -> None:
        self.members = members
        self.random_state = random_state

    def _specs(self) -> list[dict[str, Any]]:
        specs = DEFAULT_MEMBERS if self.members is None else self.members
        if not isinstance(specs, list) or not specs:
            raise ValidationError("ensemble: members must be a non-empty list of {name, params, weight}.")
        out: list[dict[str, Any]] = []
        for spec in specs:
            if not isinstance(spec, dict) or "name" not in spec:
                raise ValidationError(f"ensemble: each member needs a 'name', got {spec!r}.")
            if spec["name"] == self.name:
                raise ValidationError("ensemble: an ensemble cannot contain another ensemble.")
            weight = float(spec.get("weight", 1.0))
            if weight < 0:
                raise ValidationError(f"ensemble: member weights must be ≥ 0, got {weight}.")
            out.append(
                {"name": str(spec["name"]), "params": dict(spec.get("params") or {}), "weight": weight}
            )
        if sum(float(s["weight"]) for s in out) <= 0:
            raise ValidationError("ensemble: at least one member needs a positive weight.")
        return out

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        specs = self._specs()
        routers: list[Router] = []
        for spec in specs:
            params = {"random_state": self.random_state, **spec["params"]}
            routers.append(create_router(spec["name"], **params).fit(X, scores, list(self.models_ or [])))
        self.routers_ = routers
        weights = np.array([float(s["weight"]) for s in specs])
        self.weights_ = weights / weights.sum()

    def _member_predictions(self, X: PromptBatch) -> list[np.ndarray]:
        return [r.predict_scores(X) for r in self.routers_]

    def _predict(self, X: PromptBatch) -> np.ndarray:
        preds = self._member_predictions(X)
        return np.tensordot(self.weights_, np.stack(preds), axes=1)

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        models = list(self.models_ or [])
        base.reason = "ensemble of " + ", ".join(r.name for r in self.routers_) + ": " + base.reason
        base.details["members"] = [
            {
                "router": r.name,
                "weight": float(w),
                "predicted": dict(zip(models, p[0].tolist(), strict=True)),
            }
            for r, w, p in zip(self.routers_, self.weights_, self._member_predictions(X), strict=True)
        ]
        return base

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _state_meta(self) -> dict[str, Any]:
        return {"member_types": [r.name for r in self.routers_]}

    def _save_extra(self, directory: Path) -> None:
        for k, router in enumerate(self.routers_):
            router.save(_member_dir(directory, k))

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self.weights_ = arrays["weights"]
        types = list(meta["member_types"])
        routers = [load_router(_member_dir(directory, k)) for k in range(len(types))]
        for k, (router, kind) in enumerate(zip(routers, types, strict=True)):
            if router.name != kind or router.models != list(self.models_ or []):
                raise ArtifactError(
                    f"{_member_dir(directory, k)} holds a {router.name!r} router for {router.models}, "
                    f"expected a {kind!r} router for {self.models_}."
                )
        self.routers_ = routers
