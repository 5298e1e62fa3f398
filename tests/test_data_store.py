"""The store on SQLite and on the local PostgreSQL server (skipped with a message when unreachable)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from routerforge.config import load_settings
from routerforge.data.exporters import export_dataset
from routerforge.data.importers import read_records
from routerforge.data.records import CandidateModel, EvalRecord, PromptItem
from routerforge.data.store import Store
from routerforge.errors import DataError, UnknownDatasetError, UnknownModelError, ValidationError

PG_HOST = "127.0.0.1:5432"
PG_DATABASE = "test"


def _postgres_admin_url() -> str | None:
    """A URL of the local PostgreSQL server that accepts us, or None."""
    for user in ("postgres", "root"):
        url = f"postgresql+psycopg://{user}@{PG_HOST}/{PG_DATABASE}"
        try:
            engine = create_engine(url, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            return url
        except Exception:  # driver missing, server down, auth refused
            continue
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A schema of its own for this test session in the local PostgreSQL database, dropped at the end."""
    admin = _postgres_admin_url()
    if admin is None:
        pytest.skip(
            f"PostgreSQL not reachable at {PG_HOST} (database {PG_DATABASE!r}); store tests ran on SQLite only"
        )
    schema = f"rf_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{admin}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'store.db'}")
        yield s
        s.close()
        return
    base = request.getfixturevalue("postgres_url")
    s = Store(base)
    yield s
    # leave the shared session schema empty for the next test
    with s.engine.begin() as conn:
        conn.execute(text("DELETE FROM eval_records"))
        conn.execute(text("DELETE FROM prompts"))
        conn.execute(text("DELETE FROM datasets"))
        conn.execute(text("DELETE FROM candidate_models"))
    s.close()


def rec(key: str, model: str, score: float | None, **kw: object) -> EvalRecord:
    return EvalRecord(
        prompt_key=key, prompt=kw.pop("prompt", f"text of {key}"), model=model, score=score, **kw
    )  # type: ignore[arg-type]


def small_records() -> list[EvalRecord]:
    return [
        rec("p1", "a", 1.0, cost_usd=0.01, split="train", category="math", metadata={"level": 1}),
        rec("p1", "b", 0.0, cost_usd=0.001, split="train", category="math"),
        rec("p2", "a", 0.5, cost_usd=0.02, split="test", category="law"),
        rec("p3", "b", 1.0, split="test", category="law"),
    ]


def test_schema_revision_and_sqlite_pragmas(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    with s.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        versions = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    s.close()
    from alembic.script import ScriptDirectory

    from routerforge.migrations import MIGRATIONS_DIR

    scripts = ScriptDirectory(str(MIGRATIONS_DIR), version_locations=[str(MIGRATIONS_DIR / "versions")])
    assert versions == set(scripts.get_heads())  # upgraded to every head
    assert scripts.get_revision("0001_initial").down_revision is None
    Store(f"sqlite:///{tmp_path / 'sub' / 'x.db'}").close()  # reopening (upgrade heads again) is a no-op


def test_from_settings_uses_the_home(tmp_path: Path) -> None:
    settings = load_settings(overrides={"home": tmp_path / "home"}, environ={})
    with Store.from_settings(settings) as s:
        assert s.list_datasets() == []
    assert (tmp_path / "home" / "routerforge.db").exists()


def test_import_load_matrix_and_stats(store: Store) -> None:
    report = store.import_records("ds", small_records(), source="unit")
    assert (report.prompts, report.new_prompts, report.records, report.duplicates) == (3, 3, 4, 0)
    m = store.load_matrix("ds")
    assert m.keys == ["p1", "p2", "p3"] and m.models == ["a", "b"]
    np.testing.assert_array_equal(m.scores, [[1.0, 0.0], [0.5, np.nan], [np.nan, 1.0]])
    np.testing.assert_array_equal(m.costs, [[0.01, 0.001], [0.02, np.nan], [np.nan, np.nan]])
    assert m.splits == ["train", "test", "test"] and m.categories == ["math", "law", "law"]
    assert m.metadata[0] == {"level": 1} and m.metadata[1] == {}
    only_b = store.load_matrix("ds", models=["b"])
    assert only_b.models == ["b"] and only_b.scores.shape == (3, 1)
    with pytest.raises(UnknownModelError, match="'c'"):
        store.load_matrix("ds", models=["c"])

    stats = store.dataset_stats("ds")
    assert stats["prompts"] == 3 and stats["records"] == 4 and stats["source"] == "unit"
    assert stats["models"][0] == {
        "id": "a",
        "n": 2,
        "mean_score": 0.75,
        "mean_cost_usd": pytest.approx(0.015),
        "total_cost_usd": pytest.approx(0.03),
    }
    assert stats["oracle_score"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert stats["splits"] == {"test": 2, "train": 1}
    [info] = store.list_datasets()
    assert (info.name, info.prompts, info.records, info.models) == ("ds", 3, 4, 2)


def test_reimport_is_idempotent_and_replaces_cells(store: Store) -> None:
    store.import_records("ds", small_records())
    before = store.load_matrix("ds")
    again = store.import_records("ds", small_records())
    assert again.new_prompts == 0
    after = store.load_matrix("ds")
    np.testing.assert_array_equal(before.scores, after.scores)
    assert before.keys == after.keys and store.dataset_stats("ds")["records"] == 4
    # a later import replaces the cell; fields it leaves empty keep their value
    store.import_records("ds", [rec("p1", "a", 0.25)])
    m = store.load_matrix("ds")
    assert m.scores[0, 0] == 0.25 and m.categories[0] == "math" and np.isnan(m.costs[0, 0])


@pytest.mark.parametrize(
    ("rule", "expected_score", "expected_cost"), [("min", 0.0, 3.0), ("mean", 0.5, 2.0), ("last", 0.5, 1.0)]
)
def test_duplicate_rules(store: Store, rule: str, expected_score: float, expected_cost: float) -> None:
    outcomes = [
        rec("p", "a", 1.0, cost_usd=2.0),
        rec("p", "a", 0.0, cost_usd=3.0),
        rec("p", "a", 0.5, cost_usd=1.0),
    ]
    report = store.import_records("ds", outcomes, rule=rule)
    assert report.duplicates == 2 and report.records == 1
    m = store.load_matrix("ds")
    assert m.scores[0, 0] == pytest.approx(expected_score)
    assert m.costs[0, 0] == pytest.approx(expected_cost)


def test_invalid_rule_and_scores(store: Store) -> None:
    with pytest.raises(ValidationError, match="rule"):
        store.import_records("ds", [], rule="max")
    with pytest.raises(DataError, match="outside"):
        store.import_records("ds", [rec("p", "a", 1.0), rec("q", "a", 2.0)])
    assert store.list_datasets() == []  # nothing written


def test_strict_import_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(
        '{"prompt": "a", "scores": {"m": 1}}\n{"prompt": "b", "scores": {"m": 9}}\n'
        '{"prompt": "c", "scores": {"m": 0.5}}\n',
        encoding="utf-8",
    )
    records, _ = read_records(path, "wide-jsonl", strict=True)
    with pytest.raises(DataError, match=r"w\.jsonl:2"):
        store.import_records("ds", records)
    assert store.list_datasets() == []
    records, report = read_records(path, "wide-jsonl")  # one stray row of three: skipped and counted
    assert store.import_records("ds", records).records == 2 and report.skipped == 1


def test_prompts_cells_and_incremental_records(store: Store) -> None:
    items = [
        PromptItem("q1", "What is 2+2?", reference="4", choices=["3", "4"], category="math", split="test"),
        PromptItem("q2", "Capital of France?", reference="Paris", metadata={"lang": "en"}),
    ]
    assert store.add_prompts("suite", items) == 2
    assert list(store.iter_prompts("suite")) == items
    assert store.existing_cells("suite") == set()
    m = store.load_matrix("suite")
    assert m.n_prompts == 2 and m.n_models == 0
    written = store.add_records(
        "suite",
        [
            EvalRecord(
                "q1", "What is 2+2?", "small", 1.0, latency_ms=12.5, tokens_in=5, tokens_out=1, response="4"
            ),
            EvalRecord("q2", "Capital of France?", "small", None, response="error"),
        ],
    )
    assert written == 2
    assert store.existing_cells("suite") == {("q1", "small")}  # unscored cells are retried
    # records did not wipe the prompt fields
    assert list(store.iter_prompts("suite")) == items
    [r1, r2] = list(store.iter_records("suite"))
    assert (r1.model, r1.latency_ms, r1.tokens_in, r1.response, r1.reference) == ("small", 12.5, 5, "4", "4")
    assert r2.score is None


def test_unknown_and_deleted_datasets(store: Store) -> None:
    store.import_records("one", small_records())
    store.import_records("two", small_records()[:1])
    with pytest.raises(UnknownDatasetError, match="Available: one, two"):
        store.load_matrix("three")
    store.delete_dataset("one")
    assert [d.name for d in store.list_datasets()] == ["two"]
    with pytest.raises(UnknownDatasetError):
        store.delete_dataset("one")
    assert store.dataset_stats("two")["records"] == 1


def test_candidate_models(store: Store) -> None:
    model = CandidateModel(
        "gpt", provider="openai/gpt-4o", input_usd_per_mtok=2.5, capabilities={"tools": True}
    )
    store.upsert_model(model)
    store.upsert_model(CandidateModel("local", base_url="http://127.0.0.1:8080/v1"))
    assert store.get_model("gpt") == model
    model.output_usd_per_mtok = 10.0
    store.upsert_model(model)
    assert store.get_model("gpt").output_usd_per_mtok == 10.0
    assert [m.id for m in store.list_models()] == ["gpt", "local"]
    store.delete_model("local")
    with pytest.raises(UnknownModelError, match="Available: gpt"):
        store.get_model("local")


@pytest.mark.parametrize("fmt", ["wide-jsonl", "long-jsonl"])
def test_export_round_trip(store: Store, tmp_path: Path, fmt: str) -> None:
    records = [
        *small_records(),
        rec("p4", "a", None, cost_usd=0.5, metadata={"prompt": "clash", "x": [1, 2]}),
    ]
    store.import_records("ds", records)
    out = tmp_path / "out" / "ds.jsonl"
    lines = export_dataset(store, "ds", out, fmt)
    assert lines == (4 if fmt == "wide-jsonl" else 5)
    assert [p.name for p in out.parent.iterdir()] == ["ds.jsonl"]  # no temp file left behind
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["prompt"] == "text of p1"
    again, report = read_records(out, fmt)
    store.import_records("copy", again)
    assert report.skipped == 0
    a, b = store.load_matrix("ds"), store.load_matrix("copy")
    assert (a.keys, a.prompts, a.models, a.splits, a.categories, a.metadata) == (
        b.keys,
        b.prompts,
        b.models,
        b.splits,
        b.categories,
        b.metadata,
    )
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.costs, b.costs)


def test_failed_export_leaves_no_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(UnknownDatasetError):
        export_dataset(store, "missing", tmp_path / "x.jsonl")
    assert list(tmp_path.iterdir()) == [] or not (tmp_path / "x.jsonl").exists()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_unreachable_database_is_a_config_error() -> None:
    from routerforge.errors import ConfigError

    with pytest.raises(ConfigError, match="Cannot open the store"):
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_migrations_match_the_table_models(tmp_path: Path) -> None:
    """`alembic check`: the revisions create exactly what the SQLAlchemy models declare."""
    from alembic import command
    from alembic.config import Config

    from routerforge.migrations import ALEMBIC_INI, MIGRATIONS_DIR

    s = Store(f"sqlite:///{tmp_path / 'check.db'}")
    config = Config(str(ALEMBIC_INI), stdout=io.StringIO())  # not the sys.stdout of alembic's import
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    with s.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.check(config)  # raises AutogenerateDiffsDetected on drift
    s.close()


def test_bad_store_urls_are_config_errors() -> None:
    from routerforge.errors import ConfigError

    with pytest.raises(ConfigError, match="not a database URL"):
        Store("not a url")
    with pytest.raises(ConfigError, match="Cannot use the store URL"):
        Store("nosuchdb://x/y")


def test_empty_imports_write_nothing(store: Store) -> None:
    """A failed or empty import must not leave an empty dataset behind."""
    report = store.import_records("empty", [])
    assert report.outcomes == 0 and report.records == 0
    assert store.add_prompts("empty-prompts", []) == 0
    assert [d.name for d in store.list_datasets()] == []


def test_upsert_model_rejects_what_a_user_gets_wrong(store: Store) -> None:
    for bad in (
        CandidateModel(id=" padded "),
        CandidateModel(id="m", input_usd_per_mtok=float("nan")),
        CandidateModel(id="m", output_usd_per_mtok=-1.0),
        CandidateModel(id="m", context_window=0),
        CandidateModel(id="m", base_url="127.0.0.1:8000"),
    ):
        with pytest.raises(ValidationError):
            store.upsert_model(bad)
    assert store.list_models() == []


def test_price_columns_are_renamed_without_losing_prices(tmp_path: Path) -> None:
    """A store created before the one-price-spelling migration keeps its registered prices."""
    from importlib.resources import files

    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrations = str(files("routerforge") / "migrations")
    config = Config(str(Path(migrations) / "alembic.ini"), stdout=io.StringIO())
    config.set_main_option("script_location", migrations)
    config.set_main_option("version_locations", str(Path(migrations) / "versions"))
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_initial")
        conn.execute(
            text(
                "INSERT INTO candidate_models (id, input_cost_usd_per_mtok, output_cost_usd_per_mtok,"
                " capabilities, created, updated)"
                " VALUES ('old-model', 2.5, 10.0, '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    store = Store(url)
    model = store.get_model("old-model")
    store.close()
    assert (model.input_usd_per_mtok, model.output_usd_per_mtok) == (2.5, 10.0)


def test_postgresql_sessions_run_without_jit_and_keep_the_urls_options(pg_url: str) -> None:
    """JIT off on every PostgreSQL connection (compiling cost 200-570 ms per dashboard page on a partitioned
    10M log); the URL's own options still apply, and a durable engine forces synchronous commits."""
    from sqlalchemy import Engine

    from routerforge.data.sqlutil import make_engine

    def settings(engine: Engine) -> tuple[str, ...]:
        with engine.connect() as conn:
            got = tuple(
                conn.exec_driver_sql(f"SHOW {n}").scalar_one()
                for n in ("jit", "work_mem", "synchronous_commit")
            )
        engine.dispose()
        return got

    plain = settings(make_engine(pg_url))
    assert plain[0] == "off"
    assert settings(make_engine(pg_url + "?options=-c%20work_mem%3D8MB"))[:2] == ("off", "8MB")
    assert settings(make_engine(pg_url + "?options=-c%20jit%3Don"))[0] == "on"  # the URL may turn it back on
    assert settings(make_engine(pg_url, durable=True))[::2] == ("off", "on")
