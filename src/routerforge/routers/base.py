"""The router contract.

A router learns, from eval records, to predict each candidate model's score on a new prompt:

* ``__init__`` stores parameters and does nothing else;
* ``fit(X, scores, models)`` validates and learns, returns ``self``; learned state ends in ``_``;
* ``predict_scores(X)`` returns an ``(n_prompts, n_models)`` float array of expected scores in [0, 1];
* ``explain(X)`` says what drove the prediction for the first prompt of ``X``;
* ``save(dir)`` / ``load(dir)`` use plain files: ``router.json`` (type, params, model names, format
  version, training-data fingerprint) plus ``.npy`` arrays / an index shard. No pickle.

Routers never call an embedding API: ``X`` carries the text plus the dense (and sparse) vectors computed
once by ``embed/``. Choosing a model from the predictions is the policy layer's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routerforge.embed.base import SparseVector

ROUTER_FORMAT_VERSION = 1


@dataclass
class PromptBatch:
    """A batch of prompts with their precomputed vectors.

    ``dense`` is ``(n, dim)`` float32 with unit rows; ``sparse`` holds one BM25 vector per prompt (or
    is ``None`` when the embedding pipeline was asked for dense vectors only).
    """

    texts: list[str]
    dense: np.ndarray
    sparse: list[SparseVector] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: Sequence[int] | np.ndarray) -> PromptBatch:
        idx = np.asarray(rows, dtype=np.int64)
        return PromptBatch(
            texts=[self.texts[i] for i in idx],
            dense=self.dense[idx],
            sparse=None if self.sparse is None else [self.sparse[i] for i in idx],
        )


@dataclass
class Explanation:
    """What drove one prediction: free-form ``reason`` plus structured details."""

    router: str
    reason: str
    details: dict[str, Any]
