"""Rule judges: exact match, multiple-choice letters, named options, numbers with tolerance, regex.

All are deterministic and free. Each first checks for a "don't know" answer (score 0, label
``dont_know``), so a model that declines is told apart from one that is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from routerforge.errors import ConfigError
from routerforge.judges.base import JudgeInput, Verdict
from routerforge.judges.extract import (
    contains_phrase,
    extract_choice,
    extract_number,
    first_line,
    is_dont_know,
    normalize_text,
    parse_number,
)

MatchMode = Literal["exact", "first_line", "contains"]


def _dont_know(name: str, item: JudgeInput) -> Verdict | None:
    if is_dont_know(item.response):
        return Verdict(score=0.0, label="dont_know", judge=name)
    return None


def _no_reference(name: str) -> Verdict:
    return Verdict(
        score=None, label="judge_failure", judge=name, reasoning="the prompt has no reference answer"
    )


def _verdict(name: str, ok: bool, **details: object) -> Verdict:
    return Verdict(
        score=1.0 if ok else 0.0, label="correct" if ok else "incorrect", judge=name, details=dict(details)
    )


class _RuleJudge:
    """Rule judges are synchronous at heart; :meth:`judge` wraps :meth:`judge_sync`."""

    name = "rule"

    def judge_sync(self, item: JudgeInput) -> Verdict:  # pragma: no cover - overridden
        raise NotImplementedError

    async def judge(self, item: JudgeInput) -> Verdict:
        return self.judge_sync(item)


@dataclass
class ExactJudge(_RuleJudge):
    """The reference text, matched ``exact`` (whole answer), on the ``first_line``, or ``contains``
    (as whole words anywhere). Case-insensitive unless ``case_sensitive``."""

    mode: MatchMode = "exact"
    case_sensitive: bool = False
    name: str = "exact"

    def judge_sync(self, item: JudgeInput) -> Verdict:
        if item.reference is None:
            return _no_reference(self.name)
        if (dk := _dont_know(self.name, item)) is not None:
            return dk
        cs = self.case_sensitive
        if self.mode == "contains":
            ok = contains_phrase(item.response, item.reference, case_sensitive=cs)
        else:
            answer = first_line(item.response) if self.mode == "first_line" else item.response
            ok = normalize_text(answer, case_sensitive=cs) == normalize_text(
                item.reference, case_sensitive=cs
            )
        return _verdict(self.name, ok)


@dataclass
class NumericJudge(_RuleJudge):
    """The number the answer commits to, within ``abs_tol`` or ``rel_tol`` of the reference."""

    abs_tol: float = 1e-6
    rel_tol: float = 0.0
    name: str = "numeric"

    def judge_sync(self, item: JudgeInput) -> Verdict:
        expected = parse_number(item.reference) if item.reference is not None else None
        if expected is None:
            return _no_reference(self.name)
        if (dk := _dont_know(self.name, item)) is not None:
            return dk
        got = extract_number(item.response)
        if got is None:
            return _verdict(self.name, False, extracted=None)
        ok = math.isclose(got, expected, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return _verdict(self.name, ok, extracted=got)


@dataclass
class ChoiceJudge(_RuleJudge):
    """Multiple choice: the option letter (or digit) the answer picks against the reference.

    The reference is a letter (``"B"``), a digit index (``"1"``) or the text of the right option.
    """

    labels: Literal["letters", "digits"] = "letters"
    name: str = "choice"

    def judge_sync(self, item: JudgeInput) -> Verdict:
        if item.reference is None:
            return _no_reference(self.name)
        if (dk := _dont_know(self.name, item)) is not None:
            return dk
        n = len(item.choices) if item.choices else 10
        expected = self._expected_index(item.reference, item.choices)
        if expected is None:
            return _no_reference(self.name)
        got = extract_choice(item.response, n, labels=self.labels, options=item.choices)
        if got is None and item.choices:  # the answer may quote the option text instead of its label
            named = [i for i, c in enumerate(item.choices) if contains_phrase(item.response, c)]
            got = named[0] if len(named) == 1 else None
        return _verdict(self.name, got == expected, extracted=got)

    def _expected_index(self, reference: str, choices: list[str] | None) -> int | None:
        ref = reference.strip()
        if len(ref) == 1 and ref.upper() in "ABCDEFGHIJ" and self.labels == "letters":
            return "ABCDEFGHIJ".index(ref.upper())
        if ref.isdigit():
            return int(ref)
        if choices:
            for i, choice in enumerate(choices):
                if normalize_text(choice) == normalize_text(ref):
                    return i
        return None


@dataclass
class OptionJudge(_RuleJudge):
    """The answer names exactly one of the prompt's ``choices`` (as whole words), and it is the reference.

    Naming several options ("49 or 88") is not an answer and scores 0.
    """

    case_sensitive: bool = False
    name: str = "option"

    def judge_sync(self, item: JudgeInput) -> Verdict:
        if item.reference is None:
            return _no_reference(self.name)
        if not item.choices:
            return ExactJudge(mode="contains", case_sensitive=self.case_sensitive, name=self.name).judge_sync(
                item
            )
        if (dk := _dont_know(self.name, item)) is not None:
            return dk
        named = [
            c for c in item.choices if contains_phrase(item.response, c, case_sensitive=self.case_sensitive)
        ]
        ok = len(named) == 1 and normalize_text(named[0]) == normalize_text(item.reference)
        return _verdict(self.name, ok, named=named)


@dataclass
class RegexJudge(_RuleJudge):
    """Correct when ``pattern`` matches the answer. ``{reference}`` in the pattern is replaced by the
    escaped reference answer."""

    pattern: str = ""
    ignore_case: bool = True
    name: str = "regex"

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern.replace("{reference}", "x"))
        except re.error as exc:
            raise ConfigError(
                f"Judge {self.name!r}: invalid regular expression {self.pattern!r}: {exc}"
            ) from exc

    def judge_sync(self, item: JudgeInput) -> Verdict:
        if (dk := _dont_know(self.name, item)) is not None:
            return dk
        pattern = self.pattern
        if "{reference}" in pattern:
            if item.reference is None:
                return _no_reference(self.name)
            pattern = pattern.replace("{reference}", re.escape(item.reference))
        flags = re.IGNORECASE if self.ignore_case else 0
        return _verdict(self.name, re.search(pattern, item.response, flags) is not None)


@dataclass
class AutoJudge(_RuleJudge):
    """Picks a rule judge per prompt from ``metadata["judge"]`` (the built-in task suite sets it),
    else numeric when the reference is a number, choice when the prompt has choices, else contains."""

    judges: dict[str, _RuleJudge] = field(
        default_factory=lambda: {
            "numeric": NumericJudge(),
            "contains": ExactJudge(mode="contains", name="contains"),
            "contains-cs": ExactJudge(mode="contains", case_sensitive=True, name="contains-cs"),
            "exact": ExactJudge(),
            "option": OptionJudge(),
            "choice": ChoiceJudge(),
        }
    )
    name: str = "auto"

    def pick(self, item: JudgeInput) -> _RuleJudge:
        wanted = item.metadata.get("judge")
        if isinstance(wanted, str) and wanted in self.judges:
            return self.judges[wanted]
        if item.reference is not None and parse_number(item.reference) is not None:
            return self.judges["numeric"]
        if item.choices:
            return self.judges["choice"]
        return self.judges["contains"]

    def judge_sync(self, item: JudgeInput) -> Verdict:
        verdict = self.pick(item).judge_sync(item)
        verdict.details.setdefault("rule", verdict.judge)
        verdict.judge = self.name
        return verdict
