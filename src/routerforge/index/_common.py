"""Input checks shared by the index implementations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from routerforge.embed.base import SparseVector
from routerforge.errors import ValidationError
from routerforge.index.base import RRF_K, Hit, QueryMode

UPSERT_BATCH = 512
QUERY_BATCH = 256


def check_upsert(
    ids: Sequence[int],
    dense: np.ndarray,
    sparse: Sequence[SparseVector] | None,
    payloads: Sequence[dict[str, Any]] | None,
    dim: int,
) -> np.ndarray:
    arr = np.asarray(dense, dtype=np.float32)
    n = len(ids)
    if arr.ndim != 2 or arr.shape != (n, dim):
        raise ValidationError(f"Index upsert: dense vectors have shape {arr.shape}, expected ({n}, {dim}).")
    if sparse is not None and len(sparse) != n:
        raise ValidationError(f"Index upsert: {len(sparse)} sparse vectors for {n} ids.")
    if payloads is not None and len(payloads) != n:
        raise ValidationError(f"Index upsert: {len(payloads)} payloads for {n} ids.")
    if any(int(i) < 0 for i in ids):
        raise ValidationError("Index upsert: point ids must be non-negative integers.")
    return arr


def check_query(
    dense: np.ndarray, sparse: Sequence[SparseVector] | None, mode: QueryMode, dim: int, limit: int
) -> np.ndarray:
    if mode not in ("dense", "sparse", "hybrid"):
        raise ValidationError(f"Unknown query mode {mode!r}; use dense, sparse or hybrid.")
    if limit < 1:
        raise ValidationError(f"Query limit must be ≥ 1, got {limit}.")
    arr = np.asarray(dense, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or (arr.shape[0] and arr.shape[1] != dim):
        raise ValidationError(f"Index query: dense vectors have shape {arr.shape}, expected (n, {dim}).")
    if mode != "dense":
        if sparse is None:
            raise ValidationError(
                f"A {mode} query needs sparse (BM25) vectors.",
                hint="Embed with sparse=True or use mode='dense'.",
            )
        if len(sparse) != arr.shape[0]:
            raise ValidationError(
                f"Index query: {len(sparse)} sparse vectors for {arr.shape[0]} dense vectors."
            )
    return arr


SearchMode = Literal["dense", "sparse"]
TIE_MARGIN = 8  # hits asked past ``limit`` to see whether the last place is tied


def run_query(
    dense: np.ndarray,
    sparse: Sequence[SparseVector] | None,
    *,
    mode: QueryMode,
    dim: int,
    limit: int,
    prefetch_limit: int | None,
    make: Callable[[np.ndarray, SparseVector | None, SearchMode, int], Any],
    execute: Callable[[list[Any]], list[list[Hit]]],
) -> list[list[Hit]]:
    """One batched query for both engines: ``make(vector, sparse_or_none, "dense"|"sparse", limit)`` builds
    an engine request, ``execute(requests)`` runs them (one hit list per request, best first).

    Results do not depend on the engine's order among equal scores (which changes from one build of a
    shard to the next): hits tied with the last place are all fetched, then ordered by score and id.
    ``hybrid`` fuses a dense and a sparse list of ``prefetch_limit`` hits with reciprocal rank fusion
    (``1 / (RRF_K + rank)``, rank from 1), here rather than in the engine, for the same reason.
    """
    arr = check_query(dense, sparse, mode, dim, limit)

    def search(kind: SearchMode, lim: int) -> list[list[Hit]]:
        def run(rows: list[int], asks: list[int]) -> list[list[Hit]]:
            requests = [
                make(arr[i], None if sparse is None else sparse[i], kind, ask)
                for i, ask in zip(rows, asks, strict=True)
            ]
            return execute(requests)

        return complete_ties(run, arr.shape[0], lim)

    if mode != "hybrid":
        return search(mode, limit)
    pre = max(limit, prefetch_limit or limit)
    return [fuse_rrf((d, s), limit) for d, s in zip(search("dense", pre), search("sparse", pre), strict=True)]


def complete_ties(
    run: Callable[[list[int], list[int]], list[list[Hit]]], n: int, limit: int
) -> list[list[Hit]]:
    """The ``limit`` best hits of each of ``n`` rows, ties at the last place resolved by id.

    ``run(rows, asks)`` queries rows ``rows`` for ``asks`` hits each. A row whose answer is full and ends
    on the score of its ``limit``-th hit may hide more hits of that score: it is asked again for 4× more.
    """
    out: list[list[Hit]] = [[] for _ in range(n)]
    asks = dict.fromkeys(range(n), limit + TIE_MARGIN)
    pending = list(range(n))
    while pending:
        results = run(pending, [asks[i] for i in pending])
        again = []
        for row, hits in zip(pending, results, strict=True):
            if len(hits) >= asks[row] and hits[limit - 1].score == hits[-1].score:
                asks[row] *= 4
                again.append(row)
            else:
                out[row] = sorted(hits, key=lambda h: (-h.score, h.id))[:limit]
        pending = again
    return out


def fuse_rrf(lists: Sequence[Sequence[Hit]], limit: int, k: int = RRF_K) -> list[Hit]:
    """Reciprocal rank fusion of ranked hit lists: score ``Σ 1 / (k + rank)``; ties by id."""
    scores: dict[int, float] = {}
    payloads: dict[int, dict[str, Any] | None] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            payloads.setdefault(hit.id, hit.payload)
    best = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [Hit(i, scores[i], payloads[i]) for i in best]
