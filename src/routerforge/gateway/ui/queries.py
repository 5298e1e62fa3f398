"""Every query of the dashboard, in SQLAlchemy Core (SQLite and PostgreSQL), aggregated in SQL and bounded.

Window filters are ``created_at >= since AND created_at < until`` and use ``ix_gw_requests_ui_time``
(``created_at`` first, covering the columns the traffic page aggregates: migration ``0110_ui_indexes``), so
counts, costs and latency samples are read from the index without touching the wide prompt/answer rows.
The traffic tables read whole settled hours from the hourly roll-ups of :mod:`.rollup` and group the
rest of the window (its first partial hour, its last couple of hours) straight from the log. Every list query has a ``LIMIT``. Percentiles come from a bounded,
stratified sample: the window is cut into :data:`BUCKETS` buckets and the latest :data:`PER_BUCKET`
requests of each are read in one ``UNION ALL`` (exact when a bucket holds fewer), then
``numpy.percentile`` runs over at most ``BUCKETS·PER_BUCKET`` values.
Text search reads at most :data:`TEXT_SCAN_ROWS` newest rows of the window (the page says so).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import DateTime, Engine, and_, bindparam, case, func, literal, or_, select, union_all

from routerforge.errors import ValidationError
from routerforge.gateway.db import GwAttempt, GwFeedback, GwRequest, utcnow
from routerforge.gateway.ui import rollup

_REQ = GwRequest.__table__
_ATT = GwAttempt.__table__
_FB = GwFeedback.__table__

WINDOWS: dict[str, dt.timedelta] = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
DEFAULT_WINDOW = "24h"
BUCKETS = 24  # bars and latency points per window
PER_BUCKET = 250  # latency sample: the latest rows of each bucket (at most 6,000 values per percentile)
MAX_SCAN_GROUPS = 20_000  # groups read per part of a window for the traffic tables
TEXT_SCAN_ROWS = 50_000
MAX_GROUPS = 200
PAGE_SIZE = 50
REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,40}")


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[since, until)`` in naive UTC, with the label the page shows."""

    name: str
    since: dt.datetime
    until: dt.datetime

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()

    def slices(self, n: int) -> list[tuple[dt.datetime, dt.datetime]]:
        step = (self.until - self.since) / n
        return [(self.since + step * i, self.since + step * (i + 1)) for i in range(n)]


def _parse_time(value: str, param: str) -> dt.datetime:
    shown = value[:40]
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValidationError(
            f"Cannot read {param}={shown!r} as a time.",
            param=param,
            hint="Use 2026-01-31 or 2026-01-31T12:00.",
        ) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def parse_window(
    name: str | None, start: str | None = None, end: str | None = None, *, now: dt.datetime | None = None
) -> Window:
    """``1h``/``24h``/``7d``/``30d`` ending now, or ``custom`` from ``start`` to ``end`` (ISO times, UTC)."""
    now = now or utcnow()
    key = (name or DEFAULT_WINDOW).strip()
    if key in WINDOWS:
        return Window(key, now - WINDOWS[key], now + dt.timedelta(seconds=1))
    if key != "custom":
        raise ValidationError(
            f"Unknown window {key[:20]!r}.", param="window", hint="Use 1h, 24h, 7d, 30d or custom."
        )
    if not start:
        raise ValidationError("A custom window needs a start time.", param="start")
    since = _parse_time(start, "start")
    until = _parse_time(end, "end") if end else now
    if until <= since:
        raise ValidationError("The window's end must be after its start.", param="end")
    if until - since > dt.timedelta(days=366):
        raise ValidationError("A custom window may span at most 366 days.", param="start")
    return Window("custom", since, until)


def _in(w: Window) -> Any:
    return and_(_REQ.c.created_at >= w.since, _REQ.c.created_at < w.until)


def _feedback_by(groups: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Mean rating and count per ``key`` (``model`` or ``policy``) from feedback groups."""
    acc: dict[str, list[float]] = {}
    for g in groups:
        a = acc.setdefault(str(g[key]), [0.0, 0.0])
        a[0] += g["ratings"]
        a[1] += g["rating_sum"]
    rows: list[dict[str, Any]] = [
        {"key": k, "ratings": int(n), "mean_rating": (s / n if n else None)} for k, (n, s) in acc.items()
    ]
    return sorted(rows, key=lambda r: (-r["ratings"], r["key"]))[:MAX_GROUPS]


def _pct(values: Any, qs: Sequence[float] = (50, 95, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles of ``values`` (``None`` and NaN dropped)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {f"p{int(q)}": None for q in qs}
    out = np.percentile(arr, list(qs), method="nearest")
    return {f"p{int(q)}": float(v) for q, v in zip(qs, out, strict=True)}


@dataclass
class RequestFilters:
    """The request search form: text in the prompt, tenant, model (any role), status, window, page."""

    window: Window
    text: str = ""
    tenant: str = ""
    model: str = ""
    status: str = ""  # "", "ok", "error", or a 3-digit code
    before: dt.datetime | None = None
    limit: int = PAGE_SIZE
    notes: list[str] = field(default_factory=list)

    def status_clause(self) -> Any:
        s = self.status.strip()
        if not s:
            return None
        if s == "ok":
            return _REQ.c.status < 400
        if s == "error":
            return _REQ.c.status >= 400
        if s.isdigit() and len(s) == 3:
            return _REQ.c.status == int(s)
        raise ValidationError(
            f"Unknown status filter {s[:10]!r}.", param="status", hint="ok, error or a code."
        )


@functools.cache
def _latency_sample() -> Any:
    """The latest :data:`PER_BUCKET` rows of each of :data:`BUCKETS` slices ``[a{i}, b{i})`` in one
    ``UNION ALL`` (built once; the slice bounds are bound parameters)."""
    parts = []
    for i in range(BUCKETS):
        parts.append(
            select(literal(i).label("bucket"), _REQ.c.routing_ms, _REQ.c.upstream_ms)
            .where(
                _REQ.c.created_at >= bindparam(f"a{i}", type_=DateTime()),
                _REQ.c.created_at < bindparam(f"b{i}", type_=DateTime()),
            )
            .order_by(_REQ.c.created_at.desc())
            .limit(PER_BUCKET)
            .subquery()
        )
    return union_all(*[select(p.c.bucket, p.c.routing_ms, p.c.upstream_ms) for p in parts])


class DashboardQueries:
    """The dashboard's reads over one engine (synchronous: call from worker threads)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- traffic -------------------------------------------------------------------------------------
    def traffic(
        self, w: Window, budget_tenants: Sequence[str] = (), *, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Everything the traffic page shows (``budget_tenants``: tenants whose budgets are shown). Whole
        settled hours come from the hourly roll-ups (:mod:`.rollup`), the rest of the window from the log."""
        now = now or utcnow()
        full, live = rollup.split(w.since, w.until, now)
        day0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month0 = day0.replace(day=1)
        settled = rollup.settled_until(now)
        rolled = rollup.ensure(self.engine, *full) if full else 0
        days = rollup.whole_days(*full) if full else None
        if days is not None:
            rollup.ensure_days(self.engine, *days)
        if budget_tenants and month0 < settled:
            rolled += rollup.ensure(self.engine, month0, settled)
        with self.engine.connect() as conn:
            models = rollup.model_groups(conn, *full, MAX_SCAN_GROUPS) if full else []
            tenants = rollup.tenant_groups(conn, *full, MAX_SCAN_GROUPS) if full else []
            feedback = rollup.feedback_groups(conn, *full, MAX_SCAN_GROUPS) if full else []
            tails: dict[tuple[dt.datetime, dt.datetime], list[dict[str, Any]]] = {}
            for a, b in live:
                models += rollup.model_groups_raw(conn, a, b, MAX_SCAN_GROUPS)
                tails[(a, b)] = rollup.tenant_groups_raw(conn, a, b, MAX_SCAN_GROUPS)
                tenants += tails[(a, b)]
                feedback += rollup.feedback_groups_raw(conn, a, b, MAX_SCAN_GROUPS)
            volume = self._volume(conn, w, full, live)
            budgets = self._budgets(conn, budget_tenants, day0, month0, settled, now, w.until, tails)
        complete = max(len(models), len(tenants), len(feedback)) < MAX_SCAN_GROUPS
        return {
            **self.summarise(models, tenants),
            "complete": complete,
            "volume": volume,
            "errors": self.recent_errors(w),
            "budgets": budgets,
            "latency": self.latency(w),
            "feedback_model": _feedback_by(feedback, "model"),
            "feedback_policy": _feedback_by(feedback, "policy"),
            "rolled_up_now": rolled,
            "from_rollups": full,
        }

    @staticmethod
    def summarise(models: list[dict[str, Any]], tenants: list[dict[str, Any]]) -> dict[str, Any]:
        """Totals, status counts, the model distribution, fallback pairs and per-tenant window cost."""
        summary = {
            "requests": sum(g["requests"] for g in models),
            "errors": sum(g["requests"] for g in models if g["status"] >= 400),
            "aborted": sum(g["requests"] for g in models if g["status"] == 499),
            "fallbacks": sum(g["fallbacks"] for g in models),
            "cost_usd": sum(g["cost_usd"] for g in models),
        }
        status: dict[int, int] = {}
        dist: dict[tuple[str, str], dict[str, Any]] = {}
        pairs: dict[tuple[str, str], int] = {}
        for g in models:
            status[g["status"]] = status.get(g["status"], 0) + g["requests"]
            asked = g["asked"] or "(no model named)"  # refused before the body was read
            m = dist.setdefault(
                (asked, g["model"]),
                {
                    "synthetic_model": asked,
                    "model": g["model"],
                    "requests": 0,
                    "cost_usd": 0.0,
                    "errors": 0,
                },
            )
            m["requests"] += g["requests"]
            m["cost_usd"] += g["cost_usd"]
            m["errors"] += g["requests"] if g["status"] >= 400 else 0
            if g["fallbacks"]:
                key = (g["chosen"], g["model"])
                pairs[key] = pairs.get(key, 0) + g["fallbacks"]
        per_tenant: dict[str, dict[str, Any]] = {}
        for t in tenants:
            row = per_tenant.setdefault(
                t["tenant"], {"tenant": t["tenant"], "requests": 0, "window_usd": 0.0}
            )
            row["requests"] += t["requests"]
            row["window_usd"] += t["cost_usd"]
        return {
            "summary": summary,
            "status": [{"status": s, "requests": n} for s, n in sorted(status.items())],
            "models": sorted(dist.values(), key=lambda m: (-m["requests"], m["synthetic_model"], m["model"]))[
                :MAX_GROUPS
            ],
            "fallbacks": [
                {"chosen_model": c, "answered_model": a, "requests": n}
                for (c, a), n in sorted(pairs.items(), key=lambda kv: -kv[1])[:20]
            ],
            "tenants": sorted(per_tenant.values(), key=lambda t: (-t["window_usd"], t["tenant"]))[
                :MAX_GROUPS
            ],
        }

    def _volume(
        self,
        conn: Any,
        w: Window,
        full: tuple[dt.datetime, dt.datetime] | None,
        live: list[tuple[dt.datetime, dt.datetime]],
    ) -> list[dict[str, Any]]:
        """Requests and errors per bucket: rolled-up hours fall in the bucket holding their start; the live
        parts are counted exactly per bucket (index range counts in one ``UNION ALL``)."""
        edges = w.slices(BUCKETS)
        width = (w.until - w.since) / BUCKETS
        counts = [[0, 0] for _ in edges]
        if full:
            for hour, n, errors in rollup.hourly_volume(conn, *full):
                k = min(BUCKETS - 1, max(0, int((hour - w.since) / width)))
                counts[k][0] += n
                counts[k][1] += errors
        parts = []
        for i, (a, b) in enumerate(edges):
            for la, lb in live:
                lo, hi = max(a, la), min(b, lb)
                if hi > lo:
                    parts.append(
                        select(
                            literal(i).label("bucket"),
                            func.count().label("requests"),
                            func.sum(case((_REQ.c.status >= 400, 1), else_=0)).label("errors"),
                        ).where(_REQ.c.created_at >= lo, _REQ.c.created_at < hi)
                    )
        if parts:
            for r in conn.execute(union_all(*parts)).all():
                counts[int(r[0])][0] += int(r[1])
                counts[int(r[0])][1] += int(r[2] or 0)
        return [
            {"start": a, "requests": c[0], "errors": c[1]} for (a, _b), c in zip(edges, counts, strict=True)
        ]

    def _budgets(
        self,
        conn: Any,
        tenants: Sequence[str],
        day0: dt.datetime,
        month0: dt.datetime,
        settled: dt.datetime,
        now: dt.datetime,
        until: dt.datetime,
        tails: dict[tuple[dt.datetime, dt.datetime], list[dict[str, Any]]],
    ) -> dict[str, dict[str, Any]]:
        """Today's and this month's spend (UTC) of each tenant, summed from the request log (roll-ups for
        settled hours, the log after; ``tails``: log scans already made for the window, reused)."""
        out: dict[str, dict[str, Any]] = {t: {"day_usd": 0.0, "month_usd": 0.0} for t in tenants}
        if not tenants:
            return out
        end = max(until, now + dt.timedelta(seconds=1))
        for key, start in (("day_usd", day0), ("month_usd", month0)):
            cut = max(start, settled)
            groups = rollup.tenant_groups(conn, start, cut, MAX_SCAN_GROUPS) if cut > start else []
            tail = next((t for (a, b), t in tails.items() if a == cut and b >= now), None)
            if tail is None:
                tail = tails[(cut, end)] = rollup.tenant_groups_raw(conn, cut, end, MAX_SCAN_GROUPS)
            groups += tail
            for g in groups:
                if g["tenant"] in out:
                    out[g["tenant"]][key] += g["cost_usd"]
        return out

    def recent_errors(self, w: Window, limit: int = 10) -> list[dict[str, Any]]:
        stmt = (
            select(
                _REQ.c.id,
                _REQ.c.created_at,
                _REQ.c.tenant,
                _REQ.c.requested_model,
                _REQ.c.status,
                func.substr(_REQ.c.error, 1, 300).label("error"),
            )
            .where(_in(w), _REQ.c.status >= 400)
            .order_by(_REQ.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def latency(self, w: Window) -> dict[str, Any]:
        """p50/p95/p99 of routing and upstream latency over the window and per bucket (bounded sample)."""
        params: dict[str, dt.datetime] = {}
        for i, (a, b) in enumerate(w.slices(BUCKETS)):
            params[f"a{i}"], params[f"b{i}"] = a, b
        with self.engine.connect() as conn:
            rows = conn.execute(_latency_sample(), params).all()
        data = np.array([tuple(r) for r in rows], dtype=np.float64).reshape(-1, 3)  # None → NaN
        buckets: list[dict[str, Any]] = []
        for k, (a, _b) in enumerate(w.slices(BUCKETS)):
            sub = data[data[:, 0] == k]
            buckets.append(
                {
                    "start": a,
                    "sampled": int(sub.shape[0]),
                    "routing_ms": _pct(sub[:, 1]),
                    "upstream_ms": _pct(sub[:, 2]),
                }
            )
        return {
            "sampled": len(rows),
            "routing_ms": _pct(data[:, 1]),
            "upstream_ms": _pct(data[:, 2]),
            "buckets": buckets,
        }

    # -- requests ------------------------------------------------------------------------------------
    def search(self, f: RequestFilters) -> list[dict[str, Any]]:
        """Requests matching the filters, newest first (at most ``f.limit``)."""
        conds: list[Any] = [_in(f.window)]
        if f.before is not None:
            conds.append(_REQ.c.created_at < f.before)
        if f.tenant:
            conds.append(_REQ.c.tenant == f.tenant)
        if f.model:
            conds.append(
                or_(
                    _REQ.c.synthetic_model == f.model,
                    _REQ.c.answered_model == f.model,
                    _REQ.c.chosen_model == f.model,
                    _REQ.c.requested_model == f.model,
                )
            )
        status = f.status_clause()
        if status is not None:
            conds.append(status)
        cols = [
            _REQ.c.id,
            _REQ.c.created_at,
            _REQ.c.tenant,
            _REQ.c.requested_model,
            _REQ.c.synthetic_model,
            _REQ.c.answered_model,
            _REQ.c.status,
            _REQ.c.cost_usd,
            _REQ.c.total_ms,
            func.substr(_REQ.c.prompt, 1, 160).label("prompt"),
        ]
        limit = max(1, min(f.limit, 200))
        text = f.text.strip()
        if text:
            # a request id pasted in the box finds that request too
            exact = select(*cols).where(_REQ.c.id == text) if REQUEST_ID.fullmatch(text) else None
            inner = (
                select(*cols[:-1], _REQ.c.prompt.label("full_prompt"))
                .where(*conds)
                .order_by(_REQ.c.created_at.desc())
                .limit(TEXT_SCAN_ROWS)
                .subquery()
            )
            stmt = (
                select(
                    *[inner.c[c.key] for c in cols[:-1]],
                    func.substr(inner.c.full_prompt, 1, 160).label("prompt"),
                )
                .where(inner.c.full_prompt.icontains(text, autoescape=True))
                .order_by(inner.c.created_at.desc())
                .limit(limit)
            )
            f.notes.append(
                f"Text search reads the newest {TEXT_SCAN_ROWS:,} requests of the window; narrow the window "
                "to search further back."
            )
            with self.engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(stmt).mappings()]
                if exact is not None and not any(r["id"] == text for r in rows):
                    rows = [dict(r) for r in conn.execute(exact).mappings()] + rows
            return rows[:limit]
        stmt = select(*cols).where(*conds).order_by(_REQ.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def request(self, request_id: str) -> dict[str, Any] | None:
        """One logged request with its attempts and feedback, or ``None``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(_REQ).where(_REQ.c.id == request_id)).mappings().first()
            if row is None:
                return None
            out = dict(row)
            atts = select(_ATT).where(_ATT.c.request_id == request_id).order_by(_ATT.c.seq).limit(100)
            out["attempts"] = [dict(a) for a in conn.execute(atts).mappings()]
            fbs = select(_FB).where(_FB.c.request_id == request_id).order_by(_FB.c.created_at).limit(100)
            out["feedback"] = [dict(x) for x in conn.execute(fbs).mappings()]
        return out

    def tenants_and_models(
        self, extra_tenants: Sequence[str] = (), extra_models: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Tenants (``gw_tenants`` plus ``extra_tenants``) and models (``extra_models`` plus those in the
        hourly roll-up) for the filter's choices: small tables, no scan of the log."""
        from routerforge.gateway.db import GwTenant

        with self.engine.connect() as conn:
            tenants = [r[0] for r in conn.execute(select(GwTenant.name).order_by(GwTenant.name).limit(500))]
            t = rollup.UiHourlyModels.__table__
            models = [r[0] for r in conn.execute(select(t.c.asked).group_by(t.c.asked).limit(200))]
            models += [r[0] for r in conn.execute(select(t.c.model).group_by(t.c.model).limit(200))]
        return sorted({*tenants, *extra_tenants}), sorted({*models, *extra_models} - {rollup.NO_ANSWER, ""})

    # -- eval data -----------------------------------------------------------------------------------
    def eval_answers(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Every eval record of a stored prompt with exactly this text (matched by text hash)."""
        from routerforge.data.records import text_hash
        from routerforge.data.schema import DatasetRow, EvalRecordRow, PromptRow

        p, d, r = PromptRow.__table__, DatasetRow.__table__, EvalRecordRow.__table__
        stmt = (
            select(
                d.c.name.label("dataset"),
                p.c.id.label("prompt_id"),
                p.c.key,
                p.c.category,
                r.c.model,
                r.c.score,
                r.c.cost_usd,
                r.c.latency_ms,
                r.c.response,
                r.c.judge,
            )
            .select_from(p.join(d, d.c.id == p.c.dataset_id).join(r, r.c.prompt_id == p.c.id))
            .where(p.c.text_hash == text_hash(text))
            .order_by(d.c.name, r.c.score.desc().nulls_last(), r.c.model)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(x) for x in conn.execute(stmt).mappings()]

    def search_eval(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Stored eval prompts containing ``text`` (bounded scan), with how many records each has."""
        from routerforge.data.schema import DatasetRow, EvalRecordRow, PromptRow

        p, d, r = PromptRow.__table__, DatasetRow.__table__, EvalRecordRow.__table__
        inner = (
            select(p.c.id, p.c.dataset_id, p.c.key, p.c.text)
            .order_by(p.c.id.desc())
            .limit(TEXT_SCAN_ROWS)
            .subquery()
        )
        n_records = select(func.count()).where(r.c.prompt_id == inner.c.id).scalar_subquery()
        stmt = (
            select(
                inner.c.id,
                d.c.name.label("dataset"),
                inner.c.key,
                func.substr(inner.c.text, 1, 160).label("text"),
                n_records.label("records"),
            )
            .select_from(inner.join(d, d.c.id == inner.c.dataset_id))
            .where(inner.c.text.icontains(text, autoescape=True))
            .order_by(inner.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(x) for x in conn.execute(stmt).mappings()]

    def eval_prompt(self, prompt_id: int) -> dict[str, Any] | None:
        """One stored eval prompt with every model's record."""
        from routerforge.data.schema import DatasetRow, EvalRecordRow, PromptRow

        p, d, r = PromptRow.__table__, DatasetRow.__table__, EvalRecordRow.__table__
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(p, d.c.name.label("dataset"))
                    .select_from(p.join(d, d.c.id == p.c.dataset_id))
                    .where(p.c.id == prompt_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            out = dict(row)
            recs = (
                select(r)
                .where(r.c.prompt_id == prompt_id)
                .order_by(r.c.score.desc().nulls_last(), r.c.model)
                .limit(200)
            )
            out["records"] = [dict(x) for x in conn.execute(recs).mappings()]
        return out
