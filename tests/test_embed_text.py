"""Boilerplate stripping and truncation on synthetic prompts."""

from __future__ import annotations

import ast
import csv
import json
import sys
import time
from pathlib import Path

import pytest

from routerforge.embed.text import BoilerplateStripper, split_segments, truncate_ids
from routerforge.errors import ArtifactError, ValidationError

PREAMBLE = "".join(
    f"Example question number {i} about a topic that is always the same in every prompt?\n"
    f"A) first option\nB) second option\nAnswer:\nA\n\n"
    for i in range(5)
)
QUESTIONS = [
    f"What is the boiling point of liquid number {i} at sea level, in kelvin?\nA) {i}\nB) {i + 1}"
    for i in range(60)
]
SUFFIX = "\nPrint only a single choice from A or B without explanation; do not add any reasoning, comments or other text."


def few_shot_corpus() -> list[str]:
    shared = [PREAMBLE + q + SUFFIX for q in QUESTIONS[:40]]
    plain = [f"Write a function that reverses list {i}." for i in range(40)]
    return shared + plain


def test_split_segments_round_trips() -> None:
    text = "First line.\nSecond sentence. Third one!  Fourth?\n\nlast"
    segs = split_segments(text)
    assert "".join(segs) == text
    assert segs[0] == "First line.\n"
    assert "Third one!  " in segs


def test_stripper_removes_shared_preamble_and_suffix() -> None:
    stripper = BoilerplateStripper(min_chars=50).fit(few_shot_corpus())
    assert stripper.is_fitted and stripper.prefixes_ and stripper.suffixes_
    out = stripper.apply(PREAMBLE + QUESTIONS[3] + SUFFIX)
    assert out == QUESTIONS[3]
    # prompts without the boilerplate are untouched, byte for byte
    assert (
        stripper.apply("  Write a function that reverses list 3.")
        == "  Write a function that reverses list 3."
    )


def test_stripper_applies_to_new_prompts_and_partial_preambles() -> None:
    stripper = BoilerplateStripper(min_chars=50).fit(few_shot_corpus())
    new = PREAMBLE + "A brand new question never seen in training?\nA) yes\nB) no" + SUFFIX
    assert stripper.apply(new).startswith("A brand new question never seen")
    first_two = PREAMBLE.split("\n\n")[0] + "\n\n" + PREAMBLE.split("\n\n")[1] + "\n\nAnother question?"
    assert stripper.apply(first_two) == "Another question?"


def test_stripper_never_returns_empty() -> None:
    stripper = BoilerplateStripper(min_chars=50).fit(few_shot_corpus())
    assert stripper.apply(PREAMBLE) == PREAMBLE  # only boilerplate: keep it all
    assert stripper.apply(PREAMBLE + SUFFIX).strip() != ""


def test_stripper_respects_share_and_length_thresholds() -> None:
    corpus = few_shot_corpus()
    strict = BoilerplateStripper(min_count=50).fit(corpus)  # only 40 prompts share the preamble
    assert not strict.prefixes_
    assert strict.apply(corpus[0]) == corpus[0]
    short = BoilerplateStripper(min_chars=10_000).fit(corpus)
    assert short.apply(corpus[0]) == corpus[0]
    # a short shared instruction is kept by default but can be stripped with a lower min_chars
    mmlu = [f"The following are multiple choice questions.\nQuestion {i} about chemistry?" for i in range(30)]
    assert BoilerplateStripper().fit(mmlu).apply(mmlu[0]) == mmlu[0]
    assert BoilerplateStripper(min_chars=20).fit(mmlu).apply(mmlu[0]) == "Question 0 about chemistry?"


def test_stripper_sentence_level_instruction() -> None:
    instruction = "Answer the following question with a single letter and nothing else, please. " * 3
    corpus = [f"{instruction}Question {i}: which planet is number {i}?" for i in range(25)]
    stripper = BoilerplateStripper(min_chars=100).fit(corpus)
    assert stripper.apply(corpus[7]) == "Question 7: which planet is number 7?"


def test_stripper_state_is_plain_json_and_round_trips() -> None:
    stripper = BoilerplateStripper(min_chars=50).fit(few_shot_corpus())
    blob = json.dumps(stripper.to_dict())
    again = BoilerplateStripper.from_dict(json.loads(blob))
    for text in few_shot_corpus():
        assert again.apply(text) == stripper.apply(text)
    with pytest.raises(ArtifactError):
        BoilerplateStripper.from_dict({"format_version": 99})
    with pytest.raises(ArtifactError):
        BoilerplateStripper.from_dict({"format_version": 1, "params": {}})


def test_stripper_is_fast_per_prompt() -> None:
    stripper = BoilerplateStripper(min_chars=50).fit(few_shot_corpus())
    text = PREAMBLE * 4 + QUESTIONS[1]
    start = time.perf_counter()
    for _ in range(100):
        stripper.apply(text)
    # a generous sanity bound (not a benchmark): 100 long prompts well under a second
    assert time.perf_counter() - start < 5.0


def test_invalid_parameters() -> None:
    with pytest.raises(ValidationError):
        BoilerplateStripper(min_share=2.0)
    with pytest.raises(ValidationError):
        BoilerplateStripper(min_count=1)


def test_truncate_ids_strategies() -> None:
    ids = list(range(100))
    assert truncate_ids(ids, 200) == ids
    assert truncate_ids(ids, 10, "head") == list(range(10))
    assert truncate_ids(ids, 10, "tail") == list(range(90, 100))
    both = truncate_ids(ids, 8, "head_tail", head_share=0.25)
    assert both == [0, 1, 94, 95, 96, 97, 98, 99]
    assert truncate_ids(ids, 0) == []
    with pytest.raises(ValidationError):
        truncate_ids(ids, 10, "middle")  # type: ignore[arg-type]


@pytest.mark.shared_data
def test_stripper_on_routerbench_keeps_the_question(shared_data: Path) -> None:
    csv.field_size_limit(sys.maxsize)
    prompts: list[str] = []
    for name in ("arc_challenge_train.csv", "winograde_train.csv", "mbpp_train.csv"):
        with (shared_data / "routerbench-subset" / name).open(newline="", encoding="utf-8") as handle:
            prompts.extend("\n".join(ast.literal_eval(row["prompt"])) for row in csv.DictReader(handle))
    stripper = BoilerplateStripper().fit(prompts)
    out = stripper.apply_many(prompts)
    arc = out[0]
    assert "George wants to warm his hands" not in arc  # the shared 5-shot preamble is gone
    assert prompts[0].rstrip().endswith(arc.splitlines()[-1])  # the question at the end stays
    assert len(arc) < 800
    mbpp = [p for p in prompts if p.startswith("Write a")]
    assert all(stripper.apply(p) == p for p in mbpp)
    assert sum(len(o) for o in out) < 0.3 * sum(len(p) for p in prompts)
