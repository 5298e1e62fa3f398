"""Dense embedders, the persistent cache, the factory and encode()."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from routerforge.config import EmbedSettings, load_settings
from routerforge.embed import (
    Bm25Encoder,
    BoilerplateStripper,
    CachedEmbedder,
    Embedder,
    HashEmbedder,
    HttpEmbedder,
    MiniLMOnnxEmbedder,
    SentenceTransformerEmbedder,
    SparseVector,
    build_embedder,
    encode,
)
from routerforge.embed.onnx import package_file
from routerforge.errors import ConfigError, ValidationError


class CountingEmbedder:
    """Wraps an embedder and counts the texts that reach it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def minilm() -> MiniLMOnnxEmbedder:
    return MiniLMOnnxEmbedder(threads=1, batch_size=4)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


# -- MiniLM ONNX ----------------------------------------------------------------------------------
def test_minilm_shapes_norms_and_determinism(minilm: MiniLMOnnxEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    texts = [
        "A man is playing a guitar.",
        "hello",
        "x" * 30,
        "Short",
        "Another sentence about the weather today.",
    ]
    first = minilm.embed(texts)
    assert first.shape == (5, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # batching and the length sort must not change any vector, nor their order
    one_by_one = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(first, one_by_one, atol=1e-4)
    np.testing.assert_array_equal(first, minilm.embed(texts))
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_similarities_are_semantic(minilm: MiniLMOnnxEmbedder) -> None:
    v = minilm.embed(
        [
            "How do I bake a chocolate cake?",
            "What is a good recipe for chocolate cake?",
            "The central bank raised interest rates by half a point.",
            "Which enzyme breaks down starch in the human mouth?",
            "Salivary amylase digests carbohydrates during chewing.",
        ]
    )
    assert _cos(v[0], v[1]) > 0.7
    assert _cos(v[0], v[1]) > _cos(v[0], v[2]) + 0.4
    assert _cos(v[3], v[4]) > _cos(v[3], v[2])


def test_minilm_truncates_long_inputs(minilm: MiniLMOnnxEmbedder) -> None:
    question = " Which planet in the solar system has the most moons?"
    long_text = "filler words repeated many times. " * 800 + question
    ids = minilm.tokenize([long_text])[0]
    assert len(ids) == minilm.max_tokens
    assert ids[0] == 101 and ids[-1] == 102
    vec = minilm.embed([long_text])
    assert vec.shape == (1, 384) and np.isfinite(vec).all()
    # head_tail keeps the question at the end; head-only truncation loses it
    head_only = MiniLMOnnxEmbedder(threads=1, truncation="head", max_tokens=64)
    tail_keep = MiniLMOnnxEmbedder(threads=1, truncation="head_tail", max_tokens=64)
    q = minilm.embed([question.strip()])[0]
    assert _cos(tail_keep.embed([long_text])[0], q) > _cos(head_only.embed([long_text])[0], q) + 0.2


def test_minilm_batches_bound_padded_tokens() -> None:
    emb = MiniLMOnnxEmbedder(batch_size=32, batch_tokens=2048)
    ids = [[0] * 10] * 40 + [[0] * 256] * 20
    batches = emb._batches(list(range(len(ids))), ids)
    assert sorted(i for b in batches for i in b) == list(range(60))
    assert all(len(b) <= 32 and len(b) * max(len(ids[i]) for i in b) <= 2048 for b in batches)
    assert [len(b) for b in batches] == [32, 8, 8, 8, 4]


def test_minilm_caps_token_limit_and_names_settings() -> None:
    emb = MiniLMOnnxEmbedder(max_tokens=4096, truncation="tail")
    assert emb.max_tokens == 512
    assert "max512" in emb.id and "tail" in emb.id
    with pytest.raises(ConfigError):
        MiniLMOnnxEmbedder(truncation="middle")  # type: ignore[arg-type]


def test_minilm_constructor_does_no_work(tmp_path: Path) -> None:
    emb = MiniLMOnnxEmbedder(model_path=tmp_path / "missing.onnx")
    assert emb.dim == 384  # known without loading
    with pytest.raises(ConfigError, match=r"missing\.onnx"):
        emb.embed(["x"])


def test_missing_model_package_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="pip install no-such-package"):
        package_file("routerforge_no_such_package", "model.onnx", "no-such-package")
    with pytest.raises(ConfigError, match="missing"):
        package_file("routerforge", "no/such/file.onnx", "routerforge")


# -- HashEmbedder -----------------------------------------------------------------------------------
def test_hash_embedder_is_deterministic_and_similarity_aware() -> None:
    emb = HashEmbedder(dim=64)
    texts = ["The cat sat on the mat.", "The cat sat on a mat!", "Quarterly revenue grew by 12 percent.", ""]
    v = emb.embed(texts)
    assert v.shape == (4, 64) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert _cos(v[0], v[1]) > _cos(v[0], v[2]) + 0.3
    np.testing.assert_array_equal(v, HashEmbedder(dim=64).embed(texts))
    # stable across processes (no salted hash())
    code = (
        "from routerforge.embed import HashEmbedder; print(HashEmbedder().embed(['abc def'])[0][:4].tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(emb.embed(["abc def"])[0][:4].tolist())
    with pytest.raises(ConfigError):
        HashEmbedder(dim=1)


# -- cache ----------------------------------------------------------------------------------------
def test_cache_second_call_does_not_run_the_model(tmp_path: Path) -> None:
    counting = CountingEmbedder(HashEmbedder(dim=32))
    cached = CachedEmbedder(counting, tmp_path / "cache")
    texts = ["alpha beta", "gamma delta", "alpha beta", "epsilon"]
    first = cached.embed(texts)
    assert counting.calls == 1 and counting.texts == 3  # the duplicate is embedded once
    second = cached.embed(texts)
    assert counting.calls == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, HashEmbedder(dim=32).embed(texts))
    cached.embed(["epsilon", "new text"])
    assert counting.calls == 2 and counting.texts == 4
    # a new instance (another process, later) reads the same file
    counting2 = CountingEmbedder(HashEmbedder(dim=32))
    again = CachedEmbedder(counting2, tmp_path / "cache").embed(texts)
    assert counting2.calls == 0
    np.testing.assert_array_equal(first, again)
    # another embedder id never sees these vectors
    other = CountingEmbedder(HashEmbedder(dim=16))
    assert CachedEmbedder(other, tmp_path / "cache").embed(texts).shape == (4, 16)
    assert other.calls == 1
    assert cached.cache.count(counting.id) == 4
    assert cached.cache.clear(counting.id) == 4
    cached.close()


def test_cache_shared_between_processes(tmp_path: Path) -> None:
    code = (
        "import sys; from routerforge.embed import CachedEmbedder, HashEmbedder; "
        "c = CachedEmbedder(HashEmbedder(), sys.argv[1]); "
        "c.embed([f'text {i} ' + sys.argv[2] for i in range(300)]); print(c.misses)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), tag], stdout=subprocess.PIPE, text=True)
        for tag in ("a", "b", "a")
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outs)[-1] == "300"
    counting = CountingEmbedder(HashEmbedder())
    CachedEmbedder(counting, tmp_path).embed([f"text {i} b" for i in range(300)])
    assert counting.calls == 0


def test_cache_refuses_the_package_directory() -> None:
    import routerforge

    cached = CachedEmbedder(HashEmbedder(), Path(routerforge.__file__).parent / "cache")
    with pytest.raises(ConfigError, match="inside the routerforge package"):
        cached.embed(["x"])


# -- factory --------------------------------------------------------------------------------------
def test_build_embedder_uses_the_registry(tmp_path: Path) -> None:
    assert isinstance(build_embedder(EmbedSettings(provider="hash")), HashEmbedder)
    onnx = build_embedder(EmbedSettings(threads=1, max_tokens=128))
    assert isinstance(onnx, MiniLMOnnxEmbedder) and onnx.max_tokens == 128 and onnx.threads == 1
    cached = build_embedder(EmbedSettings(provider="hash"), cache_dir=tmp_path)
    assert isinstance(cached, CachedEmbedder) and cached.id == HashEmbedder().id
    assert isinstance(
        build_embedder(EmbedSettings(provider="hash", cache=False), cache_dir=tmp_path), HashEmbedder
    )
    http = build_embedder(EmbedSettings(provider="http", url="http://127.0.0.1:9/embed"))
    assert isinstance(http, HttpEmbedder) and http.api_format == "tei"
    assert isinstance(
        build_embedder(EmbedSettings(provider="sentence-transformers")), SentenceTransformerEmbedder
    )
    with pytest.raises(ConfigError, match=r"embed\.url"):
        build_embedder(EmbedSettings(provider="http"))


def test_build_embedder_from_settings_home(rf_home: Path) -> None:
    settings = load_settings(overrides={"embed": {"provider": "hash"}})
    emb = build_embedder(settings.embed, cache_dir=settings.cache_dir)
    emb.embed(["hello"])
    assert (rf_home / "cache" / "embeddings.sqlite").is_file()


# -- encode ---------------------------------------------------------------------------------------
def test_encode_dense_and_sparse() -> None:
    texts = [f"prompt number {i} about topic {i % 3}" for i in range(300)]
    dense, sparse = encode(texts, HashEmbedder(), progress=True)
    assert dense.shape == (300, 64) and dense.dtype == np.float32
    np.testing.assert_allclose(dense, HashEmbedder().embed(texts), atol=1e-6)  # order restored
    assert sparse is not None and len(sparse) == 300 and isinstance(sparse[0], SparseVector)
    dense2, none = encode(texts[:3], HashEmbedder(), sparse=False)
    assert none is None and dense2.shape == (3, 64)
    _, queries = encode(texts[:2], HashEmbedder(), sparse_kind="query")
    assert queries is not None and set(queries[0].values) == {1.0}
    empty, empty_sparse = encode([], HashEmbedder())
    assert empty.shape == (0, 64) and empty_sparse == []
    with pytest.raises(ValidationError):
        encode("one string", HashEmbedder())  # type: ignore[arg-type]


def test_encode_applies_the_stripper() -> None:
    preamble = "Here are worked examples that every prompt repeats word for word, line after line.\n" * 5
    texts = [preamble + f"Question {i}: what is {i} plus {i}?" for i in range(30)]
    stripper = BoilerplateStripper(min_chars=100).fit(texts)
    dense, sparse = encode(texts, HashEmbedder(), stripper=stripper, bm25=Bm25Encoder().fit(texts))
    np.testing.assert_allclose(
        dense[0], HashEmbedder().embed(["Question 0: what is 0 plus 0?"])[0], atol=1e-6
    )
    assert sparse is not None and len(sparse[0].indices) <= 4


# -- sentence-transformers (optional extra) -------------------------------------------------------
@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None, reason="torch extra not installed"
)
def test_sentence_transformers_matches_onnx(minilm: MiniLMOnnxEmbedder) -> None:  # pragma: no cover
    texts = ["A man is playing a guitar.", "Which enzyme breaks down starch?"]
    st = SentenceTransformerEmbedder().embed(texts)
    assert st.shape == (2, 384)
    assert (np.sum(st * minilm.embed(texts), axis=1) > 0.99).all()


def test_sentence_transformers_missing_extra_is_a_config_error() -> None:
    if importlib.util.find_spec("sentence_transformers") is not None:  # pragma: no cover
        pytest.skip("sentence-transformers is installed")
    with pytest.raises(ConfigError, match=r"routerforge\[torch\]"):
        SentenceTransformerEmbedder().embed(["x"])
