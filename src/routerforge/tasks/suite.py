"""The built-in task suite: questions with exact answers and graded difficulty, deterministic by seed.

``generate_tasks(size, seed)`` spreads ``size`` prompts evenly over the task kinds and difficulty levels
and returns them as :class:`~routerforge.data.records.PromptItem` ready for ``Store.add_prompts``. Each
item names the judge that scores it (``metadata["judge"]``), which the ``auto`` judge follows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from routerforge.data.records import PromptItem
from routerforge.errors import ValidationError
from routerforge.tasks.generators import GENERATORS, Task

DIFFICULTIES: tuple[int, ...] = (1, 2, 3)
JUDGE_FOR_ANSWER_TYPE = {
    "number": "numeric",
    "text": "contains",
    "text-cs": "contains-cs",
    "option": "option",
}


def available_kinds() -> list[str]:
    return list(GENERATORS)


def _item(task: Task, key: str, split: str) -> PromptItem:
    return PromptItem(
        key=key,
        text=task.question,
        reference=task.answer,
        choices=list(task.options) or None,
        category=task.kind,
        split=split,
        metadata={
            "kind": task.kind,
            "difficulty": task.difficulty,
            "answer_type": task.answer_type,
            "judge": JUDGE_FOR_ANSWER_TYPE[task.answer_type],
            "source": "routerforge-tasks",
        },
    )


def generate_tasks(
    size: int = 200,
    *,
    seed: int = 0,
    kinds: Sequence[str] | None = None,
    difficulties: Sequence[int] = DIFFICULTIES,
    test_fraction: float = 0.3,
) -> list[PromptItem]:
    """``size`` distinct prompts, the same for the same arguments on every machine.

    Prompts cycle through ``kinds`` × ``difficulties``; each gets split ``test`` with probability
    ``test_fraction`` (else ``train``), drawn from the same seeded generator.
    """
    if size < 1:
        raise ValidationError(f"The task suite size must be at least 1, not {size}.")
    chosen = list(kinds) if kinds else available_kinds()
    unknown = [k for k in chosen if k not in GENERATORS]
    if unknown:
        raise ValidationError(
            f"Unknown task kind(s): {', '.join(unknown)}.", hint=f"Available: {', '.join(available_kinds())}."
        )
    if not difficulties or any(d < 1 for d in difficulties):
        raise ValidationError("Difficulties must be positive integers.")
    rng = random.Random(seed)
    cells = [(kind, d) for d in difficulties for kind in chosen]
    items: list[PromptItem] = []
    seen: set[str] = set()
    counters: dict[tuple[str, int], int] = {}
    attempts = 0
    while len(items) < size:
        kind, difficulty = cells[
            len(items) % len(cells) if attempts < size * 50 else rng.randrange(len(cells))
        ]
        attempts += 1
        task = GENERATORS[kind](rng, difficulty)
        split = "test" if rng.random() < test_fraction else "train"
        if task.question in seen:
            if attempts > size * 100:
                raise ValidationError(f"Could not make {size} distinct tasks from kinds {', '.join(chosen)}.")
            continue
        seen.add(task.question)
        n = counters.get((kind, difficulty), 0)
        counters[(kind, difficulty)] = n + 1
        items.append(_item(task, f"{kind}-d{difficulty}-{n:04d}", split))
    return items
