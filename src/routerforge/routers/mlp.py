"""``mlp``: a multi-output classifier head on frozen prompt embeddings.

Origin: the classifier of RouteLLM's BERT router and of the W&B router tutorial — a small network on top of
a sentence encoder that predicts, for every candidate model, the probability that it answers well. Here
the encoder stays frozen (the embeddings come with the :class:`PromptBatch`) and the head is trained in
numpy:

* input: the dense embedding, optionally followed by a few cheap text features (length, digits, math
  symbols …, standardised) — ``features="dense+text"``;
* one hidden layer (ReLU, dropout), one sigmoid output per model, masked binary cross-entropy (missing
  cells do not count; scores in [0, 1] are soft labels);
* optional pairwise term (``pair_weight``): for two models with different scores on a prompt, the logistic
  loss of the difference of their logits — it trains the *difference* between models directly, which is
  what a strong/weak routing decision ranks by;
* AdamW (decoupled weight decay), early stopping on an inner validation split of the training prompts
  (identical prompts stay on one side), ``n_estimators`` members with different seeds averaged.

Prediction is two matrix products in numpy.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from routerforge.errors import ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.optim import (
    Adam,
    EarlyStopping,
    group_split,
    masked_bce,
    minibatches,
    sigmoid,
    text_groups,
)
from routerforge.routers.registry import register_router

FEATURE_SETS = ("dense", "dense+text", "text")
_MATH = re.compile(r"[=+\-*/^<>√∫∑πθ×÷%$\\]")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
TEXT_FEATURE_NAMES = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_share",
    "math_share",
    "log_numbers",
    "upper_share",
    "question_marks",
    "longest_line_share",
)


def text_features(texts: list[str]) -> np.ndarray:
    """A few cheap, language-agnostic features of each prompt text: ``(n, 9)`` float64."""
    out = np.zeros((len(texts), len(TEXT_FEATURE_NAMES)), dtype=np.float64)
    for i, text in enumerate(texts):
        n_chars = max(len(text), 1)
        lines = text.splitlines() or [""]
        out[i] = (
            np.log1p(len(text)),
            np.log1p(len(text.split())),
            np.log1p(len(lines)),
            len(_DIGIT.findall(text)) / n_chars,
            len(_MATH.findall(text)) / n_chars,
            np.log1p(len(_NUMBER.findall(text))),
            sum(c.isupper() for c in text) / n_chars,
            min(text.count("?"), 5) / 5.0,
            max(len(line) for line in lines) / n_chars,
        )
    return out


def forward(Z: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Logits ``(n, m)`` of one trained member (no dropout)."""
    H = np.maximum(Z @ params["W1"] + params["b1"], 0.0)
    out: np.ndarray = H @ params["W2"] + params["b2"]
    return out


def pairwise_loss(
    logits: np.ndarray, targets: np.ndarray, mask: np.ndarray, tie_weight: float = 0.0
) -> tuple[float, np.ndarray]:
    """Logistic loss on logit differences for every model pair observed on the same prompt.

    The target of pair (a, b) is 1 when ``targets[a] > targets[b]``, 0 when lower and 0.5 for a tie
    (weighted by ``tie_weight``; 0 skips ties). Returns the mean loss and its gradient w.r.t. ``logits``.
    """
    _n, m = logits.shape
    iu, ju = np.triu_indices(m, k=1)
    D = logits[:, iu] - logits[:, ju]
    diff = targets[:, iu] - targets[:, ju]
    both = mask[:, iu] * mask[:, ju]
    T = (diff > 0).astype(np.float64) + 0.5 * (diff == 0)
    W = both * np.where(diff == 0, tie_weight, 1.0)
    count = max(float(W.sum()), 1.0)
    value = float(((np.logaddexp(0.0, D) - D * T) * W).sum() / count)
    G = (sigmoid(D) - T) * W / count
    grad = np.zeros_like(logits)
    np.add.at(grad.T, iu, G.T)
    np.add.at(grad.T, ju, -G.T)
    return value, grad


def train_member(
    Z: np.ndarray,
    S: np.ndarray,
    groups: np.ndarray,
    *,
    hidden: int,
    lr: float,
    weight_decay: float,
    dropout: float,
    max_epochs: int,
    batch_size: int,
    patience: int,
    val_fraction: float,
    pair_weight: float,
    seed: int,
) -> tuple[dict[str, np.ndarray], int]:
    """Train one network; returns its parameters and the epoch early stopping kept."""
    rng = np.random.default_rng(seed)
    _n, d = Z.shape
    m = S.shape[1]
    mask = (~np.isnan(S)).astype(np.float64)
    T = np.nan_to_num(S, nan=0.0)
    mean = np.clip((T * mask).sum(0) / np.maximum(mask.sum(0), 1.0), 1e-3, 1 - 1e-3)
    params = {
        "W1": rng.normal(0.0, np.sqrt(2.0 / d), size=(d, hidden)),
        "b1": np.zeros(hidden),
        "W2": rng.normal(0.0, np.sqrt(1.0 / hidden) * 0.1, size=(hidden, m)),
        "b2": np.log(mean / (1.0 - mean)),
    }
    opt = Adam(params, lr=lr, weight_decay=weight_decay, decay={"W1", "W2"})
    train_rows, val_rows = group_split(groups, val_fraction, rng)
    stopper = EarlyStopping(patience)
    keep = 1.0 - dropout
    for epoch in range(max_epochs):
        for rows in minibatches(train_rows, batch_size, rng):
            Zb = Z[rows]
            A = Zb @ params["W1"] + params["b1"]
            H = np.maximum(A, 0.0)
            if dropout > 0:
                drop = (rng.random(H.shape) < keep) / keep
                H = H * drop
            logits = H @ params["W2"] + params["b2"]
            _, G = masked_bce(logits, T[rows], mask[rows])
            if pair_weight > 0:
                _, Gp = pairwise_loss(logits, T[rows], mask[rows])
                G = G + pair_weight * Gp
            dH = G @ params["W2"].T
            if dropout > 0:
                dH = dH * drop
            dA = dH * (A > 0)
            opt.step(
                {
                    "W2": H.T @ G,
                    "b2": G.sum(0),
                    "W1": Zb.T @ dA,
                    "b1": dA.sum(0),
                }
            )
        if len(val_rows) == 0:
            continue
        val_logits = forward(Z[val_rows], params)
        val_loss, _ = masked_bce(val_logits, T[val_rows], mask[val_rows])
        if pair_weight > 0:
            pl, _ = pairwise_loss(val_logits, T[val_rows], mask[val_rows])
            val_loss += pair_weight * pl
        if stopper.update(val_loss, epoch, params):
            break
    if stopper.best_params is not None:
        return stopper.best_params, stopper.best_epoch + 1
    return params, max_epochs


@register_router
class MlpRouter(Router):
    """Multi-output MLP head on frozen embeddings (numpy, AdamW, early stopping, seed ensemble)."""

    name = "mlp"

    def __init__(
        self,
        *,
        hidden: int = 256,
        features: str = "dense+text",
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        dropout: float = 0.3,
        max_epochs: int = 200,
        batch_size: int = 128,
        patience: int = 8,
        val_fraction: float = 0.1,
        pair_weight: float = 0.0,
        n_estimators: int = 3,
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.features = features
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.pair_weight = pair_weight
        self.n_estimators = n_estimators
        self.random_state = random_state

    # -- inputs -----------------------------------------------------------------------------------
    def _raw_inputs(self, X: PromptBatch) -> np.ndarray:
        parts: list[np.ndarray] = []
        if self.features in ("dense", "dense+text"):
            parts.append(np.asarray(X.dense, dtype=np.float64))
        if self.features in ("dense+text", "text"):
            parts.append(text_features(X.texts))
        return np.hstack(parts)

    def _inputs(self, X: PromptBatch) -> np.ndarray:
        raw = self._raw_inputs(X)
        return (raw - self.input_mean_) / self.input_scale_

    # -- fit / predict ----------------------------------------------------------------------------
    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        if self.features not in FEATURE_SETS:
            raise ValidationError(f"mlp: features must be one of {FEATURE_SETS}, got {self.features!r}.")
        for pname in ("hidden", "max_epochs", "batch_size", "n_estimators"):
            if int(getattr(self, pname)) < 1:
                raise ValidationError(f"mlp: {pname} must be at least 1, got {getattr(self, pname)!r}.")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ValidationError("mlp: dropout and val_fraction must lie in [0, 1).")
        raw = self._raw_inputs(X)
        n_dense = raw.shape[1] - (len(TEXT_FEATURE_NAMES) if "text" in self.features else 0)
        mean = raw.mean(0)
        scale = raw.std(0)
        # Dense embeddings keep their geometry (centred, one common scale); text features are standardised.
        if n_dense:
            mean[:n_dense] = raw[:, :n_dense].mean(0)
            scale[:n_dense] = max(float(raw[:, :n_dense].std()), 1e-6)
        self.input_mean_ = mean
        self.input_scale_ = np.where(scale > 1e-9, scale, 1.0)
        Z = (raw - self.input_mean_) / self.input_scale_
        groups = text_groups(X.texts)
        members: list[dict[str, np.ndarray]] = []
        epochs: list[int] = []
        for k in range(int(self.n_estimators)):
            params, epoch = train_member(
                Z,
                scores,
                groups,
                hidden=int(self.hidden),
                lr=float(self.lr),
                weight_decay=float(self.weight_decay),
                dropout=float(self.dropout),
                max_epochs=int(self.max_epochs),
                batch_size=int(self.batch_size),
                patience=int(self.patience),
                val_fraction=float(self.val_fraction),
                pair_weight=float(self.pair_weight),
                seed=int(self.random_state) * 1009 + k,
            )
            members.append(params)
            epochs.append(epoch)
        self.members_ = members
        self.epochs_ = epochs

    def _predict(self, X: PromptBatch) -> np.ndarray:
        Z = self._inputs(X)
        probs = [sigmoid(forward(Z, p)) for p in self.members_]
        return np.mean(probs, axis=0)

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        Z = self._inputs(X)
        per_member = [sigmoid(forward(Z, p))[0].tolist() for p in self.members_]
        spread = np.std(per_member, axis=0) if len(per_member) > 1 else np.zeros(len(self.models_ or []))
        base.reason = f"mlp head on {self.features} inputs: " + base.reason
        base.details["member_spread"] = dict(zip(self.models_ or [], spread.tolist(), strict=True))
        if "text" in self.features:
            feats = text_features(X.texts)[0]
            base.details["text_features"] = dict(zip(TEXT_FEATURE_NAMES, feats.tolist(), strict=True))
        return base

    # -- artifact ---------------------------------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"input_mean": self.input_mean_, "input_scale": self.input_scale_}
        for k, params in enumerate(self.members_):
            for pname, value in params.items():
                arrays[f"m{k}_{pname}"] = value
        return arrays

    def _state_meta(self) -> dict[str, Any]:
        return {"n_members": len(self.members_), "epochs": list(self.epochs_)}

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Any) -> None:
        self.input_mean_ = arrays["input_mean"]
        self.input_scale_ = arrays["input_scale"]
        self.members_ = [
            {pname: arrays[f"m{k}_{pname}"] for pname in ("W1", "b1", "W2", "b2")}
            for k in range(int(meta["n_members"]))
        ]
        self.epochs_ = [int(e) for e in meta.get("epochs", [])]
