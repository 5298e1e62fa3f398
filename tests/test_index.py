"""Both index implementations on a small corpus the test writes: upsert, dense/sparse/hybrid, batch, reopen."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from routerforge.config import IndexSettings
from routerforge.embed.base import SparseVector
from routerforge.errors import ArtifactError, ConfigError, IndexUnavailableError, ValidationError
from routerforge.index._common import fuse_rrf
from routerforge.index.base import RRF_K, Hit, Index
from routerforge.index.edge import EdgeIndex
from routerforge.index.factory import open_index
from routerforge.index.qdrant import QdrantIndex

DIM = 16
WORDS = ["cat", "dog", "tax", "law", "atom", "cell", "star", "code", "bond", "song"]


def _corpus(n: int = 40) -> tuple[np.ndarray, list[SparseVector], list[str]]:
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    texts = [f"{WORDS[i % 10]} {WORDS[(i * 3 + 1) % 10]} item{i}" for i in range(n)]
    return dense, [_sparse(t, document=True) for t in texts], texts


def _sparse(text: str, *, document: bool) -> SparseVector:
    """A tiny deterministic bag-of-words encoder (one index per known word / item number)."""
    counts: dict[int, float] = {}
    for tok in text.split():
        idx = (
            WORDS.index(tok)
            if tok in WORDS
            else 100 + int(tok.removeprefix("item"))
            if tok.startswith("item")
            else -1
        )
        if idx >= 0:
            counts[idx] = counts.get(idx, 0.0) + 1.0
    keys = sorted(counts)
    return SparseVector(keys, [counts[k] if document else 1.0 for k in keys])


@pytest.fixture(params=["edge", "edge-exact", "qdrant-memory"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    idx: Index
    if request.param.startswith("edge"):
        idx = EdgeIndex(tmp_path / "shard", DIM, exact=request.param == "edge-exact")
    else:
        idx = QdrantIndex(":memory:", "test", DIM)
    dense, sparse, texts = _corpus()
    idx.upsert(
        list(range(len(texts))),
        dense,
        sparse,
        [{"prompt_id": i, "dataset": "toy", "text": t} for i, t in enumerate(texts)],
    )
    yield idx
    idx.close()


def test_count_and_dense_query_finds_itself(index: Index) -> None:
    dense, _, _ = _corpus()
    assert index.count() == 40
    hits = index.query(dense[[3, 7]], limit=5, mode="dense")
    assert [h[0].id for h in hits] == [3, 7]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    assert all(len(h) == 5 for h in hits)
    assert hits[0][0].score >= hits[0][1].score >= hits[0][4].score


def test_dense_query_matches_numpy_exact_order(index: Index) -> None:
    dense, _, _ = _corpus()
    q = dense[:5] + 0.1
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    hits = index.query(q, limit=10, mode="dense")
    for row, row_hits in enumerate(hits):
        expected = np.argsort(-(dense @ q[row]))[:10]
        assert [h.id for h in row_hits] == expected.tolist()


def test_sparse_query_prefers_the_rare_term(index: Index) -> None:
    dense, _, _ = _corpus()
    query = _sparse("item17 cat", document=False)
    hits = index.query(dense[:1], [query], limit=3, mode="sparse")
    assert hits[0][0].id == 17  # "item17" is unique, so IDF makes it dominate "cat"


def test_hybrid_fuses_both_lists_and_returns_payload(index: Index) -> None:
    dense, _, _ = _corpus()
    # dense points at 5, sparse points at 22: both must be near the top of the fused list
    hits = index.query(
        dense[[5]],
        [_sparse("item22", document=False)],
        limit=4,
        mode="hybrid",
        prefetch_limit=20,
        with_payload=True,
    )
    top = [h.id for h in hits[0][:2]]
    assert set(top) == {5, 22}
    assert hits[0][0].payload is not None
    assert hits[0][0].payload["dataset"] == "toy"


def test_batched_query_matches_single_queries(index: Index) -> None:
    dense, sparse, _ = _corpus()
    batch = index.query(dense, sparse, limit=3, mode="hybrid", prefetch_limit=10)
    assert len(batch) == 40
    dense_batch = index.query(dense, limit=3, mode="dense")
    for i in (0, 13, 39):
        single = index.query(dense[i : i + 1], [sparse[i]], limit=3, mode="hybrid", prefetch_limit=10)
        # RRF ties may be cut in another order: compare the fused scores
        assert [round(h.score, 6) for h in single[0]] == [round(h.score, 6) for h in batch[i]]
        assert [h.id for h in index.query(dense[i : i + 1], limit=3, mode="dense")[0]] == [
            h.id for h in dense_batch[i]
        ]


def test_hybrid_without_sparse_is_a_clear_error(index: Index) -> None:
    dense, _, _ = _corpus()
    with pytest.raises(ValidationError, match="sparse"):
        index.query(dense[:1], None, mode="hybrid")


def test_bad_dimension_is_rejected(index: Index) -> None:
    with pytest.raises(ValidationError, match="shape"):
        index.query(np.zeros((1, DIM + 1), dtype=np.float32), mode="dense")
    with pytest.raises(ValidationError):
        index.upsert([1], np.zeros((1, DIM + 1), dtype=np.float32))


def test_upsert_overwrites_existing_ids(index: Index) -> None:
    vec = np.zeros((1, DIM), dtype=np.float32)
    vec[0, 0] = 1.0
    index.upsert([3], vec, [SparseVector([1], [1.0])])
    assert index.count() == 40
    hits = index.query(vec, limit=1, mode="dense")
    assert hits[0][0].id == 3


def test_edge_shard_reopens_after_close(tmp_path: Path) -> None:
    dense, sparse, _ = _corpus()
    with EdgeIndex(tmp_path / "s", DIM) as idx:
        idx.upsert(list(range(40)), dense, sparse)
        idx.optimize()
        before = idx.query(dense[:3], sparse[:3], limit=5)
    with EdgeIndex(tmp_path / "s", DIM) as again:
        assert again.count() == 40
        after = again.query(dense[:3], sparse[:3], limit=5)

    assert after == before  # ties (and RRF ties) are ordered by id, not by the engine
    with pytest.raises(ArtifactError, match="16-dimensional"):
        EdgeIndex(tmp_path / "s", DIM * 2)


def test_qdrant_local_path_reopens(tmp_path: Path) -> None:
    dense, sparse, _ = _corpus()
    idx = QdrantIndex(str(tmp_path / "q"), "c", DIM)
    idx.upsert(list(range(40)), dense, sparse)
    idx.close()
    again = QdrantIndex(str(tmp_path / "q"), "c", DIM)
    try:
        assert again.count() == 40
        assert again.query(dense[:1], limit=1, mode="dense")[0][0].id == 0
    finally:
        again.close()
    with pytest.raises(ArtifactError, match="size 16"):
        QdrantIndex(str(tmp_path / "q"), "c", 8).close()


def test_open_index_factory(tmp_path: Path) -> None:
    edge = open_index(None, dim=DIM, path=tmp_path / "e")
    assert isinstance(edge, EdgeIndex)
    edge.close()
    q = open_index(IndexSettings(kind="qdrant", url=":memory:"), dim=DIM, collection="x")
    assert isinstance(q, QdrantIndex)
    q.close()
    with pytest.raises(ConfigError):
        open_index(IndexSettings(kind="qdrant"), dim=DIM)
    with pytest.raises(ConfigError):
        open_index(IndexSettings(kind="edge"), dim=DIM)


def _make(kind: str, tmp_path: Path, name: str = "c", **kwargs: object) -> Index:
    if kind == "edge":
        return EdgeIndex(tmp_path / name, DIM, **kwargs)  # type: ignore[arg-type]
    return QdrantIndex(str(tmp_path / "q"), name, DIM, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["edge", "qdrant-local"])
def test_ties_are_ordered_by_id_whatever_the_insertion_order(kind: str, tmp_path: Path) -> None:
    # 30 documents with one sparse vector and one dense vector: every score ties
    dense = np.tile(np.eye(DIM, dtype=np.float32)[0], (30, 1))
    sparse = [SparseVector([1, 2], [1.0, 1.0])] * 30
    q_sparse = [SparseVector([1], [1.0])]
    results = []
    for name, order in (("forward", list(range(30))), ("backward", list(range(29, -1, -1)))):
        index = _make(kind, tmp_path, name)
        index.upsert(order, dense[order], [sparse[i] for i in order])
        results.append(
            [
                index.query(dense[:1], q_sparse, limit=5, mode=m, prefetch_limit=7)[0]
                for m in ("dense", "sparse", "hybrid")
            ]
        )
        index.close()
    assert results[0] == results[1]
    for hits in results[0]:
        assert [h.id for h in hits] == [0, 1, 2, 3, 4]


def test_rrf_fusion_scores_ranks_and_breaks_ties_by_id() -> None:
    dense = [Hit(5, 0.9), Hit(2, 0.8), Hit(7, 0.1)]
    sparse = [Hit(2, 3.0), Hit(9, 2.0), Hit(5, 1.0)]
    fused = fuse_rrf([dense, sparse], limit=3)
    assert [h.id for h in fused] == [2, 5, 9]  # 2: ranks 2 and 1; 5: 1 and 3; 9: 2 (7: 3)
    assert fused[0].score == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert [h.id for h in fuse_rrf([[Hit(8, 1.0)], [Hit(3, 1.0)]], limit=2)] == [3, 8]  # same rank: by id


@pytest.mark.parametrize("kind", ["edge", "qdrant-local"])
def test_open_modes(kind: str, tmp_path: Path) -> None:
    dense, sparse, _ = _corpus()
    with pytest.raises(ArtifactError, match=r"(No Qdrant Edge shard|has no collection)"):
        _make(kind, tmp_path, mode="open")
    index = _make(kind, tmp_path)
    index.upsert(list(range(40)), dense, sparse)
    index.close()
    index = _make(kind, tmp_path, mode="open")
    assert index.count() == 40
    index.close()
    index = _make(kind, tmp_path, mode="replace")
    assert index.count() == 0
    index.close()


def test_edge_shard_without_wal_keeps_its_points_after_close(tmp_path: Path) -> None:
    dense, sparse, _ = _corpus()
    with EdgeIndex(tmp_path / "s", DIM, wal=False) as idx:
        idx.upsert(list(range(40)), dense, sparse)
    assert not (tmp_path / "s" / "wal").exists()
    with EdgeIndex(tmp_path / "s", DIM, mode="open") as again:
        assert again.count() == 40


def test_collection_names_are_plain(tmp_path: Path) -> None:
    for bad in ("../other", "a/b", "", ".hidden..", "x" * 300):
        with pytest.raises(ConfigError, match="Invalid Qdrant collection name"):
            QdrantIndex(":memory:", bad, DIM)


# -- a Qdrant server that is not there, silent, or refusing -------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_qdrant_server_is_a_clear_error_at_open() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    with pytest.raises(IndexUnavailableError, match=f"Cannot reach the Qdrant server at {url}") as info:
        open_index(IndexSettings(kind="qdrant", url=url), dim=DIM, collection="c")
    assert time.perf_counter() - start < 5
    assert "index.url" in str(info.value) and "index.kind: edge" in str(info.value)
    assert isinstance(info.value, ConfigError)  # exit code 2 in the CLI; 503 in the gateway
    assert info.value.http_status == 503


def test_silent_qdrant_server_times_out_quickly() -> None:
    with socket.socket() as sock:  # accepts connections (kernel backlog) and never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.perf_counter()
        with pytest.raises(IndexUnavailableError, match=f"Cannot reach the Qdrant server at {url}"):
            QdrantIndex(url, "c", DIM, timeout=1)
        assert time.perf_counter() - start < 5


class _Refusing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": {"error": "Must provide an API key"}}')

    def log_message(self, *args: object) -> None:
        pass


def test_qdrant_server_refusing_the_key_says_which_setting_to_fix() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(IndexUnavailableError, match=r"refused the request \(HTTP 401\).*index\.api_key"):
            open_index(IndexSettings(kind="qdrant", url=url), dim=DIM, collection="c")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
