"""``QdrantIndex``: a collection on a Qdrant server (by URL), in a local path, or in memory.

Same schema as :class:`~routerforge.index.edge.EdgeIndex`: dense ``dense`` (cosine), sparse ``bm25``
(IDF modifier), payload with ``prompt_id`` (and whatever the caller adds). ``location`` is a URL
(``http://host:6333``), ``":memory:"`` or a directory path (qdrant-client's local mode).

Every call to a server goes through :meth:`QdrantIndex._call`, which turns the client's transport and HTTP
errors into :class:`~routerforge.errors.IndexUnavailableError` naming the URL and the fix. Requests time
out after ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT_S`), so a wrong URL fails in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from routerforge.embed.base import SparseVector
from routerforge.errors import ArtifactError, ConfigError, IndexUnavailableError
from routerforge.index._common import QUERY_BATCH, UPSERT_BATCH, SearchMode, check_upsert, run_query
from routerforge.index.base import DENSE_VECTOR, SPARSE_VECTOR, Hit, OpenMode, QueryMode

DEFAULT_TIMEOUT_S = 5
# Qdrant accepts more, but a collection name also travels in URL paths: plain names only.
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}$")
T = TypeVar("T")


def is_collection_name(name: object) -> bool:
    """True for a plain collection name: letters, digits, ``_ . -``, at most 255 characters, no ``..``."""
    return isinstance(name, str) and bool(COLLECTION_NAME.match(name)) and ".." not in name


class QdrantIndex:
    """One collection of a Qdrant server / local-mode client.

    ``exact=True`` makes dense searches exhaustive on a server (local mode always is); ``hnsw_ef`` widens
    the HNSW search. ``mode``: see :data:`~routerforge.index.base.OpenMode`.
    """

    def __init__(
        self,
        location: str | Path,
        collection: str,
        dim: int,
        *,
        api_key: str | None = None,
        timeout: int | None = None,
        exact: bool = False,
        hnsw_ef: int | None = None,
        mode: OpenMode = "open_or_create",
        hnsw_m: int | None = None,
        quantization: str = "none",
        on_disk: bool = False,
    ) -> None:
        from qdrant_client import models as qm

        self._qm = qm
        if not is_collection_name(collection):
            raise ConfigError(
                f"Invalid Qdrant collection name {collection!r}.",
                hint="Use letters, digits, '_', '.' and '-' (at most 255, no '..').",
            )
        self.collection = collection
        self.dim = int(dim)
        self.exact = exact
        self.hnsw_ef = hnsw_ef
        if quantization not in ("none", "int8"):
            raise ConfigError(f"Unknown quantization {quantization!r}.", hint="Use none or int8.")
        self._layout = (hnsw_m, quantization, on_disk)  # applied when this creates the collection
        loc = str(location)
        self.location = loc
        self._remote = loc.startswith(("http://", "https://"))
        self._client = _make_client(loc, api_key, timeout)
        self._closed = False
        try:
            self._open_collection(mode)
        except BaseException:
            self.close()
            raise

    @classmethod
    def drop_collection(
        cls, location: str | Path, collection: str, *, api_key: str | None = None, timeout: int | None = None
    ) -> bool:
        """Delete ``collection`` at ``location`` if it exists (whatever its dimension); True if it did."""
        from qdrant_client import models as qm

        if not is_collection_name(collection):
            raise ConfigError(f"Invalid Qdrant collection name {collection!r}.")
        self = cls.__new__(cls)  # a handle on the client only: no collection is opened or created
        self._qm, self.collection, self.location = qm, collection, str(location)
        self._remote = self.location.startswith(("http://", "https://"))
        self._client, self._closed = _make_client(self.location, api_key, timeout), False
        try:
            if not self._call(self._client.collection_exists, collection):
                return False
            self._call(self._client.delete_collection, collection)
            return True
        finally:
            self.close()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one client call; transport and HTTP errors become :class:`IndexUnavailableError`."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        fix = (
            "Start the server or fix index.url (ROUTERFORGE_INDEX__URL), or set index.kind: edge to keep "
            "the index in process."
        )
        try:
            return fn(*args, **kwargs)
        except ResponseHandlingException as exc:
            reason = exc.source if exc.source is not None else exc
            raise IndexUnavailableError(
                f"Cannot reach the Qdrant server at {self.location}: {reason or type(reason).__name__}.",
                hint=fix,
            ) from exc
        except UnexpectedResponse as exc:
            if exc.status_code in (401, 403):
                raise IndexUnavailableError(
                    f"The Qdrant server at {self.location} refused the request (HTTP {exc.status_code}).",
                    hint="Set index.api_key (ROUTERFORGE_INDEX__API_KEY) to a key of that server.",
                ) from exc
            body = exc.content.decode("utf-8", "replace")[:300] if exc.content else exc.reason_phrase
            raise IndexUnavailableError(
                f"The Qdrant server at {self.location} answered HTTP {exc.status_code} on collection "
                f"{self.collection!r}: {body}",
                hint=fix,
            ) from exc

    def _open_collection(self, mode: OpenMode) -> None:
        qm = self._qm
        client = self._client
        exists = self._call(client.collection_exists, self.collection)
        if exists and mode == "replace":
            self._call(client.delete_collection, self.collection)
            exists = False
        if exists:
            info = self._call(client.get_collection, self.collection)
            vectors = info.config.params.vectors
            size = (
                vectors[DENSE_VECTOR].size if isinstance(vectors, dict) and DENSE_VECTOR in vectors else None
            )
            if size != self.dim:
                raise ArtifactError(
                    f"Qdrant collection {self.collection!r} has dense vectors of size {size}, "
                    f"but {self.dim} were expected.",
                    hint="Use another collection name or the embedder it was built with.",
                )
            return
        if mode == "open":
            raise ArtifactError(
                f"The Qdrant server at {self.location} has no collection {self.collection!r}.",
                hint="Point index.url at the server the router was trained with, or retrain it.",
            )
        hnsw_m, quantization, on_disk = self._layout
        layout: dict[str, Any] = {}
        if self._remote:  # local mode has no HNSW, quantization or mmap storage (and warns about them)
            if hnsw_m is not None:
                layout["hnsw_config"] = qm.HnswConfigDiff(m=hnsw_m)
            if quantization == "int8":
                layout["quantization_config"] = qm.ScalarQuantization(
                    scalar=qm.ScalarQuantizationConfig(
                        type=qm.ScalarType.INT8, quantile=0.99, always_ram=True
                    )
                )
        self._call(
            client.create_collection,
            self.collection,
            vectors_config={
                DENSE_VECTOR: qm.VectorParams(
                    size=self.dim, distance=qm.Distance.COSINE, on_disk=on_disk if self._remote else None
                )
            },
            sparse_vectors_config={SPARSE_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            **layout,
        )

    def upsert(
        self,
        ids: Sequence[int],
        dense: np.ndarray,
        sparse: Sequence[SparseVector] | None = None,
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        qm = self._qm
        arr = check_upsert(ids, dense, sparse, payloads, self.dim)
        for start in range(0, len(ids), UPSERT_BATCH):
            points = []
            rows = arr[start : start + UPSERT_BATCH].tolist()
            for i in range(start, min(start + UPSERT_BATCH, len(ids))):
                vector: dict[str, Any] = {DENSE_VECTOR: rows[i - start]}
                if sparse is not None and sparse[i].indices:
                    vector[SPARSE_VECTOR] = qm.SparseVector(
                        indices=list(sparse[i].indices), values=list(sparse[i].values)
                    )
                payload = dict(payloads[i]) if payloads is not None else {"prompt_id": int(ids[i])}
                points.append(qm.PointStruct(id=int(ids[i]), vector=vector, payload=payload))
            self._call(self._client.upsert, self.collection, points=points, wait=True)

    def optimize(self) -> None:
        """A no-op: a Qdrant server builds its HNSW graph in the background (local mode has none)."""

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
        out: list[list[Hit]] = []
        for start in range(0, len(requests), QUERY_BATCH):
            batch = requests[start : start + QUERY_BATCH]
            for response in self._call(self._client.query_batch_points, self.collection, requests=batch):
                out.append(
                    [
                        Hit(int(p.id), float(p.score), dict(p.payload or {}) if with_payload else None)
                        for p in response.points
                    ]
                )
        return out

    def _request(
        self, dense: np.ndarray, sparse: SparseVector | None, kind: SearchMode, limit: int, with_payload: bool
    ) -> Any:
        qm = self._qm
        if kind == "sparse":
            assert sparse is not None
            vector = qm.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
            return qm.QueryRequest(query=vector, using=SPARSE_VECTOR, limit=limit, with_payload=with_payload)
        params = None  # local mode always searches exhaustively (and warns about search params)
        if self._remote and self.exact:
            params = qm.SearchParams(exact=True)
        elif self._remote and self.hnsw_ef:
            params = qm.SearchParams(hnsw_ef=self.hnsw_ef)
        return qm.QueryRequest(
            query=dense.tolist(), using=DENSE_VECTOR, limit=limit, with_payload=with_payload, params=params
        )

    def count(self) -> int:
        return int(self._call(self._client.count, self.collection, exact=True).count)

    def delete(self, ids: Sequence[int]) -> None:
        qm = self._qm
        for start in range(0, len(ids), UPSERT_BATCH):
            part = [int(i) for i in ids[start : start + UPSERT_BATCH]]
            selector = qm.PointIdsList(points=list(part))
            self._call(self._client.delete, self.collection, points_selector=selector, wait=True)

    def drop(self) -> None:
        """Delete the collection (every replica reading it loses it too) and close the client."""
        try:
            if self._call(self._client.collection_exists, self.collection):
                self._call(self._client.delete_collection, self.collection)
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> QdrantIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_client(location: str, api_key: str | None, timeout: int | None) -> Any:
    from qdrant_client import QdrantClient

    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if location.startswith(("http://", "https://")):
        return QdrantClient(
            url=location,
            api_key=api_key,
            timeout=timeout or DEFAULT_TIMEOUT_S,
            check_compatibility=False,  # its background version probe would warn, not fail
        )
    if location:
        return QdrantClient(path=location)
    raise ConfigError("QdrantIndex needs a URL, ':memory:' or a directory.", hint="Set index.url.")
