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

import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from routerforge.config import IndexSettings
from routerforge.embed.base import SparseVector
from routerforge.errors import NotFittedError, ValidationError
from routerforge.routers.artifact import ROUTER_FORMAT_VERSION, read_router, write_router

__all__ = ["ROUTER_FORMAT_VERSION", "Explanation", "PromptBatch", "Router", "validate_training_data"]


@dataclass
class PromptBatch:
    """A batch of prompts with their precomputed vectors.

    ``dense`` is ``(n, dim)`` float32 with unit rows; ``sparse`` holds one BM25 vector per prompt (or
    is ``None`` when the embedding pipeline was asked for dense vectors only).
    """

    texts: list[str]
    dense: np.ndarray
    sparse: list[SparseVector] | None = None
    # per-prompt metadata known at routing time (``{"category": "law", "source": "app-1"}``; a missing key
    # means "not given"), or ``None`` when no prompt has any; see ``routers.metadata``
    meta: list[dict[str, str]] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: Sequence[int] | np.ndarray) -> PromptBatch:
        idx = np.asarray(rows, dtype=np.int64)
        return PromptBatch(
            texts=[self.texts[i] for i in idx],
            dense=self.dense[idx],
            sparse=None if self.sparse is None else [self.sparse[i] for i in idx],
            meta=None if self.meta is None else [self.meta[i] for i in idx],
        )

    def meta_values(self, key: str) -> list[str | None]:
        """The value of metadata ``key`` for every prompt (``None`` where it is not given)."""
        if self.meta is None:
            return [None] * len(self.texts)
        return [m.get(key) or None for m in self.meta]


@dataclass
class Explanation:
    """What drove one prediction: free-form ``reason`` plus structured details."""

    router: str
    reason: str
    details: dict[str, Any]


# -- the Router abstract base class ----------------------------------------------------------------
# Subclasses declare their parameters as keyword arguments of ``__init__`` (stored under the same
# attribute names, nothing else), implement ``_fit`` / ``_predict``, and declare their learned state
# through ``_state_arrays`` / ``_state_meta`` / ``_restore_state`` so that ``save``/``load`` (shared,
# in ``routers/artifact.py``) work for every router without pickle.


class Router(ABC):
    """Base class of every router: validation, the fitted check, save/load and explain live here.

    Subclass contract:

    * class attribute ``name`` (the registry name, e.g. ``"knn"``);
    * ``__init__(self, *, <params>, random_state: int = 0)`` stores each parameter under its own name;
    * ``_fit(X, scores)`` learns from a validated batch; ``self.models_`` is already set;
    * ``_predict(X)`` returns ``(len(X), n_models)`` scores (the base clips them into [0, 1]);
    * ``_state_arrays()`` -> ``{name: ndarray}`` and ``_state_meta()`` -> JSON-able dict of the learned
      state; ``_restore_state(arrays, meta, directory)`` sets it back after ``load``;
    * optionally ``_explain(X)`` (first prompt only), ``_save_extra(dir)`` for non-array files (an index
      shard), and ``_requires_dense`` (False for routers that only read the text).
    """

    name: ClassVar[str] = ""
    _requires_dense: ClassVar[bool] = True

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    # -- parameters -------------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the keyword parameters of ``__init__`` (sklearn style)."""
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({inner})"

    # -- fitted state -----------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return getattr(self, "models_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"Router {self.name!r}")

    def configure_index(self, settings: IndexSettings | None, *, name: str = "router") -> None:  # noqa: B027
        """Where a router that keeps a vector index builds it (``index`` settings; ``name`` names a Qdrant
        collection). Called by the training pipeline before ``fit``; routers without an index ignore it."""

    def auxiliary_texts(self) -> list[str]:
        """Texts besides the prompts that this router needs as vectors (``semantic``: its route utterances).
        The training pipeline embeds them like the prompts and passes them to :meth:`set_auxiliary_vectors`
        before ``fit``; most routers need none."""
        return []

    def set_auxiliary_vectors(self, dense: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Receive the dense vectors of :meth:`auxiliary_texts` (same embedder as the prompts)."""

    def set_model_outcomes(  # noqa: B027 - optional hook
        self, costs_usd: np.ndarray | None, latency_ms: np.ndarray | None
    ) -> None:
        """Receive the recorded cost and latency of each (training prompt, model) — ``(n, m)``, NaN when
        unknown — before ``fit``; only routers that rank models by them (``cluster`` with ``weights``) keep them."""

    def uses_sparse(self) -> bool:
        """True when this router reads the sparse (BM25) vectors of a batch; callers may skip them otherwise."""
        return False

    @property
    def models(self) -> list[str]:
        self._check_fitted()
        return list(self.models_ or [])

    # -- public API -------------------------------------------------------------------------------
    def fit(self, X: PromptBatch, scores: np.ndarray, models: Sequence[str]) -> Self:
        """Validate ``X`` / ``scores`` (n × m, NaN = missing) / ``models`` and learn. Returns ``self``."""
        score_arr = validate_training_data(X, scores, models, requires_dense=self._requires_dense)
        self.models_: list[str] | None = list(models)
        self.n_train_ = len(X)
        self.dim_ = int(X.dense.shape[1]) if X.dense is not None and X.dense.ndim == 2 else 0
        self.fingerprint_ = training_fingerprint(X.texts, score_arr, models)
        try:
            self._fit(X, score_arr)
        except BaseException:
            self.models_ = None
            raise
        return self

    def predict_scores(self, X: PromptBatch) -> np.ndarray:
        """Expected score of every model on every prompt: ``(len(X), n_models)`` floats in [0, 1]."""
        self._check_fitted()
        self._validate_batch(X)
        if len(X) == 0:
            return np.zeros((0, len(self.models_ or [])), dtype=np.float64)
        out = np.asarray(self._predict(X), dtype=np.float64)
        return np.clip(out, 0.0, 1.0)

    def explain(self, X: PromptBatch) -> Explanation:
        """What drove the prediction for the first prompt of ``X``."""
        self._check_fitted()
        self._validate_batch(X)
        if len(X) == 0:
            raise ValidationError("explain() needs at least one prompt.")
        return self._explain(X.take([0]))

    def save(self, directory: str | Path) -> Path:
        """Write ``router.json`` plus arrays (and extra files) into ``directory``; returns it."""
        self._check_fitted()
        return write_router(self, Path(directory))

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Read a router saved by :meth:`save`; checks the format version and the router type.

        Call it on the router's class (``KnnRouter.load(dir)``); to load a directory of any type use
        ``routerforge.routers.registry.load_router`` (or ``TrainedRouter.load`` for the whole directory).
        """
        if not cls.name:
            raise TypeError(
                "Router.load() needs a concrete router class; use routerforge.routers.registry.load_router(dir)."
            )
        return read_router(cls, Path(directory))

    # -- subclass hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None: ...

    @abstractmethod
    def _predict(self, X: PromptBatch) -> np.ndarray: ...

    def _explain(self, X: PromptBatch) -> Explanation:
        pred = self._predict(X)[0]
        assert self.models_ is not None
        scores = {m: float(np.clip(v, 0.0, 1.0)) for m, v in zip(self.models_, pred, strict=True)}
        best = max(scores, key=lambda m: scores[m])
        return Explanation(
            router=self.name,
            reason=f"{self.name} predicts {best} best ({scores[best]:.3f}).",
            details={"predicted": scores},
        )

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _state_meta(self) -> dict[str, Any]:
        return {}

    def _restore_state(  # noqa: B027 - optional hook
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path
    ) -> None:
        """Set the learned state back from what ``_state_arrays``/``_state_meta`` saved."""

    def _save_extra(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Write non-array files (e.g. an index shard) into the artifact directory."""

    # -- validation helpers -----------------------------------------------------------------------
    def _validate_batch(self, X: PromptBatch) -> None:
        if not isinstance(X, PromptBatch):
            raise ValidationError(f"Expected a PromptBatch, got {type(X).__name__}.")
        _check_batch_shape(X, requires_dense=self._requires_dense)
        dim = getattr(self, "dim_", 0)
        if self._requires_dense and dim and len(X) and X.dense.shape[1] != dim:
            raise ValidationError(
                f"Router {self.name!r} was trained on {dim}-dimensional vectors but got {X.dense.shape[1]}.",
                hint="Embed the prompts with the embedder the router was trained with.",
            )


def _check_batch_shape(X: PromptBatch, *, requires_dense: bool) -> None:
    n = len(X.texts)
    if requires_dense:
        dense = np.asarray(X.dense)
        if dense.ndim != 2 or dense.shape[0] != n:
            raise ValidationError(
                f"PromptBatch has {n} texts but dense vectors of shape {tuple(dense.shape)}; expected ({n}, dim)."
            )
        if n and not np.all(np.isfinite(dense)):
            raise ValidationError("PromptBatch dense vectors contain NaN or infinite values.")
    if X.sparse is not None and len(X.sparse) != n:
        raise ValidationError(f"PromptBatch has {n} texts but {len(X.sparse)} sparse vectors.")
    if X.meta is not None and len(X.meta) != n:
        raise ValidationError(f"PromptBatch has {n} texts but {len(X.meta)} metadata entries.")


def validate_training_data(
    X: PromptBatch, scores: np.ndarray, models: Sequence[str], *, requires_dense: bool = True
) -> np.ndarray:
    """Check a training batch; returns ``scores`` as float64. Raises ``ValidationError`` with the reason."""
    if not isinstance(X, PromptBatch):
        raise ValidationError(f"Expected a PromptBatch, got {type(X).__name__}.")
    _check_batch_shape(X, requires_dense=requires_dense)
    n = len(X)
    models = list(models)
    if n == 0:
        raise ValidationError("Cannot fit a router on zero prompts.")
    if len(models) < 2:
        raise ValidationError(
            f"A router needs at least 2 candidate models, got {len(models)}: {models}.",
            hint="Import results for more models, or pick another dataset.",
        )
    if len(set(models)) != len(models):
        raise ValidationError(f"Model names must be unique, got {models}.")
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Scores must be a numeric (n × m) array: {exc}") from exc
    if arr.shape != (n, len(models)):
        raise ValidationError(
            f"Scores have shape {arr.shape}; expected ({n}, {len(models)}) for {n} prompts."
        )
    if np.isinf(arr).any():
        raise ValidationError("Scores contain infinite values; use NaN for missing cells.")
    finite = arr[~np.isnan(arr)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValidationError(
            f"Scores must lie in [0, 1]; found values in [{finite.min():g}, {finite.max():g}].",
            hint="Normalise the scores when importing the data.",
        )
    empty = [m for j, m in enumerate(models) if np.isnan(arr[:, j]).all()]
    if empty:
        raise ValidationError(
            f"No training scores at all for model(s) {empty}.", hint="Drop them or add records."
        )
    return arr


def training_fingerprint(texts: Sequence[str], scores: np.ndarray, models: Sequence[str]) -> str:
    """A short, stable hash of the training data (texts, scores, model names)."""
    digest = hashlib.sha256()
    for model in models:
        digest.update(model.encode("utf-8") + b"\x00")
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    arr = np.ascontiguousarray(np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-1.0))
    digest.update(arr.tobytes())
    return digest.hexdigest()[:32]
