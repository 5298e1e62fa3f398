"""LLM-as-judge: rubric scoring of one answer, and pairwise comparison against a reference answer.

Both are blind (the judge model never learns which model answered), retry malformed judge output up to
``max_attempts`` times and then record a ``judge_failure`` verdict instead of raising, and detect
"don't know" answers before spending a judge call on them.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from routerforge.backends.base import ChatBackend, ChatRequest
from routerforge.errors import ConfigError, UpstreamError
from routerforge.judges.base import JudgeInput, Label, Verdict, normalize_scale
from routerforge.judges.extract import is_dont_know


class MalformedJudgeOutput(ValueError):
    """The judge model answered something the judge cannot read (internal: triggers a retry)."""


@dataclass(frozen=True)
class Dimension:
    name: str
    weight: float = 1.0
    description: str | None = None


@dataclass(frozen=True)
class Rubric:
    """Weighted dimensions graded on ``scale`` (e.g. 1–5 or 0–10), combined into a score in [0, 1].

    ``instructions`` is the judge's system prompt; when empty one is written from the dimensions.
    ``threshold`` splits correct from incorrect for the label.
    """

    name: str
    dimensions: tuple[Dimension, ...]
    scale: tuple[float, float] = (1.0, 5.0)
    instructions: str = ""
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.dimensions:
            raise ConfigError(f"Rubric {self.name!r} has no dimensions.")
        if self.scale[1] <= self.scale[0]:
            raise ConfigError(f"Rubric {self.name!r}: scale {self.scale} must go from low to high.")
        if sum(d.weight for d in self.dimensions) <= 0:
            raise ConfigError(f"Rubric {self.name!r}: dimension weights must sum to more than 0.")

    def system_prompt(self) -> str:
        if self.instructions:
            return self.instructions
        low, high = (_fmt(v) for v in self.scale)
        lines = [
            "You are an impartial evaluator. You will see a prompt, possibly a reference answer, and a response.",
            f"Grade the response on each dimension below with a number from {low} (worst) to {high} (best).",
            "",
        ]
        lines += [f"- {d.name}: {d.description or d.name}" for d in self.dimensions]
        example = ", ".join(f'"{d.name}": <{low}-{high}>' for d in self.dimensions)
        lines += ["", f'Reply with one JSON object only: {{{example}, "reasoning": "<one sentence>"}}']
        return "\n".join(lines)

    def combine(self, grades: dict[str, float]) -> tuple[float, dict[str, float]]:
        """The weighted score in [0, 1] and the per-dimension scores in [0, 1]."""
        low, high = self.scale
        dims = {d.name: normalize_scale(grades[d.name], low, high) for d in self.dimensions}
        total = sum(d.weight for d in self.dimensions)
        return sum(d.weight * dims[d.name] for d in self.dimensions) / total, dims


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def rubric_from_pulze(template: Any) -> Rubric:
    """A :class:`Rubric` from a Pulze evaluation template (``routerforge.data.importers.pulze``)."""
    dims = tuple(Dimension(d.name, float(d.weight), d.description) for d in template.dimensions)
    scale = tuple(float(v) for v in getattr(template, "scale", (0.0, 10.0)))
    threshold = template.threshold if template.threshold is not None else 0.5
    return Rubric(
        name=template.name,
        dimensions=dims,
        scale=(scale[0], scale[1]),
        instructions=template.prompt,
        threshold=float(threshold),
    )


def load_pulze_rubric(path: str) -> Rubric:
    """Import a Pulze template file as a rubric (uses the data layer's ``load_pulze_template``)."""
    from routerforge.data.importers.pulze import load_pulze_template

    return rubric_from_pulze(load_pulze_template(path))


_JSON_BLOCK = re.compile(r"\{.*\}", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a judge's reply (code fences and chatter around it are ignored)."""
    match = _JSON_BLOCK.search(text)
    if match is None:
        raise MalformedJudgeOutput("no JSON object in the judge's reply")
    try:
        value = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise MalformedJudgeOutput(f"invalid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise MalformedJudgeOutput("the judge's JSON is not an object")
    return value


def parse_grades(text: str, rubric: Rubric) -> tuple[dict[str, float], str | None]:
    """Dimension grades from a judge reply; every dimension must be there and on the scale."""
    data = parse_json_object(text)
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    low, high = rubric.scale
    grades: dict[str, float] = {}
    for dim in rubric.dimensions:
        value = lowered.get(dim.name.lower())
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise MalformedJudgeOutput(f"dimension {dim.name!r} missing or not a number")
        try:
            grade = float(value)
        except ValueError:
            raise MalformedJudgeOutput(f"dimension {dim.name!r} is not a number: {value!r}") from None
        if not low <= grade <= high:
            raise MalformedJudgeOutput(f"dimension {dim.name!r} = {grade} is outside {low}..{high}")
        grades[dim.name] = grade
    reasoning = lowered.get("reasoning")
    return grades, str(reasoning) if reasoning is not None else None


class _LLMJudgeBase:
    def __init__(
        self,
        backend: ChatBackend,
        *,
        model: str | None,
        max_attempts: int,
        max_tokens: int,
        temperature: float,
        detect_dont_know: bool,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError("A judge needs max_attempts >= 1.")
        self.backend = backend
        self.model = model or backend.name
        self.max_attempts = max_attempts
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.detect_dont_know = detect_dont_know

    async def _ask(self, messages: list[dict[str, Any]]) -> tuple[str, float]:
        result = await self.backend.complete(
            ChatRequest(
                model=self.model, messages=messages, max_tokens=self.max_tokens, temperature=self.temperature
            )
        )
        return result.text, float(result.cost_usd or 0.0)


class RubricJudge(_LLMJudgeBase):
    """Scores one answer on a :class:`Rubric` with a judge model (blind single-answer grading)."""

    def __init__(
        self,
        backend: ChatBackend,
        rubric: Rubric,
        *,
        model: str | None = None,
        name: str | None = None,
        max_attempts: int = 3,
        max_tokens: int = 400,
        temperature: float = 0.0,
        detect_dont_know: bool = True,
    ) -> None:
        super().__init__(
            backend,
            model=model,
            max_attempts=max_attempts,
            max_tokens=max_tokens,
            temperature=temperature,
            detect_dont_know=detect_dont_know,
        )
        self.rubric = rubric
        self.name = name or f"rubric:{rubric.name}"

    def messages(self, item: JudgeInput) -> list[dict[str, Any]]:
        parts = [f"<PROMPT>: {item.prompt}"]
        if item.reference is not None:
            parts.append(f"<EXPECTED_ANSWER>: {item.reference}")
        parts.append(f"<RESPONSE>: {item.response}")
        return [
            {"role": "system", "content": self.rubric.system_prompt()},
            {"role": "user", "content": "\n\n".join(parts)},
        ]

    async def judge(self, item: JudgeInput) -> Verdict:
        if self.detect_dont_know and is_dont_know(item.response):
            return Verdict(score=0.0, label="dont_know", judge=self.name, attempts=0)
        errors: list[str] = []
        cost = 0.0
        for attempt in range(1, self.max_attempts + 1):
            try:
                text, call_cost = await self._ask(self.messages(item))
                cost += call_cost
                grades, reasoning = parse_grades(text, self.rubric)
            except (MalformedJudgeOutput, UpstreamError) as exc:
                errors.append(str(exc))
                continue
            score, dims = self.rubric.combine(grades)
            label: Label = "correct" if score >= self.rubric.threshold else "incorrect"
            return Verdict(
                score=score,
                label=label,
                judge=self.name,
                dimensions=dims,
                reasoning=reasoning,
                attempts=attempt,
                cost_usd=cost,
                details={"grades": grades, "errors": errors},
            )
        return Verdict(
            score=None,
            label="judge_failure",
            judge=self.name,
            attempts=self.max_attempts,
            cost_usd=cost,
            details={"errors": errors},
        )


PAIRWISE_INSTRUCTIONS = (
    "You are an impartial judge. Compare two assistant answers to the user's question and decide which one "
    "is better: more correct first, then more helpful and concise. Ignore the order of the answers and their "
    "length. Reply with a verdict in this exact format on the last line: [[A]] if answer A is better, "
    "[[B]] if answer B is better, [[C]] for a tie."
)
_PAIRWISE_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def parse_pairwise(text: str) -> str:
    """``"A"``, ``"B"`` or ``"C"`` (tie) from a pairwise judge's reply (the last verdict wins)."""
    found = _PAIRWISE_VERDICT.findall(text)
    if not found:
        raise MalformedJudgeOutput("no [[A]]/[[B]]/[[C]] verdict in the judge's reply")
    return str(found[-1])


@dataclass
class _ReferenceCache:
    answers: dict[str, str] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


class PairwiseJudge(_LLMJudgeBase):
    """Compares an answer with a reference model's answer, both orders, ``repeats`` times each.

    The reference answer is ``metadata["reference_answer"]`` when the prompt set has one, else it is asked
    once per prompt from ``reference_backend`` (and cached). Each comparison counts win 1, tie 0.5, loss 0;
    the score is their mean over the comparisons the judge answered readably. Position swapping cancels
    the judge's preference for the first (or second) slot.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        reference_backend: ChatBackend | None = None,
        reference_model: str | None = None,
        repeats: int = 1,
        model: str | None = None,
        name: str | None = None,
        max_attempts: int = 3,
        max_tokens: int = 300,
        temperature: float = 0.0,
        detect_dont_know: bool = True,
    ) -> None:
        super().__init__(
            backend,
            model=model,
            max_attempts=max_attempts,
            max_tokens=max_tokens,
            temperature=temperature,
            detect_dont_know=detect_dont_know,
        )
        if repeats < 1:
            raise ConfigError("A pairwise judge needs repeats >= 1.")
        self.reference_backend = reference_backend
        self.reference_model = reference_model or (reference_backend.name if reference_backend else None)
        self.repeats = repeats
        self.name = name or f"pairwise:{self.reference_model or 'reference'}"
        self._cache = _ReferenceCache()

    async def reference_answer(self, item: JudgeInput) -> tuple[str | None, float]:
        given = item.metadata.get("reference_answer")
        if isinstance(given, str):
            return given, 0.0
        if self.reference_backend is None:
            return None, 0.0
        lock = self._cache.locks.setdefault(item.prompt, asyncio.Lock())
        async with lock:
            if item.prompt in self._cache.answers:
                return self._cache.answers[item.prompt], 0.0
            result = await self.reference_backend.complete(
                ChatRequest(
                    model=self.reference_model or self.reference_backend.name,
                    messages=[{"role": "user", "content": item.prompt}],
                    temperature=0.0,
                )
            )
            self._cache.answers[item.prompt] = result.text
            return result.text, float(result.cost_usd or 0.0)

    def messages(self, prompt: str, answer_a: str, answer_b: str) -> list[dict[str, Any]]:
        user = f"[Question]\n{prompt}\n\n[Answer A]\n{answer_a}\n\n[Answer B]\n{answer_b}"
        return [{"role": "system", "content": PAIRWISE_INSTRUCTIONS}, {"role": "user", "content": user}]

    async def _compare(
        self, prompt: str, answer_a: str, answer_b: str
    ) -> tuple[str | None, float, int, list[str]]:
        cost = 0.0
        errors: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            try:
                text, call_cost = await self._ask(self.messages(prompt, answer_a, answer_b))
                cost += call_cost
                return parse_pairwise(text), cost, attempt, errors
            except (MalformedJudgeOutput, UpstreamError) as exc:
                errors.append(str(exc))
        return None, cost, self.max_attempts, errors

    async def judge(self, item: JudgeInput) -> Verdict:
        if self.detect_dont_know and is_dont_know(item.response):
            return Verdict(score=0.0, label="dont_know", judge=self.name, attempts=0)
        try:
            reference, cost = await self.reference_answer(item)
        except UpstreamError as exc:
            return Verdict(score=None, label="judge_failure", judge=self.name, details={"errors": [str(exc)]})
        if reference is None:
            return Verdict(
                score=None,
                label="judge_failure",
                judge=self.name,
                details={"errors": ["no reference answer and no reference model"]},
            )
        outcomes: list[float] = []
        attempts, inconsistent = 0, 0
        errors: list[str] = []
        for _ in range(self.repeats):
            first, c1, a1, e1 = await self._compare(item.prompt, item.response, reference)  # candidate is A
            second, c2, a2, e2 = await self._compare(item.prompt, reference, item.response)  # candidate is B
            cost += c1 + c2
            attempts += a1 + a2
            errors += e1 + e2
            as_a = {"A": 1.0, "B": 0.0, "C": 0.5}.get(first or "")
            as_b = {"B": 1.0, "A": 0.0, "C": 0.5}.get(second or "")
            if as_a is not None and as_b is not None and as_a != as_b:
                inconsistent += 1
            outcomes += [o for o in (as_a, as_b) if o is not None]
        if not outcomes:
            return Verdict(
                score=None,
                label="judge_failure",
                judge=self.name,
                attempts=attempts,
                cost_usd=cost,
                details={"errors": errors},
            )
        score = sum(outcomes) / len(outcomes)
        label: Label = "correct" if score > 0.5 else ("partial" if score == 0.5 else "incorrect")
        return Verdict(
            score=score,
            label=label,
            judge=self.name,
            attempts=attempts,
            cost_usd=cost,
            details={
                "wins": outcomes.count(1.0),
                "ties": outcomes.count(0.5),
                "losses": outcomes.count(0.0),
                "comparisons": len(outcomes),
                "position_inconsistent": inconsistent,
                "errors": errors,
            },
        )
