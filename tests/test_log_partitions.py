"""The request log partitioned by time on PostgreSQL (``logging.partition``): a new store gets partitioned
tables, writes land in their day's / month's partition (created ahead, or by the writer when missing),
retention drops whole partitions and counts what they held, the dashboard and the log API read it, an
existing log converts (resumably), bad settings are refused clearly. Real PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from routerforge.errors import ConfigError
from routerforge.gateway.config import LoggingConfig
from routerforge.gateway.db import GatewayDB, GwAttempt, GwFeedback, GwRequest, utcnow
from routerforge.gateway.logentry import AttemptEntry, LogEntry
from routerforge.gateway.partitions import (
    convert_log,
    list_partitions,
    period_start,
    setup_partitioning,
    table_state,
)
from routerforge.gateway.requestlog import RequestLog
from routerforge.gateway.retention import count_older, prune_request_log

RF = [sys.executable, "-c", "import sys; from routerforge.cli.main import main; sys.exit(main())"]


def _entries(now: dt.datetime, days: int, per_day: int, prefix: str = "r") -> list[LogEntry]:
    return [
        LogEntry(
            id=f"{prefix}{d:02d}-{k:03d}",
            tenant=f"t{k % 3}",
            created_at=now - dt.timedelta(days=d, minutes=k),
            requested_model="m",
            chosen_model="a",
            answered_model="a",
            status=200,
            cost_usd=0.001,
            attempts=[AttemptEntry("a", "ok", 200, 1.0), AttemptEntry("b", "skipped")],
        )
        for d in range(days)
        for k in range(per_day)
    ]


def _where(db: GatewayDB, table: str) -> dict[str, str]:
    """id (request id for attempts) → the partition holding the row."""
    key = "id" if table == "gw_requests" else "request_id"
    with db.engine.connect() as conn:
        return {
            r[0]: r[1] for r in conn.execute(text(f"SELECT {key}, tableoid::regclass::text FROM {table}"))
        }


def test_new_store_is_partitioned_and_writes_land_in_their_partition(pg_url: str) -> None:
    db = GatewayDB(pg_url)
    now = utcnow()
    assert setup_partitioning(db.engine, "daily", now=now).startswith("created partitioned (daily)")
    with db.engine.connect() as conn:
        assert table_state(conn) == ("daily", False)
        parts = list_partitions(conn)
    # created ahead: today and the next 7 days, for requests and attempts alike
    today = period_start("daily", now)
    assert [p.start for p in parts] == [today + dt.timedelta(days=i) for i in range(8)]
    assert parts[0].name == f"gw_requests_p{today:%Y%m%d}"
    log = RequestLog(db)
    log.write(
        _entries(now, days=3, per_day=4)
    )  # two of the days have no partition yet: the writer makes them
    for table in ("gw_requests", "gw_attempts"):
        where = _where(db, table)
        assert len(where) == 12
        for rid, part in where.items():
            d = int(rid[1:3])
            day = period_start("daily", now - dt.timedelta(days=d, minutes=int(rid[4:])))
            assert part == f"{table}_p{day:%Y%m%d}"
    # the same store opened again (a second replica, a restart): nothing to convert, nothing lost
    assert setup_partitioning(db.engine, "daily", now=now).startswith("partitioned already")
    assert log.get("r01-002") is not None and len(log.get("r01-002")["attempts"]) == 2  # type: ignore[index]
    db.close()


def test_monthly_partitions_ahead_and_mode_mismatch(pg_url: str) -> None:
    db = GatewayDB(pg_url)
    now = dt.datetime(2026, 11, 29, 12)
    setup_partitioning(db.engine, "monthly", now=now)
    with db.engine.connect() as conn:
        names = [p.name for p in list_partitions(conn)]
    assert names == ["gw_requests_p202611", "gw_requests_p202612", "gw_requests_p202701"]
    with pytest.raises(ConfigError, match="partitioned monthly"):
        setup_partitioning(db.engine, "daily", now=now)
    assert "kept" in setup_partitioning(db.engine, "none")  # a partitioned log stays partitioned
    db.close()


def test_retention_drops_whole_partitions_and_counts_rows(pg_url: str) -> None:
    db = GatewayDB(pg_url)
    now = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    setup_partitioning(db.engine, "daily", now=now)
    log = RequestLog(db)
    log.write(_entries(now, days=10, per_day=30))
    for d in range(10):
        log.add_feedback(request_id=f"r{d:02d}-000", tenant="t0", rating=1.0, labels={}, comment=None)
    cutoff = now - dt.timedelta(days=4, hours=6)  # days 5..9 whole (150 rows), day 4's first hours in part
    older = count_older(db, cutoff)
    assert older == 150
    report = prune_request_log(db, cutoff, batch_size=40)
    assert report.partitions_dropped == 5
    assert report.requests == 150 and report.attempts == 300 and report.feedback == 5
    assert report.to_dict()["partitions_dropped"] == 5
    with db.engine.connect() as conn:
        parts = list_partitions(conn)
        oldest = conn.execute(select(func.min(GwRequest.created_at))).scalar()
        n_att = conn.execute(select(func.count()).select_from(GwAttempt)).scalar()
        n_fb = conn.execute(select(func.count()).select_from(GwFeedback)).scalar()
        day9 = f"gw_attempts_p{now - dt.timedelta(days=9):%Y%m%d}"
        orphans = conn.execute(text("SELECT to_regclass(:n)"), {"n": day9}).scalar()
    assert parts[0].start == period_start("daily", cutoff)
    assert oldest is not None and oldest >= cutoff
    assert (n_att, n_fb, orphans) == (300, 5, None)
    # a round interrupted after detaching day 4 (requests only): the next round finishes it, counted
    day4 = period_start("daily", now - dt.timedelta(days=4))
    with db.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE gw_requests DETACH PARTITION gw_requests_p{day4:%Y%m%d}"))
    assert count_older(db, now) < 150
    later = now - dt.timedelta(days=3, hours=12)
    again = prune_request_log(db, later, batch_size=7)
    assert again.partitions_dropped == 1 and again.requests == 30 and again.attempts == 60
    assert again.batches == 0
    assert count_older(db, later) == 0
    db.close()


def test_partial_partition_is_deleted_in_batches(pg_url: str) -> None:
    db = GatewayDB(pg_url)
    now = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    setup_partitioning(db.engine, "daily", now=now)
    log = RequestLog(db)
    log.write(_entries(now, days=3, per_day=30))
    cutoff = now - dt.timedelta(days=2, minutes=9, seconds=30)  # day 2: minutes 10..29 (20 rows)
    report = prune_request_log(db, cutoff, batch_size=6)
    assert report.partitions_dropped == 0 and report.requests == 20 and report.attempts == 40
    assert report.batches == 4
    assert count_older(db, cutoff) == 0
    db.close()


def test_dashboard_and_log_queries_on_a_partitioned_log(pg_url: str) -> None:
    from routerforge.config import Settings
    from routerforge.gateway.config import GatewayConfig
    from routerforge.gateway.ui import pages_requests, pages_traffic
    from routerforge.gateway.ui.context import UIContext
    from routerforge.gateway.ui.queries import DashboardQueries, RequestFilters, parse_window

    db = GatewayDB(pg_url)
    now = utcnow()
    setup_partitioning(db.engine, "daily", now=now)
    log = RequestLog(db)
    log.write(_entries(now, days=5, per_day=20))
    log.add_feedback(request_id="r02-001", tenant="t1", rating=0.5, labels={}, comment="ok")
    assert [r["id"] for r in log.query(limit=3)] == ["r00-000", "r00-001", "r00-002"]
    assert {r["tenant"] for r in log.query(tenant="t1", limit=100)} == {"t1"}
    assert len(log.query(since=now - dt.timedelta(days=1, hours=1), limit=1000)) == 40
    got = log.get("r03-007")
    assert got is not None and [a["model"] for a in got["attempts"]] == ["a", "b"]
    q = DashboardQueries(db.engine)
    gw = GatewayConfig.model_validate({"tenants": [{"name": "t0", "daily_usd": 5.0}]})
    ctx = UIContext(Settings(), gw, db, keys=None)  # type: ignore[arg-type]
    for name in ("24h", "7d"):
        w = parse_window(name, now=now)
        data = q.traffic(w, pages_traffic.budget_tenants(ctx), now=now)
        assert pages_traffic.render(ctx, w, data) is not None
    assert q.traffic(parse_window("7d", now=now), (), now=now)["summary"]["requests"] == 100
    found = q.search(RequestFilters(window=parse_window("7d", now=now), tenant="t2"))
    assert found and {r["tenant"] for r in found} == {"t2"}
    assert pages_requests.render_request(ctx, q, "r02-001", False) is not None
    db.close()


def test_ratings_carry_their_request_time(pg_url: str) -> None:
    """A rating recorded through the API stores its request's created_at (revision 0150), so the dashboard's
    join to the rated request carries the partition key; its rating groups count such a rating and a legacy
    one (NULL there, joined by id alone) alike. (The pruning itself shows on a large log: the planner
    picks other plans for a few rows; measured at 10M rows in docs/scale.md.)"""
    from routerforge.gateway.auth import Principal
    from routerforge.gateway.schemas import FeedbackRequest
    from routerforge.gateway.ui import rollup

    db = GatewayDB(pg_url)
    now = utcnow()
    setup_partitioning(db.engine, "daily", now=now)
    log = RequestLog(db)
    log.write(_entries(now, days=5, per_day=4))
    principal = Principal(tenant="t1", key_id="k")
    log.rate_for(principal, FeedbackRequest(request_id="r03-001", rating=1.0))
    log.add_feedback(request_id="r02-001", tenant="t1", rating=0.0, labels={}, comment=None)  # legacy
    with db.engine.connect() as conn:
        stored = dict(conn.execute(select(GwFeedback.request_id, GwFeedback.request_created_at)).all())
        assert stored["r03-001"] == log.get("r03-001")["created_at"]  # type: ignore[index]
        assert stored["r02-001"] is None
        groups = rollup.feedback_groups_raw(
            conn, now - dt.timedelta(hours=1), now + dt.timedelta(hours=1), 100
        )
        assert [(g["model"], g["ratings"], g["rating_sum"]) for g in groups] == [("a", 2, 1.0)]
    db.close()


def test_convert_an_existing_log_in_resumable_batches(pg_url: str) -> None:
    db = GatewayDB(pg_url)
    now = utcnow()
    log = RequestLog(db)
    log.write(_entries(now, days=4, per_day=10))
    with db.engine.begin() as conn:  # attempts written before revision 0140 have no time
        conn.execute(text("UPDATE gw_attempts SET created_at = NULL WHERE request_id LIKE 'r03-%'"))
        conn.execute(
            text("INSERT INTO gw_attempts (request_id, seq, model, status) VALUES ('gone', 0, 'a', 'ok')")
        )
    with pytest.raises(ConfigError, match="partition-logs"):
        setup_partitioning(db.engine, "daily", now=now)
    first = convert_log(db.engine, "daily", batch_size=15, max_batches=1)
    assert first.started_now and not first.complete and first.requests == 15
    with db.engine.connect() as conn:
        assert table_state(conn) == ("daily", True)
    # the gateway keeps writing meanwhile: into the partitioned table
    log2 = RequestLog(db)
    log2.write(_entries(now, days=1, per_day=2, prefix="new"))
    rest = convert_log(db.engine, "daily", batch_size=15)
    assert rest.complete and not rest.started_now and rest.requests == 25 and rest.batches == 2
    assert rest.orphan_attempts == 1
    with db.engine.connect() as conn:
        assert table_state(conn) == ("daily", False)
        assert conn.execute(text("SELECT to_regclass('gw_requests_plain')")).scalar() is None
        assert conn.execute(select(func.count()).select_from(GwRequest)).scalar() == 42
        assert conn.execute(select(func.count()).select_from(GwAttempt)).scalar() == 84
        nulls = conn.execute(select(func.count()).where(GwAttempt.created_at.is_(None))).scalar()
    assert nulls == 0
    assert log.get("r03-004") is not None and len(log.get("r03-004")["attempts"]) == 2  # type: ignore[index]
    # new attempt ids continue the old sequence
    log.write(_entries(now, days=1, per_day=1, prefix="z"))
    with db.engine.connect() as conn:
        ids = conn.execute(select(GwAttempt.id).where(GwAttempt.request_id == "z00-000")).scalars().all()
    assert min(ids) > 80
    assert convert_log(db.engine, "daily").requests == 0  # nothing left: a no-op
    db.close()


def test_bad_settings_and_sqlite(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert LoggingConfig().partition == "none"
    assert LoggingConfig(partition="monthly").partition == "monthly"
    with pytest.raises(Exception, match="partition"):
        LoggingConfig(partition="weekly")  # type: ignore[arg-type]
    db = GatewayDB(f"sqlite:///{tmp_path / 'gw.db'}")
    with caplog.at_level(logging.WARNING):
        assert setup_partitioning(db.engine, "daily") == "ignored on sqlite"
    assert "PostgreSQL only" in caplog.text
    with pytest.raises(ConfigError, match="PostgreSQL"):
        convert_log(db.engine, "daily")
    with pytest.raises(ConfigError, match="must be one of"):
        setup_partitioning(db.engine, "hourly")
    RequestLog(db).write(_entries(utcnow(), days=1, per_day=2))  # plain SQLite writes are untouched
    db.close()


def test_partition_logs_cli(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ROUTERFORGE_HOME": str(home), "ROUTERFORGE_DATA__STORE_URL": pg_url}
    home.mkdir()
    db = GatewayDB(pg_url)
    RequestLog(db).write(_entries(utcnow(), days=3, per_day=5))
    db.close()
    run = lambda *a: subprocess.run([*RF, *a], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    none = run("partition-logs")
    assert none.returncode != 0 and "--mode monthly" in none.stderr and "Traceback" not in none.stderr
    done = run("partition-logs", "--mode", "daily", "--batch-size", "4", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["requests"] == 15 and doc["batches"] == 4 and doc["complete"]
    (home / "gateway.yaml").write_text("logging:\n  partition: weekly\n")
    bad = run("partition-logs")
    assert bad.returncode != 0 and "partition" in bad.stderr and "Traceback" not in bad.stderr


def test_gateways_on_a_new_store_partition_it_and_serve_from_it(tmp_path: Path, pg_url: str) -> None:
    import httpx

    from fake_upstream import FakeUpstream
    from gateway_server import LoopbackServer
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    settings = load_settings(overrides={"home": tmp_path, "data": {"store_url": pg_url}})
    with FakeUpstream() as up:
        raw = {
            "models": [{"id": "small", "base_url": up.base_url}],
            "tenants": [{"name": "acme"}],
            "logging": {"partition": "daily", "retention_days": 30},
        }
        a = create_app(settings, parse_gateway_config(raw))
        b = create_app(settings, parse_gateway_config(raw))  # a second replica: converts nothing more
        db = a.state.service.db
        with db.engine.connect() as conn:
            assert table_state(conn) == ("daily", False)
            assert len(list_partitions(conn)) == 8
        with LoopbackServer(a) as sa, LoopbackServer(b) as sb:
            key, _ = a.state.keys.create("acme")
            auth = {"authorization": f"Bearer {key}"}
            body = {"model": "small", "messages": [{"role": "user", "content": "hello"}]}
            r = httpx.post(sa.url + "/v1/chat/completions", headers=auth, json=body)
            assert r.status_code == 200, r.text
            rid = r.headers["x-routerforge-request-id"]
            got = httpx.get(f"{sb.url}/v1/logs/{rid}", headers=auth)  # read through the other replica
            assert got.status_code == 200, got.text
            assert got.json()["attempts"][0]["status"] == "ok"
        today = f"gw_requests_p{utcnow():%Y%m%d}"
        assert _where(db, "gw_requests")[rid] == today
