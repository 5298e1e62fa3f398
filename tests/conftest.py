"""Shared fixtures. Tests use real components on small data they write themselves."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
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


@contextlib.contextmanager
def fresh_pg_database(prefix: str = "rf_test_") -> Iterator[str]:
    """A new database on the local PostgreSQL (127.0.0.1:5432, trust auth), dropped afterwards; the test
    skips when the server cannot be reached."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    engine = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = prefix + secrets.token_hex(4)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (trust auth, db 'test') is not reachable: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        engine.dispose()


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (see :func:`fresh_pg_database`)."""
    with fresh_pg_database("rf_" + request.module.__name__.rpartition("test_")[2][:12] + "_") as url:
        yield url
