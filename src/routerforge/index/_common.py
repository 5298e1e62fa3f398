"""Input checks shared by the index implementations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from routerforge.embed.base import SparseVector
from routerforge.errors import ValidationError
from routerforge.index.base import QueryMode

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


def build_requests(
    dense: np.ndarray,
    sparse: Sequence[SparseVector] | None,
    *,
    mode: QueryMode,
    dim: int,
    limit: int,
    make: Any,
) -> list[Any]:
    """Check a batched query and build one engine request per row with ``make(vector, sparse_or_none)``."""
    arr = check_query(dense, sparse, mode, dim, limit)
    return [make(arr[i], None if sparse is None else sparse[i]) for i in range(arr.shape[0])]
