"""`routerforge serve` warns at start-up when it accepts any caller (require_auth: false) beyond loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from routerforge.cli.main import main
from routerforge.cli.serve import is_loopback, open_access_warning
from routerforge.gateway.config import GatewayConfig


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("gateway.example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_warning_needs_both_no_auth_and_a_reachable_address() -> None:
    open_gw, closed_gw = GatewayConfig(require_auth=False), GatewayConfig(require_auth=True)
    assert open_access_warning(open_gw, "127.0.0.1") is None
    assert open_access_warning(closed_gw, "0.0.0.0") is None
    warning = open_access_warning(open_gw, "0.0.0.0")
    assert warning is not None and "require_auth" in warning and "0.0.0.0" in warning


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_serve_prints_the_warning_at_start_up(
    rf_home: Path, capsys: pytest.CaptureFixture[str], host: str, warned: bool
) -> None:
    # a synthetic model without a router stops serve right after the start-up lines, before it binds
    config = rf_home / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [{"id": "a", "base_url": "http://127.0.0.1:9/v1"}],
                "synthetic_models": [{"name": "s", "router": "no-such-router", "models": ["a"]}],
                "require_auth": False,
            }
        )
    )
    assert main(["serve", "--config", str(config), "--host", host, "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "No trained router" in err
    assert ("WARNING: require_auth is false" in err) is warned
