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
from routerforge.policy.rules import RuleSet

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
        latency_ms: Mapping[str, float] | None = None,
    ) -> None:
        self.models = list(models)
        self.mean_scores = {m: float(v) for m, v in (mean_scores or {}).items()}
        self.prices = prices or PriceEstimator(self.models)
        self.calibration = dict(calibration or {})
        self.latency_ms = {m: float(v) for m, v in (latency_ms or {}).items() if np.isfinite(v)}

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

    def choose_ruled(
        self,
        predicted: np.ndarray,
        prices: np.ndarray | None,
        policy: Policy,
        outcomes: Sequence[Any] | None,
    ) -> np.ndarray:
        """:meth:`choose` with per-prompt rule outcomes (``RuleSet.apply`` per row, ``None`` = no rules):
        prompts a rule routes keep that model, prompts with restricted candidates or a rule's policy are
        chosen among those candidates with that policy. Rows are grouped by outcome, so it stays vectorised."""
        idx = self.choose(predicted, prices, policy)
        if not outcomes:
            return idx
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, out in enumerate(outcomes):
            if out is not None and out.fired:
                groups.setdefault(out.key(), []).append(i)
        pred = np.atleast_2d(predicted)
        for key, rows in groups.items():
            model, cands, kind, knob = key
            r = np.asarray(rows, dtype=np.int64)
            if model is not None:
                idx[r] = self.models.index(model)
                continue
            pol = policy if kind is None else self.policy(kind, knob, source="rule")
            sub_prices = None if prices is None else np.atleast_2d(prices)[r]
            idx[r] = self.choose(pred[r], sub_prices, pol, list(cands) or None)
        return idx

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
        text: str | None = None,
        rules: RuleSet | None = None,
        max_cost_usd: float | None = None,
        max_latency_ms: float | None = None,
        latency_weight: float = 0.0,
    ) -> RoutingDecision:
        """The decision for one prompt.

        Order: the ``rules`` (on ``text``; a rule may pick the model outright, restrict the candidates or set
        the policy), then the hard constraints — ``allowed`` (request needs), ``max_cost_usd`` (estimated
        price of this prompt), ``max_latency_ms`` (the model's mean latency; models with unknown latency
        stay) — then the policy, resolved on the full candidate list so the calibrated knob still applies,
        shifted toward cheaper models when the budget runs low. ``latency_weight`` (score points per second
        of mean latency) makes latency a term of the ``wtp`` and ``tolerance`` policies.
        """
        names = self.check_models(candidates) if candidates is not None else list(self.models)
        pred = np.asarray(predicted_row, dtype=np.float64).reshape(1, -1)
        price = None if prices_row is None else np.asarray(prices_row, dtype=np.float64).reshape(1, -1)
        details: dict[str, Any] = {}
        outcome = rules.apply(text or "", names) if rules is not None and len(rules) else None
        if outcome is not None and outcome.fired:
            details["rules"] = list(outcome.fired)
            if outcome.model is not None:
                chosen = outcome.model
                return RoutingDecision(
                    model=chosen,
                    policy="rule",
                    knob=float("nan"),
                    predicted={m: float(pred[0, self.models.index(m)]) for m in names},
                    reason=f"rule {outcome.fired[-1]!r} routes to {chosen}",
                    prices_usd=self._price_map(price, names),
                    details={**details, "candidates": names, "knob_source": "rule"},
                )
            if outcome.policy is not None:
                kind, knob, knob_source = outcome.policy, outcome.knob, "rule"
        pol = self.policy(kind, knob, candidates=names, source=knob_source)
        usable = list(outcome.candidates) if outcome is not None and outcome.candidates is not None else names
        excluded: dict[str, str] = {}
        if allowed is not None:
            keep = set(allowed)
            excluded.update({m: "does not fit the request" for m in usable if m not in keep})
        if max_cost_usd is not None and price is not None:
            for m in usable:
                p = float(price[0, self.models.index(m)])
                if np.isfinite(p) and p > max_cost_usd:
                    excluded.setdefault(m, f"estimated ${p:.6f} > max_cost_usd {max_cost_usd:g}")
        if max_latency_ms is not None:
            for m in usable:
                lat = self.latency_ms.get(m)
                if lat is not None and lat > max_latency_ms:
                    excluded.setdefault(m, f"mean latency {lat:.0f} ms > max_latency_ms {max_latency_ms:g}")
        usable = [m for m in usable if m not in excluded]
        if excluded:
            details["excluded"] = excluded
        if not usable:
            raise ValidationError(
                "No candidate model satisfies this request's constraints.",
                hint="; ".join(f"{m}: {why}" for m, why in excluded.items())
                or f"Candidates: {', '.join(names)}.",
            )
        cand_prices = price[0, [self.models.index(m) for m in usable]] if price is not None else np.array([])
        shift = shift_amount(budget_fraction_left, low_budget_fraction)
        used = Policy(pol.kind, shift_knob(pol.kind, pol.knob, shift, cand_prices), pol.source)
        scores = {m: float(pred[0, self.models.index(m)]) for m in usable}
        details.update(candidates=usable, knob_source=pol.source)
        if shift > 0:
            details.update(budget_shift=shift, knob_before_shift=pol.knob)
        effective = pred
        if latency_weight and used.kind != "threshold":
            lat_s = np.array([self.latency_ms.get(m, 0.0) for m in self.models]) / 1000.0
            effective = pred - latency_weight * lat_s[None, :]
            details["latency_weight"] = latency_weight
        j = int(self.choose(effective, price, used, usable)[0])
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
        if details.get("rules"):
            reason += f"; rules fired: {', '.join(details['rules'])}"
        if shift > 0:
            reason += f"; budget low ({budget_fraction_left:.0%} left): knob shifted from {pol.knob:.4g}"
        return RoutingDecision(
            model=chosen,
            policy=used.kind,
            knob=used.knob,
            predicted=scores,
            reason=reason,
            prices_usd=self._price_map(price, usable),
            details=details,
        )

    def _price_map(self, price: np.ndarray | None, names: Sequence[str]) -> dict[str, float] | None:
        if price is None:
            return None
        out = {m: float(price[0, self.models.index(m)]) for m in names}
        return {m: v for m, v in out.items() if np.isfinite(v)} or None


def _check_knob(kind: str, knob: float) -> float:
    if not np.isfinite(knob) and not (kind == "wtp" and knob == np.inf):
        raise ValidationError(f"The {kind} knob must be a finite number, got {knob}.")
    if kind == "threshold" and knob < 0:
        raise ValidationError(f"A threshold must be ≥ 0, got {knob}.")
    if knob < 0:
        raise ValidationError(f"The {kind} knob must be ≥ 0, got {knob}.")
    return knob
