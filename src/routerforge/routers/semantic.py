"""``semantic``: named routes defined by example utterances, with learnt thresholds and a learned fallback.

Origin: semantic-router / intent routing. A route's score for a prompt is the cosine between the prompt
and its utterances (the best one, or the mean of the ``top_k`` best). A route *matches* when its score
reaches its threshold; the matched route is the matching one with the highest score; below every
threshold there is no route.

* Routes come from a routes file (``routers/routes_file.py``) through the ``routes`` parameter. Their
  utterances are embedded by the training pipeline, like the prompts (:meth:`auxiliary_texts` /
  :meth:`set_auxiliary_vectors`), and saved as ``utterances.npy``. Without ``routes`` (the contract
  tests, or ``routerforge bench --router semantic``), routes are learnt from the data: one route per
  model whose utterances are the training prompts where that model alone scored best.
* ``fit`` learns each route's threshold (unless the file fixes it) by maximising F1 on the training
  prompts. Labels: a training prompt whose text is one of a route's utterances belongs to that route (the
  explicit label; its own utterance is left out when scoring it); any other prompt belongs to every route
  whose target model scored best on it, when the models' scores differ (all equal: no route).
* ``predict_scores``: a fallback router (``fallback: knn|mlp|…``, trained on the same data and saved in
  ``fallback/``) or, without one, the models' mean training scores, gives the base prediction. A matched
  route with a target blends it with a one-hot vector on that model (weight ``route_weight``), so the
  target becomes the best prediction and every policy can use it. With ``default`` and no fallback, a
  prompt that matches no targeted route is pushed to ``default`` the same way. With ``complex_model``, a
  prompt whose complexity estimate (``routers/complexity.py``) reaches ``complexity_threshold`` goes there.
* ``explain`` reports ``details["route"]`` (matched name or ``None``), ``details["routes"]`` (score of
  every matching route), the thresholds' margins and the complexity estimate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from routerforge.errors import ArtifactError, ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.complexity import estimate_complexity
from routerforge.routers.registry import create_router, load_router, register_router

FALLBACK_DIR = "fallback"


def route_scores(sims: np.ndarray, owner: np.ndarray, n_routes: int, top_k: int) -> np.ndarray:
    """``(n, n_routes)``: per prompt and route, the mean of the ``top_k`` best cosines among the route's
    utterances (``-inf`` entries of ``sims`` are left out; a route with none left scores -1)."""
    out = np.full((sims.shape[0], n_routes), -1.0)
    for r in range(n_routes):
        s = sims[:, owner == r]
        if s.shape[1] == 0:
            continue
        k = min(int(top_k), s.shape[1])
        top = -np.sort(-s, axis=1)[:, :k]
        finite = np.isfinite(top)
        count = finite.sum(axis=1)
        total = np.where(finite, top, 0.0).sum(axis=1)
        out[:, r] = np.where(count > 0, total / np.maximum(count, 1), -1.0)
    return out


def best_f1_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """The threshold ``t`` (one of the positives' scores) maximising F1 of ``scores >= t``; (t, F1)."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order].astype(np.float64)
    tp = np.cumsum(p)
    fp = np.cumsum(1.0 - p)
    total = p.sum()
    f1 = 2 * tp / np.maximum(2 * tp + fp + (total - tp), 1e-12)
    # a threshold can only sit where the next score is lower (ties are matched together)
    last_of_tie = np.r_[s[1:] < s[:-1], True]
    f1 = np.where(last_of_tie & (p > 0), f1, -1.0)
    best = int(np.argmax(f1))
    return float(s[best]), float(f1[best])


@register_router
class SemanticRouter(Router):
    """Routes from example utterances, thresholds learnt by F1, optional learned fallback router."""

    name = "semantic"

    def __init__(
        self,
        *,
        routes: list[dict[str, Any]] | None = None,
        default: str | None = None,
        fallback: str | None = None,
        fallback_params: dict[str, Any] | None = None,
        top_k: int = 1,
        default_threshold: float = 0.5,
        route_weight: float = 0.7,
        max_derived_utterances: int = 200,
        complex_model: str | None = None,
        complexity_threshold: float = 0.6,
        random_state: int = 0,
    ) -> None:
        self.routes = routes
        self.default = default
        self.fallback = fallback
        self.fallback_params = fallback_params
        self.top_k = top_k
        self.default_threshold = default_threshold
        self.route_weight = route_weight
        self.max_derived_utterances = max_derived_utterances
        self.complex_model = complex_model
        self.complexity_threshold = complexity_threshold
        self.random_state = random_state

    # -- utterance vectors from the pipeline -------------------------------------------------------
    def auxiliary_texts(self) -> list[str]:
        return [u for route in self._given_routes() for u in route["utterances"]]

    def set_auxiliary_vectors(self, dense: np.ndarray) -> None:
        self._utterance_vectors = np.asarray(dense, dtype=np.float64)

    def configure_index(self, settings: Any, *, name: str = "router") -> None:
        self._index_settings = (settings, name)
        fallback = getattr(self, "fallback_", None)
        if fallback is not None:
            fallback.configure_index(settings, name=f"{name}-fallback")

    def _given_routes(self) -> list[dict[str, Any]]:
        if self.routes is None:
            return []
        if not isinstance(self.routes, list) or not self.routes:
            raise ValidationError("semantic: routes must be a non-empty list of {name, utterances, target}.")
        for r in self.routes:
            if not isinstance(r, dict) or not r.get("name") or not r.get("utterances"):
                raise ValidationError(f"semantic: each route needs a name and utterances, got {r!r}.")
        return self.routes

    # -- fit ---------------------------------------------------------------------------------------
    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        models = list(self.models_ or [])
        if int(self.top_k) < 1 or not 0.0 <= float(self.route_weight) <= 1.0:
            raise ValidationError("semantic: top_k must be ≥ 1 and route_weight in [0, 1].")
        for label, model in (("default", self.default), ("complex_model", self.complex_model)):
            if model is not None and model not in models:
                raise ValidationError(f"semantic: {label} {model!r} is not a model of the data ({models}).")
        dense = np.asarray(X.dense, dtype=np.float64)
        if self.routes is None:
            names, targets, fixed, texts, vectors, owner = self._derive_routes(X, dense, scores, models)
        else:
            names, targets, fixed, texts, vectors, owner = self._read_routes(dense, models)
        self.route_names_, self.route_targets_ = names, targets
        self.utterances_, self.owner_ = vectors, owner
        sims = dense @ vectors.T
        index: dict[str, list[int]] = {}
        for u, text in enumerate(texts):
            index.setdefault(text, []).append(u)
        labels = np.zeros((len(X), len(names)), dtype=bool)
        explicit = np.zeros(len(X), dtype=bool)
        for i, text in enumerate(X.texts):
            for u in index.get(text, []):  # leave its own utterance out; the route is its label
                sims[i, u] = -np.inf
                labels[i, owner[u]] = True
                explicit[i] = True
        labels |= self._labels_from_scores(scores, targets, models) & ~explicit[:, None]
        S = route_scores(sims, owner, len(names), int(self.top_k))
        thresholds = np.full(len(names), float(self.default_threshold))
        f1 = np.full(len(names), np.nan)
        for r in range(len(names)):
            if fixed[r] is not None:
                thresholds[r] = float(fixed[r])
            elif labels[:, r].sum() >= 2:
                thresholds[r], f1[r] = best_f1_threshold(S[:, r], labels[:, r])
        self.thresholds_, self.train_f1_ = thresholds, f1
        with np.errstate(all="ignore"):
            prior = np.nanmean(scores, axis=0)
        self.prior_ = np.nan_to_num(prior, nan=0.0)
        self.fallback_: Router | None = None
        if self.fallback:
            if self.fallback == self.name:
                raise ValidationError("semantic: the fallback cannot be another semantic router.")
            params = {"random_state": self.random_state, **dict(self.fallback_params or {})}
            fallback = create_router(str(self.fallback), **params)
            settings = getattr(self, "_index_settings", None)
            if settings is not None:
                fallback.configure_index(settings[0], name=f"{settings[1]}-fallback")
            self.fallback_ = fallback.fit(X, scores, models)

    def _read_routes(self, dense: np.ndarray, models: list[str]) -> tuple[Any, ...]:
        routes = self._given_routes()
        vectors = getattr(self, "_utterance_vectors", None)
        texts = self.auxiliary_texts()
        if vectors is None or len(vectors) != len(texts):
            raise ValidationError(
                "semantic: the routes' utterances have not been embedded.",
                hint="Train it with `routerforge train semantic --routes FILE` (or policy.trained.train_router), "
                "or call router.set_auxiliary_vectors(embedder.embed(router.auxiliary_texts())) before fit.",
            )
        if vectors.ndim != 2 or vectors.shape[1] != dense.shape[1]:
            raise ValidationError(
                f"semantic: utterance vectors have shape {vectors.shape}, prompts have dimension {dense.shape[1]}."
            )
        names = [str(r["name"]) for r in routes]
        if len(set(names)) != len(names):
            raise ValidationError(f"semantic: route names must be unique, got {names}.")
        targets = [None if r.get("target") is None else str(r["target"]) for r in routes]
        unknown = sorted({t for t in targets if t is not None and t not in models})
        if unknown:
            raise ValidationError(
                f"semantic: route target(s) {unknown} are not models of the data. Models: {', '.join(models)}.",
                hint="Fix `target:` in the routes file or the --map option.",
            )
        fixed = [r.get("threshold") for r in routes]
        owner = np.array([k for k, r in enumerate(routes) for _ in r["utterances"]], dtype=np.int64)
        return names, targets, fixed, texts, vectors, owner

    def _derive_routes(
        self, X: PromptBatch, dense: np.ndarray, scores: np.ndarray, models: list[str]
    ) -> tuple[Any, ...]:
        filled = np.where(np.isnan(scores), -np.inf, scores)
        best = np.argmax(filled, axis=1)
        top = filled[np.arange(len(X)), best]
        unique_best = (filled >= top[:, None]).sum(axis=1) == 1
        names: list[str] = []
        targets: list[str | None] = []
        rows: list[int] = []
        owner: list[int] = []
        for j, model in enumerate(models):
            mine = np.flatnonzero(unique_best & (best == j))
            if len(mine) == 0:
                continue
            cap = int(self.max_derived_utterances)
            if len(mine) > cap:
                mine = mine[np.linspace(0, len(mine) - 1, cap).round().astype(np.int64)]
            owner.extend([len(names)] * len(mine))
            names.append(model)
            targets.append(model)
            rows.extend(mine.tolist())
        if not names:
            raise ValidationError(
                "semantic: no training prompt has a single best model, so no route can be learnt from the data.",
                hint="Give routes with --routes FILE.",
            )
        texts = [X.texts[i] for i in rows]
        return names, targets, [None] * len(names), texts, dense[rows], np.array(owner, dtype=np.int64)

    @staticmethod
    def _labels_from_scores(scores: np.ndarray, targets: list[str | None], models: list[str]) -> np.ndarray:
        observed = ~np.isnan(scores)
        hi = np.where(observed, scores, -np.inf).max(axis=1)
        lo = np.where(observed, scores, np.inf).min(axis=1)
        informative = np.isfinite(hi) & (hi > lo)
        is_best = np.nan_to_num(scores, nan=-1.0) >= (hi - 1e-9)[:, None]
        out = np.zeros((len(scores), len(targets)), dtype=bool)
        for r, target in enumerate(targets):
            if target is not None:
                out[:, r] = informative & is_best[:, models.index(target)]
        return out

    # -- predict -----------------------------------------------------------------------------------
    def route_scores(self, X: PromptBatch) -> np.ndarray:
        """``(len(X), n_routes)`` route scores (cosine to the utterances) in :attr:`route_names_` order."""
        self._check_fitted()
        self._validate_batch(X)
        sims = np.asarray(X.dense, dtype=np.float64) @ self.utterances_.T
        return route_scores(sims, self.owner_, len(self.route_names_), int(self.top_k))

    def match(self, X: PromptBatch) -> list[str | None]:
        """The matched route of each prompt (highest score among the routes at or above their threshold),
        ``None`` when none is."""
        return [None if r < 0 else self.route_names_[r] for r in self._matched(self.route_scores(X))]

    def _matched(self, S: np.ndarray) -> np.ndarray:
        matching = np.where(self.thresholds_[None, :] <= S, S, -np.inf)
        best = np.argmax(matching, axis=1)
        return np.where(np.isfinite(matching[np.arange(len(S)), best]), best, -1)

    def _predict(self, X: PromptBatch) -> np.ndarray:
        return self._predict_with(X, self.route_scores(X))

    def _predict_with(self, X: PromptBatch, S: np.ndarray) -> np.ndarray:
        models = list(self.models_ or [])
        base = (
            self.fallback_.predict_scores(X)
            if self.fallback_ is not None
            else np.tile(self.prior_, (len(X), 1))
        )
        matched = self._matched(S)
        out = base.copy()
        w = float(self.route_weight)
        for i, r in enumerate(matched):
            target = self._target(X.texts[i], int(r))
            if target is not None:
                onehot = np.zeros(len(models))
                onehot[models.index(target)] = 1.0
                out[i] = w * onehot + (1.0 - w) * base[i]
        return out

    def _target(self, text: str, r: int) -> str | None:
        if self.complex_model is not None and estimate_complexity(text) >= float(self.complexity_threshold):
            return str(self.complex_model)
        if r >= 0 and self.route_targets_[r] is not None:
            return self.route_targets_[r]
        return None if self.fallback_ is not None else self.default

    def _explain(self, X: PromptBatch) -> Explanation:
        S = self.route_scores(X)
        pred = np.clip(self._predict_with(X, S)[0], 0.0, 1.0)
        models = list(self.models_ or [])
        predicted = dict(zip(models, pred.tolist(), strict=True))
        r = int(self._matched(S)[0])
        matching = {
            name: float(S[0, k])
            for k, name in sorted(enumerate(self.route_names_), key=lambda kv: -S[0, kv[0]])
            if S[0, k] >= self.thresholds_[k]
        }
        route = None if r < 0 else self.route_names_[r]
        complexity = estimate_complexity(X.texts[0])
        target = self._target(X.texts[0], r)
        best = max(predicted, key=lambda m: predicted[m])
        if route is None:
            why = "no route matched" + (f"; sent to {target}" if target else "; fallback decides")
        else:
            why = f"route {route!r} ({S[0, r]:.3f} ≥ {self.thresholds_[r]:.3f})" + (
                f" → {target}" if target else " (no target: fallback decides)"
            )
        return Explanation(
            router=self.name,
            reason=f"{why}; predicts {best} best ({predicted[best]:.3f}).",
            details={
                "route": route,
                "routes": matching,
                "thresholds": dict(zip(self.route_names_, self.thresholds_.tolist(), strict=True)),
                "complexity": complexity,
                "fallback": None if self.fallback_ is None else self.fallback_.name,
                "predicted": predicted,
            },
        )

    # -- state -------------------------------------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {
            "utterances": self.utterances_,
            "utterance_route": self.owner_,
            "thresholds": self.thresholds_,
            "prior": self.prior_,
        }

    def _state_meta(self) -> dict[str, Any]:
        return {
            "route_names": list(self.route_names_),
            "route_targets": list(self.route_targets_),
            "train_f1": [None if not np.isfinite(v) else float(v) for v in self.train_f1_],
            "fallback": None if self.fallback_ is None else self.fallback_.name,
        }

    def _save_extra(self, directory: Path) -> None:
        if self.fallback_ is not None:
            self.fallback_.save(directory / FALLBACK_DIR)

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self.utterances_ = arrays["utterances"]
        self.owner_ = arrays["utterance_route"]
        self.thresholds_ = arrays["thresholds"]
        self.prior_ = arrays["prior"]
        self.route_names_ = list(meta["route_names"])
        self.route_targets_ = list(meta["route_targets"])
        self.train_f1_ = np.array([np.nan if v is None else v for v in meta.get("train_f1", [])])
        self.fallback_ = None
        kind = meta.get("fallback")
        if kind:
            fallback = load_router(directory / FALLBACK_DIR)
            if fallback.name != kind or fallback.models != list(self.models_ or []):
                raise ArtifactError(
                    f"{directory / FALLBACK_DIR} holds a {fallback.name!r} router for {fallback.models}, "
                    f"expected a {kind!r} router for {self.models_}."
                )
            self.fallback_ = fallback
