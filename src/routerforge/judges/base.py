"""The judge contract: an answer in, a :class:`Verdict` (score in [0, 1] and a label) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Label = Literal["correct", "incorrect", "partial", "dont_know", "judge_failure"]
LABELS: tuple[Label, ...] = ("correct", "incorrect", "partial", "dont_know", "judge_failure")


@dataclass(slots=True)
class JudgeInput:
    """What a judge sees: the prompt, the answer, and what the prompt set knows about the right answer.

    There is deliberately no field for the answering model: judging is blind.
    """

    prompt: str
    response: str
    reference: str | None = None
    choices: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Verdict:
    """A judge's decision. ``score`` is in [0, 1], or ``None`` when the judge failed.

    ``attempts`` counts judge calls (LLM judges retry malformed output); ``cost_usd`` is what judging cost.
    """

    score: float | None
    label: Label
    judge: str
    dimensions: dict[str, float] | None = None
    reasoning: str | None = None
    attempts: int = 1
    cost_usd: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.label == "judge_failure"


class Judge(Protocol):
    """Anything that scores an answer. Rule judges answer at once; LLM judges call a backend."""

    @property
    def name(self) -> str: ...

    async def judge(self, item: JudgeInput) -> Verdict: ...


def label_for(score: float, *, threshold: float = 0.5) -> Label:
    """``correct`` at 1, ``incorrect`` at 0, else ``partial``/``correct``/``incorrect`` around ``threshold``."""
    if score >= 1.0:
        return "correct"
    if score <= 0.0:
        return "incorrect"
    return "partial" if abs(score - threshold) < 1e-9 else ("correct" if score > threshold else "incorrect")


def normalize_scale(value: float, low: float, high: float) -> float:
    """Map ``value`` on the scale ``low``..``high`` (e.g. 1–5) to [0, 1], clipped."""
    if high <= low:
        raise ValueError(f"scale high ({high}) must exceed low ({low})")
    return min(1.0, max(0.0, (value - low) / (high - low)))
