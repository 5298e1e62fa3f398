"""``ensemble``: a weighted average of the predicted score matrices of other routers.

Routers that look at prompts differently make different mistakes: a neighbour router (``sw``/``knn``)
sees the topic, a lexical model sees wording and numbers, an ``mlp`` sees both through the embedding.
Averaging their predicted scores (plain weighted mean, so the result is still an expected score in
[0, 1] and every policy works with it) is the best router measured on RouteLLM MMLU (see
``docs/routers.md``).

``members`` is a list of ``{"name": <registry name>, "params": {...}, "weight": w}``; the default is
``sw`` (top 100 neighbours) + ``lexical`` with equal weights. Members get the ensemble's
``random_state`` unless their params set one. The artifact stores each member in its own sub-directory.

``combine="stack"`` replaces the fixed weights by a meta-learner fitted on the members' out-of-fold
predictions: ``stack_folds`` inner folds of the *training* prompts (``routers.innercv``), every member fitted
on K−1 of them and predicting the last, then per model j a non-negative least-squares fit (with intercept)
of the observed score on the members' predictions for j; finally the members are refitted on all training
prompts. A ``prior`` member (``routers/prior.py``, ``residual: null``) brings the category in as a feature.
``combine="logit"`` fits, on the same out-of-fold predictions, a non-negative logistic regression per model of
the observed score on the members' logits (L2 penalty ``stack_l2``): calibrated logit averaging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from routerforge.errors import ArtifactError, ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.innercv import inner_folds
from routerforge.routers.optim import sigmoid
from routerforge.routers.registry import create_router, load_router, register_router

DEFAULT_MEMBERS: list[dict[str, Any]] = [
    {"name": "sw", "params": {"top_k": 100}, "weight": 0.5},
    {"name": "lexical", "params": {}, "weight": 0.5},
]


COMBINES = ("mean", "stack", "logit")
# member predictions are clipped into [_EPS, 1 − _EPS] before their logit is taken (``combine="logit"``)
_EPS = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.asarray(np.log(q / (1.0 - q)))


def _nnls_stack(feats: np.ndarray, y: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares with intercept of ``y`` on the columns of ``feats``."""
    from scipy.optimize import nnls  # training only

    mu, ybar = feats.mean(axis=0), float(y.mean())
    w, _ = nnls(feats - mu, y - ybar)
    if not np.any(w > 0):
        w = fallback.copy()
    return w, ybar - float(mu @ w)


def _logit_stack(z: np.ndarray, y: np.ndarray, start: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Logistic regression (soft labels ``y`` in [0, 1]) of ``y`` on the member logits ``z`` (n × k):
    non-negative weights with an L2 penalty ``l2`` (in prompts: the penalty is ``l2 · |w|² / n``), free
    intercept. Fitted by L-BFGS-B (scipy, training only). Calibrates and weighs the members at once:
    a member whose predictions are too extreme or too timid gets a weight below or above 1."""
    from scipy.optimize import minimize  # training only

    n, k = z.shape
    design = np.hstack([z, np.ones((n, 1))])

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        t = design @ b
        # mean soft-label cross-entropy, computed stably: log(1 + e^t) − y·t
        value = float(np.mean(np.logaddexp(0.0, t) - y * t)) + l2 * float(b[:k] @ b[:k]) / n
        grad = design.T @ (sigmoid(t) - y) / n
        grad[:k] += 2.0 * l2 * b[:k] / n
        return value, grad

    ybar = float(np.clip(y.mean(), _EPS, 1.0 - _EPS))
    x0 = np.concatenate([start, [np.log(ybar / (1.0 - ybar))]])
    x0[-1] -= float(z.mean(axis=0) @ start)
    res = minimize(loss, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * k + [(None, None)])
    b = np.asarray(res.x)
    return b[:k], float(b[k])


# named member lists (``-p members=diverse``). ``diverse``: the category prior, the words and a supervised
# head on the embedding, equal weights — the best combination on the development protocol of issue 12 (inner
# folds of one outer MMLU training part, docs/routers.md); needs a category for the prior to add anything.
MEMBER_PRESETS: dict[str, list[dict[str, Any]]] = {
    "default": DEFAULT_MEMBERS,
    "diverse": [
        {"name": "prior", "params": {"residual": None}, "weight": 1.0},
        {"name": "lexical", "params": {}, "weight": 1.0},
        {"name": "mlp", "params": {}, "weight": 1.0},
    ],
}


def _member_dir(directory: Path, k: int) -> Path:
    return directory / f"member_{k}"


@register_router
class EnsembleRouter(Router):
    """Weighted mean of member routers' predicted scores."""

    name = "ensemble"

    def __init__(
        self,
        *,
        members: list[dict[str, Any]] | str | None = None,
        combine: str = "mean",
        stack_folds: int = 5,
        stack_l2: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.members = members
        self.combine = combine
        self.stack_folds = stack_folds
        self.stack_l2 = stack_l2
        self.random_state = random_state

    def _specs(self) -> list[dict[str, Any]]:
        specs: Any = DEFAULT_MEMBERS if self.members is None else self.members
        if isinstance(specs, str):
            if specs not in MEMBER_PRESETS:
                raise ValidationError(
                    f"ensemble: unknown members preset {specs!r}.",
                    hint=f"Use one of {', '.join(MEMBER_PRESETS)} or a list of {{name, params, weight}}.",
                )
            specs = MEMBER_PRESETS[specs]
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

    def _make(self, spec: dict[str, Any]) -> Router:
        return create_router(spec["name"], **{"random_state": self.random_state, **spec["params"]})

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        if self.combine not in COMBINES:
            raise ValidationError(
                f"ensemble: combine must be one of {', '.join(COMBINES)}, got {self.combine!r}."
            )
        if not float(self.stack_l2) >= 0:
            raise ValidationError(f"ensemble: stack_l2 must be ≥ 0, got {self.stack_l2!r}.")
        specs = self._specs()
        models = list(self.models_ or [])
        weights = np.array([float(s["weight"]) for s in specs])
        self.weights_ = weights / weights.sum()
        self.stack_coef_: np.ndarray | None = None
        self.stack_bias_: np.ndarray | None = None
        if self.combine in ("stack", "logit"):
            self._fit_stack(X, scores, specs, models)
        self.routers_ = [self._make(spec).fit(X, scores, models) for spec in specs]

    def _fit_stack(
        self, X: PromptBatch, scores: np.ndarray, specs: list[dict[str, Any]], models: list[str]
    ) -> None:
        """Out-of-fold member predictions on inner folds of the training prompts, then per model a
        non-negative least-squares fit (``stack``) or a non-negative logistic regression on the members'
        logits (``logit``)."""
        folds = inner_folds(X.texts, self.stack_folds, seed=self.random_state)
        if not folds:
            raise ValidationError("ensemble: stacking needs at least two distinct training prompts.")
        n, m = scores.shape
        oof = np.full((len(specs), n, m), np.nan)
        for tr, te in folds:
            train_scores = scores[tr]
            if np.isnan(train_scores).all(axis=0).any():
                raise ValidationError(
                    "ensemble: an inner stacking fold has no training score for some model.",
                    hint="Use combine=mean, or fewer stack_folds.",
                )
            part_x, test_x = X.take(tr), X.take(te)
            for k, spec in enumerate(specs):
                oof[k][te] = self._make(spec).fit(part_x, train_scores, models).predict_scores(test_x)
        coef = np.zeros((len(specs), m))
        bias = np.zeros(m)
        for j in range(m):
            ok = ~np.isnan(scores[:, j]) & ~np.isnan(oof[:, :, j]).any(axis=0)
            feats, y = oof[:, ok, j].T, scores[ok, j]
            if y.size < 2:  # too few observed scores: the fixed weights (logit: a weighted logit mean)
                coef[:, j], bias[j] = self.weights_, 0.0
                continue
            if self.combine == "logit":
                coef[:, j], bias[j] = _logit_stack(_logit(feats), y, self.weights_, float(self.stack_l2))
            else:
                coef[:, j], bias[j] = _nnls_stack(feats, y, self.weights_)
        self.stack_coef_, self.stack_bias_ = coef, bias

    def _member_predictions(self, X: PromptBatch) -> list[np.ndarray]:
        return [r.predict_scores(X) for r in self.routers_]

    def _predict(self, X: PromptBatch) -> np.ndarray:
        preds = np.stack(self._member_predictions(X))
        if self.stack_coef_ is not None and self.stack_bias_ is not None:
            if self.combine == "logit":
                z = np.einsum("knm,km->nm", _logit(preds), self.stack_coef_) + self.stack_bias_
                return sigmoid(z)
            return np.einsum("knm,km->nm", preds, self.stack_coef_) + self.stack_bias_
        return np.tensordot(self.weights_, preds, axes=1)

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        models = list(self.models_ or [])
        base.reason = "ensemble of " + ", ".join(r.name for r in self.routers_) + ": " + base.reason
        base.details["members"] = [
            {
                "router": r.name,
                "weight": float(w),
                **(
                    {}
                    if self.stack_coef_ is None
                    else {"stack_coef": dict(zip(models, self.stack_coef_[k].tolist(), strict=True))}
                ),
                "predicted": dict(zip(models, p[0].tolist(), strict=True)),
            }
            for k, (r, w, p) in enumerate(
                zip(self.routers_, self.weights_, self._member_predictions(X), strict=True)
            )
        ]
        return base

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"weights": self.weights_}
        if self.stack_coef_ is not None and self.stack_bias_ is not None:
            arrays["stack_coef"], arrays["stack_bias"] = self.stack_coef_, self.stack_bias_
        return arrays

    def _state_meta(self) -> dict[str, Any]:
        return {"member_types": [r.name for r in self.routers_]}

    def _save_extra(self, directory: Path) -> None:
        for k, router in enumerate(self.routers_):
            router.save(_member_dir(directory, k))

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self.weights_ = arrays["weights"]
        self.stack_coef_ = arrays.get("stack_coef")
        self.stack_bias_ = arrays.get("stack_bias")
        types = list(meta["member_types"])
        routers = [load_router(_member_dir(directory, k)) for k in range(len(types))]
        for k, (router, kind) in enumerate(zip(routers, types, strict=True)):
            if router.name != kind or router.models != list(self.models_ or []):
                raise ArtifactError(
                    f"{_member_dir(directory, k)} holds a {router.name!r} router for {router.models}, "
                    f"expected a {kind!r} router for {self.models_}."
                )
        self.routers_ = routers
