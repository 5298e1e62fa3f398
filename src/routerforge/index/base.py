"""The vector-index contract, shared by the Qdrant Edge (in-process) and Qdrant server implementations.

One collection schema: a named dense vector ``dense`` (cosine), a sparse vector ``bm25`` with the IDF
modifier, and a payload holding at least ``prompt_id`` (int position in the router's training data) and
``dataset``. An index knows nothing about models, scores or routing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from routerforge.embed.base import SparseVector

QueryMode = Literal["dense", "sparse", "hybrid"]
# How an index is opened: reuse what is there or start empty ("open_or_create"), drop what is there and
# start empty ("replace"), or require it to exist ("open": a missing shard/collection is an ArtifactError).
OpenMode = Literal["open_or_create", "replace", "open"]

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
RRF_K = 60


@dataclass(frozen=True, slots=True)
class Hit:
    id: int
    score: float
    payload: dict[str, Any] | None = None


class Index(Protocol):
    def upsert(
        self,
        ids: Sequence[int],
        dense: np.ndarray,
        sparse: Sequence[SparseVector] | None = None,
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None: ...

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
        """Batched query: one list of hits (best first) per row of ``dense``.

        ``mode="hybrid"`` prefetches ``prefetch_limit`` (default ``limit``) dense and sparse candidates and
        fuses them with reciprocal rank fusion (the hit scores are then RRF scores, not similarities).
        """
        ...

    def optimize(self) -> None:
        """Build the search structures (HNSW) now; a no-op where the engine does it by itself."""
        ...

    def count(self) -> int: ...

    def delete(self, ids: Sequence[int]) -> None:
        """Remove these points (ids that are not there are ignored)."""
        ...

    def drop(self) -> None:
        """Delete the whole index (the Edge shard's directory, the Qdrant collection) and close it."""
        ...

    def close(self) -> None: ...
