"""``prior``: a per-category prior with a text router as the residual.

When the data has a category (MMLU's subject, RouterBench's task, a tenant's app) a lookup of each model's
mean score per category is a strong baseline — on several sets as good as any text router. This family
makes that lookup the floor instead of a rival:

1. **Prior.** For each metadata key in ``keys`` (default ``category``), in order, each model's mean score
   per value of the key, as an offset from the model's global mean, shrunk toward 0 by ``strength``
   pseudo-prompts: ``effect[v, j] = Σ_{i: v_i = v} (s_ij − ŝ_ij) / (n_vj + strength)`` (``ŝ`` = the
   prediction of the keys before). ``strength="auto"`` picks it from :data:`STRENGTH_GRID` by inner
   cross-validation (squared error of the prior on held-out *training* prompts, :mod:`routers.innercv`).
2. **Missing metadata.** A prompt whose value is not given at routing time (or is a value never seen in
   training) gets a mix of the priors weighted by a classifier's probabilities: multinomial logistic
   regression on the prompt embedding (``predict_missing``; trained on the training prompts that have the
   key; prediction is numpy).
3. **Residual.** A text router (``residual``: ``{"name": …, "params": {…}}``, any registered family, default
   :data:`DEFAULT_RESIDUAL`) is fitted on what the prior leaves: ``(s − prior_oof + 1) / 2`` with the prior
   taken out of fold (inner folds), so the residual learns what the category does not explain; its
   prediction comes back as ``residual_weight · (2p − 1)``; ``residual_weight="auto"`` (default) fits that
   scale on the first inner fold (see :meth:`PriorRouter._residual_scale`). ``residual=None``: the prior alone.

Prediction = global mean + Σ_keys effect + residual, clipped into [0, 1]. Artifact: ``global_mean.npy``,
``table_<k>.npy`` per key, ``clf_<k>_coef/bias/center.npy`` when a classifier was trained, the levels in
``router.json``, and the residual router in ``residual/``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.errors import ArtifactError, ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.innercv import inner_folds
from routerforge.routers.registry import create_router, load_router, register_router

# the residual is the text router measured best on RouteLLM MMLU before this family existed (``ensemble``
# defaults: sw top 100 + lexical, chosen then by inner CV on training folds); fixed in advance, not tuned here
DEFAULT_RESIDUAL: dict[str, Any] = {"name": "ensemble", "params": {}}
STRENGTH_GRID = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
RESIDUAL_DIR = "residual"


def _codes(values: list[str | None], levels: dict[str, int]) -> np.ndarray:
    """Level index per prompt, -1 where the value is missing or unknown."""
    return np.array([levels.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)


def _tables(
    codes: list[np.ndarray], n_levels: list[int], resid: np.ndarray, strength: float
) -> list[np.ndarray]:
    """Shrunk per-level mean offsets, key after key (``resid`` = scores − global mean, NaN = missing)."""
    r = resid.copy()
    obs = ~np.isnan(r)
    out = []
    for code, n_lv in zip(codes, n_levels, strict=True):
        ok = code >= 0
        sums = np.zeros((n_lv, r.shape[1]))
        counts = np.zeros((n_lv, r.shape[1]))
        np.add.at(sums, code[ok], np.where(obs[ok], r[ok], 0.0))
        np.add.at(counts, code[ok], obs[ok].astype(np.float64))
        denom = counts + strength
        table = np.divide(sums, denom, out=np.zeros_like(sums), where=denom > 0)
        out.append(table)
        r[ok] = r[ok] - table[code[ok]]
    return out


def _apply(codes: list[np.ndarray], tables: list[np.ndarray], n: int, m: int) -> np.ndarray:
    eff = np.zeros((n, m))
    for code, table in zip(codes, tables, strict=True):
        ok = code >= 0
        eff[ok] += table[code[ok]]
    return eff


@register_router
class PriorRouter(Router):
    """Per-category prior (shrunk, inner-CV strength) + a text router fitted on the residuals."""

    name = "prior"

    def __init__(
        self,
        *,
        keys: list[str] | None = None,
        strength: float | str = "auto",
        residual: dict[str, Any] | None = DEFAULT_RESIDUAL,
        residual_weight: float | str = "auto",
        predict_missing: bool = True,
        classifier_c: float = 1.0,
        max_levels: int = 500,
        inner_folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.keys = keys
        self.strength = strength
        self.residual = residual
        self.residual_weight = residual_weight
        self.predict_missing = predict_missing
        self.classifier_c = classifier_c
        self.max_levels = max_levels
        self.inner_folds = inner_folds
        self.random_state = random_state

    # -- parameters ---------------------------------------------------------------------------------
    def _keys(self) -> list[str]:
        keys = ["category"] if self.keys is None else self.keys
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise ValidationError(f"prior: keys must be a non-empty list of metadata keys, got {keys!r}.")
        return list(keys)

    def _residual_spec(self) -> dict[str, Any] | None:
        spec = self.residual
        if spec is None or spec == "none":
            return None
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValidationError(f"prior: residual must be {{name, params}} or null, got {spec!r}.")
        if spec["name"] == self.name:
            raise ValidationError("prior: the residual cannot be another prior router.")
        return {"name": str(spec["name"]), "params": dict(spec.get("params") or {})}

    def uses_sparse(self) -> bool:
        spec = self._residual_spec()
        return False if spec is None else create_router(spec["name"], **spec["params"]).uses_sparse()

    # -- fit ----------------------------------------------------------------------------------------
    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        keys = self._keys()
        if not (isinstance(self.strength, int | float) and self.strength >= 0) and self.strength != "auto":
            raise ValidationError(f"prior: strength must be a number ≥ 0 or 'auto', got {self.strength!r}.")
        n, m = scores.shape
        with np.errstate(all="ignore"):
            self.global_mean_ = np.nan_to_num(np.nanmean(scores, axis=0), nan=0.5)
        resid = scores - self.global_mean_
        self.levels_: list[list[str]] = []
        values = [X.meta_values(k) for k in keys]
        for vals in values:
            seen = sorted({v for v in vals if v is not None})
            self.levels_.append(seen if len(seen) <= self.max_levels else [])
        codes = [
            _codes(v, {lv: i for i, lv in enumerate(lvs)})
            for v, lvs in zip(values, self.levels_, strict=True)
        ]
        n_levels = [len(lv) for lv in self.levels_]
        folds = inner_folds(X.texts, self.inner_folds, seed=self.random_state)

        # prior strength by inner CV (squared error of the prior on held-out training prompts)
        self.cv_mse_: dict[str, float] = {}
        if self.strength == "auto":
            grid = STRENGTH_GRID
            if folds and any(n_levels):
                for s in grid:
                    err, cnt = 0.0, 0
                    for tr, te in folds:
                        tabs = _tables([c[tr] for c in codes], n_levels, resid[tr], s)
                        pred = _apply([c[te] for c in codes], tabs, len(te), m)
                        diff = resid[te] - pred
                        ok = ~np.isnan(diff)
                        err += float(np.sum(diff[ok] ** 2))
                        cnt += int(ok.sum())
                    self.cv_mse_[f"{s:g}"] = err / max(cnt, 1)
                self.strength_ = float(min(grid, key=lambda s: self.cv_mse_[f"{s:g}"]))
            else:
                self.strength_ = 10.0
        else:
            self.strength_ = float(self.strength)
        self.tables_ = _tables(codes, n_levels, resid, self.strength_)

        # classifiers for prompts whose value is missing at routing time
        self.clf_: list[tuple[np.ndarray, np.ndarray, np.ndarray, float] | None] = []
        for code, n_lv in zip(codes, n_levels, strict=True):
            self.clf_.append(self._fit_classifier(X.dense, code, n_lv) if self.predict_missing else None)

        # residual router on out-of-fold prior residuals
        spec = self._residual_spec()
        self.residual_router_: Router | None = None
        self.residual_weight_ = 0.0
        if spec is not None:
            prior_oof = _apply(codes, self.tables_, n, m)
            if folds and any(n_levels):
                for tr, te in folds:
                    tabs = _tables([c[tr] for c in codes], n_levels, resid[tr], self.strength_)
                    prior_oof[te] = _apply([c[te] for c in codes], tabs, len(te), m)
            target = np.clip((resid - prior_oof + 1.0) / 2.0, 0.0, 1.0)  # NaN stays NaN
            params = {"random_state": self.random_state, **spec["params"]}
            self.residual_weight_ = self._residual_scale(X, resid - prior_oof, target, folds, spec, params)
            router = create_router(spec["name"], **params)
            self.residual_router_ = router.fit(X, target, list(self.models_ or []))

    def _residual_scale(
        self,
        X: PromptBatch,
        wanted: np.ndarray,
        target: np.ndarray,
        folds: list[tuple[np.ndarray, np.ndarray]],
        spec: dict[str, Any],
        params: dict[str, Any],
    ) -> float:
        """``residual_weight``, or with ``"auto"`` the least-squares scale of the residual router's output
        (``2p − 1``) onto what it should predict (``wanted`` = score − out-of-fold prior), measured on the
        first inner fold of the training prompts (one extra residual fit on the others), clipped to [0, 2].
        Routers whose outputs are not on the score scale (``sw``'s Bradley–Terry scores) get shrunk here."""
        if self.residual_weight != "auto":
            if not isinstance(self.residual_weight, int | float) or self.residual_weight < 0:
                raise ValidationError(
                    f"prior: residual_weight must be a number ≥ 0 or 'auto', got {self.residual_weight!r}."
                )
            return float(self.residual_weight)
        if not folds:
            return 1.0
        tr, te = folds[0]
        if np.isnan(target[tr]).all(axis=0).any():
            return 1.0
        inner = create_router(spec["name"], **params).fit(X.take(tr), target[tr], list(self.models_ or []))
        pred = 2.0 * inner.predict_scores(X.take(te)) - 1.0
        y = wanted[te]
        ok = ~np.isnan(y)
        denom = float(np.sum(pred[ok] ** 2))
        return float(np.clip(np.sum(pred[ok] * y[ok]) / denom, 0.0, 2.0)) if denom > 0 else 0.0

    def _fit_classifier(
        self, dense: np.ndarray, code: np.ndarray, n_levels: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        ok = code >= 0
        present = np.unique(code[ok])
        if n_levels < 2 or present.size < 2 or dense is None or dense.ndim != 2 or dense.shape[1] == 0:
            return None
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression  # training only

        x = np.asarray(dense[ok], dtype=np.float64)
        center = x.mean(axis=0)
        scale = float(np.sqrt(np.mean((x - center) ** 2))) or 1.0
        clf = LogisticRegression(
            C=float(self.classifier_c), max_iter=100
        )  # a prior mix, not a tuned classifier
        with warnings.catch_warnings():  # capped iterations on purpose: a prior mix, not a tuned classifier
            warnings.simplefilter("ignore", category=ConvergenceWarning)
            clf.fit((x - center) / scale, code[ok])
        coef = np.zeros((n_levels, x.shape[1]))
        bias = np.full(n_levels, -1e30)  # a level absent from training is never predicted
        coef[clf.classes_] = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_, clf.coef_]) / 2
        intercept = clf.intercept_ if len(clf.classes_) > 2 else np.array([-1.0, 1.0]) * clf.intercept_[0] / 2
        bias[clf.classes_] = intercept
        return coef, bias, center, scale

    # -- predict ------------------------------------------------------------------------------------
    def _level_weights(self, X: PromptBatch) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per key: ``(weights (n × levels), given mask)`` — one-hot where the value is given and known,
        classifier probabilities where it is not (zeros without a classifier)."""
        out = []
        for key, levels, clf in zip(self._keys(), self.levels_, self.clf_, strict=True):
            code = _codes(X.meta_values(key), {lv: i for i, lv in enumerate(levels)})
            w = np.zeros((len(X), len(levels)))
            given = code >= 0
            w[np.flatnonzero(given), code[given]] = 1.0
            missing = np.flatnonzero(~given)
            if missing.size and clf is not None:
                coef, bias, center, scale = clf
                logits = ((np.asarray(X.dense[missing], dtype=np.float64) - center) / scale) @ coef.T + bias
                logits -= logits.max(axis=1, keepdims=True)
                p = np.exp(logits)
                w[missing] = p / p.sum(axis=1, keepdims=True)
            out.append((w, given))
        return out

    def prior_scores(self, X: PromptBatch) -> np.ndarray:
        """The prior alone (global mean + per-key effects), ``(len(X), n_models)``."""
        self._check_fitted()
        pred = np.tile(self.global_mean_, (len(X), 1))
        for (w, _), table in zip(self._level_weights(X), self.tables_, strict=True):
            if table.size:
                pred += w @ table
        return pred

    def _predict(self, X: PromptBatch) -> np.ndarray:
        pred = self.prior_scores(X)
        if self.residual_router_ is not None:
            pred += self.residual_weight_ * (2.0 * self.residual_router_.predict_scores(X) - 1.0)
        return pred

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        models = list(self.models_ or [])
        keys = []
        for key, levels, (w, given), table in zip(
            self._keys(), self.levels_, self._level_weights(X), self.tables_, strict=True
        ):
            top: list[int] = np.argsort(-w[0])[:3].tolist() if levels else []
            keys.append(
                {
                    "key": key,
                    "given": X.meta_values(key)[0],
                    "used": "given" if given[0] else ("predicted" if w[0].sum() > 0 else "none"),
                    "levels": {levels[i]: round(float(w[0, i]), 4) for i in top if w[0, i] > 0},
                    "effect": dict(
                        zip(
                            models,
                            (w[0] @ table).tolist() if table.size else [0.0] * len(models),
                            strict=True,
                        )
                    ),
                }
            )
        base.details["prior"] = {"strength": self.strength_, "keys": keys}
        if self.residual_router_ is not None:
            res = 2.0 * self.residual_router_.predict_scores(X)[0] - 1.0
            base.details["residual"] = {
                "router": self.residual_router_.name,
                "weight": self.residual_weight_,
                "predicted": dict(zip(models, res.tolist(), strict=True)),
            }
        return base

    # -- state --------------------------------------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"global_mean": self.global_mean_}
        for k, table in enumerate(self.tables_):
            arrays[f"table_{k}"] = table
        for k, clf in enumerate(self.clf_):
            if clf is not None:
                coef, bias, center, scale = clf
                arrays[f"clf_{k}_coef"] = coef
                arrays[f"clf_{k}_bias"] = bias
                arrays[f"clf_{k}_center"] = center
                arrays[f"clf_{k}_scale"] = np.array([scale])
        return arrays

    def _state_meta(self) -> dict[str, Any]:
        return {
            "levels": self.levels_,
            "strength": self.strength_,
            "cv_mse": self.cv_mse_,
            "classifiers": [clf is not None for clf in self.clf_],
            "residual": None if self.residual_router_ is None else self.residual_router_.name,
            "residual_weight": self.residual_weight_,
        }

    def _save_extra(self, directory: Path) -> None:
        if self.residual_router_ is not None:
            self.residual_router_.save(directory / RESIDUAL_DIR)

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self.global_mean_ = arrays["global_mean"]
        self.levels_ = [list(map(str, lv)) for lv in meta["levels"]]
        if len(self.levels_) != len(self._keys()):
            raise ArtifactError(f"{directory}: {len(self.levels_)} level lists for keys {self._keys()}.")
        self.strength_ = float(meta["strength"])
        self.cv_mse_ = dict(meta.get("cv_mse") or {})
        self.tables_ = [arrays[f"table_{k}"] for k in range(len(self.levels_))]
        self.clf_ = []
        for k, has in enumerate(meta["classifiers"]):
            if has:
                self.clf_.append(
                    (
                        arrays[f"clf_{k}_coef"],
                        arrays[f"clf_{k}_bias"],
                        arrays[f"clf_{k}_center"],
                        float(arrays[f"clf_{k}_scale"][0]),
                    )
                )
            else:
                self.clf_.append(None)
        self.residual_router_ = None
        self.residual_weight_ = float(meta.get("residual_weight", 0.0))
        if meta.get("residual"):
            router = load_router(directory / RESIDUAL_DIR)
            if router.name != meta["residual"] or router.models != list(self.models_ or []):
                raise ArtifactError(
                    f"{directory / RESIDUAL_DIR} holds a {router.name!r} router for {router.models}, expected "
                    f"a {meta['residual']!r} router for {self.models_}."
                )
            self.residual_router_ = router
