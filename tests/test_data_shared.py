"""The real development data imports with the numbers docs/data.md states (skips without ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routerforge.data.importers import load_pulze_template, read_records
from routerforge.data.store import Store

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(f"sqlite:///{tmp_path_factory.mktemp('shared') / 'store.db'}")


def _import(store: Store, name: str, path: Path, fmt: str) -> dict:
    records, report = read_records(path, fmt, strict=True)
    store.import_records(name, records)
    assert report.skipped == 0
    return store.dataset_stats(name)


def test_routellm_mmlu(shared_data: Path, store: Store) -> None:
    stats = _import(store, "mmlu", shared_data / "routellm-mmlu", "routellm-csv")
    assert stats["prompts"] == 14_042 and stats["records"] == 28_084 and stats["categories"] == 57
    means = {m["id"]: round(m["mean_score"], 3) for m in stats["models"]}
    assert means == {"gpt-4-1106-preview": 0.806, "mistralai/Mixtral-8x7B-Instruct-v0.1": 0.681}
    matrix = store.load_matrix("mmlu")
    assert len(set(matrix.text_groups())) == 13_937  # identical texts, kept apart by key, grouped by text


def test_routerbench_subset(shared_data: Path, store: Store) -> None:
    stats = _import(store, "routerbench", shared_data / "routerbench-subset", "routerbench-csv")
    assert stats["prompts"] == 3_178 and len(stats["models"]) == 11
    assert stats["splits"] == {"test": 953, "train": 2_225}
    assert all(m["mean_cost_usd"] > 0 for m in stats["models"])
    matrix = store.load_matrix("routerbench")
    test = matrix.split_rows("test")
    gpt4 = matrix.model_index("gpt-4-1106-preview")
    assert round(float(np.nanmean(matrix.scores[test, gpt4])), 3) == 0.880
    assert round(float(np.nanmean(matrix.costs[test, gpt4])), 5) == 0.00503


def test_pulze_results_and_template(shared_data: Path, store: Store) -> None:
    stats = _import(store, "pulze", shared_data / "pulze-v1", "pulze-jsonl")
    assert stats["prompts"] == 285 and len(stats["models"]) == 7 and stats["records"] == 1_995
    [template_file] = (shared_data / "pulze-v1" / "templates").glob("*.json")
    template = load_pulze_template(template_file)
    assert len(template.dimensions) == 7 and template.threshold == 0.6


def test_pulze_strict_score_is_stricter_than_their_judge(shared_data: Path, store: Store) -> None:
    records, report = read_records(shared_data / "pulze-v1", "pulze-jsonl", strict=True, pulze_score="strict")
    store.import_records("pulze-strict", records)
    strict = {m["id"]: m["mean_score"] for m in store.dataset_stats("pulze-strict")["models"]}
    judge = {m["id"]: m["mean_score"] for m in store.dataset_stats("pulze")["models"]}
    assert report.skipped == 0 and strict.keys() == judge.keys()
    assert all(strict[m] < judge[m] for m in judge)
    correct = round(sum(strict.values()) * 285)
    assert 1_600 <= correct <= 1_800  # of 1,995 answers (their judge: 1,985 correct)
