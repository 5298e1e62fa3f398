"""The review page (/ui/review) in a real headless Chromium against a real gateway on loopback: a replay
gives the same disagreements as `routerforge review`, a typed prompt shows both decisions, and the
promote button changes what the gateway serves (then roll back restores it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from review_setup import ALGEBRA, HISTORY, STRONG, WEAK, cli_json, gateway_raw, train_two, write_config

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is not installed (make setup installs Debian's chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_review_page_replays_tries_a_prompt_and_promotes(
    browser: Any, rf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    train_two(rf_home)
    with FakeUpstream() as upstream:
        raw = gateway_raw(upstream.base_url)
        cfg = write_config(tmp_path / "gateway.yaml", raw)
        app = create_app(load_settings(), parse_gateway_config(raw), config_path=cfg)
        with LoopbackServer(app) as server:
            admin, _ = app.state.keys.create("ops", admin=True)
            user, _ = app.state.keys.create("acme")
            client = openai.OpenAI(base_url=server.base_url, api_key=user, max_retries=0)
            prompts = [
                ALGEBRA,
                HISTORY,
                "poetry question 2: explain poetry item 1",
                "chemistry question 3: item 8",
            ]
            for text in prompts * 2:
                client.chat.completions.create(model="smart", messages=[{"role": "user", "content": text}])
            expected = cli_json(
                capsys,
                ["review", "--candidate", "v2", "--last", "50", "--config", str(cfg), "--json"],
            )
            assert 0 < expected["disagreements"]["count"] < expected["n"]

            context = browser.new_context(viewport={"width": 1300, "height": 900})
            page = context.new_page()
            page.goto(server.url + "/ui/review")
            page.fill("input[name=key]", admin)
            page.click("button[type=submit]")
            page.wait_for_url("**/ui/review**")
            page.select_option("#replay-form select[name=candidate]", "v2")
            page.fill("#replay-form input[name=last]", "50")
            page.click("#replay")
            page.wait_for_selector("#report")
            tiles = page.locator("#summary .stat .value").all_inner_texts()
            assert tiles[0] == str(expected["n"])
            assert tiles[1] == str(expected["disagreements"]["count"])
            cards = page.locator(".disagreement")
            assert cards.count() == min(expected["disagreements"]["count"], 50)
            first = cards.filter(has_text=ALGEBRA).first
            text = first.inner_text()
            assert f"serving: {STRONG}" in text and f"candidate: {WEAK}" in text
            assert f"{STRONG} says: {ALGEBRA}" in text  # the logged answer, side by side

            page.fill("#prompt", ALGEBRA)
            page.click("#decide")
            page.wait_for_selector("#prompt-result")
            result = page.locator("#prompt-result").inner_text()
            assert "disagree" in result and f"serving: {STRONG}" in result and f"candidate: {WEAK}" in result

            page.select_option("#promote-form select[name=router]", "v2")
            page.click("#promote")
            page.wait_for_selector("#notice")
            assert "Promoted v2" in page.locator("#notice").inner_text()
            r = client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": ALGEBRA}]
            )
            assert r.headers["x-routerforge-model"] == WEAK  # the gateway serves the promoted router
            audit = page.locator("table.audit tbody tr").first.inner_text()
            assert "promote" in audit and "v2" in audit and "ui:" in audit
            page.click("#rollback")
            page.wait_for_selector("#notice")
            assert "Rolled smart back" in page.locator("#notice").inner_text()
            r = client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": ALGEBRA}]
            )
            assert r.headers["x-routerforge-model"] == STRONG
            assert "rollback" in page.locator("table.audit tbody tr").first.inner_text()
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            context.close()
