"""BM25 sparse vectors."""

from __future__ import annotations

import json

import pytest

from routerforge.embed import Bm25Encoder, SparseVector
from routerforge.embed.sparse import idf
from routerforge.errors import ArtifactError, ConfigError

DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Foxes are quick; the fox is quicker than the dog.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "",
]


def _score(query: SparseVector, doc: SparseVector) -> float:
    weights = dict(zip(doc.indices, doc.values, strict=True))
    return sum(v * weights.get(i, 0.0) for i, v in zip(query.indices, query.values, strict=True))


def test_documents_and_queries_are_sane() -> None:
    enc = Bm25Encoder()
    docs = enc.encode_documents(DOCS)
    assert len(docs) == 4 and all(isinstance(d, SparseVector) for d in docs)
    for d in docs:
        assert d.indices == sorted(set(d.indices)) and len(d.values) == len(d.indices)
        assert all(v > 0 for v in d.values)
    assert docs[3].indices == []
    (query,) = enc.encode_queries(["quick fox"])
    assert query.values == [1.0, 1.0]
    scores = [_score(query, d) for d in docs]
    assert scores[1] > scores[0] > scores[2] == 0.0  # stemming: foxes/fox, quick/quicker
    # repeated terms saturate (k) and long documents are damped (b)
    single, double = enc.encode_documents(["energy", "energy energy"])
    assert single.values[0] < double.values[0] < 2 * single.values[0]


def test_fit_measures_average_length_and_round_trips() -> None:
    enc = Bm25Encoder().fit(DOCS[:3])
    assert enc.token_count("The quick brown fox jumps over the lazy dog.") == 6  # stop words dropped
    assert 4.0 < enc.avg_len < 10.0
    again = Bm25Encoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.encode_documents(DOCS) == enc.encode_documents(DOCS)
    with pytest.raises(ArtifactError):
        Bm25Encoder.from_dict({"format_version": 0})
    with pytest.raises(ConfigError):
        Bm25Encoder(b=2.0)


def test_idf_matches_qdrant_formula() -> None:
    assert idf(10, 1) > idf(10, 5) > 0.0
