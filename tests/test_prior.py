"""Metadata-aware routing: the ``prior`` family (category prior + text residual), stacking in ``ensemble``,
inner cross-validation that never sees held-out prompts, and metadata flowing from the CLI and the gateway
to the router."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from routerforge.errors import ValidationError
from routerforge.routers.base import PromptBatch, Router
from routerforge.routers.registry import create_router, load_router, register_router

MODELS = ["a", "b"]


def _category_data(
    n: int = 900,
    n_cats: int = 12,
    seed: int = 0,
    dim: int = 16,
    signal: float = 1.0,
    cat_in_text: bool = False,
) -> tuple[PromptBatch, np.ndarray, np.ndarray, np.ndarray]:
    """Scores driven by the category (each category has its own accuracy per model), embeddings carrying
    the category only weakly, texts of random words (optionally naming nothing about the category)."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, n_cats, n)
    p = np.random.default_rng(99).uniform(0.05, 0.95, size=(n_cats, 2))
    p = 0.5 + signal * (p - 0.5)
    scores = (rng.random((n, 2)) < p[cats]).astype(np.float64)
    centres = np.random.default_rng(5).normal(size=(n_cats, dim))
    dense = 0.6 * centres[cats] + rng.normal(size=(n, dim))
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    words = [f"w{k}" for k in range(200)]
    texts = [
        f"q{i} " + " ".join(rng.choice(words, 6)) + (f" topic{cats[i]}" if cat_in_text else "")
        for i in range(n)
    ]
    meta = [{"category": f"cat-{c}"} for c in cats]
    return PromptBatch(texts, dense.astype(np.float32), meta=meta), scores, cats, p


def _mse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((pred - truth) ** 2))


def test_prior_beats_text_only_when_the_category_explains_the_scores() -> None:
    batch, scores, cats, p = _category_data()
    tr, te = np.arange(600), np.arange(600, 900)
    text_only = create_router("lexical").fit(batch.take(tr), scores[tr], MODELS)
    prior = create_router("prior").fit(batch.take(tr), scores[tr], MODELS)
    truth = p[cats[te]]  # the expected scores
    mse_text = _mse(text_only.predict_scores(batch.take(te)), truth)
    mse_prior = _mse(prior.predict_scores(batch.take(te)), truth)
    assert mse_prior < 0.5 * mse_text, (mse_prior, mse_text)
    # ranking what a binary threshold ranks: the difference of the two models
    d_true = truth[:, 0] - truth[:, 1]
    d_prior = np.diff(prior.predict_scores(batch.take(te))[:, ::-1], axis=1)[:, 0]
    d_text = np.diff(text_only.predict_scores(batch.take(te))[:, ::-1], axis=1)[:, 0]
    assert np.corrcoef(d_true, d_prior)[0, 1] > 0.8 > np.corrcoef(d_true, d_text)[0, 1] + 0.3


def test_missing_category_is_predicted_from_the_text_vector() -> None:
    batch, scores, cats, p = _category_data(dim=16)
    tr, te = np.arange(600), np.arange(600, 900)
    prior = create_router("prior", residual=None).fit(batch.take(tr), scores[tr], MODELS)
    test = batch.take(te)
    hidden = PromptBatch(test.texts, test.dense, meta=None)
    truth = p[cats[te]]
    global_mean = np.tile(np.nanmean(scores[tr], axis=0), (len(te), 1))
    mse_given = _mse(prior.predict_scores(test), truth)
    mse_hidden = _mse(prior.predict_scores(hidden), truth)
    assert mse_given < mse_hidden < 0.8 * _mse(global_mean, truth)
    exp = prior.explain(hidden)
    assert exp.details["prior"]["keys"][0]["used"] == "predicted"
    assert prior.explain(test).details["prior"]["keys"][0]["used"] == "given"
    # an unknown value is treated like a missing one
    unknown = PromptBatch(test.texts, test.dense, meta=[{"category": "never-seen"}] * len(te))
    np.testing.assert_allclose(prior.predict_scores(unknown), prior.predict_scores(hidden))


def test_strength_is_chosen_by_inner_cv_and_follows_the_signal() -> None:
    strong_batch, strong_scores, _, _ = _category_data(signal=1.0)
    noise_batch, noise_scores, _, _ = _category_data(signal=0.0, n_cats=60)
    strong = create_router("prior", residual=None).fit(strong_batch, strong_scores, MODELS)
    noise = create_router("prior", residual=None).fit(noise_batch, noise_scores, MODELS)
    assert set(strong.cv_mse_) == set(noise.cv_mse_) and len(strong.cv_mse_) >= 5
    assert strong.strength_ < noise.strength_  # real category effects are trusted, noise is shrunk away
    assert noise.strength_ >= 100
    fixed = create_router("prior", residual=None, strength=7.0).fit(strong_batch, strong_scores, MODELS)
    assert fixed.strength_ == 7.0 and fixed.cv_mse_ == {}


def test_prior_round_trips_and_validates(tmp_path: Path) -> None:
    batch, scores, _, _ = _category_data(n=300)
    router = create_router("prior", residual={"name": "knn", "params": {"k": 10}}).fit(batch, scores, MODELS)
    router.save(tmp_path / "r")
    again = load_router(tmp_path / "r")
    hidden = PromptBatch(batch.texts[:20], batch.dense[:20])
    np.testing.assert_allclose(
        again.predict_scores(batch.take(range(20))), router.predict_scores(batch.take(range(20)))
    )
    np.testing.assert_allclose(again.predict_scores(hidden), router.predict_scores(hidden))
    with pytest.raises(ValidationError):
        create_router("prior", strength=-1).fit(batch, scores, MODELS)
    with pytest.raises(ValidationError):
        create_router("prior", residual={"name": "prior"}).fit(batch, scores, MODELS)
    with pytest.raises(ValidationError, match="metadata"):
        router.predict_scores(PromptBatch(["x"], batch.dense[:1], meta=[{}, {}]))


def test_data_without_categories_falls_back_to_the_residual() -> None:
    batch, scores, _, _ = _category_data(n=300)
    plain = PromptBatch(batch.texts, batch.dense)
    prior = create_router("prior", residual={"name": "knn", "params": {"k": 10}}, residual_weight=1.0)
    prior.fit(plain, scores, MODELS)
    knn = create_router("knn", k=10).fit(plain, (scores - scores.mean(axis=0) + 1) / 2, MODELS)
    assert prior.levels_ == [[]]
    expected = scores.mean(axis=0) + 2 * knn.predict_scores(plain) - 1
    np.testing.assert_allclose(prior.predict_scores(plain), np.clip(expected, 0, 1), atol=1e-9)


def test_auto_residual_weight_shrinks_a_residual_that_is_noise() -> None:
    batch, scores, _, _ = _category_data(n=600)
    noise = create_router("prior", residual={"name": "random"}).fit(batch, scores, MODELS)
    useful = create_router("prior", residual={"name": "knn", "params": {"k": 20}})
    useful.fit(PromptBatch(batch.texts, batch.dense), scores, MODELS)  # no category: the text is all there is
    assert noise.residual_weight_ < 0.2 < useful.residual_weight_
    with pytest.raises(ValidationError):
        create_router("prior", residual_weight=-1.0).fit(batch, scores, MODELS)


def test_stacking_learns_to_trust_the_informative_member() -> None:
    batch, scores, _, p = _category_data(n=600)
    members = [
        {"name": "prior", "params": {"residual": None}},
        {"name": "random", "params": {}},
    ]
    stacked = create_router("ensemble", members=members, combine="stack", stack_folds=4).fit(
        batch, scores, MODELS
    )
    mean = create_router("ensemble", members=members).fit(batch, scores, MODELS)
    coef = stacked.stack_coef_
    assert coef.shape == (2, 2) and np.all(coef[0] > 5 * coef[1])
    test, _, test_cats, _ = _category_data(n=300, seed=1)
    truth = p[test_cats]
    assert _mse(stacked.predict_scores(test), truth) < _mse(mean.predict_scores(test), truth)
    with pytest.raises(ValidationError):
        create_router("ensemble", combine="median").fit(batch, scores, MODELS)


# ----------------------------------------------------------------- inner CV never sees held-out prompts
@register_router
class SpyRouter(Router):
    """Records the texts of every fit (per outer fold of the harness) and predicts the training mean."""

    name = "test-spy"
    fits: ClassVar[list[tuple[int, list[str]]]] = []
    outer: ClassVar[int] = -1

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        SpyRouter.fits.append((SpyRouter.outer, list(X.texts)))
        self.mean_ = np.nan_to_num(np.nanmean(scores, axis=0), nan=0.5)

    def _predict(self, X: PromptBatch) -> np.ndarray:
        return np.tile(self.mean_, (len(X), 1))


class _Encoder:
    def dense(self, texts: Any) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        out = rng.normal(size=(len(texts), 8))
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def sparse(self, texts: Any, kind: str) -> None:
        return None


@pytest.mark.parametrize(
    "spec",
    [
        ("prior", {"residual": {"name": "test-spy"}}),
        (
            "ensemble",
            {
                "combine": "stack",
                "stack_folds": 3,
                "members": [
                    {"name": "test-spy"},
                    {"name": "prior", "params": {"residual": {"name": "test-spy"}}},
                ],
            },
        ),
    ],
)
def test_inner_cv_never_passes_held_out_prompts_to_fit(spec: tuple[str, dict[str, Any]]) -> None:
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.evaluate.harness import BenchSetup, RouterSpec, registry_factory, run_bench
    from routerforge.evaluate.splits import prompt_folds

    batch, scores, cats, _ = _category_data(n=200)
    matrix = ScoreMatrix(
        name="spy",
        keys=[f"k{i}" for i in range(200)],
        prompts=batch.texts,
        models=MODELS,
        scores=scores,
        costs=np.full(scores.shape, np.nan),
        categories=[f"cat-{c}" for c in cats],
    )
    folds = prompt_folds(matrix, 4)
    SpyRouter.fits.clear()
    SpyRouter.outer = -1

    def factory(s: RouterSpec) -> Router:
        SpyRouter.outer += 1
        return registry_factory(s)

    run_bench(
        BenchSetup(matrix, folds, strong="a", weak="b"),
        [RouterSpec(*spec)],
        _Encoder(),
        factory=factory,
        bootstrap=0,
    )
    # prior: the residual + its auto-scale fit on an inner fold; ensemble: per inner fold and at the end,
    # the spy member + the prior member's two
    per_fold = 2 if spec[0] == "prior" else 3 * (3 + 1)
    assert len(SpyRouter.fits) == len(folds) * per_fold
    for k, fold in enumerate(folds):
        held_out = {matrix.prompts[i] for i in fold.test}
        train = {matrix.prompts[i] for i in fold.train}
        fits = [texts for outer, texts in SpyRouter.fits if outer == k]
        assert len(fits) == per_fold
        for texts in fits:
            assert not held_out & set(texts)
            assert set(texts) <= train
        # inner fits leave out part of the training prompts (and never reach beyond them)
        assert sum(len(t) < len(train) for t in fits) >= (1 if spec[0] == "prior" else 6)


# ------------------------------------------------------------------- metadata from the CLI and gateway
def _records() -> list[Any]:
    from routerforge.data.records import EvalRecord

    rng = np.random.default_rng(3)
    out = []
    for i in range(160):
        cat = ["law", "physics"][i % 2]
        text = f"question {i}: " + " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "eps"], 5))
        p = {"a": 0.95, "b": 0.05} if cat == "law" else {"a": 0.05, "b": 0.95}
        for m in MODELS:
            out.append(
                EvalRecord(
                    prompt_key=f"q{i}", prompt=text, model=m, score=float(rng.random() < p[m]), category=cat
                )
            )
    return out


@pytest.fixture
def meta_router(rf_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    from routerforge.cli.main import main
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("meta", _records())
    store.close()
    out = load_settings().routers_dir / "meta"
    assert main(["train", "prior", "--data", "meta", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    return out


def _route(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    from routerforge.cli.main import main

    capsys.readouterr()
    code = main(["route", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_metadata_reaches_the_router_from_cli_and_gateway(
    meta_router: Path, rf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway_server import LoopbackServer
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    manifest = json.loads((meta_router / "routing.json").read_text())
    assert manifest["metadata_keys"] == ["category"]
    prompt = "question 9999: alpha beta gamma delta eps"
    law = _route(capsys, [str(meta_router), prompt, "--meta", "category=law"])
    physics = _route(capsys, [str(meta_router), prompt, "--meta", "category=physics"])
    assert law["model"] == "a" and physics["model"] == "b"  # the same text, two categories, two choices
    assert law["predicted"]["a"] > 0.7 > 0.3 > physics["predicted"]["a"]
    assert law["details"]["metadata"] == {"category": "law"}
    from routerforge.cli.main import main

    assert main(["route", str(meta_router), prompt, "--meta", "no-equals-sign"]) != 0
    assert "--meta" in capsys.readouterr().err

    raw = {
        "models": [{"id": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS],
        "require_auth": False,
    }
    app = create_app(load_settings(), parse_gateway_config(raw))
    with LoopbackServer(app) as server:
        url, model = server.url + "/v1/route", f"router-{meta_router.name}"
        for cat, expected in (("law", "a"), ("physics", "b")):
            body = {"model": model, "prompt": prompt, "routing": {"metadata": {"category": cat}}}
            served = httpx.post(url, json=body).json()
            assert served["model"] == expected, served
            assert served["details"]["request_routing"]["metadata"] == {"category": cat}
            assert served["explanation"]["details"]["prior"]["keys"][0]["used"] == "given"
        plain = httpx.post(url, json={"model": model, "prompt": prompt}).json()
        assert plain["explanation"]["details"]["prior"]["keys"][0]["used"] == "predicted"
        refused = httpx.post(
            url, json={"model": model, "prompt": prompt, "routing": {"metadata": {"bad key!": "x"}}}
        )
        assert refused.status_code == 400 and "metadata" in refused.text
