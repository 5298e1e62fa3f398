"""``QdrantIndex``: a collection on a Qdrant server (by URL), in a local path, or in memory.

Same schema as :class:`~routerforge.index.edge.EdgeIndex`: dense ``dense`` (cosine), sparse ``bm25``
(IDF modifier), payload with ``prompt_id`` and ``dataset``. ``location`` is a URL
(``http://host:6333``), ``":memory:"`` or a directory path (qdrant-client's local mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.embed.base import SparseVector
from routerforge.errors import ArtifactError, ConfigError
from routerforge.index._common import QUERY_BATCH, UPSERT_BATCH, build_requests, check_upsert
from routerforge.index.base import DENSE_VECTOR, RRF_K, SPARSE_VECTOR, Hit, QueryMode


class QdrantIndex:
    """One collection of a Qdrant server / local-mode client."""

    def __init__(
        self,
        location: str | Path,
        collection: str,
        dim: int,
        *,
        api_key: str | None = None,
        timeout: int | None = None,
    ) -> None:
        from qdrant_client import QdrantClient
        from qdrant_client import models as qm

        self._qm = qm
        self.collection = collection
        self.dim = int(dim)
        loc = str(location)
        if loc == ":memory:":
            self._client = QdrantClient(location=":memory:")
        elif loc.startswith(("http://", "https://")):
            self._client = QdrantClient(url=loc, api_key=api_key, timeout=timeout)
        elif loc:
            self._client = QdrantClient(path=loc)
        else:
            raise ConfigError("QdrantIndex needs a URL, ':memory:' or a directory.", hint="Set index.url.")
        self._closed = False
        self._ensure_collection()

    def _ensure_collection(self) -> None:
        qm = self._qm
        if self._client.collection_exists(self.collection):
            info = self._client.get_collection(self.collection)
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
        self._client.create_collection(
            self.collection,
            vectors_config={DENSE_VECTOR: qm.VectorParams(size=self.dim, distance=qm.Distance.COSINE)},
            sparse_vectors_config={SPARSE_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
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
            for i in range(start, min(start + UPSERT_BATCH, len(ids))):
                vector: dict[str, Any] = {DENSE_VECTOR: arr[i].tolist()}
                if sparse is not None and sparse[i].indices:
                    vector[SPARSE_VECTOR] = qm.SparseVector(
                        indices=list(sparse[i].indices), values=list(sparse[i].values)
                    )
                payload = dict(payloads[i]) if payloads is not None else {"prompt_id": int(ids[i])}
                points.append(qm.PointStruct(id=int(ids[i]), vector=vector, payload=payload))
            self._client.upsert(self.collection, points=points, wait=True)

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
        requests = build_requests(
            dense,
            sparse,
            mode=mode,
            dim=self.dim,
            limit=limit,
            make=lambda vec, sp: self._request(vec, sp, limit, mode, prefetch_limit, with_payload),
        )
        out: list[list[Hit]] = []
        for start in range(0, len(requests), QUERY_BATCH):
            responses = self._client.query_batch_points(
                self.collection, requests=requests[start : start + QUERY_BATCH]
            )
            for response in responses:
                out.append(
                    [
                        Hit(int(p.id), float(p.score), dict(p.payload or {}) if with_payload else None)
                        for p in response.points
                    ]
                )
        return out

    def _request(
        self,
        dense: np.ndarray,
        sparse: SparseVector | None,
        limit: int,
        mode: QueryMode,
        prefetch_limit: int | None,
        with_payload: bool,
    ) -> Any:
        qm = self._qm
        dense_q = dense.tolist()
        if mode == "dense":
            return qm.QueryRequest(query=dense_q, using=DENSE_VECTOR, limit=limit, with_payload=with_payload)
        assert sparse is not None
        sparse_q = qm.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
        if mode == "sparse":
            return qm.QueryRequest(
                query=sparse_q, using=SPARSE_VECTOR, limit=limit, with_payload=with_payload
            )
        pre = max(limit, prefetch_limit or limit)
        return qm.QueryRequest(
            prefetch=[
                qm.Prefetch(query=dense_q, using=DENSE_VECTOR, limit=pre),
                qm.Prefetch(query=sparse_q, using=SPARSE_VECTOR, limit=pre),
            ],
            query=qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)),
            limit=limit,
            with_payload=with_payload,
        )

    def count(self) -> int:
        return int(self._client.count(self.collection, exact=True).count)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def __enter__(self) -> QdrantIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
