"""The decision engine: the one place where predicted scores become a model choice.

``bench``, ``calibrate``, ``route``, the SDK and the gateway all go through :class:`DecisionEngine`, so what
is measured is what is served. The engine knows, for one trained router:

* its models and their mean training scores — which give **the** definition of strong and weak
  (:func:`strong_weak`: the candidate with the higher mean training score is strong; ties go to the
  pricier model, then to the later one in the router's model order);
* its :class:`~routerforge.policy.pricing.PriceEstimator` (one per-prompt price estimate);
* its calibration (``calibration.json``): the knob a policy uses unless the caller sets one.

Policies (``kind``): ``threshold`` (strong/weak: call the strong model when P(strong needed) ≥ t),
``wtp`` (maximise ŝ − λ·price) and ``tolerance`` (cheapest model within δ of the best prediction).
With no kind given: the calibrated policy, else ``threshold`` for two candidates, else ``wtp``.
When a tenant's budget runs low the knob shifts toward cheaper models (:func:`shift_knob`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from routerforge.errors import UnknownModelError, ValidationError
from routerforge.policy.binary import strong_probability
from routerforge.policy.choice import choose_tolerance, choose_wtp
from routerforge.policy.decision import RoutingDecision
from routerforge.policy.pricing import PriceEstimator

PolicyKind = Literal["threshold", "wtp", "tolerance"]
POLICY_KINDS: tuple[str, ...] = ("threshold", "wtp", "tolerance")
DEFAULT_KNOBS: dict[str, float] = {"threshold": 0.5, "wtp": 0.0, "tolerance": 0.05}
_KNOB_NAMES = {"threshold": "threshold", "wtp": "lambda", "tolerance": "tolerance"}


def policy_kind(name: str) -> str:
    """Normalise a policy name (``binary`` is the old spelling of ``threshold``)."""
    kind = {"binary": "threshold", "lambda": "wtp"}.get(name, name)
    if kind not in POLICY_KINDS:
        raise ValidationError(f"Unknown policy {name!r}.", hint=f"Use one of {', '.join(POLICY_KINDS)}.")
    return kind


def strong_weak(
    candidates: Sequence[str],
    mean_scores: Mapping[str, float],
    mean_prices: Mapping[str, float] | None = None,
) -> tuple[str, str]:
    """The (strong, weak) pair among ``candidates``: highest and lowest mean training score.

    Ties: the pricier model is strong; then the later one in ``candidates``. This is the only definition of
    strong and weak in routerforge (bench, calibrate, route and the gateway use it).
    """
    names = list(candidates)
    if len(names) < 2:
        raise ValidationError(f"A strong/weak pair needs two candidate models, got {names}.")
    prices = mean_prices or {}

    def key(item: tuple[int, str]) -> tuple[float, float, int]:
        pos, m = item
        score = float(mean_scores.get(m, np.nan))
        price = float(prices.get(m, 0.0))
        return (score if np.isfinite(score) else -np.inf, price if np.isfinite(price) else 0.0, pos)

    ranked = sorted(enumerate(names), key=key)
    return ranked[-1][1], ranked[0][1]


def shift_amount(fraction_left: float | None, low_fraction: float) -> float:
    """0 when the budget is comfortable (or absent), rising linearly to 1 as it runs out."""
    if fraction_left is None or low_fraction <= 0 or fraction_left >= low_fraction:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - fraction_left / low_fraction)))


def shift_knob(kind: str, knob: float, shift: float, prices: np.ndarray) -> float:
    """The knob moved toward cheaper models by ``shift`` ∈ [0, 1] (1 = cheapest model always).

    threshold: t → t + shift·(1 − t) (just above 1 at shift 1: never strong); wtp: λ → λ + shift / (the
    cheapest positive price) (∞ at shift 1); tolerance: δ → δ + shift·(1 − δ).
    """
    if shift <= 0:
        return knob
    if kind == "threshold":
        return knob + shift * (1.0 - knob) + (1e-9 if shift >= 1 else 0.0)
    if kind == "wtp":
        positive = prices[np.isfinite(prices) & (prices > 0)]
        scale = 1.0 / float(positive.min()) if positive.size else 0.0
        return float(np.inf) if shift >= 1 else knob + shift * scale
    return knob + shift * (1.0 - knob)


@dataclass(frozen=True)
class Policy:
    """A resolved policy: kind, knob and where the knob came from."""

    kind: str
    knob: float
    source: str  # "request" | "config" | "name" | "calibration" | "default"


class DecisionEngine:
    """Predicted scores (+ the prompt) → one model, for one trained router (see the module docstring)."""

    def __init__(
        self,
        models: Sequence[str],
        *,
        mean_scores: Mapping[str, float] | None = None,
        prices: PriceEstimator | None = None,
        calibration: Mapping[str, Any] | None = None,
    ) -> None:
        self.models = list(models)
        self.mean_scores = {m: float(v) for m, v in (mean_scores or {}).items()}
        self.prices = prices or PriceEstimator(self.models)
        self.calibration = dict(calibration or {})

    # -- pairs and policies ---------------------------------------------------------------------------
    def pair(self, candidates: Sequence[str] | None = None) -> tuple[str, str]:
        """The (strong, weak) pair among ``candidates`` (default: every model of the router)."""
        names = list(candidates) if candidates is not None else self.models
        return strong_weak(names, self.mean_scores, self.prices.mean_cost_usd)

    def check_models(self, names: Sequence[str]) -> list[str]:
        out = list(dict.fromkeys(names))
        for m in out:
            if m not in self.models:
                raise UnknownModelError(m, self.models, hint="The router was trained on these models.")
        if not out:
            raise ValidationError("No candidate models to choose from.")
        return out

    def policy(
        self,
        kind: str | None = None,
        knob: float | None = None,
        *,
        candidates: Sequence[str] | None = None,
        source: str = "request",
    ) -> Policy:
        """Resolve the policy: explicit kind/knob win, then the calibration, then the defaults."""
        names = list(candidates) if candidates is not None else self.models
        calib = self.calibration
        calib_kind = policy_kind(str(calib["policy"])) if calib.get("policy") else None
        if kind is None:
            if calib_kind is not None and self._calibration_applies(calib_kind, names):
                kind = calib_kind
            else:
                kind = "threshold" if len(names) == 2 else "wtp"
        kind = policy_kind(kind)
        if knob is not None:
            return Policy(kind, _check_knob(kind, float(knob)), source)
        if kind == calib_kind and self._calibration_applies(kind, names):
            value = (calib.get("knob") or {}).get(_KNOB_NAMES[kind])
            if value is not None:
                return Policy(kind, float(value), "calibration")
        return Policy(kind, DEFAULT_KNOBS[kind], "default")

    def _calibration_applies(self, kind: str, names: Sequence[str]) -> bool:
        calib = self.calibration
        if kind == "threshold":  # calibrated for one pair: applies when these candidates have that pair
            if len(names) < 2:
                return False
            strong, weak = self.pair(names)
            return (calib.get("strong"), calib.get("weak")) in ((strong, weak), (None, None))
        calibrated_on = calib.get("models")
        return calibrated_on is None or list(calibrated_on) == list(names)

    # -- the vectorised core (bench and calibrate sweep it) ----------------------------------------
    def choose(
        self,
        predicted: np.ndarray,
        prices: np.ndarray | None,
        policy: Policy,
        candidates: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Column index (into :attr:`models`) of the chosen model for every row of ``predicted``."""
        pred = np.atleast_2d(np.asarray(predicted, dtype=np.float64))
        names = self.check_models(candidates) if candidates is not None else list(self.models)
        cols = [self.models.index(m) for m in names]
        if len(cols) == 1:
            return np.full(pred.shape[0], cols[0], dtype=np.int64)
        if policy.kind == "threshold":
            strong, weak = self.pair(names)
            si, wi = self.models.index(strong), self.models.index(weak)
            mask = strong_probability(pred, si, wi) >= policy.knob
            return np.where(mask, si, wi).astype(np.int64)
        if prices is None or not np.isfinite(np.atleast_2d(prices)[:, cols]).all():
            raise ValidationError(
                f"The {policy.kind} policy needs a price for every candidate model, and some are unknown.",
                hint="Register prices with `routerforge models add ID --input-price … --output-price …`, "
                "import costs with the eval records, or use the threshold policy.",
            )
        sub_pred = pred[:, cols]
        sub_prices = np.atleast_2d(np.asarray(prices, dtype=np.float64))[:, cols]
        if policy.kind == "wtp":
            idx = choose_wtp(sub_pred, sub_prices, policy.knob)
        else:
            idx = choose_tolerance(sub_pred, sub_prices, policy.knob)
        return np.asarray(cols, dtype=np.int64)[idx]

    def p_strong(self, predicted: np.ndarray, candidates: Sequence[str] | None = None) -> np.ndarray:
        """P(strong needed) per row for the pair among ``candidates``."""
        strong, weak = self.pair(candidates)
        return strong_probability(
            np.atleast_2d(predicted), self.models.index(strong), self.models.index(weak)
        )

    # -- one decision -------------------------------------------------------------------------------
    def decide(
        self,
        predicted_row: np.ndarray,
        prices_row: np.ndarray | None,
        *,
        kind: str | None = None,
        knob: float | None = None,
        knob_source: str = "request",
        candidates: Sequence[str] | None = None,
        allowed: Sequence[str] | None = None,
        budget_fraction_left: float | None = None,
        low_budget_fraction: float = 0.2,
    ) -> RoutingDecision:
        """The decision for one prompt. ``allowed`` narrows the candidates (request needs, constraints);
        the policy is resolved on the full candidate list so the calibrated knob still applies."""
        names = self.check_models(candidates) if candidates is not None else list(self.models)
        pol = self.policy(kind, knob, candidates=names, source=knob_source)
        usable = [m for m in names if allowed is None or m in set(allowed)]
        if not usable:
            raise ValidationError(
                "No candidate model fits this request.",
                hint=f"Candidates: {', '.join(names)}; check the request's needs (tools, context size).",
            )
        pred = np.asarray(predicted_row, dtype=np.float64).reshape(1, -1)
        price = None if prices_row is None else np.asarray(prices_row, dtype=np.float64).reshape(1, -1)
        cand_prices = price[0, [self.models.index(m) for m in usable]] if price is not None else np.array([])
        shift = shift_amount(budget_fraction_left, low_budget_fraction)
        used = Policy(pol.kind, shift_knob(pol.kind, pol.knob, shift, cand_prices), pol.source)
        scores = {m: float(pred[0, self.models.index(m)]) for m in usable}
        details: dict[str, Any] = {"candidates": usable, "knob_source": pol.source}
        if shift > 0:
            details.update(budget_shift=shift, knob_before_shift=pol.knob)
        j = int(self.choose(pred, price, used, usable)[0])
        chosen = self.models[j]
        if len(usable) == 1:
            reason = "only one candidate fits the request"
        elif used.kind == "threshold":
            strong, weak = self.pair(usable)
            p = float(self.p_strong(pred, usable)[0])
            details.update(p_strong=p, strong=strong, weak=weak)
            reason = (
                f"P(strong needed) = {p:.3f} {'≥' if chosen == strong else '<'} threshold {used.knob:.4g}"
            )
        elif used.kind == "wtp":
            reason = (
                f"maximises predicted score − λ·price with λ = {used.knob:.4g} "
                f"(score {scores[chosen]:.3f}, ${float(price[0, j]) if price is not None else 0.0:.6f})"
            )
        else:
            reason = (
                f"cheapest model predicted within {used.knob:.3g} of the best ({max(scores.values()):.3f})"
            )
        if shift > 0:
            reason += f"; budget low ({budget_fraction_left:.0%} left): knob shifted from {pol.knob:.4g}"
        price_map = None
        if price is not None:
            price_map = {m: float(price[0, self.models.index(m)]) for m in usable}
            price_map = {m: v for m, v in price_map.items() if np.isfinite(v)} or None
        return RoutingDecision(
            model=chosen,
            policy=used.kind,
            knob=used.knob,
            predicted=scores,
            reason=reason,
            prices_usd=price_map,
            details=details,
        )


def _check_knob(kind: str, knob: float) -> float:
    if not np.isfinite(knob) and not (kind == "wtp" and knob == np.inf):
        raise ValidationError(f"The {kind} knob must be a finite number, got {knob}.")
    if kind == "threshold" and knob < 0:
        raise ValidationError(f"A threshold must be ≥ 0, got {knob}.")
    if knob < 0:
        raise ValidationError(f"The {kind} knob must be ≥ 0, got {knob}.")
    return knob
