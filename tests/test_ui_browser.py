"""The dashboard in a real headless Chromium (the system browser, driven by Playwright) against a real
``routerforge ui`` process on loopback, reading a real store (tests/ui_setup.py): login, every page with
data, filters, drill-down, a non-admin key refused, a hostile prompt rendered inert."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import ui_setup
from fake_upstream import FakeUpstream

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is not installed (make setup installs Debian's chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ui_setup.UIStore]]:
    home = tmp_path_factory.mktemp("uibrowser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTERFORGE_HOME", str(home))
        mp.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
        mp.delenv("ROUTERFORGE_CONFIG", raising=False)
        with FakeUpstream() as upstream:
            store = ui_setup.build(home, upstream)
    port = _free_port()
    env = {**os.environ, "ROUTERFORGE_HOME": str(home), "ROUTERFORGE_EMBED__PROVIDER": "hash"}
    exe = Path(sys.executable).with_name("routerforge")
    proc = subprocess.Popen(
        [str(exe), "ui", "--port", str(port), "--config", str(store.config_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"routerforge ui did not start: {out}")
            time.sleep(0.1)
        yield url, store
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: tuple[str, ui_setup.UIStore]) -> Iterator[Any]:
    """A page logged in through the login form as the admin."""
    url, store = server
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    p = context.new_page()
    p.goto(url + "/ui/traffic")
    assert "/ui/login" in p.url  # no key: the login form
    p.fill("input[name=key]", store.admin_key)
    p.click("button[type=submit]")
    p.wait_for_url("**/ui/traffic")
    yield p
    context.close()


def test_login_form_then_every_page_loads_with_data(page: Any, server: tuple[str, ui_setup.UIStore]) -> None:
    _url, store = server
    total = len(store.request_ids)
    assert page.locator(".stat .value").first.inner_text() == str(total)
    assert page.locator("svg.chart").count() >= 3
    assert "smart" in page.locator("section.card", has_text="Models per synthetic model").inner_text()
    page.click("header nav a:text('Routers')")
    page.wait_for_url("**/ui/routers")
    assert page.locator("table.grid tbody tr").count() == 2
    page.click("a:text('uiknn')")
    assert page.locator(".router-col h2").first.inner_text().startswith("uiknn")
    assert page.locator("svg.chart").count() >= 2  # mean scores and the benchmark curve
    page.click("header nav a:text('Requests')")
    page.wait_for_url("**/ui/requests")
    assert page.locator("table.results tbody tr").count() == total
    page.click("header nav a:text('Review')")
    assert page.locator("header nav a.active").inner_text() == "Review"  # engineer B's page, no error page
    assert "Cannot show this page" not in page.content()
    # the session cookie is HttpOnly: scripts cannot read it
    assert "rf_ui_session" not in page.evaluate("document.cookie")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["rf_ui_session"]["httpOnly"] and cookies["rf_ui_session"]["sameSite"] == "Strict"
    assert store.admin_key not in cookies["rf_ui_session"]["value"]


def test_filters_and_drill_down(page: Any, server: tuple[str, ui_setup.UIStore]) -> None:
    url, store = server
    page.goto(url + "/ui/requests")
    page.select_option("select[name=tenant]", "globex")
    page.click("form#search button[type=submit]")
    page.wait_for_url("**tenant=globex**")
    tenants = page.locator("table.results tbody tr td:nth-child(3)").all_inner_texts()
    assert tenants and set(tenants) == {"globex"} and len(tenants) == 5
    page.goto(url + "/ui/requests")
    page.select_option("select[name=status]", "error")
    page.click("form#search button[type=submit]")
    page.wait_for_url("**status=error**")
    assert page.locator("table.results tbody tr").count() == 1
    page.goto(url + "/ui/requests")
    page.fill("input[name=q]", "falls back")
    page.click("form#search button[type=submit]")
    rows = page.locator("table.results tbody tr")
    assert rows.count() == 1
    rows.first.locator("a").click()
    page.wait_for_url(f"**/ui/requests/{store.request_ids['fallback']}")
    assert "chemistry question 99: this one falls back" in page.locator("pre.prompt").inner_text()
    attempts = page.locator("section.card", has_text="Upstream attempts").inner_text()
    assert "strong" in attempts and "weak" in attempts
    # window presets are links that keep the filters
    page.goto(url + "/ui/requests?tenant=acme")
    page.click(".window a:text('1h')")
    page.wait_for_url("**window=1h**")
    assert "tenant=acme" in page.url
    assert set(page.locator("table.results tbody tr td:nth-child(3)").all_inner_texts()) == {"acme"}


def test_drill_down_shows_the_right_request_and_eval_answers(
    page: Any, server: tuple[str, ui_setup.UIStore]
) -> None:
    url, store = server
    rid = store.request_ids["smart2"]
    page.goto(url + f"/ui/requests/{rid}")
    assert rid in page.locator("h1").inner_text()
    assert page.locator("pre.prompt").inner_text() == "poetry question 2: explain poetry item 1"
    answers = page.locator(".answers .answer").all_inner_texts()
    assert len(answers) == 3  # this request's answer, then both models' answers from the eval data
    assert (
        "strong eval answer 2" in answers[1] + answers[2] and "weak eval answer 2" in answers[1] + answers[2]
    )
    assert (
        page.locator("section.card", has_text="Feedback").locator("td", has_text="rated smart2").count() == 1
    )


def test_non_admin_key_is_refused(browser: Any, server: tuple[str, ui_setup.UIStore]) -> None:
    url, store = server
    context = browser.new_context()
    p = context.new_page()
    p.goto(url + "/ui/login")
    p.fill("input[name=key]", store.user_key)
    p.click("button[type=submit]")
    assert "Admin key required" in p.locator("h1").inner_text()
    p.goto(url + "/ui/traffic")
    assert "/ui/login" in p.url
    context.close()


def test_hostile_prompt_is_inert(page: Any, server: tuple[str, ui_setup.UIStore]) -> None:
    url, store = server
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url + f"/ui/requests/{store.request_ids['xss']}")
    assert page.evaluate("window.__xss") is None
    assert "pwned" not in page.title()
    assert ui_setup.XSS in page.locator("pre.prompt").inner_text()  # shown as text
    assert page.locator("pre.prompt script, pre.prompt img").count() == 0
    page.goto(url + "/ui/requests?q=" + "%3Cscript%3Ewindow.__xss%3D3%3C%2Fscript%3E")
    assert page.evaluate("window.__xss") is None and not dialogs
