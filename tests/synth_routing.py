"""Synthetic routing data with a known signal, shared by the router tests (not a test module).

Two topics: model ``a`` is right on topic 0 and wrong on topic 1, model ``b`` the opposite, model ``c``
is a coin flip everywhere. Texts carry the topic word, embeddings the topic centre plus noise.
"""

from __future__ import annotations

import numpy as np

from routerforge.routers.base import PromptBatch

MODELS = ["a", "b", "c"]


def make_data(
    n: int = 240, dim: int = 16, seed: int = 0, missing: float = 0.1
) -> tuple[PromptBatch, np.ndarray, np.ndarray]:
    """(batch, scores with NaN holes, topic per prompt)."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    centres = np.random.default_rng(123).normal(size=(2, dim))
    dense = centres[topic] + 0.6 * rng.normal(size=(n, dim))
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    p = np.stack([np.where(topic == 0, 0.9, 0.1), np.where(topic == 1, 0.9, 0.1), np.full(n, 0.5)], axis=1)
    scores = (rng.random((n, 3)) < p).astype(np.float64)
    scores[rng.random((n, 3)) < missing] = np.nan
    words = ["alpha", "beta"]
    texts = [
        f"question {i} about {words[t]} {words[t]} topic {rng.integers(0, 50)}" for i, t in enumerate(topic)
    ]
    return PromptBatch(texts=texts, dense=dense.astype(np.float32)), scores, topic


def split(batch: PromptBatch, scores: np.ndarray, topic: np.ndarray, n_train: int):
    tr = np.arange(n_train)
    te = np.arange(n_train, len(batch))
    return batch.take(tr), scores[tr], batch.take(te), topic[te]


def assert_learns_topics(pred: np.ndarray, topic: np.ndarray) -> None:
    """Model a must be predicted better than b on topic 0 and worse on topic 1, for most prompts."""
    diff = pred[:, 0] - pred[:, 1]
    assert np.mean(diff[topic == 0] > 0) >= 0.9
    assert np.mean(diff[topic == 1] < 0) >= 0.9
    assert pred.shape[1] == 3
    assert np.all((pred >= 0) & (pred <= 1))
