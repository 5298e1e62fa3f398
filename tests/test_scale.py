"""Data at scale: the Qdrant collection implementation against the Edge shard, resumable import / embed /
index (interrupted in process and killed with SIGKILL), request-log retention. Real SQLite stores, a real
Edge shard and qdrant-client's local mode (no Qdrant server binary is installable here)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from conftest import fresh_pg_database
from routerforge.config import EmbedSettings, IndexSettings
from routerforge.data.bulk import read_checkpoint, stream_import
from routerforge.data.records import EvalRecord
from routerforge.data.schema import EvalRecordRow, PromptRow
from routerforge.data.store import Store
from routerforge.embed.factory import build_embedder
from routerforge.errors import ArtifactError, ConfigError, ValidationError
from routerforge.gateway.config import LoggingConfig
from routerforge.gateway.db import GatewayDB, GwAttempt, GwFeedback, GwRequest
from routerforge.gateway.logentry import AttemptEntry, LogEntry
from routerforge.gateway.requestlog import RequestLog
from routerforge.gateway.retention import RetentionPruner, count_older, prune_request_log
from routerforge.index.bulk import embed_dataset, index_vectors, open_vectors
from routerforge.index.edge import EdgeIndex, is_shard
from routerforge.index.factory import drop_index, open_index
from routerforge.index.qdrant import QdrantIndex

HASH = EmbedSettings(provider="hash", cache=False)
RF = [sys.executable, "-c", "import sys; from routerforge.cli.main import main; sys.exit(main())"]


class Interrupted(Exception):
    pass


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, or a fresh database on the local PostgreSQL (skipped when it is not running)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rf.db'}"
        return
    with fresh_pg_database("rf_scale_") as url:
        yield url


def _records(n_prompts: int, models: tuple[str, ...] = ("a", "b", "c")) -> Iterator[EvalRecord]:
    for i in range(n_prompts):
        for j, m in enumerate(models):
            yield EvalRecord(
                f"p{i}", f"prompt number {i} about topic {i % 7}", m, ((i + j) % 5) / 4, 0.001 * (j + 1)
            )


def _counts(store: Store) -> tuple[int, int]:
    with store.engine.connect() as conn:
        prompts = conn.execute(select(func.count()).select_from(PromptRow)).scalar()
        records = conn.execute(select(func.count()).select_from(EvalRecordRow)).scalar()
    return int(prompts or 0), int(records or 0)


# ----------------------------------------------------------------------------------- Qdrant collection
def _vectors(n: int = 150, dim: int = 24) -> np.ndarray:
    rng = np.random.default_rng(7)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_qdrant_collection_gives_the_edge_shards_results_on_the_same_vectors(tmp_path: Path) -> None:
    vecs = _vectors()
    queries = _vectors(20)[:, :] @ np.eye(24, dtype=np.float32)
    edge = EdgeIndex(tmp_path / "shard", 24, exact=True)
    settings = IndexSettings(
        kind="qdrant", url=str(tmp_path / "qdrant"), timeout_s=3, hnsw_m=8, quantization="int8"
    )
    server = open_index(settings, dim=24, collection="rf-data-test")
    assert isinstance(server, QdrantIndex)
    try:
        for idx in (edge, server):
            idx.upsert(
                range(len(vecs)), vecs, payloads=[{"prompt_id": i, "dataset": "d"} for i in range(len(vecs))]
            )
        assert edge.count() == server.count() == 150
        a = edge.query(queries, limit=10, mode="dense")
        b = server.query(queries, limit=10, mode="dense", with_payload=True)
        assert [[h.id for h in row] for row in a] == [[h.id for h in row] for row in b]
        assert np.allclose(
            [h.score for row in a for h in row], [h.score for row in b for h in row], atol=1e-5
        )
        assert b[0][0].payload == {"prompt_id": b[0][0].id, "dataset": "d"}
        # the nearest neighbour of a stored vector is itself, in both
        assert [row[0].id for row in server.query(vecs[:5], limit=1, mode="dense")] == [0, 1, 2, 3, 4]

        gone = [row[0].id for row in a[:3]]
        for idx in (edge, server):
            idx.delete(gone)
            idx.delete([10_000])  # not there: ignored
        assert edge.count() == server.count() == 150 - len(set(gone))
        a2 = edge.query(queries, limit=10, mode="dense")
        b2 = server.query(queries, limit=10, mode="dense")
        assert [[h.id for h in row] for row in a2] == [[h.id for h in row] for row in b2]
        assert not {h.id for row in b2 for h in row} & set(gone)
    finally:
        edge.close()
        server.close()
    # reopened (read-only use, as a replica): the same points
    again = open_index(settings, dim=24, collection="rf-data-test", mode="open")
    assert again.count() == 150 - len(set(gone))
    again.drop()
    with pytest.raises(ArtifactError, match="no collection"):
        open_index(settings, dim=24, collection="rf-data-test", mode="open")
    assert drop_index(settings, collection="rf-data-test") is False


def test_drop_index_removes_an_edge_shard_and_a_collection(tmp_path: Path) -> None:
    edge = EdgeIndex(tmp_path / "shard", 4)
    edge.upsert([1, 2], np.eye(4, dtype=np.float32)[:2])
    edge.close()
    assert drop_index(None, path=tmp_path / "shard") is True
    assert not is_shard(tmp_path / "shard")
    assert drop_index(None, path=tmp_path / "shard") is False
    settings = IndexSettings(kind="qdrant", url=str(tmp_path / "q"))
    q = open_index(settings, dim=4, collection="c1")
    q.upsert([1], np.eye(4, dtype=np.float32)[:1])
    q.close()
    assert drop_index(settings, collection="c1") is True
    with pytest.raises(ConfigError, match="collection name"):
        drop_index(settings, collection="../etc")
    e2 = EdgeIndex(tmp_path / "s2", 4)
    e2.drop()
    assert not (tmp_path / "s2").exists()


def test_index_settings_validate() -> None:
    with pytest.raises(Exception, match="quantization"):
        IndexSettings(quantization="int4")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="timeout_s"):
        IndexSettings(timeout_s=0)
    with pytest.raises(ConfigError, match="quantization"):
        QdrantIndex(":memory:", "x", 4, quantization="int4")


# ------------------------------------------------------------------------------------ streaming import
def test_stream_import_interrupted_then_resumed_writes_everything_once(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    ckpt = tmp_path / "import.ckpt"

    def failing(after: int) -> Iterator[EvalRecord]:
        for i, r in enumerate(_records(1000)):
            if i == after:
                raise Interrupted
            yield r

    with pytest.raises(Interrupted):
        stream_import(store, "big", failing(1750), chunk_size=400, checkpoint=ckpt, source="gen")
    assert read_checkpoint(ckpt, "big", "gen") == 1600  # 4 chunks committed, the 5th was not
    assert _counts(store) == (534, 1600)  # p0..p533 (the chunk boundary splits prompt 533)
    seen: list[int] = []
    report = stream_import(
        store, "big", _records(1000), chunk_size=400, checkpoint=ckpt, source="gen",
        progress=lambda done, _c: seen.append(done),
    )  # fmt: skip
    assert report.resumed_from == 1600 and report.outcomes == 1400 and report.total == 3000
    assert seen == [2000, 2400, 2800, 3000]
    assert _counts(store) == (1000, 3000)
    matrix = store.load_matrix("big")
    assert matrix.scores.shape == (1000, 3) and not np.isnan(matrix.scores).any()
    assert matrix.scores[7, 1] == ((7 + 1) % 5) / 4
    # a second full run changes nothing (upserts), and another source is refused
    again = stream_import(store, "big", _records(1000), chunk_size=400, source="gen")
    assert again.total == 3000 and _counts(store) == (1000, 3000)
    with pytest.raises(ValidationError, match="belongs to dataset"):
        stream_import(store, "big", _records(10), checkpoint=ckpt, source="other")
    with pytest.raises(ValidationError, match="has only"):
        stream_import(store, "big", _records(10), checkpoint=ckpt, source="gen")
    store.close()


def test_stream_import_killed_with_sigkill_resumes_to_exact_counts(tmp_path: Path) -> None:
    data = tmp_path / "big.jsonl"
    with data.open("w") as fh:
        for i in range(10_000):
            scores = {"a": i % 2, "b": (i // 2) % 2}
            fh.write(
                json.dumps({"id": f"q{i}", "prompt": f"question {i} on subject {i % 13}", "scores": scores})
                + "\n"
            )
    env = {**os.environ, "ROUTERFORGE_HOME": str(tmp_path / "home")}
    ckpt = tmp_path / "ck.json"
    argv = [*RF, "data", "import-stream", str(data), "--name", "big", "--format", "wide-jsonl",
            "--chunk-size", "500", "--checkpoint", str(ckpt), "--no-progress", "--json"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    done = read_checkpoint(ckpt, "big", str(data.resolve()))
    assert 0 < done < 20_000
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(out.stdout)
    assert report["resumed_from"] >= done and report["total"] == 20_000
    store = Store(f"sqlite:///{tmp_path / 'home' / 'routerforge.db'}")
    assert _counts(store) == (10_000, 20_000)
    store.close()


# ----------------------------------------------------------------------------------- embed and index
def _small_store(tmp_path: Path, n: int = 2500) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'rf.db'}")
    stream_import(store, "d", _records(n, ("a", "b")), chunk_size=1000)
    return store


def test_embed_interrupted_then_resumed_equals_a_straight_run(tmp_path: Path) -> None:
    store = _small_store(tmp_path)
    calls: list[int] = []

    def stop_after_two(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:  # the first call reports 0
            raise Interrupted

    with pytest.raises(Interrupted):
        embed_dataset(store, "d", HASH, tmp_path / "run", workers=1, chunk_size=600, progress=stop_after_two)
    with pytest.raises(ValidationError, match="no finished"):
        open_vectors(tmp_path / "run")
    report = embed_dataset(store, "d", HASH, tmp_path / "run", workers=1, chunk_size=600)
    assert (report.chunks, report.chunks_resumed, report.chunks_embedded) == (5, 2, 3)
    vectors = np.asarray(open_vectors(tmp_path / "run"))
    texts = [p.text for p in store.iter_prompts("d")]
    expected = build_embedder(HASH).embed(texts)
    assert vectors.shape == expected.shape == (2500, expected.shape[1])
    assert np.array_equal(vectors, expected)
    # two processes give the same vectors
    two = embed_dataset(store, "d", HASH, tmp_path / "run2", workers=2, chunk_size=700)
    assert two.chunks_embedded == 4 and np.array_equal(np.asarray(open_vectors(tmp_path / "run2")), expected)
    # another chunk size (or dataset, embedder) is refused instead of mixing runs
    with pytest.raises(ValidationError, match="holds an embedding run"):
        embed_dataset(store, "d", HASH, tmp_path / "run", workers=1, chunk_size=500)
    store.close()


@pytest.mark.parametrize("kind", ["edge", "qdrant-local"])
def test_index_interrupted_then_resumed_holds_every_point_once(kind: str, tmp_path: Path) -> None:
    store = _small_store(tmp_path, 900)
    dim = embed_dataset(store, "d", HASH, tmp_path / "run", workers=1, chunk_size=1000).dim
    store.close()

    def make() -> EdgeIndex | QdrantIndex:
        if kind == "edge":
            return EdgeIndex(tmp_path / "run" / "shard", dim, exact=True)
        return QdrantIndex(tmp_path / "q", "rf-data-d", dim)

    index = make()
    seen: list[int] = []

    def stop(done: int, total: int) -> None:
        seen.append(done)
        if done >= 600:
            raise Interrupted

    with pytest.raises(Interrupted):
        index_vectors(index, tmp_path / "run", batch_size=300, progress=stop)
    index.close()
    index = make()
    assert index.count() == 600
    report = index_vectors(index, tmp_path / "run", batch_size=300)
    assert (report.resumed_from, report.upserted, report.count) == (600, 300, 900)
    vectors = np.asarray(open_vectors(tmp_path / "run"))
    hits = index.query(vectors[[5, 800]], limit=1, mode="dense", with_payload=True)
    assert [h[0].id for h in hits] == [5, 800] and hits[1][0].payload == {"prompt_id": 800, "dataset": "d"}
    index.close()


def test_index_build_cli_embeds_then_indexes_and_drops(tmp_path: Path) -> None:
    env = {**os.environ, "ROUTERFORGE_HOME": str(tmp_path / "home"), "ROUTERFORGE_EMBED__PROVIDER": "hash"}
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"text {i}", "scores": {"a": 1, "b": 0}}) + "\n" for i in range(300))
    )
    run = lambda *a: subprocess.run([*RF, *a], env=env, capture_output=True, text=True, timeout=300)  # noqa: E731
    assert run("data", "import-stream", str(data), "--name", "d", "--json").returncode == 0
    out = run("index", "build", "--data", "d", "--dir", str(tmp_path / "w"), "--workers", "1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["embed"]["prompts"] == 300 and doc["index"]["count"] == 300 and doc["index"]["kind"] == "edge"
    again = json.loads(run("index", "build", "--data", "d", "--dir", str(tmp_path / "w"), "--json").stdout)
    assert again["embed"]["chunks_embedded"] == 0 and again["index"]["upserted"] == 0
    bad = run("index", "build", "--data", "nope", "--dir", str(tmp_path / "x"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "nope" in bad.stderr
    both = run("index", "drop")
    assert both.returncode != 0 and "exactly one" in both.stderr and "Traceback" not in both.stderr
    dropped = json.loads(run("index", "drop", "--dir", str(tmp_path / "w"), "--json").stdout)
    assert dropped["existed"] is True and not is_shard(tmp_path / "w" / "shard")


# ---------------------------------------------------------------------------------------- retention
def _fill_log(db: GatewayDB, days: int = 10, per_day: int = 30) -> dt.datetime:
    now = dt.datetime(2026, 6, 30, 12, 0, 0)
    log = RequestLog(db)
    entries = []
    for d in range(days):
        for k in range(per_day):
            entries.append(
                LogEntry(
                    id=f"r{d:02d}-{k:03d}",
                    tenant=f"t{k % 3}",
                    created_at=now - dt.timedelta(days=d, minutes=k),
                    requested_model="m",
                    status=200,
                    attempts=[AttemptEntry("m", "ok", 200, 1.0), AttemptEntry("n", "skipped")],
                )
            )
    log.write(entries)
    for d in range(days):
        log.add_feedback(request_id=f"r{d:02d}-000", tenant="t0", rating=1.0, labels={}, comment=None)
    return now


def _table_count(db: GatewayDB, table: type) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def test_prune_deletes_old_requests_attempts_and_feedback_in_batches(db_url: str) -> None:
    db = GatewayDB(db_url)
    now = _fill_log(db)
    cutoff = now - dt.timedelta(days=4, hours=12)  # days 5..9 go: 5 × 30 requests
    assert count_older(db, cutoff) == 150
    partial = prune_request_log(db, cutoff, batch_size=40, max_batches=2)
    assert (partial.requests, partial.batches, partial.complete) == (80, 2, False)
    seen: list[int] = []
    rest = prune_request_log(db, cutoff, batch_size=40, progress=lambda r: seen.append(r.requests))
    assert rest.requests == 70 and rest.attempts == 140 and rest.feedback == 3 and rest.complete
    assert seen == [40, 70]
    assert _table_count(db, GwRequest) == 150 and _table_count(db, GwAttempt) == 300
    assert _table_count(db, GwFeedback) == 5
    with db.engine.connect() as conn:
        oldest = conn.execute(select(func.min(GwRequest.created_at))).scalar()
    assert oldest is not None and oldest >= cutoff
    assert prune_request_log(db, cutoff).requests == 0
    with pytest.raises(ValidationError):
        prune_request_log(db, cutoff, batch_size=0)
    db.close()


def test_retention_pruner_and_setting(tmp_path: Path) -> None:
    db = GatewayDB(f"sqlite:///{tmp_path / 'gw.db'}")
    log = RequestLog(db)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    log.write([LogEntry(id=f"x{i}", tenant="t", created_at=now - dt.timedelta(days=i), requested_model="m", status=200)
               for i in range(10)])  # fmt: skip
    pruner = RetentionPruner(db, 3.5, interval_s=3600)
    report = pruner.run_once()
    assert report.requests == 6 and pruner.deleted == 6 and _table_count(db, GwRequest) == 4
    pruner.start()  # the thread prunes at once, then sleeps; close stops it without waiting an hour
    t0 = time.monotonic()
    pruner.close()
    assert time.monotonic() - t0 < 5
    with pytest.raises(ValidationError):
        RetentionPruner(db, 0)
    db.close()
    assert LoggingConfig(retention_days=30).retention_days == 30
    with pytest.raises(Exception, match="retention_days"):
        LoggingConfig(retention_days=0)


def test_prune_logs_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ROUTERFORGE_HOME": str(home)}
    db = GatewayDB(f"sqlite:///{home / 'routerforge.db'}")
    log = RequestLog(db)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    log.write([LogEntry(id=f"x{i}", tenant="t", created_at=now - dt.timedelta(days=i), requested_model="m", status=200)
               for i in range(10)])  # fmt: skip
    db.close()
    run = lambda *a: subprocess.run([*RF, *a], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    dry = json.loads(run("prune-logs", "--older-than", "5d", "--dry-run", "--json").stdout)
    assert dry["would_delete"] == 5
    none = run("prune-logs")
    assert none.returncode != 0 and "retention" in none.stderr.lower() and "Traceback" not in none.stderr
    bad = run("prune-logs", "--older-than", "soon")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    (home / "gateway.yaml").write_text("logging:\n  retention_days: 7.5\n  prune_batch_size: 1\n")
    done = json.loads(run("prune-logs", "--json").stdout)
    assert done["requests"] == 2 and done["batches"] == 2
    gw = json.loads(run("prune-logs", "--older-than", "1d", "--batch-size", "3", "--json").stdout)
    assert gw["requests"] == 7 and gw["batches"] == 3


def test_gateway_with_retention_prunes_its_log_while_serving(tmp_path: Path) -> None:
    from gateway_server import LoopbackServer
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    settings = load_settings(overrides={"home": tmp_path, "embed": {"provider": "hash"}})
    db = GatewayDB(settings.store_url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    RequestLog(db).write(
        [LogEntry(id=f"o{i}", tenant="t", created_at=now - dt.timedelta(days=i), requested_model="m", status=200)
         for i in range(6)]
    )  # fmt: skip
    app = create_app(
        settings,
        parse_gateway_config(
            {"require_auth": False, "logging": {"retention_days": 2.5, "prune_batch_size": 2}}
        ),
    )
    with LoopbackServer(app):
        deadline = time.monotonic() + 30
        while _table_count(db, GwRequest) > 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        pruner = app.state.service.pruner
        assert pruner is not None and pruner.deleted == 3
    assert _table_count(db, GwRequest) == 3  # days 0, 1, 2 stay
    db.close()
