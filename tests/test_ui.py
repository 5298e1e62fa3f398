"""The dashboard without a browser: auth (bearer, login form, session cookie, CSRF), escaping, no secrets,
the pages on a real store (tests/ui_setup.py), the queries on SQLite and PostgreSQL, the hourly roll-ups."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import ui_setup
from conftest import fresh_pg_database
from fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ui_setup.UIStore]:
    home = tmp_path_factory.mktemp("uihome")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTERFORGE_HOME", str(home))
        mp.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
        mp.delenv("ROUTERFORGE_CONFIG", raising=False)
        with FakeUpstream() as upstream:
            built = ui_setup.build(home, upstream)
        yield built


@pytest.fixture(scope="module")
def client(store: ui_setup.UIStore) -> Iterator[TestClient]:
    from routerforge.config import load_settings
    from routerforge.gateway.config import load_gateway_config
    from routerforge.gateway.ui.standalone import create_ui_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTERFORGE_HOME", str(store.home))
        mp.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
        app = create_ui_app(load_settings(), load_gateway_config(store.config_path))
        with TestClient(app, follow_redirects=False) as c:
            yield c


def admin(store: ui_setup.UIStore) -> dict[str, str]:
    return {"authorization": f"Bearer {store.admin_key}"}


PAGES = ["/ui/traffic", "/ui/routers", "/ui/requests", "/ui/review", "/ui/routers?a=uiknn&b=uiknn5"]


# -- auth -------------------------------------------------------------------------------------------------
def test_no_key_gets_the_login_form_and_non_admin_keys_are_refused(client: TestClient, store: Any) -> None:
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
    r = client.get("/ui/traffic", headers={"authorization": f"Bearer {store.user_key}"})
    assert r.status_code == 403 and "Admin key required" in r.text
    r = client.get("/ui/traffic", headers={"authorization": "Bearer rf-not-a-key"})
    assert r.status_code == 401
    for path in PAGES:
        r = client.get(path, headers=admin(store))
        assert r.status_code == 200, (path, r.text[:500])
        assert (
            "content-security-policy" in r.headers
            and "script-src 'self'" in r.headers["content-security-policy"]
        )
        assert r.headers["cache-control"] == "no-store"


def _login(client: TestClient, key: str, next_path: str = "/ui/traffic") -> Any:
    page = client.get("/ui/login", params={"next": next_path})
    assert page.status_code == 200
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token is not None
    return client.post("/ui/login", data={"csrf": token.group(1), "key": key, "next": next_path})


def test_login_sets_a_signed_httponly_strict_cookie_without_the_key(client: TestClient, store: Any) -> None:
    client.cookies.clear()
    r = _login(client, store.admin_key, "/ui/routers")
    assert r.status_code == 303 and r.headers["location"] == "/ui/routers"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("rf_ui_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    value = client.cookies.get("rf_ui_session")
    assert value and store.admin_key not in value and store.admin_key[3:20] not in value
    assert client.get("/ui/traffic").status_code == 200
    # a tampered cookie is no session
    key_id, expires, sig = value.split(".")
    client.cookies.clear()
    client.cookies.set("rf_ui_session", f"{key_id}.{int(expires) + 999}.{sig}")
    assert client.get("/ui/traffic").status_code == 303
    client.cookies.clear()
    client.cookies.set("rf_ui_session", value)
    assert client.get("/ui/traffic").status_code == 200
    client.cookies.clear()


def test_login_refuses_bad_csrf_bad_keys_non_admins_and_open_redirects(
    client: TestClient, store: Any
) -> None:
    client.cookies.clear()
    client.get("/ui/login")
    r = client.post("/ui/login", data={"csrf": "0" * 40, "key": store.admin_key})
    assert r.status_code == 400 and client.cookies.get("rf_ui_session") is None
    r = _login(client, "rf-wrong")
    assert r.status_code == 401 and "Invalid or revoked" in r.text
    r = _login(client, store.user_key)
    assert r.status_code == 403 and client.cookies.get("rf_ui_session") is None
    r = _login(client, store.admin_key, "//evil.example/x")
    assert r.status_code == 303 and r.headers["location"] == "/ui/traffic"
    client.cookies.clear()


def test_logout_needs_the_csrf_token(client: TestClient, store: Any) -> None:
    client.cookies.clear()
    _login(client, store.admin_key)
    page = client.get("/ui/traffic")
    token = re.search(r'action="/ui/logout".*?name="csrf" value="([0-9a-f]+)"', page.text, re.S)
    assert token is not None
    assert client.post("/ui/logout", data={"csrf": "nope"}).status_code == 403
    assert client.get("/ui/traffic").status_code == 200  # still logged in
    r = client.post("/ui/logout", data={"csrf": token.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    client.cookies.clear()


def test_a_revoked_key_ends_its_sessions(store: Any, client: TestClient) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.auth import KeyStore, load_pepper
    from routerforge.gateway.db import GatewayDB

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTERFORGE_HOME", str(store.home))
        settings = load_settings()
        db = GatewayDB(settings.store_url)
        keys = KeyStore(db, load_pepper(settings.home))
        secret, info = keys.create("ops", name="temp-admin", admin=True)
        client.cookies.clear()
        assert _login(client, secret).status_code == 303
        assert client.get("/ui/traffic").status_code == 200
        keys.revoke(info.id)
        db.close()
    assert client.get("/ui/traffic").status_code == 303
    client.cookies.clear()


# -- escaping and secrets ----------------------------------------------------------------------------------
def test_hostile_prompts_render_inert_and_no_page_shows_a_secret(client: TestClient, store: Any) -> None:
    xss = store.request_ids["xss"]
    pages = [
        *PAGES,
        f"/ui/requests/{xss}",
        "/ui/requests?q=" + "%3Cscript%3E",
        "/ui/requests?q=snippet",
        f"/ui/requests/{store.request_ids['fallback']}",
    ]
    pepper = (store.home / "gateway_pepper").read_bytes().strip().decode()
    for path in pages:
        r = client.get(path, headers=admin(store))
        assert r.status_code == 200, path
        assert "<script>window.__xss" not in r.text and 'onerror="window' not in r.text, path
        assert store.admin_key not in r.text and store.user_key not in r.text and pepper not in r.text, path
        scripts = re.findall(r"<script[^>]*>", r.text)
        assert scripts == ['<script src="/ui/static/ui.js" defer>'], (path, scripts)
    r = client.get(f"/ui/requests/{xss}", headers=admin(store))
    assert "&lt;script&gt;window.__xss" in r.text  # shown, escaped
    assert "rated xss &lt;b&gt;bold&lt;/b&gt;" in r.text  # the feedback comment too
    eval_link = re.search(r'href="/ui/eval/(\d+)"', r.text)
    assert eval_link is not None
    ev = client.get(f"/ui/eval/{eval_link.group(1)}", headers=admin(store))
    assert ev.status_code == 200 and "<script>window" not in ev.text and "&lt;script&gt;" in ev.text


# -- pages on the real store -------------------------------------------------------------------------------
def test_traffic_page_counts_what_the_log_holds(client: TestClient, store: Any) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.db import GatewayDB, GwFeedback, GwRequest
    from routerforge.gateway.ui.queries import DashboardQueries, parse_window

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTERFORGE_HOME", str(store.home))
        db = GatewayDB(load_settings().store_url)
    with db.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(GwRequest)).scalar_one()
        errors = conn.execute(select(func.count()).where(GwRequest.status >= 400)).scalar_one()
        cost = conn.execute(select(func.sum(GwRequest.cost_usd))).scalar_one()
        ratings = conn.execute(select(func.count()).select_from(GwFeedback)).scalar_one()
    data = DashboardQueries(db.engine).traffic(parse_window("24h"), ["acme", "globex"])
    db.close()
    s = data["summary"]
    assert s["requests"] == total == len(store.request_ids)
    assert s["errors"] == errors >= 1  # the refused request
    assert s["fallbacks"] == 1  # strong failed, weak answered
    assert data["fallbacks"] == [{"chosen_model": "strong", "answered_model": "weak", "requests": 1}]
    assert abs(s["cost_usd"] - cost) < 1e-12
    smart = {m["model"]: m["requests"] for m in data["models"] if m["synthetic_model"] == "smart"}
    assert sum(smart.values()) == 9 and set(smart) <= {"weak", "strong"}
    assert sum(r["ratings"] for r in data["feedback_model"]) == ratings == 3
    means = {r["key"]: r["mean_rating"] for r in data["feedback_policy"]}
    assert means["threshold"] == pytest.approx(0.5)  # ratings 1.0, 0.0, 0.5 on routed requests
    spent = {t["tenant"]: t["window_usd"] for t in data["tenants"]}
    assert data["budgets"]["acme"]["day_usd"] == pytest.approx(spent["acme"])
    assert data["latency"]["sampled"] == total
    page = client.get("/ui/traffic?window=24h", headers=admin(store)).text
    assert f'<div class="value">{total:,}</div>' in page
    assert "<svg" in page and "smart" in page and "<meter" in page


def test_request_search_filters_and_drill_down(client: TestClient, store: Any) -> None:
    ids = store.request_ids
    r = client.get("/ui/requests", params={"tenant": "globex"}, headers=admin(store))
    found = set(re.findall(r'href="/ui/requests/([0-9a-f]{24})"', r.text))
    globex = {ids[k] for k in ("smart1", "smart3", "smart5", "smart7", "direct")}
    assert found == globex
    r = client.get("/ui/requests", params={"status": "error"}, headers=admin(store))
    assert set(re.findall(r'href="/ui/requests/([0-9a-f]{24})"', r.text)) == {ids["refused"]}
    r = client.get("/ui/requests", params={"model": "weak", "status": "ok"}, headers=admin(store))
    found = set(re.findall(r'href="/ui/requests/([0-9a-f]{24})"', r.text))
    assert ids["direct"] in found and ids["fallback"] in found
    r = client.get("/ui/requests", params={"q": "falls back"}, headers=admin(store))
    assert set(re.findall(r'href="/ui/requests/([0-9a-f]{24})"', r.text)) == {ids["fallback"]}
    r = client.get("/ui/requests", params={"q": ids["smart3"]}, headers=admin(store))
    assert ids["smart3"] in r.text
    r = client.get("/ui/requests", params={"q": "algebra question 0"}, headers=admin(store))
    assert 'href="/ui/eval/' in r.text  # the eval data matches too
    # drill-down: the right request, its predictions, the eval answers side by side, attempts, feedback
    r = client.get(f"/ui/requests/{ids['smart0']}", headers=admin(store))
    assert r.status_code == 200
    assert "algebra question 0: explain algebra item 0" in r.text
    assert "predicted score per model" in r.text and "threshold" in r.text
    assert "strong eval answer 0" in r.text and "weak eval answer 0" in r.text
    assert "rated smart0" in r.text
    r = client.get(f"/ui/requests/{ids['fallback']}", headers=admin(store))
    assert r.text.count('class="badge badge-bad">error<') >= 1 and "weak says" in r.text
    r = client.get(f"/ui/requests/{ids['smart0']}?explain=1", headers=admin(store))
    assert r.status_code == 200 and "knn" in r.text.split('id="explain"')[1]


def test_bad_input_gives_a_clean_error_page(client: TestClient, store: Any) -> None:
    cases = {
        "/ui/traffic?window=2y": 400,
        "/ui/traffic?window=custom&start=yesterday": 400,
        "/ui/traffic?window=custom&start=2026-01-02&end=2026-01-01": 400,
        "/ui/requests?status=teapot": 400,
        "/ui/requests?before=nope": 400,
        "/ui/requests/" + "0" * 24: 404,
        "/ui/requests/bad%20id": 400,
        "/ui/eval/99999999": 404,
        "/ui/routers?a=nope": 404,
        "/ui/routers?a=../../etc": 404,
        "/ui/static/../../pyproject.toml": 404,
    }
    for path, status in cases.items():
        r = client.get(path, headers=admin(store))
        assert r.status_code == status, (path, r.status_code)
        assert "Traceback" not in r.text
    assert client.get("/ui/requests?q=" + "x" * 500, headers=admin(store)).status_code == 400


def test_routers_page_shows_training_calibration_and_bench(client: TestClient, store: Any) -> None:
    r = client.get("/ui/routers", headers=admin(store))
    assert "uiknn" in r.text and "uiknn5" in r.text and "APGR" in r.text
    r = client.get("/ui/routers?a=uiknn&b=uiknn5", headers=admin(store))
    assert r.text.count('class="router-col"') == 2
    assert "ui-eval" in r.text and "training prompt hashes" in r.text
    assert "share of calls to the strong model" in r.text  # the benchmark's curve, as SVG
    assert "smart" in r.text  # the synthetic model served by uiknn


def test_the_gateway_serves_the_same_pages(store: Any) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import load_gateway_config

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTERFORGE_HOME", str(store.home))
        mp.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
        app = create_app(load_settings(), load_gateway_config(store.config_path))
        with TestClient(app, follow_redirects=False) as c:
            assert c.get("/ui/traffic").status_code == 303
            r = c.get(f"/ui/requests/{store.request_ids['smart2']}", headers=admin(store))
            assert r.status_code == 200 and "rated smart2" in r.text
            assert (
                c.get("/ui/routers", headers={"authorization": f"Bearer {store.user_key}"}).status_code == 403
            )


def test_ui_command_rejects_a_bad_port(store: Any, capsys: Any) -> None:
    from routerforge.cli.main import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTERFORGE_HOME", str(store.home))
        assert main(["ui", "--port", "70000", "--config", str(store.config_path)]) != 0
    err = capsys.readouterr().err
    assert "--port must be between 1 and 65535" in err and "Traceback" not in err


# -- queries and roll-ups on SQLite and PostgreSQL ---------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/q.db"
        return
    with fresh_pg_database("rf_ui_") as url:
        yield url


def _entries(now: dt.datetime, n: int = 400) -> list[Any]:
    from routerforge.gateway.logentry import AttemptEntry, LogEntry

    out = []
    for i in range(n):
        syn = ["smart", "cheap", None][i % 3]
        chosen = ["m1", "m2", "m3"][i % 3]
        status = 500 if i % 17 == 0 else 200
        answered = None if status >= 400 else ("m2" if i % 23 == 0 else chosen)
        out.append(
            LogEntry(
                id=f"{i:024x}",
                tenant=["t1", "t2", "t3", "t4"][i % 4],
                created_at=now - dt.timedelta(minutes=7 * i + 1),  # spread over ~47 hours
                requested_model=syn or chosen,
                synthetic_model=syn,
                chosen_model=chosen,
                answered_model=answered,
                policy="threshold" if syn else None,
                status=status,
                prompt=f"prompt number {i} about {'cats' if i % 2 else 'dogs'}",
                cost_usd=None if answered is None else 0.001 * (1 + i % 5),
                routing_ms=0.5 + (i % 10) / 10 if syn else None,
                upstream_ms=100.0 + i,
                attempts=[AttemptEntry(model=chosen, status="ok" if answered else "error")],
            )
        )
    return out


def test_rollups_give_the_same_numbers_as_the_log(db_url: str) -> None:
    from routerforge.gateway.db import GatewayDB, utcnow
    from routerforge.gateway.requestlog import RequestLog
    from routerforge.gateway.ui import rollup
    from routerforge.gateway.ui.queries import DashboardQueries, RequestFilters, parse_window

    db = GatewayDB(db_url)
    now = utcnow()
    log = RequestLog(db)
    entries = _entries(now)
    log.write(entries)
    for i, e in enumerate(entries[::10]):
        log.add_feedback(request_id=e.id, tenant=e.tenant, rating=(i % 3) / 2, labels={}, comment=None)
    q = DashboardQueries(db.engine)
    now = utcnow()  # after the writes: the feedback is stamped when it is given
    w = parse_window("7d", now=now)
    rolled = q.traffic(w, ["t1", "t2"], now=now)
    assert rolled["from_rollups"] is not None and rolled["rolled_up_now"] > 0
    assert q.traffic(w, ["t1"], now=now)["rolled_up_now"] == 0  # once
    with db.engine.connect() as conn:  # the same window straight from the log
        raw_models = rollup.model_groups_raw(conn, w.since, w.until, 100_000)
        raw_tenants = rollup.tenant_groups_raw(conn, w.since, w.until, 100_000)
        n_hours = conn.execute(select(func.count()).select_from(rollup.UiHour)).scalar_one()
    raw = q.summarise(raw_models, raw_tenants)
    assert rolled["summary"]["requests"] == raw["summary"]["requests"] == len(entries)
    for key in ("errors", "fallbacks"):
        assert rolled["summary"][key] == raw["summary"][key] > 0
    assert rolled["summary"]["cost_usd"] == pytest.approx(raw["summary"]["cost_usd"])
    assert sorted(rolled["status"], key=str) == sorted(raw["status"], key=str)
    assert {(m["synthetic_model"], m["model"]): m["requests"] for m in rolled["models"]} == {
        (m["synthetic_model"], m["model"]): m["requests"] for m in raw["models"]
    }
    assert {t["tenant"]: round(t["window_usd"], 9) for t in rolled["tenants"]} == {
        t["tenant"]: round(t["window_usd"], 9) for t in raw["tenants"]
    }
    assert sum(b["requests"] for b in rolled["volume"]) == len(entries)
    assert sum(r["ratings"] for r in rolled["feedback_model"]) == len(entries[::10])
    assert n_hours >= 40  # every settled hour of the week is marked, empty ones included
    # request search on the same store
    rows = q.search(RequestFilters(window=w, tenant="t2", status="ok"))
    assert rows and all(r["tenant"] == "t2" and r["status"] < 400 for r in rows)
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)
    cats = q.search(RequestFilters(window=w, text="ABOUT CATS"))
    assert cats and all("cats" in r["prompt"] for r in cats)
    assert q.search(RequestFilters(window=w, text="100%_")) == []  # LIKE wildcards are literal
    one = q.request(entries[5].id)
    assert one is not None and one["attempts"][0]["model"] == entries[5].chosen_model
    db.close()
