"""Screenshots of every dashboard page into docs/img/ (PNG), from a real store built by tests/ui_setup.py.

.venv/bin/python tools/ui_screenshots.py            # writes docs/img/ui_*.png
.venv/bin/python tools/ui_screenshots.py --out DIR  # elsewhere

Builds a throw-away home (eval data, two trained routers, a benchmark, keys, real requests through a real
gateway and a fake upstream on loopback), serves it with the dashboard app on loopback, logs in through the
login form in headless Chromium (the system browser, /usr/bin/chromium) and captures each page.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium (make setup does it)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT / "tests"))
    with tempfile.TemporaryDirectory(prefix="rf-ui-shots-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["ROUTERFORGE_HOME"] = str(home)
        os.environ["ROUTERFORGE_EMBED__PROVIDER"] = "hash"
        return _shoot(home, args.out)


def _shoot(home: Path, out: Path) -> int:
    from playwright.sync_api import sync_playwright

    import ui_setup
    from fake_upstream import FakeUpstream
    from gateway_server import LoopbackServer
    from routerforge.config import load_settings
    from routerforge.gateway.config import load_gateway_config
    from routerforge.gateway.ui.standalone import create_ui_app

    with FakeUpstream() as upstream:
        store = ui_setup.build(home, upstream)
    settings = load_settings()
    app = create_ui_app(settings, load_gateway_config(store.config_path))
    out.mkdir(parents=True, exist_ok=True)
    ids = store.request_ids
    pages = [
        ("ui_login.png", "/ui/login", False),
        ("ui_traffic.png", "/ui/traffic?window=24h", True),
        ("ui_routers.png", "/ui/routers", True),
        ("ui_routers_compare.png", "/ui/routers?a=uiknn&b=uiknn5", True),
        ("ui_requests.png", "/ui/requests?q=question", True),
        ("ui_request.png", f"/ui/requests/{ids['smart0']}?explain=1", True),
        ("ui_request_fallback.png", f"/ui/requests/{ids['fallback']}", True),
        ("ui_review.png", "/ui/review", True),
        (
            "ui_review_replay.png",
            "/ui/review?candidate=uiknn5&serving=smart&knob=0.6&source=eval&dataset=ui-eval&split=test",
            True,
        ),
    ]
    with LoopbackServer(app, name="ui") as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(server.url + "/ui/login")
        page.screenshot(path=str(out / pages[0][0]), full_page=True)
        page.fill("input[name=key]", store.admin_key)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/traffic**")
        for name, path, _auth in pages[1:]:
            page.goto(server.url + path)
            page.screenshot(path=str(out / name), full_page=True)
            print(out / name)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
