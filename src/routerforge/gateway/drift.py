"""Drift and quality alerts per synthetic model: is the traffic still what its router was trained on?

Three checks compare a *window* of recent traffic (the request log: the last ``drift.window_hours``, at
most ``drift.max_requests`` of the newest successful requests of one synthetic model) with a *reference*
built once from the router's own data (the dataset named in its ``routing.json``, read from the store):

- **coverage** — embedding-space coverage. Every reference prompt's nearest-neighbour cosine similarity to
  the *other* training prompts (leave-one-out) gives a distribution; its ``low_percentile`` (5 %) is the
  threshold τ. A window prompt whose nearest training prompt is less similar than τ is *poorly covered*.
  Without drift about 5 % of new prompts fall below τ (a new prompt is exchangeable with a held-out training
  prompt); the value is the poorly-covered share of the window, tested against the reference share with a
  one-sided two-proportion z-test.
- **share** — predicted-share shift. The distribution of chosen models in the window against what the same
  decision path (:meth:`routerforge.gateway.routing.Routing.decide`, same policy and rules, no budget
  shift) chooses on the reference prompts (held-out prompts of the dataset when it has enough, else the
  training prompts): total variation distance, and a chi-square test of homogeneity (2 × models).
- **feedback** — calibration gap. For rated requests of the window: the mean of ``rating − predicted score of
  the model that answered``, with a t confidence interval at level ``1 − p_value``.

Each check is ``ok`` / ``warn`` / ``alert`` by its documented thresholds (``drift:`` in gateway.yaml; warn and
alert also need statistical significance) or ``insufficient data`` below its minimum sample size — never
an alarm from a handful of requests. The overall status is the worst of the checks that have data.

Cost is bounded: the reference (≤ ``max_reference`` prompts) is embedded once per router and cached on
disk (``$ROUTERFORGE_HOME/cache/drift``); each window prompt's nearest-neighbour similarity is cached by
text hash, so a periodic run embeds only the prompts that arrived since the last one. See docs/drift.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from routerforge.data.records import text_hash
from routerforge.errors import ArtifactError, RouterForgeError, ValidationError

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.gateway.config import DriftConfig, GatewayConfig
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.metrics import GatewayMetrics
    from routerforge.gateway.routing import Routing, Target

log = logging.getLogger("routerforge.gateway.drift")

OK, WARN, ALERT, INSUFFICIENT = "ok", "warn", "alert", "insufficient data"
STATUS_CODES = {INSUFFICIENT: -1, OK: 0, WARN: 1, ALERT: 2}
CHECKS = ("coverage", "share", "feedback")
EMBED_CHUNK = 64
NN_CACHE_SIZE = 50_000
FEEDBACK_ID_CHUNK = 500
STARTUP_DELAY_S = 30.0


# -- the statistics (pure functions) -------------------------------------------------------------------
def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(v / norms, dtype=np.float32)


def nearest_similarity(
    queries: np.ndarray, reference: np.ndarray, *, exclude_self: bool = False, chunk: int = 1024
) -> np.ndarray:
    """Cosine similarity of each (L2-normalised) query to its nearest reference row.

    ``exclude_self``: ``queries`` *is* ``reference`` and row i may not match itself (leave-one-out)."""
    q = np.asarray(queries, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    out = np.full(len(q), -1.0, dtype=np.float64)
    if len(r) == 0 or len(q) == 0:
        return out
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ r.T
        if exclude_self:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = -np.inf
        out[start : start + chunk] = sims.max(axis=1)
    return np.clip(out, -1.0, 1.0)


def two_proportion_p(k1: int, n1: int, k0: int, n0: int) -> float:
    """One-sided p-value of H1: k1/n1 > k0/n0 (pooled two-proportion z-test)."""
    if n1 == 0 or n0 == 0:
        return 1.0
    p1, p0 = k1 / n1, k0 / n0
    pooled = (k1 + k0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return 0.0 if p1 > p0 else 1.0
    z = (p1 - p0) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def grade(value: float, warn: float, alert: float, significant: bool) -> str:
    """ok / warn / alert of a non-negative effect size ``value`` (warn and alert need ``significant``)."""
    if not significant or value < warn:
        return OK
    return ALERT if value >= alert else WARN


@dataclass
class Check:
    """One check's outcome (``value`` is ``None`` when there is not enough data to compute it)."""

    status: str
    value: float | None = None
    n: int = 0
    p_value: float | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coverage_check(window_nn: np.ndarray, reference: Reference, cfg: DriftConfig) -> Check:
    """The poorly-covered share of the window (see the module docstring)."""
    if reference.vectors is None or len(reference.loo) < cfg.min_reference:
        n_ref = 0 if reference.vectors is None else len(reference.loo)
        why = reference.note or f"{n_ref} reference prompts; need {cfg.min_reference}"
        return Check(INSUFFICIENT, n=len(window_nn), reason=why)
    n = len(window_nn)
    if n < cfg.min_requests:
        return Check(
            INSUFFICIENT, n=n, reason=f"{n} prompts in the window; need {cfg.min_requests}", details={}
        )
    low = int(np.sum(window_nn < reference.threshold))
    n_ref = len(reference.loo)
    k_ref = int(np.sum(reference.loo < reference.threshold))
    share = low / n
    p = two_proportion_p(low, n, k_ref, n_ref)
    status = grade(share, cfg.coverage_warn, cfg.coverage_alert, p < cfg.p_value)
    return Check(
        status,
        value=share,
        n=n,
        p_value=p,
        reason=f"{low} of {n} prompts have no training neighbour with similarity ≥ {reference.threshold:.3f}",
        details={
            "threshold_similarity": reference.threshold,
            "low_percentile": cfg.low_percentile,
            "expected_share": k_ref / n_ref,
            "reference_prompts": n_ref,
            "window_median_similarity": float(np.median(window_nn)),
            "reference_median_similarity": float(np.median(reference.loo)),
        },
    )


def share_check(
    window: dict[str, int], reference: dict[str, int], cfg: DriftConfig, *, reference_source: str = ""
) -> Check:
    """Total variation distance of the chosen-model shares, with a chi-square test of homogeneity."""
    n = sum(window.values())
    n_ref = sum(reference.values())
    if n_ref < cfg.min_reference:
        return Check(INSUFFICIENT, n=n, reason=f"{n_ref} reference decisions; need {cfg.min_reference}")
    if n < cfg.min_requests:
        return Check(INSUFFICIENT, n=n, reason=f"{n} decisions in the window; need {cfg.min_requests}")
    models = sorted(set(window) | set(reference))
    w = np.array([window.get(m, 0) for m in models], dtype=np.float64)
    r = np.array([reference.get(m, 0) for m in models], dtype=np.float64)
    tvd = float(0.5 * np.abs(w / n - r / n_ref).sum())
    keep = (w + r) > 0
    p = 1.0
    if keep.sum() >= 2:
        from scipy.stats import chi2_contingency

        p = float(chi2_contingency(np.stack([w[keep], r[keep]]), correction=False).pvalue)
    status = grade(tvd, cfg.share_warn, cfg.share_alert, p < cfg.p_value)
    return Check(
        status,
        value=tvd,
        n=n,
        p_value=p,
        reason=f"chosen-model shares moved by TVD {tvd:.3f} from the reference ({reference_source})",
        details={
            "window_share": {m: float(window.get(m, 0) / n) for m in models},
            "reference_share": {m: float(reference.get(m, 0) / n_ref) for m in models},
            "reference_decisions": n_ref,
            "reference_source": reference_source,
        },
    )


def feedback_check(gaps: Sequence[float], by_model: dict[str, list[float]], cfg: DriftConfig) -> Check:
    """Mean of rating − predicted score (of the answering model) with a t interval at level 1 − p_value."""
    n = len(gaps)
    if n < cfg.min_feedback:
        return Check(INSUFFICIENT, n=n, reason=f"{n} rated requests in the window; need {cfg.min_feedback}")
    arr = np.asarray(gaps, dtype=np.float64)
    mean = float(arr.mean())
    sd = float(arr.std(ddof=1)) if n > 1 else 0.0
    level = 1.0 - cfg.p_value
    if sd == 0.0:
        lo = hi = mean
        p = 1.0 if mean == 0.0 else 0.0
    else:
        from scipy.stats import t as student_t

        half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
        p = float(2 * student_t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    status = grade(abs(mean), cfg.feedback_warn, cfg.feedback_alert, p < cfg.p_value)
    direction = "better" if mean > 0 else "worse"
    return Check(
        status,
        value=mean,
        n=n,
        p_value=p,
        reason=f"answers were rated {abs(mean):.3f} {direction} than predicted on average",
        details={
            "ci": [lo, hi],
            "ci_level": level,
            "by_model": {
                m: {"n": len(v), "gap": float(np.mean(v))} for m, v in sorted(by_model.items()) if v
            },
        },
    )


def overall_status(checks: Iterable[Check]) -> str:
    graded = [c.status for c in checks if c.status != INSUFFICIENT]
    if not graded:
        return INSUFFICIENT
    return max(graded, key=lambda s: STATUS_CODES[s])


# -- the reference of one router ------------------------------------------------------------------------
@dataclass
class Reference:
    """What a synthetic model's router saw in training: prompt vectors, their leave-one-out nearest-neighbour
    similarities and threshold, and the chosen-model counts on reference prompts."""

    vectors: np.ndarray | None
    loo: np.ndarray
    threshold: float
    choices: dict[str, int]
    choice_source: str
    note: str = ""  # why the reference is empty (no dataset in the store, …)
    key: str = ""  # identifies the reference vectors (the nearest-neighbour cache is keyed by it)

    @classmethod
    def empty(cls, note: str) -> Reference:
        return cls(None, np.zeros(0), float("nan"), {}, "", note)


@dataclass
class DriftReport:
    synthetic_model: str
    router: str
    status: str
    computed_at: str
    window: dict[str, Any]
    checks: dict[str, Check]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (NaN and infinities become ``None``)."""
        return _finite(
            {
                "synthetic_model": self.synthetic_model,
                "router": self.router,
                "status": self.status,
                "computed_at": self.computed_at,
                "window": self.window,
                "checks": {k: v.to_dict() for k, v in self.checks.items()},
            }
        )


def _finite(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class DriftStopped(Exception):
    """The monitor is closing: the computation in progress stops early (internal)."""


class DriftMonitor:
    """Computes :class:`DriftReport` s for the named synthetic models of a gateway, caches them and exports
    them as metrics. Synchronous methods run in a worker thread; :meth:`run` is the background loop."""

    def __init__(
        self,
        settings: Settings,
        current: Callable[[], tuple[GatewayConfig, Routing]],
        db: GatewayDB,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """``current`` returns the gateway's config and routing *now* (a hot reload or a promotion swaps them;
        gateway/reload.py), so every computation looks at the router that serves."""
        self.settings = settings
        self.current = current
        self.db = db
        self.metrics = metrics
        self.reports: dict[str, DriftReport] = {}
        self.errors: dict[str, str] = {}
        self._references: dict[str, Reference] = {}
        self._nn: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()  # one computation at a time (background and on demand)
        self._stopping = False

    @property
    def config(self) -> GatewayConfig:
        return self.current()[0]

    @property
    def cfg(self) -> DriftConfig:
        return self.config.drift

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.config.synthetic_models]

    def close(self) -> None:
        self._stopping = True

    def _check_stop(self) -> None:
        if self._stopping:
            raise DriftStopped

    # -- background ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Refresh every ``interval_s`` until cancelled (errors are logged, never raised)."""
        import anyio.to_thread

        await asyncio.sleep(min(self.cfg.interval_s, STARTUP_DELAY_S))  # let the gateway warm up first
        while not self._stopping:
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except DriftStopped:
                return
            except Exception:  # a background task must not die: the next round tries again
                log.exception("drift computation failed")
            await asyncio.sleep(self.cfg.interval_s)

    def refresh(self, names: Sequence[str] | None = None, **window: Any) -> dict[str, DriftReport]:
        """Compute the reports of ``names`` (default: every named synthetic model), cache them, update the
        metrics. A synthetic model whose router cannot be loaded is reported in :attr:`errors`."""
        out: dict[str, DriftReport] = {}
        for name in names if names is not None else self.names:
            self._check_stop()
            try:
                report = self.compute(name, **window)
            except DriftStopped:
                raise
            except RouterForgeError as exc:
                self.errors[name] = str(exc)
                log.warning("drift of %r cannot be computed: %s", name, exc)
                continue
            self.errors.pop(name, None)
            out[name] = report
            if not window:  # only the configured window is what the metrics and the cache show
                self.reports[name] = report
                self._export(report)
        if out and not window:
            try:
                save_reports(self.settings, out)
            except OSError as exc:  # the dashboard's copy only; the reports themselves are fine
                log.warning("cannot save drift reports: %s", exc)
        return out

    def _export(self, report: DriftReport) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        name = report.synthetic_model
        values = {"coverage": m.drift_coverage, "share": m.drift_share_tvd, "feedback": m.drift_feedback_gap}
        for check, gauge in values.items():
            value = report.checks[check].value
            gauge.labels(name).set(float("nan") if value is None else value)
            m.drift_check_status.labels(name, check).set(STATUS_CODES[report.checks[check].status])
        m.drift_status.labels(name).set(STATUS_CODES[report.status])
        m.drift_window.labels(name).set(int(report.window.get("requests", 0)))

    # -- one synthetic model ------------------------------------------------------------------------
    def compute(
        self, name: str, *, window_hours: float | None = None, max_requests: int | None = None
    ) -> DriftReport:
        if name not in self.names:
            raise ValidationError(
                f"No synthetic model {name!r} in the gateway config.",
                hint=f"Named synthetic models: {', '.join(self.names) or 'none'}.",
            )
        hours = self.cfg.window_hours if window_hours is None else window_hours
        limit = self.cfg.max_requests if max_requests is None else max_requests
        if hours <= 0 or limit < 1:
            raise ValidationError("The drift window needs a positive length and at least one request.")
        with self._lock:
            config, routing = self.current()
            cfg = config.drift
            target = routing.resolve(self._tenant_of(name), name)
            reference = self._reference(routing, target, cfg)
            since = _utcnow() - dt.timedelta(hours=hours)
            promoted = self._promoted_at(name)
            if promoted is not None and promoted > since:  # earlier decisions were another router's
                since = promoted
            rows = self._window_rows(name, since, limit)
            skipped = Counter[str]()
            texts, counts = [], Counter[str]()
            for row in rows:
                if row["chosen_model"]:
                    counts[row["chosen_model"]] += 1
                if row["prompt"]:
                    texts.append(row["prompt"])
                else:
                    skipped["no_prompt_logged"] += 1
            nn = self._window_nn(target, reference, texts)
            gaps, by_model, fb_skipped = self._feedback(rows)
            skipped.update(fb_skipped)
            checks = {
                "coverage": coverage_check(nn, reference, cfg),
                "share": share_check(
                    counts, reference.choices, cfg, reference_source=reference.choice_source
                ),
                "feedback": feedback_check(gaps, by_model, cfg),
            }
        return DriftReport(
            synthetic_model=name,
            router=str(target.router.directory if target.router is not None else ""),
            status=overall_status(checks.values()),
            computed_at=_utcnow().isoformat(timespec="seconds") + "Z",
            window={
                "hours": hours,
                "max_requests": limit,
                "since": since.isoformat(timespec="seconds") + "Z",
                "since_promotion": promoted is not None and promoted >= since,
                "requests": len(rows),
                "rated": len(gaps),
                "skipped": dict(skipped),
            },
            checks=checks,
        )

    def _tenant_of(self, name: str) -> str:
        for s in self.config.synthetic_models:
            if s.name == name:
                return s.tenant or "default"
        return "default"

    def _window_rows(self, name: str, since: dt.datetime, limit: int) -> list[dict[str, Any]]:
        """The newest successful requests of ``name`` since ``since`` (decisions it made and served).
        Requests a canary answered are left out: they show the candidate's choices, not this router's."""
        from routerforge.gateway.db import GwRequest

        req = GwRequest.__table__
        stmt = (
            select(
                req.c.id,
                req.c.tenant,
                req.c.prompt,
                req.c.chosen_model,
                req.c.answered_model,
                req.c.predicted,
                req.c.decision,
            )
            .where(req.c.synthetic_model == name, req.c.status == 200, req.c.created_at >= since)
            .order_by(req.c.created_at.desc())
            .limit(limit)
        )
        with self.db.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        return [r for r in rows if not _served_by_candidate(r.get("decision"))]

    def _feedback(
        self, rows: list[dict[str, Any]]
    ) -> tuple[list[float], dict[str, list[float]], Counter[str]]:
        from routerforge.gateway.requestlog import RequestLog

        log_ = RequestLog(self.db)
        ids = [r["id"] for r in rows]
        ratings: dict[str, list[float]] = {}
        for start in range(0, len(ids), FEEDBACK_ID_CHUNK):
            for rid, items in log_.feedback_for(ids[start : start + FEEDBACK_ID_CHUNK]).items():
                ratings[rid] = [float(f["rating"]) for f in items]
        gaps: list[float] = []
        by_model: dict[str, list[float]] = {}
        skipped = Counter[str]()
        for row in rows:
            got = ratings.get(row["id"])
            if not got:
                continue
            model = row.get("answered_model")
            predicted = row.get("predicted") or {}
            value = predicted.get(model) if isinstance(predicted, dict) and model else None
            if not isinstance(value, int | float) or not math.isfinite(value):
                skipped["rated_without_prediction"] += 1
                continue
            gap = float(np.mean(got)) - float(value)
            gaps.append(gap)
            by_model.setdefault(str(model), []).append(gap)
        return gaps, by_model, skipped

    def _window_nn(self, target: Target, reference: Reference, texts: list[str]) -> np.ndarray:
        if reference.vectors is None or not texts:
            return np.zeros(0)
        key = reference.key or reference_key(target)
        hashes = [text_hash(t) for t in texts]
        todo = sorted({h: t for h, t in zip(hashes, texts, strict=True) if (key, h) not in self._nn}.items())
        for start in range(0, len(todo), EMBED_CHUNK):
            self._check_stop()
            part = todo[start : start + EMBED_CHUNK]
            vecs = embed_texts(target, [t for _, t in part])
            sims = nearest_similarity(vecs, reference.vectors)
            for (h, _), s in zip(part, sims, strict=True):
                self._nn[(key, h)] = float(s)
        out = np.array([self._nn[(key, h)] for h in hashes], dtype=np.float64)
        while len(self._nn) > NN_CACHE_SIZE:
            self._nn.popitem(last=False)
        return out

    # -- reference ----------------------------------------------------------------------------------
    def _reference(self, routing: Routing, target: Target, cfg: DriftConfig) -> Reference:
        key = f"{reference_key(target)}:{policy_key(target)}:{cfg.max_reference}:{cfg.low_percentile}"
        hit = self._references.get(key)
        if hit is None:
            hit = build_reference(self.settings, routing, target, cfg, stop=self._check_stop)
            self._references[key] = hit
        return hit

    def _promoted_at(self, name: str) -> dt.datetime | None:
        """When ``name``'s serving router was last promoted (gateway/assignments.py), if ever."""
        from routerforge.gateway.assignments import Assignments

        try:
            found = Assignments(self.db.engine).get(name)
        except SQLAlchemyError:  # a store without the assignments table: never promoted
            return None
        if found is None or found.assigned_at is None:
            return None
        at = found.assigned_at
        return at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo is not None else at


def _served_by_candidate(decision: Any) -> bool:
    """True when a canary (not the serving router) made the decision that was served (logged by the
    shadow/canary code in the decision details)."""
    if not isinstance(decision, dict):
        return False
    canary = decision.get("canary")  # gateway/shadow.py: {"arm": "canary" | "serving", "router", "share"}
    return isinstance(canary, dict) and canary.get("arm") == "canary"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def reference_key(target: Target) -> str:
    """Identifies a router's training state: its directory, training time and training prompts."""
    router = target.router
    trained = getattr(router, "trained", None)
    if router is None or trained is None:
        return "none"
    hashes = trained.training_hashes
    digest = hashlib.sha256()
    digest.update(str(Path(router.directory).resolve()).encode())
    digest.update(str(trained.manifest.get("trained_at")).encode())
    digest.update(str(trained.embedder.id).encode())
    if hashes is not None:
        digest.update("\n".join(sorted(str(h) for h in hashes.tolist())).encode())
    return digest.hexdigest()[:24]


def policy_key(target: Target) -> str:
    doc = {
        "kind": target.kind,
        "knob": target.knob,
        "candidates": target.candidates,
        "calibration": target.router.engine.calibration if target.router is not None else None,
        "rules": repr(target.rules),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def embed_texts(target: Target, texts: Sequence[str]) -> np.ndarray:
    """The router's dense embedding of raw prompt texts (its boilerplate stripper, never a task describer),
    L2-normalised."""
    from routerforge.embed.encode import encode

    assert target.router is not None
    trained = target.router.trained
    dense, _ = encode(list(texts), trained.embedder, sparse=False, stripper=trained.stripper)
    return normalise_rows(dense)


def _sample(items: list[str], limit: int) -> list[str]:
    if len(items) <= limit:
        return items
    picked = np.sort(np.random.default_rng(0).choice(len(items), size=limit, replace=False))
    return [items[i] for i in picked]


def build_reference(
    settings: Settings,
    routing: Routing,
    target: Target,
    cfg: DriftConfig,
    *,
    stop: Any = lambda: None,
) -> Reference:
    """The reference of ``target``'s router from its dataset in the store (see the module docstring)."""
    from routerforge.data.store import Store

    router = target.router
    trained = getattr(router, "trained", None)
    if router is None or trained is None:
        return Reference.empty("this router records no training state")
    dataset = trained.manifest.get("dataset")
    try:
        seen = trained.seen()
    except ArtifactError as exc:
        return Reference.empty(str(exc))
    store = Store.from_settings(settings)
    try:
        if not dataset or not store.has_dataset(str(dataset)):
            return Reference.empty(
                f"the router's training dataset {dataset!r} is not in the store, so its training prompts "
                "are unknown"
            )
        train: dict[str, str] = {}
        held: dict[str, str] = {}
        for item in store.iter_prompts(str(dataset)):
            h = text_hash(item.text)
            (train if h in seen else held)[h] = item.text
    finally:
        store.close()
    train_texts = _sample([train[h] for h in sorted(train)], cfg.max_reference)
    held_texts = _sample([held[h] for h in sorted(held)], cfg.max_reference)
    vectors = _cached_vectors(settings, target, train_texts, stop)
    loo = nearest_similarity(vectors, vectors, exclude_self=True) if len(vectors) > 1 else np.zeros(0)
    threshold = float(np.percentile(loo, cfg.low_percentile)) if len(loo) else float("nan")
    if len(held_texts) >= cfg.min_reference:
        share_texts, source = held_texts, f"{len(held_texts)} held-out prompts of {dataset}"
    else:
        share_texts, source = train_texts, f"{len(train_texts)} training prompts of {dataset}"
    choices = Counter[str]()
    for start in range(0, len(share_texts), EMBED_CHUNK):
        stop()
        part = share_texts[start : start + EMBED_CHUNK]
        rows = router.predict_many(part)
        for text, row in zip(part, rows, strict=True):
            choices[routing.decide(target, text, scores=row).model] += 1
    key = hashlib.sha256(
        "\n".join([reference_key(target), *sorted(text_hash(t) for t in train_texts)]).encode()
    ).hexdigest()[:24]
    return Reference(vectors if len(vectors) else None, loo, threshold, dict(choices), source, key=key)


def _cached_vectors(settings: Settings, target: Target, texts: list[str], stop: Any) -> np.ndarray:
    """Embeddings of the reference texts, cached in ``cache_dir/drift`` (private files)."""
    from routerforge.files import private_dir

    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    digest = hashlib.sha256("\n".join(text_hash(t) for t in texts).encode()).hexdigest()[:16]
    folder = Path(settings.cache_dir) / "drift"
    path = folder / f"{reference_key(target)}-{digest}.npy"
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(texts):
                return np.asarray(cached, dtype=np.float32)
        except (OSError, ValueError):
            pass  # unreadable: recompute and overwrite
    parts = []
    for start in range(0, len(texts), EMBED_CHUNK):
        stop()
        parts.append(embed_texts(target, texts[start : start + EMBED_CHUNK]))
    vectors = np.vstack(parts)
    private_dir(folder)
    tmp = path.with_name(f".{path.name}.tmp")
    import os

    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, vectors.astype(np.float16), allow_pickle=False)
    tmp.replace(path)
    return vectors


def reports_path(settings: Settings) -> Path:
    return Path(settings.cache_dir) / "drift" / "reports.json"


def save_reports(settings: Settings, reports: dict[str, DriftReport]) -> None:
    """Merge ``reports`` into the last saved ones (``cache_dir/drift/reports.json``, private, atomic): what
    ``routerforge ui`` shows without a running gateway."""
    import os

    from routerforge.files import private_dir

    path = reports_path(settings)
    doc = load_saved_reports(settings)
    doc.update({name: r.to_dict() for name, r in reports.items()})
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, allow_nan=False)
    tmp.replace(path)


def load_saved_reports(settings: Settings) -> dict[str, dict[str, Any]]:
    """The last saved reports by synthetic model (``{}`` when none or unreadable)."""
    try:
        doc = json.loads(reports_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def compute_drift(
    settings: Settings,
    config: GatewayConfig,
    names: Sequence[str] | None = None,
    *,
    window_hours: float | None = None,
    max_requests: int | None = None,
) -> tuple[dict[str, DriftReport], dict[str, str]]:
    """On demand, without a running gateway (``routerforge drift``): load the routers of the named synthetic
    models, compute their reports; returns (reports, errors by synthetic model)."""
    from routerforge.gateway.assignments import Assignments
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.reload import effective_config
    from routerforge.gateway.routing import Routing

    db = GatewayDB(settings.store_url)
    config = effective_config(config, Assignments(db.engine).all())  # what serves after promotions
    routing = Routing(settings, config)
    try:
        monitor = DriftMonitor(settings, lambda: (config, routing), db)
        for name in names or ():
            if name not in monitor.names:
                raise ValidationError(
                    f"No synthetic model {name!r} in the gateway config.",
                    hint=f"Named synthetic models: {', '.join(monitor.names) or 'none'}.",
                )
        window: dict[str, Any] = {}
        if window_hours is not None:
            window["window_hours"] = window_hours
        if max_requests is not None:
            window["max_requests"] = max_requests
        reports = monitor.refresh(list(names) if names else None, **window)
        return reports, dict(monitor.errors)
    finally:
        routing.close()
        db.close()
