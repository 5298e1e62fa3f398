"""Calibration: pick a policy knob from held-out data so that a target is met, and report what to expect.

Targets (``kind=value``):

* ``strong-share=0.3`` — binary only: the threshold that sends 30 % of prompts to the strong model;
* ``cost-per-1k=2.5`` — the knob with the highest quality whose mean cost per 1,000 queries is ≤ 2.5 USD
  (binary: the largest strong share within budget; N-model: the smallest λ within budget);
* ``quality=0.95`` — the cheapest knob whose mean score is ≥ 0.95 (absolute, in score units);
* ``pgr=0.8`` — binary only: the smallest strong share recovering 80 % of the strong/weak quality gap.

Every candidate knob is evaluated exactly on the held-out prompts (binary: every distinct value of
P(strong needed); N-model: a dense λ grid), and the expected strong share / cost / quality at the chosen
knob are reported. Results are plain dataclasses; the CLI saves them as ``calibration.json`` next to the
router so the gateway can use the calibrated knob.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from routerforge.data.matrix import ScoreMatrix
from routerforge.errors import ValidationError
from routerforge.evaluate import metrics as M
from routerforge.policy.choice import lambda_grid
from routerforge.policy.engine import DecisionEngine, Policy

if TYPE_CHECKING:
    from routerforge.policy.trained import TrainedRouter

TargetKind = Literal["strong-share", "cost-per-1k", "quality", "pgr"]
TARGET_KINDS: tuple[str, ...] = ("strong-share", "cost-per-1k", "quality", "pgr")


@dataclass(frozen=True)
class Target:
    kind: str
    value: float


def parse_target(text: str) -> Target:
    """``"strong-share=0.3"`` → ``Target("strong-share", 0.3)``."""
    kind, sep, raw = text.partition("=")
    kind = kind.strip().lower().replace("_", "-")
    if not sep or kind not in TARGET_KINDS:
        raise ValidationError(
            f"Invalid calibration target {text!r}.",
            hint=f"Use KIND=VALUE with KIND one of {', '.join(TARGET_KINDS)}.",
        )
    try:
        value = float(raw.strip().rstrip("%")) / (100.0 if raw.strip().endswith("%") else 1.0)
    except ValueError:
        raise ValidationError(f"Calibration target {text!r} needs a number after '='.") from None
    if value < 0 or (kind in ("strong-share", "quality", "pgr") and value > 1):
        raise ValidationError(f"Calibration target {text!r} is out of range.")
    return Target(kind, value)


@dataclass
class Calibration:
    """The chosen knob and what to expect there on held-out prompts."""

    policy: str  # "threshold" | "wtp"
    knob: dict[str, float]
    target: dict[str, Any]
    expected: dict[str, float | None]
    reached: bool
    n_heldout: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nan_none(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def calibrate_binary(
    p_strong: np.ndarray,
    s_strong: np.ndarray,
    s_weak: np.ndarray,
    target: Target,
    *,
    cost_strong: np.ndarray | None = None,
    cost_weak: np.ndarray | None = None,
) -> Calibration:
    """Pick the threshold on P(strong needed) for ``target`` (see the module docstring)."""
    p = np.asarray(p_strong, dtype=np.float64)
    n = p.size
    if n == 0:
        raise ValidationError("No held-out prompts to calibrate on.")
    ss, sw = np.asarray(s_strong, dtype=np.float64), np.asarray(s_weak, dtype=np.float64)
    cs = np.full(n, np.nan) if cost_strong is None else np.asarray(cost_strong, dtype=np.float64)
    cw = np.full(n, np.nan) if cost_weak is None else np.asarray(cost_weak, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    p_sorted = p[order]
    # candidate cut points: k strong calls where k ends a block of tied p (a threshold cannot split ties)
    ends = np.flatnonzero(np.concatenate([p_sorted[1:] != p_sorted[:-1], [True]])) + 1
    ks = np.concatenate([[0], ends])
    thresholds = np.array([np.nextafter(p_sorted[0], np.inf)] + [p_sorted[k - 1] for k in ends])
    gain = np.concatenate([[0.0], np.cumsum((ss - sw)[order])])
    dcost = np.concatenate([[0.0], np.cumsum((cs - cw)[order])])
    share = ks / n
    quality = sw.mean() + gain[ks] / n
    cost = cw.mean() + dcost[ks] / n
    gap = ss.mean() - sw.mean()
    pgr = (quality - sw.mean()) / gap if abs(gap) > 1e-12 else np.full(ks.size, np.nan)

    if target.kind == "strong-share":
        i = int(np.argmin(np.abs(share - target.value)))
        reached = True
    elif target.kind == "pgr":
        i, reached = _first_true(pgr >= target.value - 1e-12, fallback=int(np.nanargmax(pgr)))
    elif target.kind == "quality":
        i, reached = _first_true(quality >= target.value - 1e-12, fallback=int(np.argmax(quality)))
    else:  # cost-per-1k
        if not np.isfinite(cost).all():
            raise ValidationError(
                "A cost target needs per-query costs for both models.",
                hint="Import costs or use strong-share=…",
            )
        ok = cost * 1000.0 <= target.value + 1e-12
        if ok.any():
            i, reached = int(np.flatnonzero(ok)[np.argmax(quality[ok])]), True
        else:
            i, reached = int(np.argmin(cost)), False
    return Calibration(
        policy="threshold",
        knob={"threshold": float(thresholds[i])},
        target={"kind": target.kind, "value": target.value},
        expected={
            "strong_share": float(share[i]),
            "quality": float(quality[i]),
            "pgr": _nan_none(float(pgr[i])),
            "cost_per_1k": _nan_none(float(cost[i] * 1000.0)),
        },
        reached=reached,
        n_heldout=n,
    )


def _first_true(mask: np.ndarray, *, fallback: int) -> tuple[int, bool]:
    hits = np.flatnonzero(mask)
    return (int(hits[0]), True) if hits.size else (fallback, False)


def calibrate_wtp(
    predicted: np.ndarray,
    decision_prices: np.ndarray,
    scores: np.ndarray,
    true_costs: np.ndarray,
    target: Target,
    *,
    grid: int = 401,
) -> Calibration:
    """Pick λ of the willingness-to-pay policy for ``target`` (cost-per-1k or quality)."""
    if target.kind not in ("cost-per-1k", "quality"):
        raise ValidationError(
            f"Target {target.kind!r} is for a strong/weak pair.",
            hint="Give --strong and --weak, or use cost-per-1k=… / quality=….",
        )
    if len(scores) == 0:
        raise ValidationError("No held-out prompts to calibrate on.")
    lambdas = lambda_grid(decision_prices, n=grid)
    engine = DecisionEngine([str(j) for j in range(np.shape(predicted)[1])])
    pts = np.array(
        [
            M.point(
                engine.choose(predicted, decision_prices, Policy("wtp", float(lam), "sweep")),
                scores,
                true_costs,
            )
            for lam in lambdas
        ]
    )
    cost, quality = pts[:, 0], pts[:, 1]
    if target.kind == "cost-per-1k":
        ok = cost * 1000.0 <= target.value + 1e-12
        if ok.any():
            i, reached = int(np.flatnonzero(ok)[np.argmax(quality[ok])]), True
        else:
            i, reached = int(np.argmin(cost)), False
    else:
        ok = quality >= target.value - 1e-12
        if ok.any():
            i, reached = int(np.flatnonzero(ok)[np.argmin(cost[ok])]), True
        else:
            i, reached = int(np.argmax(quality)), False
    lam = float(lambdas[i])
    return Calibration(
        policy="wtp",
        knob={"lambda": lam if np.isfinite(lam) else 1e300},
        target={"kind": target.kind, "value": target.value},
        expected={"quality": float(quality[i]), "cost_per_1k": float(cost[i] * 1000.0), "strong_share": None},
        reached=reached,
        n_heldout=len(scores),
    )


def calibrate_router(
    trained: TrainedRouter,
    matrix: ScoreMatrix,
    target: Target,
    *,
    strong: str | None = None,
    weak: str | None = None,
    catalog: Mapping[str, Any] | None = None,
) -> Calibration:
    """Calibrate a trained router on the prompts of ``matrix`` it was not trained on.

    Predictions and decision prices come from the router itself (``TrainedRouter.score``: the same
    embedding, predictor and price estimate the gateway uses) and choices from its decision engine.
    Held-out prompts need a score for every candidate model. Binary targets (strong-share, pgr), a given
    ``strong``/``weak`` pair or a two-model router calibrate the threshold policy on the engine's pair; other
    targets calibrate λ of willingness to pay. Expected costs use the records' costs, else registered prices
    × estimated tokens (``catalog``), else the decision prices.
    """
    from routerforge.data.records import text_hash
    from routerforge.errors import UnknownModelError
    from routerforge.policy.pricing import query_prices

    engine = trained.engine
    names = list(engine.models)
    if (strong is None) != (weak is None):
        raise ValidationError("Give both --strong and --weak, or neither.")
    candidates = names
    if strong is not None and weak is not None:
        for m in (strong, weak):
            if m not in names:
                raise UnknownModelError(m, names, hint="The router was trained on these models.")
        candidates = [strong, weak]
        s, w = engine.pair(candidates)
        if (s, w) != (strong, weak):
            raise ValidationError(
                f"{s!r} has the higher mean training score, so it is the strong model of this pair.",
                hint=f"Use --strong {s} --weak {w}.",
            )
    seen = trained.seen()
    sub = matrix.select_models(names)
    cols = [names.index(m) for m in candidates]
    rows = np.array(
        [
            i
            for i, p in enumerate(sub.prompts)
            if text_hash(p) not in seen and not np.isnan(sub.scores[i, cols]).any()
        ],
        dtype=np.int64,
    )
    if rows.size == 0:
        raise ValidationError(
            f"Dataset {matrix.name!r} has no prompts with scores that the router was not trained on.",
            hint="Split the data first (`routerforge data split`), train on the train side and calibrate on the rest.",
        )
    held = sub.take(rows)
    from routerforge.routers.metadata import batch_meta  # the metadata a request would carry

    pred, decision = trained.score(held.prompts, batch_meta(held.categories, held.metadata))
    costs = query_prices(held.prompts, names, held.costs, catalog)
    costs = np.where(np.isfinite(costs), costs, decision)
    binary = target.kind in ("strong-share", "pgr") or len(candidates) == 2
    if binary:
        if len(candidates) != 2:
            raise ValidationError(
                f"Target {target.kind!r} needs a strong/weak pair, and this router has {len(names)} models.",
                hint="Give --strong and --weak.",
            )
        s, w = engine.pair(candidates)
        si, wi = names.index(s), names.index(w)
        result = calibrate_binary(
            engine.p_strong(pred, candidates),
            held.scores[:, si],
            held.scores[:, wi],
            target,
            cost_strong=costs[:, si],
            cost_weak=costs[:, wi],
        )
        result.details.update({"strong": s, "weak": w, "models": candidates})
        return result
    if not np.isfinite(decision).all():
        raise ValidationError(
            "No prices are known for some of these models; only strong-share/pgr targets are possible.",
            hint="Register prices with `routerforge models add` or import costs with the records.",
        )
    result = calibrate_wtp(pred, decision, held.scores, costs, target)
    result.details["models"] = names
    return result
