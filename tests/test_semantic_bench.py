"""``bench --router semantic`` with a routes file or routes from the category column, fold by fold."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routerforge.errors import ConfigError, RouterForgeError
from routerforge.evaluate.harness import BenchSetup, RouterSpec, run_bench
from routerforge.evaluate.semantic_routes import SemanticFoldFactory, category_routes
from routerforge.evaluate.splits import dataset_split, prompt_folds
from test_harness import TOPICS, make_matrix


class TopicEncoder:
    """One axis per topic word (plus a little per-prompt noise), so cosine similarity is topical."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def dense(self, texts: Any) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), len(TOPICS) + 1))
        for i, text in enumerate(texts):
            word = text.split()[0]
            out[i, TOPICS.index(word) if word in TOPICS else len(TOPICS)] = 1.0
            out[i, len(TOPICS)] += 0.05 * ((zlib.crc32(text.encode()) % 7) / 7)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def sparse(self, texts: Any, kind: str) -> None:
        return None


def _bench(matrix: Any, folds: Any, specs: list[RouterSpec], **kw: Any) -> tuple[dict[str, Any], Any]:
    encoder = TopicEncoder()
    factory = SemanticFoldFactory(encoder)
    doc = run_bench(
        BenchSetup(matrix, folds, strong="strong", weak="weak"),
        specs,
        encoder,
        fold_factory=factory,
        bootstrap=50,
        **kw,
    )
    return doc, factory


def test_category_routes_use_training_rows_only_and_pick_each_categorys_best_model() -> None:
    matrix = make_matrix(200, duplicates=0)
    rows = np.arange(0, 120)
    routes = category_routes(matrix.select_models(["strong", "weak"]), rows, max_utterances=1000)
    assert [r["name"] for r in routes] == sorted(TOPICS)
    allowed = {matrix.prompts[i] for i in rows}
    assert all(set(r["utterances"]) <= allowed for r in routes)
    assert sum(len(r["utterances"]) for r in routes) == 120
    by = {r["name"]: r["target"] for r in routes}
    assert by["algebra"] == "strong"  # the weak model fails algebra (make_matrix)
    for name, target in by.items():  # the target is the best mean score on the training rows of the category
        mine = [i for i in rows if matrix.categories[i] == name]
        means = matrix.scores[mine][:, :2].mean(axis=0)
        assert means[["strong", "weak"].index(target)] == means.max()
    capped = category_routes(matrix, rows, max_utterances=5)
    assert all(len(r["utterances"]) == 5 for r in capped)


def test_category_routes_never_read_held_out_prompts_in_the_harness() -> None:
    matrix = make_matrix(200)
    folds = prompt_folds(matrix, 4)
    doc, factory = _bench(
        matrix, folds, [RouterSpec("semantic", {"routes": "category"}, "semantic (category)")]
    )
    assert len(factory.seen) == len(folds)  # one set of utterances per fold, built from that fold only
    for fold, texts in zip(folds, factory.seen, strict=True):
        held_out = {matrix.prompts[i] for i in fold.test}
        training = {matrix.prompts[i] for i in fold.train}
        assert texts and not set(texts) & held_out
        assert set(texts) <= training
    entry = doc["routers"]["semantic (category)"]
    # the category signal is real (weak fails algebra): routes beat random, with the usual baselines + interval
    assert entry["apgr"] > doc["routers"]["random"]["apgr"]
    assert entry["vs_baselines"] and all("ci95" in v for v in entry["vs_baselines"].values())


def test_routes_file_and_map_in_the_harness(tmp_path: Path) -> None:
    matrix = make_matrix(160)
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "routes:\n"
        "  - name: maths\n    utterances: [algebra question, solve this algebra item]\n"
        "  - name: words\n    target: weak\n    utterances: [poetry question, history question]\n",
        encoding="utf-8",
    )
    (fold,) = dataset_split(matrix)
    doc, factory = _bench(
        matrix,
        [fold],
        [RouterSpec("semantic", {"routes": str(routes), "map": {"maths": "strong"}}, "file")],
    )
    assert factory.seen == [
        ["algebra question", "solve this algebra item", "poetry question", "history question"]
    ]
    assert doc["routers"]["file"]["apgr"] > doc["routers"]["random"]["apgr"]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"routes": "category", "map": {"a": "strong"}}, "map applies to a routes file"),
        ({"map": {"a": "strong"}}, "map needs routes="),
        ({"routes": "missing.yaml"}, "does not exist"),
        ({"routes": "builtin:task_types", "map": {"math": "nope"}}, "unknown model 'nope'"),
        ({"routes": "builtin:task_types", "map": "math"}, "ROUTE: MODEL"),
    ],
)
def test_bad_route_sources_are_clear_errors(params: dict[str, Any], match: str) -> None:
    matrix = make_matrix(80)
    factory = SemanticFoldFactory(TopicEncoder())
    with pytest.raises(RouterForgeError, match=match):
        factory(RouterSpec("semantic", params), np.arange(40), matrix.select_models(["strong", "weak"]))


def test_category_routes_need_categories() -> None:
    matrix = make_matrix(40)
    matrix.categories = [None] * matrix.n_prompts
    with pytest.raises(ConfigError, match="no categories"):
        category_routes(matrix, np.arange(20))


def test_bench_cli_semantic_routes_category(
    rf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from routerforge.cli.main import main
    from routerforge.config import load_settings
    from routerforge.data.store import Store
    from test_cli_routing import _records

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("toy", _records())
    store.close()
    out = tmp_path / "s.json"
    args = ["bench", "--data", "toy", "-r", "semantic", "-r", "knn", "--folds", "3", "--latency-sample", "2"]
    assert main([*args, "-p", "semantic.routes=category", "--bootstrap", "20", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {"semantic", "knn", "random", "oracle"} <= set(doc["routers"])
    assert main([*args, "-p", "semantic.routes=nope.yaml"]) != 0
