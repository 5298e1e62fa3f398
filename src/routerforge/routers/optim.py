"""Small numpy training helpers shared by the trained routers (``mlp``, ``mf``).

Only numpy: an Adam optimiser with decoupled weight decay, a seeded minibatch schedule, an inner
train/validation split with early stopping bookkeeping, and the masked binary cross-entropy used for
scores in [0, 1] with missing cells.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class Adam:
    """Adam with decoupled weight decay (AdamW) over a dict of numpy parameters, updated in place.

    ``decay`` names the parameters that receive weight decay (biases usually do not).
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        decay: set[str] | None = None,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        self.lr = lr
        self.weight_decay = weight_decay
        self.decay = set(params) if decay is None else set(decay)
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.t = 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        for name, grad in grads.items():
            p = self.params[name]
            m = self.m[name]
            v = self.v[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            if self.weight_decay and name in self.decay:
                p -= self.lr * self.weight_decay * p
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def masked_bce(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy over observed cells and its gradient w.r.t. ``logits``.

    ``targets`` may be soft (in [0, 1]); ``mask`` is 1 for observed cells, 0 for missing ones (the
    targets of missing cells are ignored, so they may hold any finite value).
    """
    count = max(float(mask.sum()), 1.0)
    # log(1 + exp(-|z|)) + max(z, 0) - z * y
    loss = np.logaddexp(0.0, logits) - logits * targets
    value = float((loss * mask).sum() / count)
    grad = (sigmoid(logits) - targets) * mask / count
    return value, grad


def inner_split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` into (train, validation) positions; validation is empty when too small."""
    order = rng.permutation(n)
    n_val = round(n * val_fraction)
    if val_fraction <= 0 or n_val < 1 or n - n_val < 1:
        return order, order[:0]
    return order[n_val:], order[:n_val]


def group_split(
    groups: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`inner_split` but keeps rows with the same group id on the same side."""
    uniq, inverse = np.unique(groups, return_inverse=True)
    _g_train, g_val = inner_split(len(uniq), val_fraction, rng)
    is_val = np.zeros(len(uniq), dtype=bool)
    is_val[g_val] = True
    rows = np.arange(len(groups))
    val_rows = rows[is_val[inverse]]
    train_rows = rng.permutation(rows[~is_val[inverse]])
    return train_rows, val_rows


def minibatches(rows: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled minibatches of ``rows`` for one epoch."""
    order = rows[rng.permutation(len(rows))]
    for start in range(0, len(order), max(batch_size, 1)):
        yield order[start : start + batch_size]


class EarlyStopping:
    """Tracks the best validation loss and a copy of the parameters at that point."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = np.inf
        self.best_epoch = -1
        self.best_params: dict[str, np.ndarray] | None = None
        self.bad_epochs = 0

    def update(self, loss: float, epoch: int, params: dict[str, np.ndarray]) -> bool:
        """Record ``loss``; returns True when training should stop."""
        if loss < self.best - 1e-6:
            self.best = loss
            self.best_epoch = epoch
            self.best_params = {k: v.copy() for k, v in params.items()}
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs > self.patience


def text_groups(texts: list[str]) -> np.ndarray:
    """An integer group id per text so identical prompts share a group (for inner splits)."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(t, len(ids)) for t in texts], dtype=np.int64)
