from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import ValidationError
from routerforge.routers.base import PromptBatch
from routerforge.routers.lexical import LexicalRouter, build_vocabulary, terms
from routerforge.routers.registry import available_routers, create_router, load_router
from synth_routing import MODELS, assert_learns_topics, make_data, split


@pytest.fixture(scope="module")
def data():
    return split(*make_data(), n_train=180)


def test_registered():
    assert {"mlp", "mf", "sw", "lexical", "ensemble"} <= set(available_routers())


def test_lexical_learns_words_and_round_trips(data, tmp_path: Path):
    Xtr, Str, Xte, topic = data
    r = LexicalRouter(alpha=1.0).fit(Xtr, Str, MODELS)
    assert_learns_topics(r.predict_scores(Xte), topic)
    r.save(tmp_path / "lex")
    loaded = load_router(tmp_path / "lex")
    np.testing.assert_array_equal(loaded.predict_scores(Xte), r.predict_scores(Xte))
    exp = loaded.explain(Xte)
    assert exp.details["top_terms"]["a"]


def test_lexical_needs_no_dense_vectors(data):
    Xtr, Str, Xte, topic = data
    r = LexicalRouter(alpha=1.0).fit(PromptBatch(Xtr.texts, np.zeros((len(Xtr), 0), np.float32)), Str, MODELS)
    pred = r.predict_scores(PromptBatch(Xte.texts, np.zeros((len(Xte), 0), np.float32)))
    assert_learns_topics(pred, topic)


def test_lexical_matches_sklearn_tfidf(data):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = data[0].texts
    vocab, idf = build_vocabulary(texts, ngram_max=2, min_df=2, max_features=10**6)
    sk = TfidfVectorizer(min_df=2, ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    assert vocab == sorted(sk.vocabulary_)
    np.testing.assert_allclose(idf, sk.idf_[[sk.vocabulary_[t] for t in vocab]])
    assert terms("The cat, THE cat!", 2) == ["the", "cat", "the", "cat", "the cat", "cat the", "the cat"]


def test_ensemble_default_and_custom(data, tmp_path: Path):
    Xtr, Str, Xte, topic = data
    ens = create_router("ensemble").fit(Xtr, Str, MODELS)
    assert_learns_topics(ens.predict_scores(Xte), topic)
    members = [
        {"name": "sw", "params": {"top_k": 20}, "weight": 1.0},
        {"name": "mf", "params": {"dim": 4, "max_epochs": 20}, "weight": 3.0},
    ]
    ens2 = create_router("ensemble", members=members).fit(Xtr, Str, MODELS)
    pred = ens2.predict_scores(Xte)
    parts = [m.predict_scores(Xte) for m in ens2.routers_]
    np.testing.assert_allclose(pred, 0.25 * parts[0] + 0.75 * parts[1])
    ens2.save(tmp_path / "ens")
    loaded = load_router(tmp_path / "ens")
    np.testing.assert_array_equal(loaded.predict_scores(Xte), pred)
    assert [m["router"] for m in loaded.explain(Xte).details["members"]] == ["sw", "mf"]


@pytest.mark.parametrize(
    "members",
    [[], [{"params": {}}], [{"name": "sw", "weight": -1.0}], [{"name": "ensemble"}]],
)
def test_ensemble_bad_members(data, members):
    Xtr, Str, _, _ = data
    with pytest.raises(ValidationError):
        create_router("ensemble", members=members).fit(Xtr, Str, MODELS)
