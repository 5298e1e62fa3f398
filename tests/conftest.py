"""Shared fixtures. Tests use real components on small data they write themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"development data not found at {SHARED_DATA} (only present on development machines)")
    return SHARED_DATA


@pytest.fixture
def rf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated ROUTERFORGE_HOME for the test."""
    home = tmp_path / "rfhome"
    home.mkdir()
    monkeypatch.setenv("ROUTERFORGE_HOME", str(home))
    for var in ("ROUTERFORGE_CONFIG",):
        monkeypatch.delenv(var, raising=False)
    return home
