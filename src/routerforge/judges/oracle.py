"""The 9-cell oracle matrix: labels for policy routers from how a medium and a large model did.

Rows: the medium (cheaper) model's outcome; columns: the large model's. Each outcome is ``correct``,
``incorrect`` or ``dont_know``. The label says which policy the prompt needs:

================  =========  =========  ===========
medium \\ large    correct    incorrect  dont_know
================  =========  =========  ===========
correct           Standard   Standard   Standard
incorrect         Complex    Ambiguous  Ambiguous
dont_know         Complex    Ambiguous  Ambiguous
================  =========  =========  ===========

The medium model answering right means the cheap policy is enough (Standard); only the large model
answering right means the prompt needs it (Complex); neither answering right means the prompt is
unclear or unanswerable for both (Ambiguous). Pass ``matrix`` to use other labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from routerforge.errors import ValidationError

Outcome = Literal["correct", "incorrect", "dont_know"]
PolicyLabel = str
OUTCOMES: tuple[Outcome, ...] = ("correct", "incorrect", "dont_know")

ORACLE_MATRIX: dict[tuple[Outcome, Outcome], PolicyLabel] = {
    ("correct", "correct"): "Standard",
    ("correct", "incorrect"): "Standard",
    ("correct", "dont_know"): "Standard",
    ("incorrect", "correct"): "Complex",
    ("incorrect", "incorrect"): "Ambiguous",
    ("incorrect", "dont_know"): "Ambiguous",
    ("dont_know", "correct"): "Complex",
    ("dont_know", "incorrect"): "Ambiguous",
    ("dont_know", "dont_know"): "Ambiguous",
}


def outcome_of(label: str | None, score: float | None = None, *, threshold: float = 0.5) -> Outcome:
    """A judge verdict label (or a bare score) as one of the three outcomes."""
    if label == "dont_know":
        return "dont_know"
    if label in ("correct", "incorrect"):
        return label  # type: ignore[return-value]
    if score is None:
        raise ValidationError(f"Cannot tell the outcome of label {label!r} without a score.")
    return "correct" if score >= threshold else "incorrect"


def oracle_label(
    medium: Outcome, large: Outcome, *, matrix: Mapping[tuple[Outcome, Outcome], PolicyLabel] | None = None
) -> PolicyLabel:
    """The policy label of one prompt from the medium and the large model's outcomes."""
    table = matrix or ORACLE_MATRIX
    try:
        return table[(medium, large)]
    except KeyError:
        raise ValidationError(
            f"No oracle label for (medium={medium!r}, large={large!r}).",
            hint=f"Outcomes are {', '.join(OUTCOMES)}.",
        ) from None


def oracle_labels(
    medium: list[Outcome],
    large: list[Outcome],
    *,
    matrix: Mapping[tuple[Outcome, Outcome], PolicyLabel] | None = None,
) -> list[PolicyLabel]:
    """:func:`oracle_label` over aligned lists (one entry per prompt)."""
    if len(medium) != len(large):
        raise ValidationError(f"{len(medium)} medium outcomes but {len(large)} large ones.")
    return [oracle_label(m, g, matrix=matrix) for m, g in zip(medium, large, strict=True)]
