"""The embedding contract: text -> L2-normalised float32 dense vectors, and sparse (BM25) vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into dense vectors.

    ``id`` names the model and every setting that changes the vectors (it keys the cache);
    ``embed`` returns an ``(len(texts), dim)`` float32 array whose rows have unit L2 norm.
    """

    @property
    def id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class SparseVector:
    """A sparse vector: sorted unique ``indices`` and their ``values``."""

    indices: list[int]
    values: list[float]
