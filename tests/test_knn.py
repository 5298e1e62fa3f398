"""knn behaviour on small synthetic data where the right answer is known, and the embedding pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from routerforge.config import EmbedSettings, IndexSettings, Settings
from routerforge.data.matrix import ScoreMatrix
from routerforge.embed.base import SparseVector
from routerforge.errors import ArtifactError, ConfigError, IndexUnavailableError, ValidationError
from routerforge.policy.trained import TrainedRouter, train_router
from routerforge.routers.base import PromptBatch
from routerforge.routers.knn import KnnRouter

MODELS = ["a", "b"]


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _clusters(n_per: int = 20, seed: int = 0) -> tuple[PromptBatch, np.ndarray]:
    """Two tight clusters: model a is right on cluster 0, model b on cluster 1."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8, dtype=np.float32)[:2]
    dense, scores, texts = [], [], []
    for c in range(2):
        for i in range(n_per):
            dense.append(centres[c] + 0.05 * rng.normal(size=8))
            scores.append([1.0, 0.0] if c == 0 else [0.0, 1.0])
            texts.append(f"cluster {c} prompt {i}")
    return PromptBatch(texts, _unit(np.array(dense))), np.array(scores)


def _query(vec: list[float], text: str = "a new prompt") -> PromptBatch:
    v = np.zeros((1, 8), dtype=np.float32)
    v[0, : len(vec)] = vec
    return PromptBatch([text], _unit(v))


def test_neighbours_decide_the_prediction() -> None:
    X, scores = _clusters()
    router = KnnRouter(k=10).fit(X, scores, MODELS)
    near0 = router.predict_scores(_query([1.0, 0.1]))[0]
    near1 = router.predict_scores(_query([0.1, 1.0]))[0]
    assert near0[0] > 0.9 > 0.1 > near0[1]
    assert near1[1] > 0.9 > 0.1 > near1[0]


def test_k1_without_shrinkage_copies_the_nearest_prompt() -> None:
    X, scores = _clusters()
    router = KnnRouter(k=1, shrinkage=0.0).fit(X, scores, MODELS)
    np.testing.assert_array_equal(router.predict_scores(_query([0.2, 1.0]))[0], [0.0, 1.0])


def test_shrinkage_pulls_toward_the_global_mean() -> None:
    X, scores = _clusters()
    scores = scores.copy()
    scores[:5, 1] = 1.0  # global means: a 0.5, b 0.625
    q = _query([1.0, 0.05])
    weak = KnnRouter(k=3, shrinkage=0.0).fit(X, scores, MODELS).predict_scores(q)[0]
    strong = KnnRouter(k=3, shrinkage=1e6).fit(X, scores, MODELS).predict_scores(q)[0]
    np.testing.assert_allclose(strong, np.nanmean(scores, axis=0), atol=1e-4)
    assert weak[0] == pytest.approx(1.0)


def test_far_neighbours_weigh_less_than_near_ones() -> None:
    # one neighbour on top of the query says "a", several at 60° say "b"
    dense = _unit(np.array([[1, 0, 0, 0]] + [[0.5, 0.866, 0, 0]] * 4, dtype=np.float32))
    scores = np.array([[1.0, 0.0]] + [[0.0, 1.0]] * 4)
    X = PromptBatch([f"p{i}" for i in range(5)], dense)
    q = PromptBatch(["q"], _unit(np.array([[1, 0.01, 0, 0]], dtype=np.float32)))
    uniform = KnnRouter(k=5, weighting="power", power=0.0, shrinkage=0.0).fit(X, scores, MODELS)
    sharp = KnnRouter(k=5, weighting="softmax", temperature=0.05, shrinkage=0.0).fit(X, scores, MODELS)
    assert uniform.predict_scores(q)[0, 0] == pytest.approx(0.2, abs=1e-6)
    assert sharp.predict_scores(q)[0, 0] > 0.95


def test_missing_cells_are_ignored_per_model() -> None:
    X, scores = _clusters()
    scores = scores.copy()
    scores[:20, 1] = np.nan  # cluster 0 has no scores for model b
    pred = KnnRouter(k=10, shrinkage=0.0).fit(X, scores, MODELS).predict_scores(_query([1.0, 0.0]))[0]
    assert pred[0] == pytest.approx(1.0)
    assert pred[1] == pytest.approx(1.0)  # b is only known from cluster 1 (where it scores 1)


def test_duplicate_prompt_uses_its_recorded_scores() -> None:
    X, scores = _clusters()
    scores = scores.copy()
    scores[3] = [0.0, 1.0]  # an odd prompt inside cluster 0
    q = X.take([3])
    exact = KnnRouter(k=10, duplicates="exact").fit(X, scores, MODELS)
    blended = KnnRouter(k=10, duplicates="neighbour").fit(X, scores, MODELS)
    np.testing.assert_array_equal(exact.predict_scores(q)[0], [0.0, 1.0])
    assert blended.predict_scores(q)[0, 0] > 0.5
    explanation = exact.explain(q)
    assert explanation.details["duplicate"] is True
    assert "evaluated before" in explanation.reason


def test_explain_lists_neighbours_with_text_and_scores() -> None:
    X, scores = _clusters()
    router = KnnRouter(k=4).fit(X, scores, MODELS)
    details = router.explain(_query([1.0, 0.02])).details
    assert details["n_neighbours"] == 4
    first = details["neighbours"][0]
    assert first["text"].startswith("cluster 0")
    assert first["scores"] == {"a": 1.0, "b": 0.0}
    assert first["similarity"] > 0.9
    assert details["mode"] == "dense"
    json.dumps(details)


def _lexical() -> tuple[PromptBatch, np.ndarray, PromptBatch]:
    """The query's nearest dense vector is prompt 5; the 'zebra' prompt is a close second by cosine and
    the only lexical match, so fusion puts it first."""
    texts = [f"filler prompt {i}" for i in range(30)] + ["zebra question"]
    rng = np.random.default_rng(3)
    base = rng.normal(size=(30, 8))
    zebra = base[5] + 0.05 * rng.normal(size=8)
    dense = _unit(np.vstack([base, zebra]))
    sparse = [SparseVector([i % 7, 100 + i], [1.0, 1.0]) for i in range(30)] + [SparseVector([999], [1.0])]
    scores = np.array([[1.0, 0.0]] * 30 + [[0.0, 1.0]])
    query = PromptBatch(["about a zebra"], dense[[5]], [SparseVector([999], [1.0])])
    return PromptBatch(texts, dense, sparse), scores, query


def test_hybrid_retrieval_finds_the_lexical_match() -> None:
    X, scores, query = _lexical()
    hybrid = KnnRouter(k=1, mode="hybrid", multiplier=5, shrinkage=0.0).fit(X, scores, MODELS)
    dense = KnnRouter(k=1, mode="dense", shrinkage=0.0).fit(X, scores, MODELS)
    assert hybrid.uses_sparse() and not dense.uses_sparse()
    ids, _ = hybrid.neighbours(query)
    assert ids[0, 0] == 30
    np.testing.assert_array_equal(hybrid.predict_scores(query)[0], [0.0, 1.0])
    assert dense.predict_scores(query)[0, 0] == 1.0
    # a hybrid router degrades to dense retrieval for a batch without sparse vectors
    no_sparse = PromptBatch(query.texts, query.dense, None)
    assert hybrid.predict_scores(no_sparse)[0, 0] == 1.0


def test_hybrid_router_fitted_without_sparse_vectors_is_dense() -> None:
    X, scores, _ = _lexical()
    router = KnnRouter(mode="hybrid", k=3).fit(PromptBatch(X.texts, X.dense, None), scores, MODELS)
    assert router.effective_mode_ == "dense"
    assert not router.uses_sparse()


def test_reranker_hook_reorders_the_coarse_hits() -> None:
    X, scores, query = _lexical()
    router = KnnRouter(k=1, mode="hybrid", multiplier=10, shrinkage=0.0).fit(X, scores, MODELS)
    router.set_reranker(lambda text, cand: -cand.astype(float))  # prefers the smallest training position
    coarse = [h.id for h in router._query(query)[0]]
    assert len(coarse) > 1
    ids, _ = router.neighbours(query)
    assert ids[0, 0] == min(coarse)
    router.set_reranker(None)
    assert router.neighbours(query)[0][0, 0] == 30


def test_cosine_rerank_orders_by_exact_similarity() -> None:
    X, scores = _clusters()
    sparse = [SparseVector([i], [1.0]) for i in range(len(X))]
    Xs = PromptBatch(X.texts, X.dense, sparse)
    router = KnnRouter(k=5, mode="hybrid", rerank="cosine").fit(Xs, scores, MODELS)
    q = _query([1.0, 0.1])
    q.sparse = [SparseVector([30], [1.0])]  # lexically points at cluster 1 ...
    ids, sims = router.neighbours(q)
    assert (ids[0] < 20).all()  # ... but the exact cosine keeps cluster 0
    assert (np.diff(sims[0]) <= 1e-7).all()


@pytest.mark.parametrize(
    "params",
    [
        {"k": 0},
        {"mode": "sparse"},
        {"weighting": "gauss"},
        {"temperature": 0},
        {"shrinkage": -1},
        {"duplicates": "x"},
    ],
)
def test_bad_parameters_fail_at_fit(params: dict[str, object]) -> None:
    X, scores = _clusters()
    router = KnnRouter(**params)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        router.fit(X, scores, MODELS)


def test_k_larger_than_the_training_set_is_fine() -> None:
    X, scores = _clusters(n_per=2)
    pred = KnnRouter(k=50, multiplier=10).fit(X, scores, MODELS).predict_scores(_query([1.0, 0.0]))
    assert pred.shape == (1, 2)


def _hybrid(n: int = 60) -> tuple[PromptBatch, np.ndarray]:
    """Clusters plus BM25 document vectors: a rare word marks a few prompts of cluster 1."""
    from routerforge.embed.sparse import Bm25Encoder

    X, scores = _clusters(n_per=n // 2)
    texts = [t + (" zebra" if i % 7 == 0 else "") for i, t in enumerate(X.texts)]
    bm25 = Bm25Encoder().fit(texts)
    return PromptBatch(texts, X.dense, bm25.encode_documents(texts)), scores


def _hybrid_query(bm25_texts: list[str]) -> PromptBatch:
    from routerforge.embed.sparse import Bm25Encoder

    q = _query([1.0, 0.3], "cluster zebra prompt")
    return PromptBatch(q.texts, q.dense, Bm25Encoder().fit(bm25_texts).encode_queries(q.texts))


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_saved_router_holds_arrays_only_and_rebuilds_its_index(tmp_path: Path, mode: str) -> None:
    X, scores = _hybrid() if mode == "hybrid" else _clusters()
    router = KnnRouter(k=5, mode=mode).fit(X, scores, MODELS)  # type: ignore[arg-type]
    q = _hybrid_query(X.texts) if mode == "hybrid" else _query([1.0, 0.3])
    before = router.predict_scores(q)
    router.save(tmp_path / "r")
    router.close()
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert all(f == "router.json" or f.endswith(".npy") for f in files), (
        files
    )  # no index shard in the directory
    assert ("knn_sparse_values.npy" in files) == (mode == "hybrid")
    state = json.loads((tmp_path / "r" / "router.json").read_text())["state"]
    assert state == {"effective_mode": mode, "index": {"kind": "edge"}}
    one = KnnRouter.load(tmp_path / "r")
    two = KnnRouter.load(tmp_path / "r")  # the artifact is read-only: several loads at once work
    np.testing.assert_array_equal(one.predict_scores(q), before)
    np.testing.assert_array_equal(two.predict_scores(q), before)
    assert one.explain(q).details["neighbours"][0]["text"].startswith("cluster 0")
    one.save(tmp_path / "copy")
    one.close()
    with pytest.raises(ValidationError, match="closed"):
        one.predict_scores(q)
    np.testing.assert_array_equal(KnnRouter.load(tmp_path / "copy").predict_scores(q), before)


def _edit_state(directory: Path, **state: object) -> None:
    doc = json.loads((directory / "router.json").read_text())
    doc["state"].update(state)
    (directory / "router.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ({"index": {"kind": "qdrant", "collection": "../../collections/other"}}, "invalid Qdrant collection"),
        ({"index": {"kind": "qdrant", "collection": "/abs"}}, "invalid Qdrant collection"),
        ({"index": {"kind": "nfs", "path": "/etc"}}, "without a valid index reference"),
        ({"index": None, "shard": "/tmp/elsewhere"}, "without a valid index reference"),
    ],
)
def test_index_reference_in_router_json_is_checked(
    tmp_path: Path, state: dict[str, object], words: str
) -> None:
    X, scores = _clusters()
    KnnRouter(k=5).fit(X, scores, MODELS).save(tmp_path / "r")
    _edit_state(tmp_path / "r", **state)
    with pytest.raises(ArtifactError, match=words):
        KnnRouter.load(tmp_path / "r")


def test_inconsistent_arrays_are_refused(tmp_path: Path) -> None:
    X, scores = _clusters()
    KnnRouter(k=5).fit(X, scores, MODELS).save(tmp_path / "r")
    offsets = np.load(tmp_path / "r" / "knn_text_offsets.npy")
    offsets[-1] += 10_000  # would read past the text bytes
    np.save(tmp_path / "r" / "knn_text_offsets.npy", offsets)
    with pytest.raises(ArtifactError, match="inconsistent knn arrays"):
        KnnRouter.load(tmp_path / "r")


# -- the embedding pipeline ---------------------------------------------------------------------------


def _matrix() -> ScoreMatrix:
    topics = {"algebra": [1.0, 0.0], "poetry": [0.0, 1.0]}
    prompts, rows = [], []
    for i in range(30):
        topic = list(topics)[i % 2]
        prompts.append(f"A question on {topic} {topic} {topic}, variant {i}.")
        rows.append(topics[topic])
    scores = np.array(rows)
    return ScoreMatrix(
        name="toy",
        keys=[str(i) for i in range(30)],
        prompts=prompts,
        models=MODELS,
        scores=scores,
        costs=np.full_like(scores, np.nan),
    )


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_train_router_and_load_it_back(tmp_path: Path, mode: str) -> None:
    settings = EmbedSettings(provider="hash", api_key=SecretStr("sk-secret"), cache=False)
    trained = train_router("knn", _matrix(), range(24), settings, tmp_path / "r", {"k": 5, "mode": mode})
    texts = ["A question on algebra algebra, new", "A question on poetry poetry, new"]
    before = trained.predict(texts)
    assert before[0, 0] > before[0, 1]
    assert before[1, 1] > before[1, 0]
    saved = json.loads((tmp_path / "r" / "embedder.json").read_text())
    assert saved["settings"]["provider"] == "hash"
    assert "api_key" not in saved["settings"]
    assert "sk-secret" not in (tmp_path / "r" / "embedder.json").read_text()
    manifest = json.loads((tmp_path / "r" / "routing.json").read_text())
    assert (manifest["dataset"], manifest["n_train"], manifest["models"]) == ("toy", 24, MODELS)
    assert (tmp_path / "r" / "bm25.json").is_file() == (mode == "hybrid")
    loaded = TrainedRouter.load(tmp_path / "r")
    assert loaded.models == MODELS
    np.testing.assert_array_equal(loaded.predict(texts), before)
    explanation = loaded.explain(texts[0])
    assert explanation.router == "knn"
    assert loaded.batch(texts).sparse is None if mode == "dense" else loaded.batch(texts).sparse is not None
    loaded.close()


def test_trained_router_needs_its_embedding_state(tmp_path: Path) -> None:
    from routerforge.embed.hashing import HashEmbedder

    train_router("random", _matrix(), None, HashEmbedder(dim=16), tmp_path / "r")
    with pytest.raises(ArtifactError, match="not recorded"):
        TrainedRouter.load(tmp_path / "r")
    ok = TrainedRouter.load(tmp_path / "r", embedder=HashEmbedder(dim=16))
    assert ok.predict(["x"]).shape == (1, 2)
    with pytest.raises(ArtifactError, match="16-dimensional"):
        TrainedRouter.load(tmp_path / "r", embedder=HashEmbedder(dim=8))
    with pytest.raises(ArtifactError, match=r"embedder\.json"):
        TrainedRouter.load(tmp_path / "missing")
    (tmp_path / "r" / "routing.json").unlink()
    with pytest.raises(ArtifactError, match=r"routing\.json.*retrain"):
        TrainedRouter.load(tmp_path / "r", embedder=HashEmbedder(dim=16))


# -- the index setting: Qdrant Edge (default) or a Qdrant collection --------------------------------------
def _new_prompts(X: PromptBatch, n: int = 12) -> PromptBatch:
    """Unseen prompts near training ones (new texts, perturbed vectors), with BM25 query vectors for hybrid."""
    from routerforge.embed.sparse import Bm25Encoder

    dense = _unit(X.dense[:n] + 0.05 * np.random.default_rng(7).normal(size=X.dense[:n].shape))
    texts = [f"new {t}" for t in X.texts[:n]]
    sparse = None if X.sparse is None else Bm25Encoder().fit(X.texts).encode_queries(texts)
    return PromptBatch(texts, dense, sparse)


def _on_qdrant(url: str, name: str = "knn-test", **params: object) -> KnnRouter:
    router = KnnRouter(**params)  # type: ignore[arg-type]
    router.configure_index(IndexSettings(kind="qdrant", url=url), name=name)
    return router


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_qdrant_local_mode_predicts_like_edge(mode: str) -> None:
    X, scores = _hybrid() if mode == "hybrid" else _clusters()
    q = _new_prompts(X)
    edge = KnnRouter(k=7, mode=mode).fit(X, scores, MODELS)  # type: ignore[arg-type]
    qdrant = _on_qdrant(":memory:", k=7, mode=mode).fit(X, scores, MODELS)
    np.testing.assert_array_equal(qdrant.neighbours(q)[0], edge.neighbours(q)[0])
    np.testing.assert_array_equal(qdrant.predict_scores(q), edge.predict_scores(q))
    qdrant.close()
    edge.close()


def test_qdrant_router_directory_names_its_collection_only(tmp_path: Path) -> None:
    X, scores = _clusters()
    q = _new_prompts(X)
    settings = IndexSettings(kind="qdrant", url=str(tmp_path / "qdrant"), api_key=SecretStr("qd-secret"))
    router = KnnRouter(k=5)
    router.configure_index(settings, name="rf-r-1234")
    before = router.fit(X, scores, MODELS).predict_scores(q)
    router.save(tmp_path / "r")
    router.close()  # qdrant-client's local mode locks its directory: one client at a time
    text = (tmp_path / "r" / "router.json").read_text()
    assert json.loads(text)["state"]["index"] == {"kind": "qdrant", "collection": "rf-r-1234"}
    assert "qd-secret" not in text
    assert str(tmp_path) not in text  # no URL or path of the server either
    loaded = KnnRouter.load(tmp_path / "r")
    with pytest.raises(
        ArtifactError, match=r"Qdrant collection 'rf-r-1234'.*index\.kind: qdrant and index\.url"
    ):
        loaded.predict_scores(q)  # loaded without configure_index
    with pytest.raises(ArtifactError, match=r"index\.kind: qdrant"):
        loaded.configure_index(IndexSettings(), name="rf-r-1234")
    loaded.configure_index(settings, name="another-name")  # the saved collection name wins
    np.testing.assert_array_equal(loaded.predict_scores(q), before)
    loaded.close()
    # another fit into the same collection replaces it: the first router's directory no longer matches
    _on_qdrant(str(tmp_path / "qdrant"), name="rf-r-1234", k=5).fit(
        X.take(range(10)), scores[:10], MODELS
    ).close()
    stale = KnnRouter.load(tmp_path / "r")
    with pytest.raises(ArtifactError, match="holds 10 points, but this router was trained on 40"):
        stale.configure_index(settings)


def test_trained_router_on_qdrant_reconnects_with_the_settings(tmp_path: Path, rf_home: Path) -> None:
    index = IndexSettings(kind="qdrant", url=str(tmp_path / "qdrant"))
    embed = EmbedSettings(provider="hash", cache=False)
    trained = train_router("knn", _matrix(), range(24), embed, tmp_path / "r", {"k": 5}, index=index)
    texts = ["A question on algebra algebra, new", "A question on poetry poetry, new"]
    before = trained.predict(texts)
    trained.close()
    assert all(p.suffix in (".json", ".npy") for p in (tmp_path / "r").iterdir())
    with pytest.raises(ArtifactError, match=r"index\.kind: qdrant"):
        TrainedRouter.load(tmp_path / "r")
    loaded = TrainedRouter.load(tmp_path / "r", settings=Settings(index=index))
    np.testing.assert_array_equal(loaded.predict(texts), before)
    loaded.close()


def test_unreachable_qdrant_fails_the_training_quickly_and_writes_nothing(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there once the socket is closed
    start = time.perf_counter()
    with pytest.raises(IndexUnavailableError, match=f"Cannot reach the Qdrant server at {url}.*index\\.url"):
        train_router(
            "knn",
            _matrix(),
            None,
            EmbedSettings(provider="hash", cache=False),
            tmp_path / "r",
            index=IndexSettings(kind="qdrant", url=url),
        )
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "r").exists()  # no silent local shard


def test_router_directory_for_300_prompts_is_small(tmp_path: Path) -> None:
    """The issue's measure: 300 prompts, hash embedder at 384 dimensions (a knn directory was 165 MB)."""
    from routerforge.embed.hashing import HashEmbedder

    words = ["algebra", "poetry", "chemistry", "law", "history", "music"]
    rng = np.random.default_rng(0)
    prompts = [
        f"Question {i}: " + " ".join(words[j] for j in rng.integers(0, len(words), 40)) + f" — variant {i}."
        for i in range(300)
    ]
    scores = rng.integers(0, 2, (300, 2)).astype(np.float64)
    matrix = ScoreMatrix(
        name="three-hundred",
        keys=[str(i) for i in range(300)],
        prompts=prompts,
        models=MODELS,
        scores=scores,
        costs=np.full_like(scores, np.nan),
    )
    trained = train_router("knn", matrix, None, HashEmbedder(dim=384), tmp_path / "r", {"mode": "hybrid"})
    trained.close()
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)  # apparent size: what an archive or a copy writes
    assert total < 5_000_000, sorted((p.stat().st_size, p.name) for p in files)[-5:]
