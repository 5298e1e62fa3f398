"""Hourly roll-ups of the request log, so the traffic page stays fast over 30 days of a busy gateway.

A settled hour — one that ended more than :data:`SETTLE` ago, so every request that started in it has been
logged (requests are logged when they end) — is summed once, the first time a traffic page needs it, into
three small tables (migration ``0110_ui_indexes``):

* ``gw_ui_hourly_models``: per (hour, asked-for model, answering model, chosen model, status): requests,
  cost, fallbacks;
* ``gw_ui_hourly_tenants``: per (hour, tenant): requests, cost;
* ``gw_ui_hourly_feedback``: per (hour the rating was given, model, policy): ratings and their sum;

and marked done in ``gw_ui_hours``. A window then reads the roll-ups for its whole settled hours and scans
the log only for the rest (the partial first hour and the last :data:`SETTLE` or so). Writes are
``INSERT … ON CONFLICT DO NOTHING`` in one transaction per hour, so several processes may roll up at once.

What this costs in accuracy, documented on the page: a row logged more than :data:`SETTLE` after its
request started (a request running that long, a clock far behind) is not in its hour's roll-up; rows
deleted later by retention stay counted in the roll-ups (the request search reads the log itself).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    and_,
    case,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.orm import Mapped, mapped_column

from routerforge.data.schema import Base
from routerforge.data.sqlutil import dialect_insert
from routerforge.gateway.db import GwFeedback, GwRequest, utcnow

SETTLE = dt.timedelta(hours=2)
HOUR = dt.timedelta(hours=1)
MAX_HOURS_PER_VIEW = 24 * 400  # a window spans at most 366 days (queries.parse_window)
_REQ = GwRequest.__table__
_FB = GwFeedback.__table__
NO_ANSWER = "(no answer)"
NO_POLICY = "(none)"


class UiHour(Base):
    __tablename__ = "gw_ui_hours"

    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    rolled_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    errors: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class UiDay(Base):
    __tablename__ = "gw_ui_days"

    day: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    rolled_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


class UiDailyModels(Base):
    """``gw_ui_hourly_models`` summed over whole UTC days (filled once all 24 hours are rolled up)."""

    __tablename__ = "gw_ui_daily_models"

    day: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    asked: Mapped[str] = mapped_column(String(256), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    chosen: Mapped[str] = mapped_column(String(256), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False)
    fallbacks: Mapped[int] = mapped_column(Integer, nullable=False)


class UiHourlyModels(Base):
    __tablename__ = "gw_ui_hourly_models"

    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    asked: Mapped[str] = mapped_column(String(256), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    chosen: Mapped[str] = mapped_column(String(256), primary_key=True)  # "" when none was chosen
    status: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False)
    fallbacks: Mapped[int] = mapped_column(Integer, nullable=False)


class UiHourlyTenants(Base):
    __tablename__ = "gw_ui_hourly_tenants"

    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False)


class UiHourlyFeedback(Base):
    __tablename__ = "gw_ui_hourly_feedback"

    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    policy: Mapped[str] = mapped_column(String(32), primary_key=True)
    ratings: Mapped[int] = mapped_column(Integer, nullable=False)
    rating_sum: Mapped[float] = mapped_column(Float, nullable=False)


_HOURS = UiHour.__table__
_DAYS = UiDay.__table__
_DAILY = UiDailyModels.__table__
DAY = dt.timedelta(days=1)
_MODELS = UiHourlyModels.__table__
_TENANTS = UiHourlyTenants.__table__
_FEEDBACK = UiHourlyFeedback.__table__
_LOCK = threading.Lock()


def floor_hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: dt.datetime) -> dt.datetime:
    f = floor_hour(t)
    return f if f == t else f + HOUR


def settled_until(now: dt.datetime | None = None) -> dt.datetime:
    """Hours starting before this have ended more than :data:`SETTLE` ago."""
    return floor_hour((now or utcnow()) - SETTLE)


def hours(a: dt.datetime, b: dt.datetime) -> Iterator[dt.datetime]:
    h = a
    while h < b:
        yield h
        h += HOUR


def split(
    since: dt.datetime, until: dt.datetime, now: dt.datetime | None = None
) -> tuple[tuple[dt.datetime, dt.datetime] | None, list[tuple[dt.datetime, dt.datetime]]]:
    """``[since, until)`` as (whole settled hours read from the roll-ups, the rest read from the log)."""
    h0 = ceil_hour(since)
    h1 = min(floor_hour(until), settled_until(now))
    if h1 <= h0:
        return None, [(since, until)]
    live = [(a, b) for a, b in ((since, h0), (h1, until)) if b > a]
    return (h0, h1), live


# -- the raw scans (also used for the live parts of a window) ------------------------------------------
def _const(value: str) -> Any:
    """A constant written into the SQL (not a bound parameter), so PostgreSQL sees the same expression in
    SELECT and GROUP BY (our own fixed strings only: never user input)."""
    assert "'" not in value
    return literal_column(f"'{value}'", String)


def _asked() -> Any:
    return func.coalesce(_REQ.c.synthetic_model, _REQ.c.requested_model)


def _answered() -> Any:
    return func.coalesce(_REQ.c.answered_model, _REQ.c.chosen_model, _const(NO_ANSWER))


def _fallback() -> Any:
    return and_(
        _REQ.c.answered_model.is_not(None),
        _REQ.c.chosen_model.is_not(None),
        _REQ.c.answered_model != _REQ.c.chosen_model,
    )


def _in(a: dt.datetime, b: dt.datetime) -> Any:
    return and_(_REQ.c.created_at >= a, _REQ.c.created_at < b)


def model_groups_raw(conn: Any, a: dt.datetime, b: dt.datetime, limit: int) -> list[dict[str, Any]]:
    chosen = func.coalesce(_REQ.c.chosen_model, _const(""))
    stmt = (
        select(
            _asked().label("asked"),
            _answered().label("model"),
            chosen.label("chosen"),
            _REQ.c.status,
            func.count().label("requests"),
            func.coalesce(func.sum(_REQ.c.cost_usd), 0.0).label("cost_usd"),
            func.sum(case((_fallback(), 1), else_=0)).label("fallbacks"),
        )
        .where(_in(a, b))
        .group_by(_asked(), _answered(), chosen, _REQ.c.status)
        .limit(limit)
    )
    return [
        {
            **dict(r),
            "requests": int(r["requests"]),
            "cost_usd": float(r["cost_usd"]),
            "fallbacks": int(r["fallbacks"] or 0),
        }
        for r in conn.execute(stmt).mappings()
    ]


def tenant_groups_raw(conn: Any, a: dt.datetime, b: dt.datetime, limit: int) -> list[dict[str, Any]]:
    stmt = (
        select(
            _REQ.c.tenant,
            func.count().label("requests"),
            func.coalesce(func.sum(_REQ.c.cost_usd), 0.0).label("cost_usd"),
        )
        .where(_in(a, b))
        .group_by(_REQ.c.tenant)
        .limit(limit)
    )
    return [
        {"tenant": r[0], "requests": int(r[1]), "cost_usd": float(r[2])} for r in conn.execute(stmt).all()
    ]


def _ratings(a: dt.datetime, b: dt.datetime) -> Any:
    """The ratings given in ``[a, b)`` with their request's answering model and policy, one row each
    (``rated_at``, ``rating``, ``model``, ``policy``). A rating recorded since revision 0150 carries its
    request's ``created_at`` and is joined on (id, created_at): on a log partitioned by time PostgreSQL then
    probes the one partition holding the request instead of every partition's key index; older ratings
    (NULL there) are joined by id alone."""

    def part(on: Any, *where: Any) -> Any:
        return (
            select(
                _FB.c.created_at.label("rated_at"),
                _FB.c.rating.label("rating"),
                _answered().label("model"),
                func.coalesce(_REQ.c.policy, _const(NO_POLICY)).label("policy"),
            )
            .select_from(_FB.join(_REQ, on))
            .where(_FB.c.created_at >= a, _FB.c.created_at < b, *where)
        )

    keyed = and_(_REQ.c.id == _FB.c.request_id, _REQ.c.created_at == _FB.c.request_created_at)
    legacy = part(_REQ.c.id == _FB.c.request_id, _FB.c.request_created_at.is_(None))
    return union_all(part(keyed), legacy).subquery()


def feedback_groups_raw(conn: Any, a: dt.datetime, b: dt.datetime, limit: int) -> list[dict[str, Any]]:
    r = _ratings(a, b)
    stmt = (
        select(
            r.c.model,
            r.c.policy,
            func.count().label("ratings"),
            func.sum(r.c.rating).label("rating_sum"),
        )
        .group_by(r.c.model, r.c.policy)
        .limit(limit)
    )
    return [
        {"model": r[0], "policy": r[1], "ratings": int(r[2]), "rating_sum": float(r[3] or 0.0)}
        for r in conn.execute(stmt).all()
    ]


# -- rolling up ----------------------------------------------------------------------------------------
CHUNK_HOURS = 24 * 7  # hours rolled up per transaction (one grouped scan per table per chunk)


def _hour_of(conn: Any, column: Any) -> Any:
    """``column`` truncated to its hour, in SQL (the one dialect-specific expression here)."""
    if conn.dialect.name == "postgresql":
        return func.date_trunc(literal_column("'hour'"), column)
    return func.strftime(literal_column("'%Y-%m-%d %H:00:00'"), column)


def _as_hour(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return dt.datetime.fromisoformat(str(value))


def ensure(engine: Engine, a: dt.datetime, b: dt.datetime) -> int:
    """Roll up every hour in ``[a, b)`` (whole, settled hours) not rolled up yet; returns how many."""
    wanted = list(hours(a, b))[:MAX_HOURS_PER_VIEW]
    if not wanted:
        return 0
    with _LOCK:
        with engine.connect() as conn:
            n_done = conn.execute(
                select(func.count()).where(_HOURS.c.hour >= wanted[0], _HOURS.c.hour <= wanted[-1])
            ).scalar_one()
            if n_done >= len(wanted):
                return 0
            done = {
                _as_hour(r[0])
                for r in conn.execute(select(_HOURS.c.hour).where(_HOURS.c.hour >= a, _HOURS.c.hour < b))
            }
        missing = [h for h in wanted if h not in done]
        # contiguous runs of missing hours, at most CHUNK_HOURS each
        runs: list[list[dt.datetime]] = []
        for h in missing:
            if runs and runs[-1][-1] + HOUR == h and len(runs[-1]) < CHUNK_HOURS:
                runs[-1].append(h)
            else:
                runs.append([h])
        for run in runs:
            _roll(engine, run)
    return len(missing)


def ensure_days(engine: Engine, a: dt.datetime, b: dt.datetime) -> int:
    """Sum the hourly model roll-up of every whole UTC day in ``[a, b)`` (its 24 hours rolled up) that is
    not summed yet into ``gw_ui_daily_models``; returns how many days were summed."""
    days = [a + DAY * i for i in range(int((b - a) / DAY))]
    if not days:
        return 0
    with _LOCK:
        with engine.connect() as conn:
            done = {
                _as_hour(r[0])
                for r in conn.execute(select(_DAYS.c.day).where(_DAYS.c.day >= a, _DAYS.c.day < b))
            }
        todo = [d for d in days if d not in done]
        for d in todo:
            with engine.begin() as conn:
                ins = dialect_insert(conn)
                rows = conn.execute(
                    select(
                        _MODELS.c.asked,
                        _MODELS.c.model,
                        _MODELS.c.chosen,
                        _MODELS.c.status,
                        func.sum(_MODELS.c.requests),
                        func.sum(_MODELS.c.cost_usd),
                        func.sum(_MODELS.c.fallbacks),
                    )
                    .where(_MODELS.c.hour >= d, _MODELS.c.hour < d + DAY)
                    .group_by(_MODELS.c.asked, _MODELS.c.model, _MODELS.c.chosen, _MODELS.c.status)
                ).all()
                if rows:
                    conn.execute(
                        ins(_DAILY).on_conflict_do_nothing(),
                        [
                            {
                                "day": d,
                                "asked": r[0],
                                "model": r[1],
                                "chosen": r[2],
                                "status": int(r[3]),
                                "requests": int(r[4] or 0),
                                "cost_usd": float(r[5] or 0.0),
                                "fallbacks": int(r[6] or 0),
                            }
                            for r in rows
                        ],
                    )
                conn.execute(ins(_DAYS).on_conflict_do_nothing(), [{"day": d, "rolled_at": utcnow()}])
    return len(todo)


def _roll(engine: Engine, run: list[dt.datetime]) -> None:
    """Sum the contiguous hours ``run`` into the roll-up tables, in one transaction."""
    a, b = run[0], run[-1] + HOUR
    with engine.begin() as conn:
        ins = dialect_insert(conn)
        hour = _hour_of(conn, _REQ.c.created_at)
        chosen = func.coalesce(_REQ.c.chosen_model, _const(""))
        models = conn.execute(
            select(
                hour,
                _asked(),
                _answered(),
                chosen,
                _REQ.c.status,
                func.count(),
                func.coalesce(func.sum(_REQ.c.cost_usd), 0.0),
                func.sum(case((_fallback(), 1), else_=0)),
            )
            .where(_in(a, b))
            .group_by(hour, _asked(), _answered(), chosen, _REQ.c.status)
        ).all()
        tenants = conn.execute(
            select(hour, _REQ.c.tenant, func.count(), func.coalesce(func.sum(_REQ.c.cost_usd), 0.0))
            .where(_in(a, b))
            .group_by(hour, _REQ.c.tenant)
        ).all()
        rated = _ratings(a, b)
        fb_hour = _hour_of(conn, rated.c.rated_at)
        feedback = conn.execute(
            select(fb_hour, rated.c.model, rated.c.policy, func.count(), func.sum(rated.c.rating)).group_by(
                fb_hour, rated.c.model, rated.c.policy
            )
        ).all()
        if models:
            conn.execute(
                ins(_MODELS).on_conflict_do_nothing(),
                [
                    {
                        "hour": _as_hour(r[0]),
                        "asked": r[1],
                        "model": r[2],
                        "chosen": r[3],
                        "status": r[4],
                        "requests": int(r[5]),
                        "cost_usd": float(r[6]),
                        "fallbacks": int(r[7] or 0),
                    }
                    for r in models
                ],
            )
        if tenants:
            conn.execute(
                ins(_TENANTS).on_conflict_do_nothing(),
                [
                    {"hour": _as_hour(r[0]), "tenant": r[1], "requests": int(r[2]), "cost_usd": float(r[3])}
                    for r in tenants
                ],
            )
        if feedback:
            conn.execute(
                ins(_FEEDBACK).on_conflict_do_nothing(),
                [
                    {
                        "hour": _as_hour(r[0]),
                        "model": r[1],
                        "policy": r[2],
                        "ratings": int(r[3]),
                        "rating_sum": float(r[4] or 0.0),
                    }
                    for r in feedback
                ],
            )
        now = utcnow()
        volume: dict[dt.datetime, list[int]] = {h: [0, 0] for h in run}
        for r in models:
            v = volume.setdefault(_as_hour(r[0]), [0, 0])
            v[0] += int(r[5])
            v[1] += int(r[5]) if int(r[4]) >= 400 else 0
        conn.execute(
            ins(_HOURS).on_conflict_do_nothing(),
            [{"hour": h, "rolled_at": now, "requests": v[0], "errors": v[1]} for h, v in volume.items()],
        )


# -- reading a window ----------------------------------------------------------------------------------
def whole_days(a: dt.datetime, b: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The whole UTC days inside the hour range ``[a, b)``, or None."""
    d0 = a.replace(hour=0) if a.hour == 0 else a.replace(hour=0) + DAY
    d1 = b.replace(hour=0)
    return (d0, d1) if d1 > d0 else None


def _model_rows(
    conn: Any, table: Any, key: Any, a: dt.datetime, b: dt.datetime, limit: int
) -> list[dict[str, Any]]:
    stmt = (
        select(
            table.c.asked,
            table.c.model,
            table.c.chosen,
            table.c.status,
            func.sum(table.c.requests),
            func.sum(table.c.cost_usd),
            func.sum(table.c.fallbacks),
        )
        .where(key >= a, key < b)
        .group_by(table.c.asked, table.c.model, table.c.chosen, table.c.status)
        .limit(limit)
    )
    return [
        {
            "asked": r[0],
            "model": r[1],
            "chosen": r[2],
            "status": int(r[3]),
            "requests": int(r[4] or 0),
            "cost_usd": float(r[5] or 0.0),
            "fallbacks": int(r[6] or 0),
        }
        for r in conn.execute(stmt).all()
    ]


def model_groups(conn: Any, a: dt.datetime, b: dt.datetime, limit: int) -> list[dict[str, Any]]:
    """The roll-ups' groups for the whole hours ``[a, b)``: whole days from the daily table when they are
    summed there (:func:`ensure_days`), the other hours from the hourly table."""
    days = whole_days(a, b)
    if days is not None:
        n_days = conn.execute(
            select(func.count()).where(_DAYS.c.day >= days[0], _DAYS.c.day < days[1])
        ).scalar_one()
        if n_days < round((days[1] - days[0]) / DAY):
            days = None  # not summed per day (yet): read the hours
    if days is None:
        return _model_rows(conn, _MODELS, _MODELS.c.hour, a, b, limit)
    out = _model_rows(conn, _DAILY, _DAILY.c.day, days[0], days[1], limit)
    for lo, hi in ((a, days[0]), (days[1], b)):
        if hi > lo:
            out += _model_rows(conn, _MODELS, _MODELS.c.hour, lo, hi, limit)
    return out


def hourly_volume(conn: Any, a: dt.datetime, b: dt.datetime) -> list[tuple[dt.datetime, int, int]]:
    """(hour, requests, errors) for each rolled-up hour in ``[a, b)``."""
    stmt = (
        select(_HOURS.c.hour, _HOURS.c.requests, _HOURS.c.errors)
        .where(_HOURS.c.hour >= a, _HOURS.c.hour < b)
        .limit(MAX_HOURS_PER_VIEW)
    )
    return [(_as_hour(r[0]), int(r[1] or 0), int(r[2] or 0)) for r in conn.execute(stmt).all()]


def tenant_groups(conn: Any, a: dt.datetime, b: dt.datetime, limit: int) -> list[dict[str, Any]]:
    stmt = (
        select(_TENANTS.c.tenant, func.sum(_TENANTS.c.requests), func.sum(_TENANTS.c.cost_usd))
        .where(_TENANTS.c.hour >= a, _TENANTS.c.hour < b)
        .group_by(_TENANTS.c.tenant)
        .limit(limit)
    )
    return [
        {"tenant": r[0], "requests": int(r[1] or 0), "cost_usd": float(r[2] or 0.0)}
        for r in conn.execute(stmt).all()
    ]


def feedback_groups(conn: Any, a: dt.datetime, b: dt.datetime, limit: int) -> list[dict[str, Any]]:
    stmt = (
        select(
            _FEEDBACK.c.model,
            _FEEDBACK.c.policy,
            func.sum(_FEEDBACK.c.ratings),
            func.sum(_FEEDBACK.c.rating_sum),
        )
        .where(_FEEDBACK.c.hour >= a, _FEEDBACK.c.hour < b)
        .group_by(_FEEDBACK.c.model, _FEEDBACK.c.policy)
        .limit(limit)
    )
    return [
        {"model": r[0], "policy": r[1], "ratings": int(r[2] or 0), "rating_sum": float(r[3] or 0.0)}
        for r in conn.execute(stmt).all()
    ]
