"""Judges on recorded answers: rule extractors, rubric and pairwise LLM judges (scripted judge model)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
from routerforge.errors import ConfigError, UpstreamError, ValidationError
from routerforge.judges import (
    ORACLE_MATRIX,
    AutoJudge,
    ChoiceJudge,
    Dimension,
    ExactJudge,
    JudgeInput,
    NumericJudge,
    OptionJudge,
    PairwiseJudge,
    RegexJudge,
    Rubric,
    RubricJudge,
    build_judge,
    extract_number,
    is_dont_know,
    normalize_scale,
    oracle_label,
    oracle_labels,
    outcome_of,
)


class ScriptedJudgeModel:
    """A ChatBackend double for a judge model: answers from a script, records what it was shown."""

    def __init__(
        self, replies: list[str] | Callable[[list[dict[str, Any]]], str], *, cost: float = 0.001
    ) -> None:
        self.replies = replies
        self.cost = cost
        self.seen: list[list[dict[str, Any]]] = []

    @property
    def name(self) -> str:
        return "scripted-judge"

    async def complete(self, request: ChatRequest) -> ChatResult:
        self.seen.append(request.messages)
        text = self.replies(request.messages) if callable(self.replies) else self.replies.pop(0)
        if text == "RAISE":
            raise UpstreamError("judge upstream down", provider="fake", retryable=True)
        return ChatResult(text=text, model=self.name, cost_usd=self.cost)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:  # pragma: no cover - unused
        yield ChatChunk(delta=(await self.complete(request)).text, finish_reason="stop")

    async def aclose(self) -> None:
        return None


def item(response: str, reference: str | None = None, **kw: Any) -> JudgeInput:
    return JudgeInput(prompt=kw.pop("prompt", "Q?"), response=response, reference=reference, **kw)


# -- extraction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 + 7 = 15", 15.0),
        ("The answer is 325.", 325.0),
        ("The word 'house' has 5 letters.", 5.0),
        ("1,234", 1234.0),
        ("It is -3.5 degrees", -3.5),
        ("no digits here", None),
        ("\n\n42\nextra 7", 42.0),
    ],
)
def test_extract_number(text: str, expected: float | None) -> None:
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "I'm not sure about that",
        "There is not enough information to answer.",
        "",
        "   ",
        "N/A",
        "I cannot answer this question.",
    ],
)
def test_dont_know_detected(text: str) -> None:
    assert is_dont_know(text)


@pytest.mark.parametrize(
    "text", ["Paris", "The answer is 12.", "I know that 2 + 2 = 4", "unknown-ish words are fine here"]
)
def test_answers_are_not_dont_know(text: str) -> None:
    assert not is_dont_know(text)


def test_normalize_scale() -> None:
    assert normalize_scale(1, 1, 5) == 0.0
    assert normalize_scale(5, 1, 5) == 1.0
    assert normalize_scale(3, 1, 5) == 0.5
    assert normalize_scale(9, 1, 5) == 1.0


# -- rule judges on recorded answers ---------------------------------------------------------------


def test_numeric_judge_correct_incorrect_dont_know() -> None:
    judge = NumericJudge()
    assert judge.judge_sync(item("8 + 7 = 15", "15")).label == "correct"
    wrong = judge.judge_sync(item("23 + 48 = 100", "71"))
    assert (wrong.score, wrong.label) == (0.0, "incorrect")
    dk = judge.judge_sync(item("I don't know.", "71"))
    assert (dk.score, dk.label) == (0.0, "dont_know")
    assert judge.judge_sync(item("To solve this problem, we", "71")).label == "incorrect"


def test_numeric_tolerance() -> None:
    assert NumericJudge(rel_tol=0.01).judge_sync(item("about 99.5", "100")).score == 1.0
    assert NumericJudge().judge_sync(item("about 99.5", "100")).score == 0.0
    assert NumericJudge(abs_tol=0.6).judge_sync(item("99.5", "100")).score == 1.0


def test_exact_judge_modes() -> None:
    assert ExactJudge().judge_sync(item("  Paris. ", "paris")).score == 1.0
    assert ExactJudge().judge_sync(item("The capital is Paris.", "Paris")).score == 0.0
    assert ExactJudge(mode="contains").judge_sync(item("The capital is Paris.", "Paris")).score == 1.0
    assert ExactJudge(mode="contains").judge_sync(item("Parisian food", "Paris")).score == 0.0
    assert ExactJudge(mode="first_line").judge_sync(item("banana\n\nmore text", "banana")).score == 1.0
    cs = ExactJudge(mode="contains", case_sensitive=True)
    assert cs.judge_sync(item("banana", "BANANA")).score == 0.0
    assert cs.judge_sync(item("It is BANANA", "BANANA")).score == 1.0


def test_choice_judge_letters_and_digits() -> None:
    judge = ChoiceJudge()
    choices = ["red", "green", "blue", "black"]
    assert judge.judge_sync(item("The answer is (C).", "C", choices=choices)).score == 1.0
    assert judge.judge_sync(item("B) green", "C", choices=choices)).score == 0.0
    assert judge.judge_sync(item("I think it is blue", "C", choices=choices)).score == 1.0
    assert judge.judge_sync(item("I don't know", "C", choices=choices)).label == "dont_know"
    digits = ChoiceJudge(labels="digits")
    assert digits.judge_sync(item("**Answer: 1) Message Integrity**", "1", choices=choices)).score == 1.0
    assert digits.judge_sync(item("The answer is **3) I and III only**.", "1", choices=choices)).score == 0.0


def test_option_judge_needs_exactly_one_option() -> None:
    judge = OptionJudge()
    assert judge.judge_sync(item("88", "88", choices=["49", "88"])).score == 1.0
    assert judge.judge_sync(item("49 or 88", "88", choices=["49", "88"])).score == 0.0  # hedging is no answer
    assert judge.judge_sync(item("49", "88", choices=["49", "88"])).score == 0.0


def test_regex_judge() -> None:
    judge = RegexJudge(pattern=r"\b{reference}\b")
    assert judge.judge_sync(item("it is 42 exactly", "42")).score == 1.0
    assert judge.judge_sync(item("it is 420", "42")).score == 0.0
    with pytest.raises(ConfigError):
        RegexJudge(pattern="(unclosed")


def test_missing_reference_is_a_judge_failure_not_a_crash() -> None:
    verdict = NumericJudge().judge_sync(item("5", None))
    assert verdict.score is None and verdict.failed


def test_auto_judge_follows_prompt_metadata() -> None:
    judge = AutoJudge()
    assert judge.judge_sync(item("The answer is 12", "12", metadata={"judge": "numeric"})).score == 1.0
    assert judge.judge_sync(item("banana", "BANANA", metadata={"judge": "contains-cs"})).score == 0.0
    assert (
        judge.judge_sync(item("49 or 88", "88", choices=["49", "88"], metadata={"judge": "option"})).score
        == 0.0
    )
    fallback = judge.judge_sync(item("It's Rome.", "Rome"))
    assert fallback.score == 1.0 and fallback.judge == "auto" and fallback.details["rule"] == "contains"


# -- rubric judge ------------------------------------------------------------------------------------

RUBRIC = Rubric(
    name="qa",
    dimensions=(Dimension("correctness", 3.0), Dimension("clarity", 1.0)),
    scale=(1.0, 5.0),
    threshold=0.6,
)


async def test_rubric_judge_scores_and_normalises() -> None:
    model = ScriptedJudgeModel(['Sure! {"correctness": 5, "clarity": 3, "reasoning": "right"}'])
    verdict = await RubricJudge(model, RUBRIC).judge(item("Paris", "Paris", prompt="Capital of France?"))
    assert verdict.label == "correct"
    assert verdict.score == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)
    assert verdict.dimensions == {"correctness": 1.0, "clarity": 0.5}
    assert verdict.attempts == 1 and verdict.cost_usd == pytest.approx(0.001)


async def test_rubric_judge_is_blind() -> None:
    model = ScriptedJudgeModel(['{"correctness": 1, "clarity": 1}'])
    await RubricJudge(model, RUBRIC).judge(item("Lyon", "Paris", prompt="Capital of France?"))
    shown = " ".join(str(m["content"]) for m in model.seen[0])
    assert "Lyon" in shown and "Paris" in shown
    assert "smollm" not in shown.lower() and "model" not in shown.split("<RESPONSE>")[1].lower()


async def test_rubric_judge_retries_malformed_output() -> None:
    model = ScriptedJudgeModel(
        ["I think it's good", '{"correctness": 9, "clarity": 1}', '{"correctness": 1, "clarity": 1}']
    )
    verdict = await RubricJudge(model, RUBRIC).judge(item("Lyon", "Paris"))
    assert verdict.attempts == 3 and verdict.label == "incorrect" and verdict.score == 0.0
    assert len(verdict.details["errors"]) == 2  # no JSON; grade outside the scale


async def test_rubric_judge_failure_is_recorded_not_raised() -> None:
    model = ScriptedJudgeModel(["garbage", "RAISE", "{not json"])
    verdict = await RubricJudge(model, RUBRIC, max_attempts=3).judge(item("Lyon", "Paris"))
    assert verdict.failed and verdict.score is None and verdict.attempts == 3


async def test_rubric_judge_skips_dont_know_answers() -> None:
    model = ScriptedJudgeModel([])
    verdict = await RubricJudge(model, RUBRIC).judge(item("I'm not sure.", "Paris"))
    assert verdict.label == "dont_know" and verdict.score == 0.0 and not model.seen


# -- pairwise judge ----------------------------------------------------------------------------------


def _prefers(answer: str) -> Callable[[list[dict[str, Any]]], str]:
    def reply(messages: list[dict[str, Any]]) -> str:
        text = messages[-1]["content"]
        a = text.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
        return "[[A]]" if a == answer else "[[B]]"

    return reply


async def test_pairwise_position_swap_cancels_position_bias() -> None:
    always_a = ScriptedJudgeModel(lambda _m: "Verdict: [[A]]")
    judge = PairwiseJudge(always_a, repeats=2)
    verdict = await judge.judge(item("Lyon", metadata={"reference_answer": "Paris"}))
    assert verdict.score == 0.5 and verdict.label == "partial"
    assert len(always_a.seen) == 4  # 2 repeats x 2 orders
    assert verdict.details["position_inconsistent"] == 2


async def test_pairwise_consistent_preference_and_ties() -> None:
    judge = PairwiseJudge(ScriptedJudgeModel(_prefers("Paris")))
    win = await judge.judge(item("Paris", metadata={"reference_answer": "Lyon"}))
    loss = await judge.judge(item("Lyon", metadata={"reference_answer": "Paris"}))
    assert (win.score, win.label) == (1.0, "correct")
    assert (loss.score, loss.label) == (0.0, "incorrect")
    tie = await PairwiseJudge(ScriptedJudgeModel(lambda _m: "[[C]]")).judge(
        item("x", metadata={"reference_answer": "y"})
    )
    assert tie.score == 0.5 and tie.details["ties"] == 2


async def test_pairwise_asks_the_reference_model_once_per_prompt() -> None:
    reference = ScriptedJudgeModel(lambda _m: "Paris")
    judge = PairwiseJudge(ScriptedJudgeModel(_prefers("Paris")), reference_backend=reference)
    first = await judge.judge(item("Paris", prompt="Capital of France?"))
    second = await judge.judge(item("Lyon", prompt="Capital of France?"))
    assert len(reference.seen) == 1
    assert first.score == 0.5 and second.score == 0.0  # equal to the reference is a tie


async def test_pairwise_malformed_output_retried_then_failure() -> None:
    flaky = ScriptedJudgeModel(["hmm", "[[A]]", "[[B]]"])
    verdict = await PairwiseJudge(flaky).judge(item("Paris", metadata={"reference_answer": "Lyon"}))
    assert verdict.score == 1.0 and verdict.attempts == 3
    broken = ScriptedJudgeModel(lambda _m: "no verdict at all")
    failed = await PairwiseJudge(broken, max_attempts=2).judge(
        item("Paris", metadata={"reference_answer": "Lyon"})
    )
    assert failed.failed and failed.score is None and len(broken.seen) == 4
    none = await PairwiseJudge(broken).judge(item("Paris"))
    assert none.failed


# -- templates -----------------------------------------------------------------------------------------


def test_builtin_names_and_yaml_template(tmp_path: Path) -> None:
    assert isinstance(build_judge("numeric"), NumericJudge)
    path = tmp_path / "judge.yaml"
    path.write_text(
        "name: graded\ntype: rubric\njudge_model: judge-x\nrubric:\n  scale: [1, 5]\n  threshold: 0.7\n"
        "  dimensions:\n    - {name: correctness, weight: 2}\n    - clarity\n",
        encoding="utf-8",
    )
    made: list[str] = []

    def factory(model: str) -> ScriptedJudgeModel:
        made.append(model)
        return ScriptedJudgeModel([])

    judge = build_judge(path, backend_factory=factory)
    assert isinstance(judge, RubricJudge) and made == ["judge-x"]
    assert [d.weight for d in judge.rubric.dimensions] == [2.0, 1.0] and judge.rubric.threshold == 0.7
    tol = tmp_path / "tol.json"
    tol.write_text('{"type": "numeric", "rel_tol": 0.05}', encoding="utf-8")
    assert build_judge(tol).judge_sync(item("103", "100")).score == 1.0  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        build_judge("no-such-judge")
    with pytest.raises(ConfigError):
        build_judge(path)  # needs a backend factory


def test_pulze_template_imports_as_rubric(shared_data: Path) -> None:
    template = next((shared_data / "pulze-v1" / "templates").glob("*.json"))
    judge = build_judge(template, backend_factory=lambda _m: ScriptedJudgeModel([]))
    assert isinstance(judge, RubricJudge)
    names = [d.name for d in judge.rubric.dimensions]
    assert "correctness" in names and len(names) == 7
    assert judge.rubric.scale == (0.0, 10.0) and judge.rubric.threshold == pytest.approx(0.6)


async def test_pulze_rubric_scores_a_pulze_style_reply(shared_data: Path) -> None:
    template = next((shared_data / "pulze-v1" / "templates").glob("*.json"))
    reply = (
        '{"relevance": 10, "correctness": 10, "clarity": 10, "completeness": 10, "conciseness": 9, '
        '"appropriateness": 10, "helpfulness": 10, "overall_score": 0.99, "reasoning": "ok", "passed": true}'
    )
    judge = build_judge(template, backend_factory=lambda _m: ScriptedJudgeModel([reply]))
    verdict = await judge.judge(item("1) Message Integrity", "1"))
    assert verdict.score == pytest.approx(69 / 70) and verdict.label == "correct"


# -- the oracle matrix ------------------------------------------------------------------------------


def test_oracle_matrix_nine_cells() -> None:
    assert len(ORACLE_MATRIX) == 9
    assert oracle_label("correct", "incorrect") == "Standard_Query"
    assert oracle_label("incorrect", "correct") == "Complex_Query"
    assert oracle_label("dont_know", "correct") == "Complex_Query"
    assert oracle_label("incorrect", "incorrect") == "Ambiguous_Query"
    assert oracle_label("incorrect", "dont_know") == "Complex_Query"  # issue 13
    assert oracle_label("correct", "dont_know") == "Ambiguous_Query"
    assert oracle_label("dont_know", "dont_know") == "Ambiguous_Query"
    assert set(ORACLE_MATRIX.values()) == {"Standard_Query", "Complex_Query", "Ambiguous_Query"}
    assert oracle_labels(["correct", "incorrect"], ["correct", "correct"]) == [
        "Standard_Query",
        "Complex_Query",
    ]
    custom = {**ORACLE_MATRIX, ("incorrect", "incorrect"): "Hard"}
    assert oracle_label("incorrect", "incorrect", matrix=custom) == "Hard"
    assert outcome_of("partial", 0.7) == "correct"
    with pytest.raises(ValidationError):
        oracle_labels(["correct"], [])
