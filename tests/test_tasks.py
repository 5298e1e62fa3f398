"""The built-in task suite: deterministic, distinct, exact answers, graded difficulty."""

from __future__ import annotations

import random

import pytest

from routerforge.errors import ValidationError
from routerforge.judges import AutoJudge, JudgeInput
from routerforge.tasks import GENERATORS, available_kinds, generate_tasks


def test_same_seed_same_suite_other_seed_other_suite() -> None:
    a, b = generate_tasks(80, seed=3), generate_tasks(80, seed=3)
    assert [(i.key, i.text, i.reference, i.split) for i in a] == [
        (i.key, i.text, i.reference, i.split) for i in b
    ]
    assert [i.text for i in generate_tasks(80, seed=4)] != [i.text for i in a]


def test_suite_covers_kinds_and_difficulties() -> None:
    items = generate_tasks(len(available_kinds()) * 3 * 2, seed=0)
    assert len({i.text for i in items}) == len(items)
    assert len({i.key for i in items}) == len(items)
    assert {i.category for i in items} == set(available_kinds())
    assert {i.metadata["difficulty"] for i in items} == {1, 2, 3}
    assert {i.split for i in items} == {"train", "test"}
    assert all(i.reference and i.metadata["judge"] for i in items)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_reference_answers_are_right_by_the_suite_judge(kind: str) -> None:
    rng = random.Random(7)
    judge = AutoJudge()
    for difficulty in (1, 2, 3):
        task = GENERATORS[kind](rng, difficulty)
        item = generate_tasks(1, seed=0, kinds=[kind])[0]  # metadata wiring for this kind
        meta = {**item.metadata, "judge": item.metadata["judge"]}
        verdict = judge.judge_sync(
            JudgeInput(task.question, task.answer, task.answer, list(task.options) or None, meta)
        )
        assert verdict.score == 1.0, (kind, task)


def test_harder_arithmetic_has_bigger_numbers() -> None:
    rng = random.Random(0)
    small = [int(GENERATORS["addition"](rng, 1).answer) for _ in range(20)]
    large = [int(GENERATORS["addition"](rng, 3).answer) for _ in range(20)]
    assert max(small) < 20 <= min(large)


def test_bad_arguments() -> None:
    with pytest.raises(ValidationError):
        generate_tasks(0)
    with pytest.raises(ValidationError):
        generate_tasks(5, kinds=["nope"])
