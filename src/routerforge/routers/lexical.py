"""``lexical``: a linear model on TF-IDF word n-grams of the prompt text, one output per model.

Origin: the classic bag-of-words baseline for routing/difficulty prediction (TF-IDF + ridge). It sees
what sentence embeddings blur away — "EXCEPT", "NOT", numbers, formula tokens, the wording of answer
choices — and is the strongest single component measured on RouteLLM MMLU; it works best averaged with a
neighbour router (see ``ensemble``).

Fit: lowercase, tokens ``\\b\\w\\w+\\b``, word n-grams up to ``ngram_max``, terms seen in at least
``min_df`` training prompts (at most ``max_features``, the most frequent), sublinear TF × smoothed IDF,
unit-length rows; then one ridge regression (``alpha``) per model on its observed scores (scikit-learn,
training only). Predict: the same vectoriser and a sparse dot product in numpy.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.errors import ArtifactError, ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.registry import register_router

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
VOCAB_FILE = "vocab.json"


def terms(text: str, ngram_max: int) -> list[str]:
    """Word n-grams (1..ngram_max) of a lowercased text."""
    tokens = _TOKEN.findall(text.lower())
    out = list(tokens)
    for n in range(2, ngram_max + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def build_vocabulary(
    texts: list[str], *, ngram_max: int, min_df: int, max_features: int
) -> tuple[list[str], np.ndarray]:
    """Terms kept (sorted) and their IDF ``ln((1 + n) / (1 + df)) + 1``."""
    df: Counter[str] = Counter()
    tf: Counter[str] = Counter()
    for text in texts:
        counts = Counter(terms(text, ngram_max))
        df.update(counts.keys())
        tf.update(counts)
    kept = [t for t, c in df.items() if c >= min_df]
    if len(kept) > max_features:
        kept.sort(key=lambda t: (-tf[t], t))
        kept = kept[:max_features]
    kept.sort()
    n = len(texts)
    idf = np.array([np.log((1.0 + n) / (1.0 + df[t])) + 1.0 for t in kept], dtype=np.float64)
    return kept, idf


def vectorize(
    texts: list[str], vocab: dict[str, int], idf: np.ndarray, ngram_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts (indptr, indices, values) of the unit-length sublinear TF-IDF rows."""
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for text in texts:
        counts = Counter(vocab[t] for t in terms(text, ngram_max) if t in vocab)
        if counts:
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            val = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * idf[idx]
            val /= np.linalg.norm(val)
        else:
            idx = np.zeros(0, dtype=np.int64)
            val = np.zeros(0)
        indices.append(idx)
        values.append(val)
        indptr.append(indptr[-1] + len(idx))
    return (
        np.asarray(indptr, dtype=np.int64),
        np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
        np.concatenate(values) if values else np.zeros(0),
    )


def sparse_dot(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Rows of a CSR matrix times ``coef`` (vocab × m), numpy only."""
    n = len(indptr) - 1
    out = np.zeros((n, coef.shape[1]))
    if len(indices) == 0:
        return out
    contrib = values[:, None] * coef[indices]
    rows = np.repeat(np.arange(n), np.diff(indptr))
    np.add.at(out, rows, contrib)
    return out


@register_router
class LexicalRouter(Router):
    """TF-IDF word n-grams → ridge regression per model (sparse dot product at predict time)."""

    name = "lexical"
    _requires_dense = False

    def __init__(
        self,
        *,
        alpha: float = 10.0,
        ngram_max: int = 2,
        min_df: int = 2,
        max_features: int = 200_000,
        random_state: int = 0,
    ) -> None:
        self.alpha = alpha
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.max_features = max_features
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        from scipy.sparse import csr_matrix
        from sklearn.linear_model import Ridge

        if self.alpha <= 0 or int(self.ngram_max) < 1 or int(self.min_df) < 1 or int(self.max_features) < 1:
            raise ValidationError("lexical: alpha must be > 0 and ngram_max, min_df, max_features ≥ 1.")
        vocab_list, idf = build_vocabulary(
            X.texts,
            ngram_max=int(self.ngram_max),
            min_df=int(self.min_df),
            max_features=int(self.max_features),
        )
        self.vocab_ = vocab_list
        self.idf_ = idf
        self._index = {t: i for i, t in enumerate(vocab_list)}
        indptr, indices, values = vectorize(X.texts, self._index, idf, int(self.ngram_max))
        A = csr_matrix((values, indices, indptr), shape=(len(X), max(len(vocab_list), 1)))
        m = scores.shape[1]
        coef = np.zeros((A.shape[1], m))
        intercept = np.zeros(m)
        observed = ~np.isnan(scores)
        if observed.all():
            ridge = Ridge(alpha=float(self.alpha)).fit(A, scores)
            coef[:] = np.asarray(ridge.coef_).reshape(m, -1).T
            intercept[:] = np.asarray(ridge.intercept_).reshape(m)
        else:
            for j in range(m):
                rows = observed[:, j]
                ridge = Ridge(alpha=float(self.alpha)).fit(A[rows], scores[rows, j])
                coef[:, j] = ridge.coef_
                intercept[j] = float(ridge.intercept_)
        self.coef_ = coef[: len(vocab_list)]
        self.intercept_ = intercept

    def _predict(self, X: PromptBatch) -> np.ndarray:
        indptr, indices, values = vectorize(X.texts, self._index, self.idf_, int(self.ngram_max))
        return sparse_dot(indptr, indices, values, self.coef_) + self.intercept_

    def _explain(self, X: PromptBatch) -> Explanation:
        base = super()._explain(X)
        _indptr, indices, values = vectorize(X.texts[:1], self._index, self.idf_, int(self.ngram_max))
        models = list(self.models_ or [])
        top: dict[str, list[dict[str, float | str]]] = {}
        for j, model in enumerate(models):
            contrib = values * self.coef_[indices, j]
            order = np.argsort(-np.abs(contrib))[:5]
            top[model] = [{"term": self.vocab_[indices[k]], "contribution": float(contrib[k])} for k in order]
        base.reason = "lexical (TF-IDF ridge): " + base.reason
        base.details["top_terms"] = top
        return base

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"idf": self.idf_, "coef": self.coef_, "intercept": self.intercept_}

    def _save_extra(self, directory: Path) -> None:
        (directory / VOCAB_FILE).write_text(json.dumps(self.vocab_, ensure_ascii=False), encoding="utf-8")

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        try:
            vocab = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"Cannot read {directory / VOCAB_FILE}: {exc}") from exc
        self.vocab_ = [str(t) for t in vocab]
        self._index = {t: i for i, t in enumerate(self.vocab_)}
        self.idf_ = arrays["idf"]
        self.coef_ = arrays["coef"]
        self.intercept_ = arrays["intercept"]
        if len(self.vocab_) != len(self.idf_):
            raise ArtifactError(f"{directory}: vocabulary and IDF lengths differ; save the router again.")
