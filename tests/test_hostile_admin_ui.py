"""Hostile input to the endpoints this release added (/v1/admin/*, the dashboard's forms and queries):
a 10 MB body, a lone surrogate, broken JSON, wrong types, unknown names. Each gets a 4xx (or an error page)
with a message, never a 5xx or a traceback, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import ui_setup
from fake_upstream import FakeUpstream

BIG = "x" * (10 * 1024 * 1024)
SURROGATE = '{"model": "smart", "router": "\\ud800"}'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, ui_setup.UIStore]]:
    home = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp, FakeUpstream() as upstream:
        mp.setenv("ROUTERFORGE_HOME", str(home))
        mp.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
        mp.delenv("ROUTERFORGE_CONFIG", raising=False)
        store = ui_setup.build(home, upstream)
        from routerforge.config import load_settings
        from routerforge.gateway.app import create_app
        from routerforge.gateway.config import load_gateway_config

        app = create_app(load_settings(), load_gateway_config(store.config_path))
        with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as client:
            yield client, store


def _no_5xx(r: Any, what: str) -> None:
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    assert "Traceback" not in r.text, what


@pytest.mark.parametrize("path", ["/v1/admin/promote", "/v1/admin/rollback", "/v1/admin/reload"])
def test_admin_endpoints_refuse_hostile_bodies(gateway: Any, path: str) -> None:
    client, store = gateway
    auth = {"authorization": f"Bearer {store.admin_key}", "content-type": "application/json"}
    state_before = client.get("/v1/admin/state", headers=auth).json()
    bodies = [
        BIG,
        SURROGATE,
        "{not json",
        "[]",
        '{"model": 5, "router": ["a"]}',
        '{"model": "no-such-model", "router": "no-such-router"}',
        '{"model": "smart", "router": "../../etc"}',
        '{"model": "smart", "router": "uiknn", "knob": "NaN"}',
    ]
    for body in bodies:
        r = client.post(path, content=body.encode("utf-8", "surrogatepass"), headers=auth)
        _no_5xx(r, f"{path} {body[:40]!r}")
        if path != "/v1/admin/reload":
            assert r.status_code >= 400, f"{path} accepted {body[:40]!r}"
            assert r.json()["error"]["message"]
    after = client.get("/v1/admin/state", headers=auth).json()
    assert after.get("assignments") == state_before.get("assignments")


def test_admin_endpoints_need_an_admin_key(gateway: Any) -> None:
    client, store = gateway
    for path in ("/v1/admin/promote", "/v1/admin/rollback", "/v1/admin/reload"):
        assert client.post(path, json={"model": "smart"}).status_code == 401
        r = client.post(path, json={"model": "smart"}, headers={"authorization": f"Bearer {store.user_key}"})
        assert r.status_code == 403
    assert client.get("/v1/admin/drift").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/ui/requests?q=" + "%F0%9F%98%80" * 2000,
        "/ui/requests?q=%ED%A0%80",  # a lone surrogate, UTF-8 encoded
        "/ui/requests?since=not-a-date&until=%00",
        "/ui/requests?status=abc&limit=-5&page=99999999999999999999",
        "/ui/traffic?window=10y",
        "/ui/traffic?from=2026-13-45T99:99&to=x",
        "/ui/requests/" + "a" * 5000,
        "/ui/requests/%00%ff",
        "/ui/routers?a=../../etc&b=%2e%2e%2fpasswd",
        "/ui/review?candidate=../../etc&last=1e99&knob=inf",
    ],
)
def test_dashboard_queries_with_hostile_parameters(gateway: Any, path: str) -> None:
    client, store = gateway
    r = client.get(path, headers={"authorization": f"Bearer {store.admin_key}"})
    _no_5xx(r, path)


def test_dashboard_forms_refuse_hostile_posts(gateway: Any) -> None:
    client, store = gateway
    auth = {"authorization": f"Bearer {store.admin_key}"}
    bodies = (
        BIG.encode(),
        b"key=%ED%A0%80&csrf=x",
        b"\xff\xfe\x00",
        b"a=1&" * 10000,
        b"action=promote&model=smart&candidate=..%2F..%2Fetc&knob=inf",
        b"action=try&prompt=%ED%A0%80&candidate=uiknn&last=-1",
    )
    for path in ("/ui/login", "/ui/review", "/ui/logout"):
        for body in bodies:
            r = client.post(
                path, content=body, headers={**auth, "content-type": "application/x-www-form-urlencoded"}
            )
            _no_5xx(r, f"POST {path} {body[:20]!r}")
