"""SQL plumbing: the one engine factory (SQLite pragmas, PostgreSQL driver) used by the store and the
gateway, migrations, batched upserts."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, func, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from routerforge.data.resolve import batches
from routerforge.errors import ConfigError
from routerforge.files import create_private_file, private_dir

MIGRATION_LOCK = 0x726F7574  # PostgreSQL advisory lock key held while migrating


def normalise_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"Store URL {url!r} is not a database URL.",
            hint="Use sqlite:////absolute/path.db or postgresql+psycopg://user@host:5432/db.",
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):  # psycopg 3 is the driver routerforge installs
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_pragmas(*, durable: bool = False) -> list[str]:
    """The pragmas of every SQLite connection: WAL (readers never block the writer), foreign keys, a 30 s
    busy timeout. ``synchronous=NORMAL`` survives a killed process (a commit is in the WAL file when it
    returns); ``durable`` gives ``FULL`` (the WAL is fsynced at every commit: also survives power loss)."""
    return [
        "PRAGMA journal_mode=WAL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}",
        "PRAGMA busy_timeout=30000",
    ]


def make_engine(url: str, *, durable: bool = False) -> Engine:
    """The one engine factory (store and gateway). SQLite files get their folder created and
    :func:`sqlite_pragmas` on every connection; PostgreSQL URLs use psycopg 3 (:func:`normalise_url`)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not memory:
            folder = Path(database).expanduser().parent
            try:
                private_dir(folder)
                if not database.startswith("file:"):  # created 0600 before SQLite opens it (-wal/-shm follow)
                    create_private_file(Path(database).expanduser())
            except OSError as exc:
                raise ConfigError(
                    f"Cannot create the folder {folder} of the SQLite store: {exc.strerror or exc}.",
                    hint="Check --home / ROUTERFORGE_HOME and --store (data.store_url).",
                ) from exc
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)
        pragmas = sqlite_pragmas(durable=durable)

        def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                for pragma in pragmas:
                    cursor.execute(pragma)
            finally:
                cursor.close()

        event.listen(engine, "connect", set_pragmas)
        return engine
    given = parsed.query.get("options") or ()
    # JIT off first (the URL's own options may turn it back on): routerforge's queries are index lookups and
    # small grouped scans, where compiling costs more than it saves. On a log partitioned by time the
    # planner's cost of a join probing every partition crosses jit_above_cost, and compiling the plan took
    # 200-570 ms of a 100 ms dashboard page at 10M rows (docs/scale.md).
    options = ["-c jit=off", *([given] if isinstance(given, str) else list(given))]
    if durable:  # a commit returns once it is flushed to the server's disk, whatever the server default
        options.append("-c synchronous_commit=on")
    url = parsed.update_query_dict({"options": " ".join(options)}).render_as_string(hide_password=False)
    try:
        return create_engine(url, pool_pre_ping=True)
    except (ImportError, SQLAlchemyError) as exc:
        raise ConfigError(
            f"Cannot use the store URL {safe_url(url)}: {exc}",
            hint="For PostgreSQL install the postgres extra (psycopg) and use postgresql+psycopg://...",
        ) from exc


def upgrade_schema(engine: Engine) -> None:
    """``alembic upgrade heads`` with the migrations shipped in ``routerforge/migrations``."""
    from importlib.resources import files

    from alembic import command
    from alembic.config import Config

    migrations = Path(str(files("routerforge") / "migrations"))
    # An explicit stdout: alembic's default is the sys.stdout of when alembic.config was first imported
    # (possibly a stream closed since, e.g. a test's capture).
    config = Config(str(migrations / "alembic.ini"), stdout=io.StringIO())
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("version_locations", str(migrations / "versions"))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # several processes may open a new database at once
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "heads")
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        shown = engine.url.difference_update_query(["options"])  # without the session options added here
        raise ConfigError(
            f"Cannot open the store at {safe_url(shown.render_as_string(hide_password=False))}: {reason}",
            hint="Check --store / data.store_url (ROUTERFORGE_DATA__STORE_URL) and that the database is up.",
        ) from exc


def dialect_insert(conn: Connection) -> Any:
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    raise ConfigError(f"The store supports SQLite and PostgreSQL, not {name}.")


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    conflict: tuple[str, ...],
    replace: tuple[str, ...],
    coalesce: tuple[str, ...],
) -> None:
    """INSERT … ON CONFLICT DO UPDATE in batches of ``BATCH`` rows (executemany).

    ``replace`` columns take the new value; ``coalesce`` columns keep the stored value when the new one is NULL.
    """
    if not rows:
        return
    insert = dialect_insert(conn)
    stmt = insert(table)
    keys = {c.key: c for c in table.columns}
    set_ = {name: stmt.excluded[name] for name in replace}
    for name in coalesce:
        set_[name] = func.coalesce(stmt.excluded[name], keys[name])
    stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_=set_)
    for batch in batches(rows):
        conn.execute(stmt, list(batch))
