"""``EdgeIndex``: the in-process Qdrant Edge shard (``qdrant-edge-py``), the default index.

The shard is a directory; ``EdgeIndex(path, dim)`` creates it when empty and reopens it otherwise
(checking the dimension). Schema: dense ``dense`` (cosine) + sparse ``bm25`` (IDF modifier).

A live shard's files are pre-allocated (32 MiB pages and write-ahead-log segments, mostly holes): about
100 MiB of apparent size for any number of points. Keep shards in scratch space; to ship an index, ship its
vectors and rebuild (``routers/knn.py`` does).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.embed.base import SparseVector
from routerforge.errors import ArtifactError
from routerforge.files import make_private_tree, private_dir
from routerforge.index._common import QUERY_BATCH, UPSERT_BATCH, SearchMode, check_upsert, run_query
from routerforge.index.base import DENSE_VECTOR, SPARSE_VECTOR, Hit, OpenMode, QueryMode

CONFIG_FILE = "edge_config.json"


class EdgeIndex:
    """A Qdrant Edge shard in ``path`` holding ``dim``-dimensional dense vectors (+ BM25 sparse).

    ``exact=True`` makes dense searches exhaustive (exact and deterministic; about 1 ms per query on
    10,000 MiniLM vectors) instead of HNSW (approximate: ~97 % recall at k=100, and the graph built by
    :meth:`optimize` differs from build to build). ``hnsw_ef`` widens the HNSW search. ``wal=False``
    creates the shard without a write-ahead log (faster writes, durable only after :meth:`flush`: for a
    scratch shard rebuilt from saved vectors). ``mode``: see :data:`~routerforge.index.base.OpenMode`.
    ``search_threads``: the shard's search thread pool (``None``: one per CPU, Qdrant's default). ``1``
    runs every search in the calling thread: a shard of one segment (a router's scratch shard) has nothing
    to search in parallel, and handing each query to a pool thread costs a thread wake-up, which on a
    busy machine can take longer than the search itself. Given when reopening a shard, the count is saved
    with it (Qdrant Edge rewrites the shard's configuration).
    """

    def __init__(
        self,
        path: str | Path,
        dim: int,
        *,
        hnsw_ef: int | None = None,
        exact: bool = False,
        wal: bool = True,
        mode: OpenMode = "open_or_create",
        search_threads: int | None = None,
    ) -> None:
        import qdrant_edge as qe

        self.path = Path(path)
        self.dim = int(dim)
        self.hnsw_ef = hnsw_ef
        self.exact = exact
        self.search_threads = search_threads
        self._qe = qe
        if mode == "replace" and is_shard(self.path):
            shutil.rmtree(self.path)
        if mode == "open" and not is_shard(self.path):
            raise ArtifactError(
                f"No Qdrant Edge shard in {self.path}.",
                hint="Build the index first (or pass the right path).",
            )
        if is_shard(self.path):
            saved = _saved_dim(self.path)
            if saved is not None and saved != self.dim:
                raise ArtifactError(
                    f"Index shard {self.path} holds {saved}-dimensional vectors, but {self.dim} were expected.",
                    hint="Use the embedder the index was built with, or rebuild the index.",
                )
            try:
                runtime = None if search_threads is None else self._config(None, search_threads)
                self._shard = qe.EdgeShard.load(str(self.path), runtime)
            except Exception as exc:  # the binding raises plain exceptions
                raise ArtifactError(f"Cannot open the Qdrant Edge shard in {self.path}: {exc}") from exc
        else:
            private_dir(self.path)  # 0700, like every file routerforge writes (routerforge.files)
            self._shard = qe.EdgeShard.create(str(self.path), self._config(wal, search_threads))
        self._closed = False

    def _config(self, wal: bool | None, search_threads: int | None) -> Any:
        """The shard schema (``wal`` ``None``: keep the shard's own setting, when loading)."""
        qe = self._qe
        return qe.EdgeConfig(
            vectors={DENSE_VECTOR: qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            wal_enabled=wal,
            max_search_threads=search_threads,
        )

    # -- writes -----------------------------------------------------------------------------------
    def upsert(
        self,
        ids: Sequence[int],
        dense: np.ndarray,
        sparse: Sequence[SparseVector] | None = None,
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        qe = self._qe
        arr = check_upsert(ids, dense, sparse, payloads, self.dim)
        for start in range(0, len(ids), UPSERT_BATCH):
            points = []
            rows = arr[start : start + UPSERT_BATCH].tolist()
            for i in range(start, min(start + UPSERT_BATCH, len(ids))):
                vector: dict[str, Any] = {DENSE_VECTOR: rows[i - start]}
                if sparse is not None and sparse[i].indices:
                    vector[SPARSE_VECTOR] = qe.SparseVector(list(sparse[i].indices), list(sparse[i].values))
                payload = dict(payloads[i]) if payloads is not None else {"prompt_id": int(ids[i])}
                points.append(qe.Point(int(ids[i]), vector, payload))
            self._shard.update(qe.UpdateOperation.upsert_points(points))

    def optimize(self) -> None:
        """Build the HNSW / sparse indexes now (otherwise queries on big shards scan segments)."""
        self._shard.optimize()

    def flush(self) -> None:
        self._shard.flush()

    # -- reads ------------------------------------------------------------------------------------
    def query(
        self,
        dense: np.ndarray,
        sparse: Sequence[SparseVector] | None = None,
        *,
        limit: int = 10,
        mode: QueryMode = "hybrid",
        prefetch_limit: int | None = None,
        with_payload: bool = False,
    ) -> list[list[Hit]]:
        return run_query(
            dense,
            sparse,
            mode=mode,
            dim=self.dim,
            limit=limit,
            prefetch_limit=prefetch_limit,
            make=lambda vec, sp, kind, lim: self._request(vec, sp, kind, lim, with_payload),
            execute=lambda requests: self._execute(requests, with_payload),
        )

    def _execute(self, requests: list[Any], with_payload: bool) -> list[list[Hit]]:
        if len(requests) == 1:  # one prompt (the request path): a plain query has less overhead
            results = [self._shard.query(requests[0])]
        else:
            results = []
            for start in range(0, len(requests), QUERY_BATCH):
                batch = self._qe.QueryBatchRequest(requests[start : start + QUERY_BATCH])
                results.extend(self._shard.query_batch(batch))
        return [
            [Hit(int(p.id), float(p.score), p.payload if with_payload else None) for p in points]
            for points in results
        ]

    def _request(
        self, dense: np.ndarray, sparse: SparseVector | None, kind: SearchMode, limit: int, with_payload: bool
    ) -> Any:
        qe = self._qe
        if kind == "sparse":
            assert sparse is not None
            vector = qe.SparseVector(list(sparse.indices), list(sparse.values))
            query = qe.Query.Nearest(vector, using=SPARSE_VECTOR)
            return qe.QueryRequest(limit=limit, query=query, with_payload=with_payload)
        params = None
        if self.exact:
            params = qe.SearchParams(exact=True)
        elif self.hnsw_ef:
            params = qe.SearchParams(hnsw_ef=self.hnsw_ef)
        query = qe.Query.Nearest(dense.tolist(), using=DENSE_VECTOR)
        return qe.QueryRequest(limit=limit, query=query, with_payload=with_payload, params=params)

    def count(self) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def delete(self, ids: Sequence[int]) -> None:
        qe = self._qe
        for start in range(0, len(ids), UPSERT_BATCH):
            part = [int(i) for i in ids[start : start + UPSERT_BATCH]]
            self._shard.update(qe.UpdateOperation.delete_points(part))

    def drop(self) -> None:
        """Close the shard and delete its directory."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shard.close()

    def __enter__(self) -> EdgeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _saved_dim(path: Path) -> int | None:
    try:
        doc = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    try:
        return int(doc["vectors"][DENSE_VECTOR]["size"])
    except (KeyError, TypeError, ValueError):
        return None


def is_shard(path: str | Path) -> bool:
    """True when ``path`` holds a Qdrant Edge shard."""
    return (Path(path) / CONFIG_FILE).is_file()


__all__ = ["EdgeIndex", "is_shard"]


def _skip_wal_preallocation(directory: str, names: list[str]) -> set[str]:
    # The write-ahead log pre-allocates empty segments named ``tmp-open-N`` from a background thread;
    # they hold no data and may vanish mid-copy, so they are never copied.
    return {n for n in names if n.startswith("tmp-open-")}


def copy_shard(source: Path, target: Path) -> None:
    """Copy a shard directory (closed, or flushed) to ``target``; the copy is private (0700/0600).

    ``shutil`` writes the holes of the pre-allocated files as zeros: a copy takes ~100 MiB or more."""
    shutil.copytree(source, target, ignore=_skip_wal_preallocation)
    make_private_tree(target)
