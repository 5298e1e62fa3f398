"""Pure metric functions (no plotting, no printing). Definitions follow RouteLLM and DESIGN.md.

Binary (strong/weak)
--------------------
Prompts are ranked by P(strong needed) (highest first) and the top share ``c`` goes to the strong model.
For a non-integer number of strong calls ``c·n`` the quality is interpolated linearly between the
neighbouring integer counts, and **prompts with tied scores are treated as one block whose gain is
averaged** — exactly the expectation over random tie-breaking. A router that predicts a constant therefore
gets PGR(c) = c and APGR = 0.5, with no artefact from the input order, and shuffling the prompts never
changes a number.

* ``r(c)`` = mean score of the chosen answers at strong share ``c``;
* ``PGR(c) = (r(c) − r_weak) / (r_strong − r_weak)``;
* ``APGR`` = trapezoid area of PGR over c ∈ {0, 0.1, …, 1} (11 points); ``APGR_101`` uses c ∈ {0, 0.01, …, 1};
* ``CPT(x)`` = the smallest c with PGR(c) ≥ x. It is computed on the finest sweep the data allows — every
  integer number of strong calls k = 0…n, c = k/n — and interpolated linearly between the last k below
  the target and the first k reaching it (PGR is piecewise linear in c, so this is exact).

N models with cost
------------------
A policy knob (λ) is swept; every setting gives one point (mean cost per query, mean score). The Pareto
frontier keeps the points no other point beats on both axes, sorted by cost; quality between two frontier
points is interpolated linearly (randomly mixing the two settings achieves it), is undefined (0) below the
cheapest point and flat above the most expensive one (spending less than the budget is allowed).

* ``AIQ`` = ∫ q(c) dc over [c_lo, c_hi] / (c_hi − c_lo), where c_lo / c_hi are the costs of the cheapest /
  most expensive single model (mean quality over that cost range, in score units);
* ``quality_at_best_cost`` = q(cost of the best single model), the best single model being the one with the
  highest mean score (ties: cheaper);
* ``cost_share_at_best_quality`` = (the smallest cost where q reaches the best single model's quality) /
  (the best single model's cost); ``None`` when the frontier never reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from routerforge.errors import ValidationError

SHARES_11 = np.linspace(0.0, 1.0, 11)
SHARES_101 = np.linspace(0.0, 1.0, 101)


# --------------------------------------------------------------------------------------------- binary
def gain_curve(p_strong: np.ndarray, s_strong: np.ndarray, s_weak: np.ndarray) -> np.ndarray:
    """Cumulative expected gain ``G[k]`` (k = 0…n) of sending the k top-ranked prompts to the strong model.

    ``G[k] = Σ (s_strong − s_weak)`` over the k prompts with the highest ``p_strong``; tied prompts share
    their block's mean gain (expectation over random tie-breaking).
    """
    p = np.asarray(p_strong, dtype=np.float64)
    gains = np.asarray(s_strong, dtype=np.float64) - np.asarray(s_weak, dtype=np.float64)
    if p.shape != gains.shape or p.ndim != 1:
        raise ValidationError(f"p_strong {p.shape} and scores {gains.shape} must be 1-d of equal length.")
    if not (np.isfinite(p).all() and np.isfinite(gains).all()):
        raise ValidationError(
            "Binary metrics need finite predictions and scores (drop prompts with missing scores)."
        )
    order = np.argsort(-p, kind="stable")
    p_sorted, g_sorted = p[order], gains[order]
    # tie blocks: equal p values are adjacent after sorting
    starts = np.flatnonzero(np.concatenate([[True], p_sorted[1:] != p_sorted[:-1]]))
    block_sums = np.add.reduceat(g_sorted, starts) if g_sorted.size else np.array([])
    sizes = np.diff(np.concatenate([starts, [g_sorted.size]]))
    averaged = np.repeat(block_sums / np.maximum(sizes, 1), sizes)
    return np.concatenate([[0.0], np.cumsum(averaged)])


def _pgr_from_gain(gain: np.ndarray, shares: np.ndarray) -> np.ndarray:
    n = gain.size - 1
    total = gain[-1]
    if n == 0 or abs(total) < 1e-12:
        raise ValidationError(
            "The strong and weak models have the same mean score on these prompts, so PGR is undefined.",
            hint="Pick a different --strong/--weak pair or more prompts.",
        )
    return np.interp(np.asarray(shares) * n, np.arange(n + 1), gain) / total


def pgr_at(p_strong: np.ndarray, s_strong: np.ndarray, s_weak: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """PGR at each strong share in ``shares``."""
    return _pgr_from_gain(gain_curve(p_strong, s_strong, s_weak), np.asarray(shares, dtype=np.float64))


def quality_at(
    p_strong: np.ndarray, s_strong: np.ndarray, s_weak: np.ndarray, shares: np.ndarray
) -> np.ndarray:
    """r(c): mean score of the chosen answers at each strong share in ``shares``."""
    gain = gain_curve(p_strong, s_strong, s_weak)
    n = gain.size - 1
    base = float(np.mean(s_weak))
    return base + np.interp(np.asarray(shares, dtype=np.float64) * n, np.arange(n + 1), gain) / n


def apgr(p_strong: np.ndarray, s_strong: np.ndarray, s_weak: np.ndarray, points: int = 11) -> float:
    """Area under PGR(c) by the trapezoid rule over ``points`` evenly spaced shares (11 or 101)."""
    shares = np.linspace(0.0, 1.0, points)
    return float(np.trapezoid(pgr_at(p_strong, s_strong, s_weak, shares), shares))


def cpt(p_strong: np.ndarray, s_strong: np.ndarray, s_weak: np.ndarray, target: float) -> float:
    """Smallest strong share c with PGR(c) ≥ ``target`` (fine sweep over every k/n, linear interpolation)."""
    gain = gain_curve(p_strong, s_strong, s_weak)
    n = gain.size - 1
    pgr = _pgr_from_gain(gain, np.arange(n + 1) / n)
    return float(_first_crossing(pgr, target) / n)


def _first_crossing(pgr: np.ndarray, target: float) -> float:
    hits = np.flatnonzero(pgr >= target - 1e-12)
    if hits.size == 0:  # cannot happen for target ≤ 1 (PGR(1) = 1) but keep it total
        return float(pgr.size - 1)
    k = int(hits[0])
    if k == 0:
        return 0.0
    lo, hi = pgr[k - 1], pgr[k]
    return float((k - 1) + (target - lo) / (hi - lo)) if hi > lo else float(k)


@dataclass
class BinaryMetrics:
    """Binary routing metrics on one set of held-out prompts (shares and CPTs as fractions)."""

    n: int
    apgr: float
    apgr_101: float
    cpt50: float
    cpt80: float
    r_strong: float
    r_weak: float
    curve: list[tuple[float, float]] = field(default_factory=list)  # (share, quality) at the 11 shares


def binary_metrics(p_strong: np.ndarray, s_strong: np.ndarray, s_weak: np.ndarray) -> BinaryMetrics:
    """All binary metrics for one router on one set of held-out prompts."""
    ss = np.asarray(s_strong, dtype=np.float64)
    sw = np.asarray(s_weak, dtype=np.float64)
    gain = gain_curve(p_strong, ss, sw)
    n = gain.size - 1
    fine = _pgr_from_gain(gain, np.arange(n + 1) / n)
    quality = float(sw.mean()) + np.interp(SHARES_11 * n, np.arange(n + 1), gain) / n
    return BinaryMetrics(
        n=n,
        apgr=float(np.trapezoid(_pgr_from_gain(gain, SHARES_11), SHARES_11)),
        apgr_101=float(np.trapezoid(_pgr_from_gain(gain, SHARES_101), SHARES_101)),
        cpt50=float(_first_crossing(fine, 0.5) / n),
        cpt80=float(_first_crossing(fine, 0.8) / n),
        r_strong=float(ss.mean()),
        r_weak=float(sw.mean()),
        curve=[(float(c), float(q)) for c, q in zip(SHARES_11, quality, strict=True)],
    )


def mean_binary_metrics(parts: Sequence[BinaryMetrics]) -> BinaryMetrics:
    """Combine per-fold metrics: every number is the mean over folds weighted by the fold's prompt count."""
    if not parts:
        raise ValidationError("No folds to combine.")
    w = np.array([p.n for p in parts], dtype=np.float64)
    w = w / w.sum()

    def avg(attr: str) -> float:
        return float(sum(wi * getattr(p, attr) for wi, p in zip(w, parts, strict=True)))

    curve_q = sum(wi * np.array([q for _, q in p.curve]) for wi, p in zip(w, parts, strict=True))
    return BinaryMetrics(
        n=int(sum(p.n for p in parts)),
        apgr=avg("apgr"),
        apgr_101=avg("apgr_101"),
        cpt50=avg("cpt50"),
        cpt80=avg("cpt80"),
        r_strong=avg("r_strong"),
        r_weak=avg("r_weak"),
        curve=[(float(c), float(q)) for c, q in zip(SHARES_11, np.atleast_1d(curve_q), strict=True)],
    )


# --------------------------------------------------------------------------------------------- N models
def point(choice: np.ndarray, scores: np.ndarray, prices: np.ndarray) -> tuple[float, float]:
    """(mean cost, mean score) of choosing column ``choice[i]`` on row i."""
    idx = np.asarray(choice, dtype=np.int64)
    rows = np.arange(idx.size)
    return float(np.mean(prices[rows, idx])), float(np.mean(scores[rows, idx]))


def pareto_frontier(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Non-dominated (cost, quality) points sorted by cost, quality strictly increasing."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.size == 0:
        return pts
    order = np.lexsort((-pts[:, 1], pts[:, 0]))  # cost asc, then quality desc
    frontier: list[np.ndarray] = []
    best = -np.inf
    for c, q in pts[order]:
        if q > best + 1e-15:
            frontier.append(np.array([c, q]))
            best = q
    return np.array(frontier)


def upper_hull(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """The non-decreasing upper convex hull: everything reachable by randomly mixing the given points."""
    front = pareto_frontier(points)
    hull: list[np.ndarray] = []
    for pt in front:
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            # drop hull[-1] if it lies on or below the segment hull[-2] → pt
            if (q2 - q1) * (pt[0] - c1) <= (pt[1] - q1) * (c2 - c1) + 1e-18:
                hull.pop()
            else:
                break
        hull.append(pt)
    return np.array(hull).reshape(-1, 2)


def frontier_quality(frontier: np.ndarray, cost: float) -> float | None:
    """q(cost) on a frontier: linear between points, flat above the last, ``None`` below the first."""
    f = np.asarray(frontier, dtype=np.float64).reshape(-1, 2)
    if f.size == 0 or cost < f[0, 0] - 1e-15:
        return None
    return float(np.interp(cost, f[:, 0], f[:, 1]))


def cost_to_reach(frontier: np.ndarray, quality: float) -> float | None:
    """Smallest cost at which the frontier reaches ``quality``; ``None`` if it never does."""
    f = np.asarray(frontier, dtype=np.float64).reshape(-1, 2)
    hits = np.flatnonzero(f[:, 1] >= quality - 1e-12) if f.size else np.array([], dtype=np.int64)
    if hits.size == 0:
        return None
    k = int(hits[0])
    if k == 0:
        return float(f[0, 0])
    (c0, q0), (c1, q1) = f[k - 1], f[k]
    return float(c0 + (quality - q0) / (q1 - q0) * (c1 - c0))


def aiq(frontier: np.ndarray, cost_lo: float, cost_hi: float) -> float:
    """Mean frontier quality over [cost_lo, cost_hi] (area under q(c) divided by the range; 0 where undefined)."""
    f = np.asarray(frontier, dtype=np.float64).reshape(-1, 2)
    if f.size == 0:
        return 0.0
    if cost_hi <= cost_lo:
        return frontier_quality(f, cost_lo) or 0.0
    a = max(cost_lo, float(f[0, 0]))
    if a >= cost_hi:
        return 0.0
    inner = f[(f[:, 0] > a) & (f[:, 0] < cost_hi), 0]
    xs = np.concatenate([[a], inner, [cost_hi]])
    ys = np.interp(xs, f[:, 0], f[:, 1])
    return float(np.trapezoid(ys, xs) / (cost_hi - cost_lo))


@dataclass
class SingleModel:
    quality: float
    cost: float


def single_models(models: Sequence[str], scores: np.ndarray, prices: np.ndarray) -> dict[str, SingleModel]:
    """Mean score and mean cost of always choosing each model."""
    return {
        m: SingleModel(quality=float(np.mean(scores[:, j])), cost=float(np.mean(prices[:, j])))
        for j, m in enumerate(models)
    }


def best_single(singles: dict[str, SingleModel]) -> str:
    """The single model with the highest quality (ties: the cheaper one, then the name)."""
    return min(singles, key=lambda m: (-singles[m].quality, singles[m].cost, m))


def oracle_choice(scores: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Per prompt the cheapest model among those with the best true score (cheapest correct model)."""
    s = np.asarray(scores, dtype=np.float64)
    best = s.max(axis=1, keepdims=True)
    return np.asarray(np.where(s >= best - 1e-12, prices, np.inf).argmin(axis=1), dtype=np.int64)


@dataclass
class CostQualityMetrics:
    """N-model metrics of one router (or baseline) on held-out prompts."""

    aiq: float
    quality_at_best_cost: float | None
    cost_share_at_best_quality: float | None
    pareto: list[tuple[float, float]]


def cost_quality_metrics(points: np.ndarray, singles: dict[str, SingleModel]) -> CostQualityMetrics:
    """AIQ, quality at the best single model's cost and cost share to reach its quality, from swept points."""
    front = pareto_frontier(points)
    costs = [s.cost for s in singles.values()]
    best = singles[best_single(singles)]
    reach = cost_to_reach(front, best.quality)
    return CostQualityMetrics(
        aiq=aiq(front, min(costs), max(costs)),
        quality_at_best_cost=frontier_quality(front, best.cost),
        cost_share_at_best_quality=None if reach is None or best.cost <= 0 else reach / best.cost,
        pareto=[(float(c), float(q)) for c, q in front],
    )


# --------------------------------------------------------------------------------------------- bootstrap
# Paired bootstrap: every predictor is scored on the same resamples of the held-out prompts. A resample is a
# row of integer weights (how many times each prompt is drawn); prompts sharing a group (identical texts)
# are drawn together. The functions below compute a metric for every row at once, exactly as the
# functions above compute it on the unweighted prompts (weights of 1 give the same numbers).
def bootstrap_weights(groups: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n)`` int32 draw counts: each resample draws as many groups as there are, with
    replacement, and every prompt of a drawn group counts once per draw."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    inverse = inverse.reshape(-1)
    n_groups = int(inverse.max()) + 1 if inverse.size else 0
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, inverse.size), dtype=np.int32)
    step = max(1, 2_000_000 // max(n_groups, 1))
    for lo in range(0, n_resamples, step):
        rows = min(step, n_resamples - lo)
        draws = rng.integers(0, n_groups, size=(rows, n_groups)) + np.arange(rows)[:, None] * n_groups
        counts = np.bincount(draws.ravel(), minlength=rows * n_groups).reshape(rows, n_groups)
        out[lo : lo + rows] = counts[:, inverse]
    return out


def _rowwise_interp(x: np.ndarray, knots: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """Per row r, the piecewise-linear function with segment ends ``knots[r]`` (non-decreasing cumulative
    weights), end values ``values[r]`` and slopes ``slopes[r]``, at ``x[r]`` (0 ≤ x ≤ the last knot)."""
    rows, segments = knots.shape
    offset = (np.arange(rows, dtype=np.float64) * (float(knots[:, -1].max()) + 1.0))[:, None]
    flat = (knots + offset).ravel()
    found = np.searchsorted(flat, (x + offset).ravel(), side="left").reshape(x.shape)
    seg = np.minimum(found - (np.arange(rows) * segments)[:, None], segments - 1)
    r = np.arange(rows)[:, None]
    end = knots[r, seg]
    return values[r, seg] - (end - x) * slopes[r, seg]


def resampled_apgr(
    p_strong: np.ndarray,
    s_strong: np.ndarray,
    s_weak: np.ndarray,
    weights: np.ndarray,
    points: int = 11,
    chunk: int = 64,
) -> np.ndarray:
    """APGR (as :func:`apgr`, ties averaged) on every resample of ``weights`` (``(B, n)`` draw counts);
    NaN for a resample where the two models tie."""
    p = np.asarray(p_strong, dtype=np.float64)
    gains = np.asarray(s_strong, dtype=np.float64) - np.asarray(s_weak, dtype=np.float64)
    gain_curve(p, s_strong, s_weak)  # validates shapes and finiteness
    order = np.argsort(-p, kind="stable")
    p_sorted, g_sorted = p[order], gains[order]
    starts = np.flatnonzero(np.concatenate([[True], p_sorted[1:] != p_sorted[:-1]]))
    shares = np.linspace(0.0, 1.0, points)
    out = np.empty(weights.shape[0])
    for lo in range(0, weights.shape[0], chunk):
        w = weights[lo : lo + chunk][:, order].astype(np.float64)
        block_w = np.add.reduceat(w, starts, axis=1)
        block_s = np.add.reduceat(w * g_sorted, starts, axis=1)
        cum_w, cum_s = np.cumsum(block_w, axis=1), np.cumsum(block_s, axis=1)
        slopes = np.divide(block_s, block_w, out=np.zeros_like(block_s), where=block_w > 0)
        x = shares[None, :] * cum_w[:, -1:]
        gain = _rowwise_interp(x, cum_w, cum_s, slopes)
        total = cum_s[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            pgr = np.where(np.abs(total) < 1e-12, np.nan, gain / total)
        out[lo : lo + chunk] = np.trapezoid(pgr, shares, axis=1)
    return out


def frontier_quality_rows(costs: np.ndarray, quality: np.ndarray, at: np.ndarray) -> np.ndarray:
    """:func:`frontier_quality` of ``pareto_frontier`` of each row's points (``costs[r]``, ``quality[r]``)
    at ``at[r]``, for every row at once; NaN where it is undefined (``at`` below the cheapest point)."""
    c, q = np.asarray(costs, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    target = np.asarray(at, dtype=np.float64)[:, None]
    left = c <= target + 1e-15
    q_left = np.where(left, q, -np.inf).max(axis=1, keepdims=True)
    # the frontier point at or below the target cost: the cheapest point reaching the best quality there
    c_left = np.where(left & (q >= q_left), c, np.inf).min(axis=1, keepdims=True)
    # the next frontier point: the cheapest point of higher quality (its best quality at that cost)
    above = q > q_left + 1e-15
    c_right = np.where(above, c, np.inf).min(axis=1, keepdims=True)
    q_right = np.where(above & (c <= c_right), q, -np.inf).max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mixed = q_left + (target - c_left) / (c_right - c_left) * (q_right - q_left)
    value = np.where(np.isfinite(c_right), mixed, q_left)
    return np.where(np.isfinite(q_left), value, np.nan)[:, 0]


def resampled_quality_at_best_cost(
    chosen_cost: np.ndarray,
    chosen_quality: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    weights: np.ndarray,
    chunk: int = 256,
) -> np.ndarray:
    """``quality_at_best_cost`` (as :func:`cost_quality_metrics`) on every resample of ``weights``.

    ``chosen_cost``/``chosen_quality`` are ``(L, n)``: the recorded cost and score of the model chosen for
    each prompt at each of the L swept knob settings; ``scores``/``costs`` the ``(n, m)`` truth that defines
    the single models (the best one — highest quality, ties: cheaper — is re-chosen on every resample).
    """
    cc, cq = np.asarray(chosen_cost, dtype=np.float64), np.asarray(chosen_quality, dtype=np.float64)
    out = np.empty(weights.shape[0])
    for lo in range(0, weights.shape[0], chunk):
        w = weights[lo : lo + chunk].astype(np.float64)
        total = w.sum(axis=1, keepdims=True)
        single_q, single_c = (w @ scores) / total, (w @ costs) / total
        best_q = single_q.max(axis=1, keepdims=True)
        best = np.where(single_q >= best_q, single_c, np.inf).argmin(axis=1)
        at = single_c[np.arange(w.shape[0]), best]
        out[lo : lo + chunk] = frontier_quality_rows((w @ cc.T) / total, (w @ cq.T) / total, at)
    return out


def paired_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the paired differences ``a − b`` over resamples (undefined ones ignored);
    ``None`` when no resample defines both."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(diff, [tail, 100.0 - tail])
    return float(lo), float(hi)
