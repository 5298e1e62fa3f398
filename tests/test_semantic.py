"""The ``semantic`` router, routes files, the complexity estimate and `train semantic --routes`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.cli.main import main
from routerforge.data.records import EvalRecord
from routerforge.embed.hashing import HashEmbedder
from routerforge.errors import ConfigError, ValidationError
from routerforge.routers.base import PromptBatch
from routerforge.routers.complexity import estimate_complexity
from routerforge.routers.registry import load_router
from routerforge.routers.routes_file import load_routes, parse_routes, routes_matrix
from routerforge.routers.semantic import SemanticRouter, best_f1_threshold

EMB = HashEmbedder(dim=64)
ROUTES = """\
routes:
  - name: algebra
    target: strong
    utterances: [solve the algebra equation for x, algebra question about polynomials, factor this algebra term]
  - name: poetry
    target: weak
    threshold: 0.3
    utterances: [write a poem about poetry, a poetry question on rhyme, poetry and verse]
"""


def _batch(texts: list[str]) -> PromptBatch:
    return PromptBatch(texts=texts, dense=EMB.embed(texts))


def _data(n: int = 80) -> tuple[PromptBatch, np.ndarray]:
    """algebra prompts: only 'strong' is right; poetry prompts: only 'weak'; history: both right."""
    texts, rows = [], []
    for i in range(n):
        topic = ("algebra", "poetry", "history")[i % 3]
        texts.append(f"{topic} question {i} about {topic}")
        rows.append({"algebra": [1.0, 0.0], "poetry": [0.0, 1.0], "history": [1.0, 1.0]}[topic])
    return _batch(texts), np.array(rows)


def _fit(**params: object) -> SemanticRouter:
    X, scores = _data()
    routes = parse_routes(ROUTES, source="t.yaml")
    router = SemanticRouter(routes=routes.to_params(), **params)  # type: ignore[arg-type]
    router.set_auxiliary_vectors(EMB.embed(router.auxiliary_texts()))
    return router.fit(X, scores, ["strong", "weak"])


def test_routes_match_learn_thresholds_and_round_trip(tmp_path: Path) -> None:
    router = _fit(fallback="knn", fallback_params={"k": 5})
    assert router.thresholds_[1] == 0.3  # fixed in the file
    assert np.isfinite(router.train_f1_[0]) and router.train_f1_[0] > 0.9  # learnt by F1
    Q = _batch(["algebra question 999 about algebra", "poetry question 998 about poetry", "zzz qqq"])
    assert router.match(Q) == ["algebra", "poetry", None]
    pred = router.predict_scores(Q)
    assert pred[0, 0] > 0.7 > pred[0, 1] and pred[1, 1] > 0.7 > pred[1, 0]
    explanation = router.explain(Q)
    assert explanation.details["route"] == "algebra" and "algebra" in explanation.details["routes"]
    none = router.explain(Q.take([2])).details
    assert none["route"] is None and none["routes"] == {} and none["fallback"] == "knn"
    router.save(tmp_path / "s")
    assert (tmp_path / "s" / "fallback" / "router.json").is_file()
    loaded = load_router(tmp_path / "s")
    np.testing.assert_array_equal(loaded.predict_scores(Q), pred)


def test_no_route_uses_the_fallback_or_the_default() -> None:
    Q = _batch(["zzz qqq www"])
    with_fallback = _fit(fallback="knn", fallback_params={"k": 5})
    np.testing.assert_allclose(
        with_fallback.predict_scores(Q),
        with_fallback.fallback_.predict_scores(Q),  # type: ignore[union-attr]
    )
    with_default = _fit(default="weak")
    assert with_default.predict_scores(Q)[0, 1] > 0.7
    complex_ = _fit(complex_model="strong", complexity_threshold=0.0)
    assert complex_.predict_scores(_batch(["poetry question about poetry"]))[0, 0] > 0.7


def test_routes_need_their_vectors_and_known_targets() -> None:
    X, scores = _data()
    routes = parse_routes(ROUTES).to_params()
    with pytest.raises(ValidationError, match="not been embedded"):
        SemanticRouter(routes=routes).fit(X, scores, ["strong", "weak"])
    router = SemanticRouter(routes=routes)
    router.set_auxiliary_vectors(EMB.embed(router.auxiliary_texts()))
    with pytest.raises(ValidationError, match=r"\['strong'\] are not models"):
        router.fit(X, scores, ["big", "weak"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: []\n", "non-empty list"),
        ("routes:\n  - name: a\n    target: m\n", r"x\.yaml:2: route 'a' has no utterances"),
        (
            "routes:\n  - name: a\n    utterances: [x]\n  - name: a\n    utterances: [y]\n",
            r"x\.yaml:4: duplicate.*line 2",
        ),
        ("routes:\n  - utterances: [x]\n", r"x\.yaml:2: a route needs a `name`"),
        ("routes:\n  - name: a\n    utterances: [x]\n    threshold: 2\n", r"x\.yaml:4: .*\[-1, 1\]"),
        ("routes:\n  - name: a\n    utterance: [x]\n", r"x\.yaml:2: unknown route key"),
        ("routes:\n  - name: a\n    utterances: [x\n", r"x\.yaml:\d+: not valid YAML"),
        ("route:\n  - name: a\n", r"x\.yaml:1: unknown key 'route'"),
    ],
)
def test_bad_routes_files_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_routes(text, source="x.yaml")


def test_targets_mapping_and_unknown_models() -> None:
    routes = parse_routes(ROUTES, source="r.yaml")
    with pytest.raises(ConfigError, match=r"r\.yaml:2: route 'algebra' targets unknown model 'strong'"):
        routes.check_models(["big", "weak"])
    mapped = routes.with_mapping({"algebra": "big", "default": "weak"})
    assert mapped.targets() == ["big", "weak"] and mapped.default == "weak"
    with pytest.raises(ConfigError, match="unknown route"):
        routes.with_mapping({"nope": "big"})
    matrix = routes_matrix(mapped)
    assert matrix.models == ["big", "weak"] and matrix.n_prompts == 6
    assert matrix.scores[0].tolist() == [1.0, 0.0]


def test_builtin_task_types() -> None:
    routes = load_routes("builtin:task_types")
    assert len(routes.names) == 12 and {"code", "math", "closed-qa", "chit-chat", "other"} <= set(
        routes.names
    )
    assert all(10 <= len(r.utterances) <= 30 for r in routes.routes)
    with pytest.raises(ConfigError, match="builtin:task_types"):
        load_routes("builtin:nope")


def test_complexity_orders_prompts() -> None:
    easy = estimate_complexity("hi there")
    hard = estimate_complexity(
        "Prove step by step that the algorithm runs in O(n log n). Why does it hold? What if the input "
        "must be sorted? Compare it with merge sort and analyse the trade-offs. ```def f(x): return x``` "
        + "context "
        * 150
    )
    assert 0.0 <= easy < 0.1 < 0.6 < hard <= 1.0


def test_best_f1_threshold() -> None:
    t, f1 = best_f1_threshold(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), np.array([1, 1, 1, 0, 0], dtype=bool))
    assert t == 0.7 and f1 == 1.0


def _records() -> list[EvalRecord]:
    X, scores = _data(60)
    return [
        EvalRecord(prompt_key=f"q{i}", prompt=text, model=m, score=float(scores[i, j]), split="train")
        for i, text in enumerate(X.texts)
        for j, m in enumerate(["strong", "weak"])
    ]


def test_cli_train_semantic_with_and_without_data(
    rf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("toy", _records())
    store.close()
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    out = tmp_path / "hybrid"
    args = ["train", "semantic", "--routes", str(routes), "--data", "toy", "--out", str(out), "--json"]
    assert main(args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["models"] == ["strong", "weak"]
    assert json.loads((out / "router.json").read_text())["state"]["fallback"] == "knn"
    assert main(["route", str(out), "algebra question 1234 about algebra", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["route"] == "algebra" and "algebra" in doc["routes"] and doc["model"] == "strong"
    assert main(["route", str(out), "zzz qqq www", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["route"] is None

    only = tmp_path / "only"
    args = ["train", "semantic", "--routes", "builtin:task_types", "--out", str(only), "--json"]
    assert main([*args, "--map", "code=big", "--map", "default=small"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["models"] == ["big", "small"]
    assert main(["route", str(only), "Write a Python function that reverses a linked list.", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["route"] == "code" and doc["model"] == "big"

    assert main([*args, "--map", "code=big"]) != 0  # one model only
    assert "at least two models" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "semantic",
                "--routes",
                str(routes),
                "--data",
                "toy",
                "--out",
                str(only),
                "--map",
                "algebra=nope",
            ]
        )
        != 0
    )
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["train", "knn", "--routes", str(routes), "--data", "toy", "--out", str(only)]) != 0
    assert "options of the semantic router" in capsys.readouterr().err
