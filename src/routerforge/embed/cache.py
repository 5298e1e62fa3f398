"""A persistent vector cache: re-embedding a dataset costs one SQLite lookup per text.

One SQLite file (WAL mode, safe for several processes; created 0600 in a 0700 directory, since the keys
are hashes of prompts) holds float32 blobs keyed by
``(embedder id, sha256(text))``. The embedder id names every setting that changes the vectors, so
changing the model, the token limit or the truncation strategy never returns stale vectors.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from routerforge.embed.base import Embedder
from routerforge.embed.vectors import empty_vectors
from routerforge.errors import ConfigError
from routerforge.files import create_private_file, private_dir

CACHE_FILE = "embeddings.sqlite"
_CHUNK = 500  # ids per SELECT ... IN (...); below SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    embedder_id TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (embedder_id, text_sha256)
) WITHOUT ROWID
"""


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _check_location(cache_dir: Path) -> None:
    package_dir = Path(__file__).resolve().parents[1]
    resolved = cache_dir.resolve()
    if resolved == package_dir or package_dir in resolved.parents:
        raise ConfigError(
            f"The embedding cache directory {cache_dir} is inside the routerforge package.",
            hint="Point ROUTERFORGE_HOME (or the cache_dir argument) somewhere else.",
        )


class VectorCache:
    """The SQLite store behind :class:`CachedEmbedder` (one connection per thread)."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.path = self.cache_dir / CACHE_FILE
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        _check_location(self.cache_dir)
        try:
            private_dir(self.cache_dir)
            create_private_file(self.path)  # 0600 before SQLite opens it; -wal/-shm get the same mode
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot open the embedding cache {self.path}: {exc}",
                hint="Check that the directory is writable, or disable the cache with embed.cache: false.",
            ) from exc
        self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def get(self, embedder_id: str, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        conn = self._connect()
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT text_sha256, vector FROM vectors WHERE embedder_id = ? AND text_sha256 IN ({marks})",
                (embedder_id, *chunk),
            )
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape == (dim,):
                    found[key] = vec
        return found

    def put(self, embedder_id: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        rows = [
            (embedder_id, key, np.ascontiguousarray(vec, dtype=np.float32).tobytes())
            for key, vec in zip(keys, vectors, strict=True)
        ]
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

    def count(self, embedder_id: str | None = None) -> int:
        conn = self._connect()
        if embedder_id is None:
            return int(conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        sql = "SELECT COUNT(*) FROM vectors WHERE embedder_id = ?"
        return int(conn.execute(sql, (embedder_id,)).fetchone()[0])

    def clear(self, embedder_id: str | None = None) -> int:
        """Delete the cached vectors of one embedder (or all); returns how many rows went."""
        with self._transaction() as conn:
            if embedder_id is None:
                cur = conn.execute("DELETE FROM vectors")
            else:
                cur = conn.execute("DELETE FROM vectors WHERE embedder_id = ?", (embedder_id,))
            return int(cur.rowcount)

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class CachedEmbedder:
    """Wraps an embedder with a persistent cache; only texts never seen before reach the model.

    Duplicate texts within one call are embedded once. ``hits`` and ``misses`` count texts served
    from and added to the cache by this instance.
    """

    def __init__(self, embedder: Embedder, cache_dir: str | Path) -> None:
        self.embedder = embedder
        self.cache = VectorCache(cache_dir)
        self.hits = 0
        self.misses = 0

    @property
    def id(self) -> str:
        return self.embedder.id

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return empty_vectors(self.dim)
        keys = [text_key(t) for t in texts]
        unique: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            unique.setdefault(key, text)
        found = self.cache.get(self.id, list(unique), self.dim)
        missing = [k for k in unique if k not in found]
        if missing:
            fresh = np.asarray(self.embedder.embed([unique[k] for k in missing]), dtype=np.float32)
            self.cache.put(self.id, missing, fresh)
            found.update(zip(missing, fresh, strict=True))
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def close(self) -> None:
        self.cache.close()
