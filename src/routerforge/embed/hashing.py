"""A deterministic, dependency-free embedder for tests of the layers above ``embed``."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from routerforge.embed.vectors import empty_vectors, l2_normalize
from routerforge.errors import ConfigError

if TYPE_CHECKING:
    from routerforge.config import EmbedSettings

_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"\w+")


class HashEmbedder:
    """Hashed character n-grams (plus words), signed feature hashing, L2-normalised.

    Texts sharing many n-grams get similar vectors, so neighbour search behaves sensibly; the same
    text always gives the same vector on every machine (crc32, not Python's salted ``hash``).
    """

    def __init__(self, dim: int = 64, *, ngram: int = 3) -> None:
        if dim < 2:
            raise ConfigError(f"HashEmbedder dim must be at least 2, got {dim}.")
        if ngram < 1:
            raise ConfigError(f"HashEmbedder ngram must be at least 1, got {ngram}.")
        self._dim = dim
        self.ngram = ngram

    @classmethod
    def from_settings(cls, settings: EmbedSettings) -> HashEmbedder:
        return cls()

    @property
    def id(self) -> str:
        return f"hash:d{self._dim}:n{self.ngram}"

    @property
    def dim(self) -> int:
        return self._dim

    def _features(self, text: str) -> list[str]:
        norm = _SPACES.sub(" ", text.lower()).strip()
        padded = f" {norm} "
        n = self.ngram
        grams = [padded[i : i + n] for i in range(max(1, len(padded) - n + 1))]
        return grams + ["w:" + w for w in _WORDS.findall(norm)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return empty_vectors(self._dim)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            codes = np.fromiter(
                (zlib.crc32(f.encode("utf-8")) for f in self._features(text)), dtype=np.uint64
            )
            buckets = (codes % self._dim).astype(np.intp)
            signs = np.where((codes >> np.uint64(31)) & np.uint64(1), -1.0, 1.0).astype(np.float32)
            np.add.at(out[row], buckets, signs)
            if not out[row].any():
                out[row, 0] = 1.0
        return l2_normalize(out)
