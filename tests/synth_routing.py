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


def make_battles(n: int, seed: int = 0) -> tuple[PromptBatch, np.ndarray, np.ndarray]:
    """Battle-shaped training data (what the battles importer stores): every row scores exactly two of
    five models, 1/0 for the winner/loser or 0.5 each for a tie. Model 0 wins on topic 0, model 1 on
    topic 1; the other three are weaker everywhere."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    centres = np.random.default_rng(7).normal(size=(2, 16))
    dense = centres[topic] + 0.5 * rng.normal(size=(n, 16))
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    strength = np.array([[2.0, -1.0, 0.0, 0.0, 0.0], [-1.0, 2.0, 0.0, 0.0, 0.0]])
    S = np.full((n, 5), np.nan)
    for r in range(n):
        a, b = rng.choice(5, size=2, replace=False)
        p = 1.0 / (1.0 + np.exp(-(strength[topic[r], a] - strength[topic[r], b])))
        u = rng.random()
        S[r, a], S[r, b] = (0.5, 0.5) if u < 0.1 else ((1.0, 0.0) if u < 0.1 + 0.9 * p else (0.0, 1.0))
    X = PromptBatch(texts=[f"battle {r} topic {topic[r]}" for r in range(n)], dense=dense.astype(np.float32))
    return X, S, topic
