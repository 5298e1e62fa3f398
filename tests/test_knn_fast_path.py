"""The fast decision path changes no result: the static embedder's ASCII tokenizer path gives the tokenizer's
own ids, a Qdrant Edge shard searched in the caller's thread (``search_threads=1``, what the knn router
uses) returns what the default search pool returns, and knn decisions are the same either way and match
the neighbour definition computed with numpy (exact cosine, ties by training position).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from routerforge.config import EmbedSettings
from routerforge.embed import StaticEmbedder
from routerforge.embed.onnx import load_tokenizer
from routerforge.embed.static import AsciiWordPieces
from routerforge.index.edge import EdgeIndex

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOPICS = ["algebra", "poetry", "chemistry", "history", "cooking", "law"]
TRICKY = [
    "",
    "   \t\n ",
    "\x00\x01\x0b\x0c\x1c\x1f\x7f control characters",
    "don't stop -- U.S.A. e-mail@example.com $5.00 (50%) a_b `x` {y} ~z | ^",
    "[SEP] and [CLS] are special; so is [MASK] but [sep] is matched too",
    "a" * 100,
    "b" * 101,
    "unaffable hyperparameterisation antidisestablishmentarianism",
    "naïve café — 東京 🚀",
    "Mixed CASE Words And 12345 numbers 3.14159",
]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return load_tokenizer().tokenizer


def _reference_ids(tokenizer: object, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)  # type: ignore[attr-defined]


def test_ascii_fast_path_gives_the_tokenizers_ids(tokenizer: object) -> None:
    fast = AsciiWordPieces(tokenizer)
    assert fast.enabled
    rng = random.Random(0)
    texts = list(TRICKY)
    every_ascii = [chr(i) for i in range(128)]
    for _ in range(400):
        texts.append("".join(rng.choice(every_ascii) for _ in range(rng.randint(0, 120))))
        texts.append("".join(rng.choice("aZ09 .,-_'[]#SEPCLS\t\n\x0b") for _ in range(rng.randint(0, 120))))
    used = 0
    for text in texts:
        got = fast(text)
        if got is None:  # non-ASCII, or a special token: the tokenizer itself runs
            assert not text.isascii() or any(s in text.lower() for s in ("[sep]", "[cls]", "[mask]"))
            continue
        used += 1
        assert got == _reference_ids(tokenizer, text), repr(text)
        assert fast(text) == got  # from the word cache: the same
    assert used > 700


@pytest.mark.skipif(not (DATA / "routellm-mmlu").exists(), reason="development data not present")
def test_ascii_fast_path_on_development_prompts(tokenizer: object) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_embed import read_mmlu, read_routerbench

    texts = read_mmlu(DATA / "routellm-mmlu")[::5] + read_routerbench(DATA / "routerbench-subset")[::3]
    fast = AsciiWordPieces(tokenizer)
    checked = 0
    for text in texts:
        got = fast(text)
        if got is not None:
            checked += 1
            assert got == _reference_ids(tokenizer, text), text[:200]
    assert checked > 0.8 * len(texts)


def test_a_non_bert_tokenizer_never_takes_the_fast_path(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece({"[UNK]": 0, "cat": 1}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    assert AsciiWordPieces(tok)("Cat cat") is None


def test_edge_search_in_the_callers_thread_returns_the_pools_hits(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(600, 32)).astype(np.float32)
    dense[100:110] = dense[5]  # exact ties: resolved by id either way
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    queries = np.concatenate([dense[[5, 17, 300]], rng.normal(size=(5, 32)).astype(np.float32)])
    hits = []
    for name, threads in (("pool", None), ("inline", 1)):
        with EdgeIndex(tmp_path / name, 32, exact=True, wal=False, search_threads=threads) as index:
            index.upsert(range(len(dense)), dense)
            hits.append(index.query(queries, limit=50, mode="dense"))
            hits.append([index.query(q[None, :], limit=50, mode="dense")[0] for q in queries])
    assert hits[0] == hits[1] == hits[2] == hits[3]
    # reopening an existing shard with a search-thread count keeps its points
    with EdgeIndex(tmp_path / "inline", 32, search_threads=1, mode="open") as index:
        assert index.count() == 600
        assert index.query(queries, limit=50, mode="dense") == hits[0]


def _toy_matrix(n: int = 240) -> object:
    from routerforge.data.matrix import ScoreMatrix

    rng = np.random.default_rng(11)
    prompts, scores = [], []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompts.append(
            f"Question {i} about {topic}: explain item {i * 7 % 13} of {topic}, case {rng.integers(99)}."
        )
        hard = topic in ("algebra", "chemistry", "law")
        scores.append([0.2 if hard else 0.85, 0.6, 0.95])
    noisy = np.clip(np.array(scores) + rng.normal(0, 0.1, (n, 3)), 0, 1)
    costs = np.tile([0.0001, 0.001, 0.01], (n, 1))
    return ScoreMatrix(
        name="toy",
        keys=[str(i) for i in range(n)],
        prompts=prompts,
        models=["small", "medium", "large"],
        scores=noisy,
        costs=costs,
    )


def test_knn_decisions_are_the_same_on_the_fast_path(tmp_path: Path) -> None:
    """Fast tokenizer path on/off give the same decisions, and the neighbours are the numpy definition."""
    from routerforge.policy.trained import train_router

    trained = train_router(
        "knn", _toy_matrix(), None, EmbedSettings(provider="static", cache=False), tmp_path / "r", k=25
    )
    assert isinstance(trained.embedder, StaticEmbedder)
    prompts = [f"Please explain item {i} of {TOPICS[i % 6]} to a student." for i in range(30)]
    prompts += [*TRICKY, "Question 3 about history: explain item 8 of history, case 5."]
    fast = [trained.decide(p) for p in prompts]
    fast_wtp = [trained.decide(p, kind="wtp", knob=20.0) for p in prompts]
    batch = trained.batch(prompts)
    ids, sims = trained.router.neighbours(batch)
    # the neighbour definition: exact cosine with every training vector, best first, ties by position
    dense = trained.router.dense_
    for row in range(len(prompts)):
        cos = dense @ batch.dense[row]
        order = np.lexsort((np.arange(len(dense)), -cos))[:25]
        np.testing.assert_array_equal(ids[row], order)
        np.testing.assert_allclose(sims[row], cos[order], rtol=0, atol=1e-6)
    trained.embedder._fast = None  # every text through the tokenizer itself
    slow = [trained.decide(p) for p in prompts]
    slow_wtp = [trained.decide(p, kind="wtp", knob=20.0) for p in prompts]
    assert [d.model for d in fast] == [d.model for d in slow]
    assert [(d.model, d.predicted, d.prices_usd) for d in fast_wtp] == [
        (d.model, d.predicted, d.prices_usd) for d in slow_wtp
    ]
    assert [d.predicted for d in fast] == [d.predicted for d in slow]
    assert len({d.model for d in fast_wtp}) > 1  # the fixture exercises more than one choice
    trained.close()
