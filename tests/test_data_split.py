"""`routerforge data split` and the grouping it shares with the benchmark folds; the own-data walkthrough
(import → split → train → calibrate → route) end to end on a small generated dataset with the hash embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routerforge.cli.main import main
from routerforge.data.records import EvalRecord, PromptItem, text_hash
from routerforge.data.split import group_ids, plan_split
from routerforge.errors import ValidationError

TOPICS = ["algebra", "history", "poetry", "chemistry", "law"]
DUPLICATED = 12  # prompts 0..11 are repeated once under another key; prompt 1 also under another topic


def _records(n: int = 150, seed: int = 0) -> list[EvalRecord]:
    rng = np.random.default_rng(seed)
    out: list[EvalRecord] = []

    def add(key: str, text: str, topic: str) -> None:
        p = {"strong": 0.9, "weak": 0.2 if topic == "algebra" else 0.8}
        for model, price in (("strong", 0.01), ("weak", 0.001)):
            out.append(
                EvalRecord(
                    prompt_key=key,
                    prompt=text,
                    model=model,
                    score=float(rng.random() < p[model]),
                    cost_usd=price * (1 + 0.1 * rng.random()),
                    category=topic,
                    metadata={"source": f"src{int(key.lstrip('qdup')) % 3}"},
                )
            )

    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        add(f"q{i}", f"{topic} question {i}: explain {topic} item {i * 7 % 13}", topic)
    for i in range(DUPLICATED):  # the same text again under a new key; prompt 1 (history) also as poetry
        topic = TOPICS[i % len(TOPICS)]
        add(
            f"dup{i}",
            f"{topic} question {i}: explain {topic} item {i * 7 % 13}",
            "poetry" if i == 1 else topic,
        )
    return out


@pytest.fixture
def home(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    with Store.from_settings(load_settings()) as store:
        store.import_records("toy", _records())
        store.add_prompts("toy", [PromptItem(key="lonely", text="a prompt nobody answered", category="law")])
    return rf_home


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _store_prompts(name: str) -> list[PromptItem]:
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    with Store.from_settings(load_settings()) as store:
        return list(store.iter_prompts(name))


# ------------------------------------------------------------------------------------------- grouping
def test_group_ids_merge_identical_texts_and_labels_in_first_appearance_order() -> None:
    prompts = ["a", "b", "a", "c", "d", "b"]
    assert group_ids(prompts).tolist() == [0, 1, 0, 2, 3, 1]
    # text 'b' is labelled y and z, which merges the two labels into one group
    assert group_ids(prompts, ["x", "y", "x", "z", "w", "z"]).tolist() == [0, 1, 0, 1, 2, 1]


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.integers(0, 25), min_size=2, max_size=80),
    labels=st.lists(st.sampled_from("abcdef"), min_size=80, max_size=80),
    test_size=st.floats(0.05, 0.95),
    seed=st.integers(0, 5),
    by=st.booleans(),
)
def test_a_split_never_straddles_a_text_or_a_value(
    texts: list[int], labels: list[str], test_size: float, seed: int, by: bool
) -> None:
    items = [PromptItem(key=str(i), text=f"t{t}", category=labels[i]) for i, t in enumerate(texts)]
    if len(set(texts)) < 2 or (by and len(set(group_ids([i.text for i in items], labels[: len(items)]))) < 2):
        with pytest.raises(ValidationError, match="nothing can be held out"):
            plan_split(items, test_size, by="category" if by else None, seed=seed)
        return
    plan = plan_split(items, test_size, by="category" if by else None, seed=seed)
    assert plan.train.size and plan.test.size
    assert sorted(np.concatenate([plan.train, plan.test]).tolist()) == list(range(len(items)))
    train_texts = {items[i].text for i in plan.train}
    assert not train_texts & {items[i].text for i in plan.test}
    if by:
        assert not {items[i].category for i in plan.train} & {items[i].category for i in plan.test}
    again = plan_split(items, test_size, by="category" if by else None, seed=seed)
    assert again.test.tolist() == plan.test.tolist()  # same seed, same split


def test_the_held_out_share_is_close_to_the_target_and_the_seed_matters() -> None:
    items = [PromptItem(key=str(i), text=f"prompt {i % 400}") for i in range(500)]  # 100 texts twice
    a = plan_split(items, 0.2, seed=0)
    b = plan_split(items, 0.2, seed=1)
    assert a.test.size == pytest.approx(100, abs=2) and a.test.tolist() != b.test.tolist()
    counts = a.counts([i.text for i in items])
    assert counts["duplicate_texts"] == 100 and counts["duplicate_rows"] == 200 and counts["groups"] == 400


# ------------------------------------------------------------------------------------------------- CLI
def test_split_into_two_datasets_then_train_calibrate_route(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "data", "split", "toy", "--test-size", "0.2", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "into" and doc["prompts"] == 150 + DUPLICATED + 1
    assert doc["duplicate_texts"] == DUPLICATED and doc["duplicate_rows"] == 2 * DUPLICATED
    assert doc["groups"] == 150 + 1
    train, test = doc["train"], doc["test"]
    assert (train["dataset"], test["dataset"]) == ("toy-train", "toy-heldout")
    assert train["prompts"] + test["prompts"] == doc["prompts"]
    assert test["prompts"] == pytest.approx(0.2 * doc["prompts"], abs=2)
    assert train["records"] + test["records"] == 2 * (150 + DUPLICATED)

    train_items, test_items = _store_prompts("toy-train"), _store_prompts("toy-heldout")
    assert len(train_items) == train["prompts"] and len(test_items) == test["prompts"]
    assert {i.split for i in train_items} == {"train"} and {i.split for i in test_items} == {"test"}
    assert not {text_hash(i.text) for i in train_items} & {text_hash(i.text) for i in test_items}
    assert "lonely" in {i.key for i in train_items + test_items}  # a prompt without records is copied too
    assert {i.split for i in _store_prompts("toy")} == {None}  # the source is left as it was

    code, out, err = run(capsys, "data", "split", "toy")  # refused: the targets exist
    assert code == 2 and "already exist" in err and "--force" in err
    code, out, err = run(capsys, "data", "split", "toy", "--seed", "3", "--force")
    assert code == 0, err
    assert (
        "held out" in out and "prompts" in out and "each is kept on one side" in out and "toy-heldout" in out
    )

    # the README walkthrough: train on NAME-train, calibrate on NAME-heldout, route
    rdir = tmp_path / "router"
    code, _, err = run(capsys, "train", "knn", "--data", "toy-train", "--out", str(rdir), "--json")
    assert code == 0, err
    code, out, err = run(
        capsys, "calibrate", str(rdir), "--data", "toy-heldout", "--target", "strong-share=0.3", "--json"
    )
    assert code == 0, err
    heldout = len(_store_prompts("toy-heldout")) - sum(
        1 for i in _store_prompts("toy-heldout") if i.key == "lonely"
    )
    assert json.loads(out)["n_heldout"] == heldout  # every held-out prompt with scores, none seen in training
    code, out, err = run(capsys, "route", str(rdir), "What is the derivative of x^3?", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] in ("strong", "weak")


def test_split_by_category_and_in_place(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "data", "split", "toy", "--by", "category", "--test-size", "0.3", "--into", "a,b", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    a, b = _store_prompts("a"), _store_prompts("b")
    assert not {i.category for i in a} & {i.category for i in b}  # whole topics held out
    assert set(doc["held_out_values"]) == {i.category for i in b}
    # one duplicated text sits in history and poetry, which merges the two topics into one group
    assert doc["groups"] == len(TOPICS) - 1
    assert {"history", "poetry"} <= {i.category for i in a} or {"history", "poetry"} <= {
        i.category for i in b
    }

    code, out, err = run(capsys, "data", "split", "toy", "--by", "source", "--into", "c,d", "--json")
    assert code == 0, err
    doc = json.loads(out)  # a metadata key; the prompt without a value is a group of its own
    assert doc["rows_without_value"] == 1 and doc["groups"] == 4

    code, out, err = run(capsys, "data", "split", "toy", "--inplace", "--test-size", "0.25")
    assert code == 0, err
    assert "split 'test'" in out and "routerforge calibrate DIR --data toy" in out
    items = _store_prompts("toy")
    tests = [i for i in items if i.split == "test"]
    assert {i.split for i in items} == {"train", "test"}
    assert not {i.text for i in tests} & {i.text for i in items if i.split == "train"}
    code, _, err = run(capsys, "data", "split", "toy", "--inplace")
    assert code == 2 and "already has a split" in err and "--force" in err

    # train picks split 'train' by itself; calibrate uses the prompts it was not trained on
    rdir = tmp_path / "r"
    code, out, err = run(capsys, "train", "knn", "--data", "toy", "--out", str(rdir), "--json")
    assert code == 0, err
    assert json.loads(out)["n_train"] == len(items) - len(tests)
    code, out, err = run(
        capsys, "calibrate", str(rdir), "--data", "toy", "--target", "strong-share=0.3", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["n_heldout"] == sum(1 for i in tests if i.key != "lonely")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "No dataset named 'nope'"),
        (["toy", "--test-size", "0"], "--test-size must be between 0 and 1"),
        (["toy", "--test-size", "1"], "--test-size must be between 0 and 1"),
        (["toy", "--test-size", "1.5"], "--test-size must be between 0 and 1"),
        (["toy", "--by", "colour"], "Unknown column 'colour'"),
        (["toy", "--by", "reference"], "No prompt has a value in column 'reference'"),
        (["toy", "--into", "only-one"], "--into takes two names"),
        (["toy", "--into", "toy,other"], "two different new names"),
        (["toy", "--into", "x,x"], "two different new names"),
        (["toy", "--into", "x,y", "--inplace"], "not both"),
    ],
)
def test_bad_input_is_refused_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _out, err = run(capsys, "data", "split", *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert _dataset_names() == {"toy"}  # nothing written


def _dataset_names() -> set[str]:
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    with Store.from_settings(load_settings()) as store:
        return {d.name for d in store.list_datasets()}
