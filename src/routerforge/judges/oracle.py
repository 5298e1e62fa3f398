"""The 9-cell oracle matrix: policy labels from how a medium and a large model did on a prompt.

Rows: the medium (cheaper) model's outcome; columns: the large model's. Each outcome is ``correct``,
``incorrect`` or ``dont_know`` (the judge's ``dont_know`` verdict: the answer declined, see
``judges/extract.is_dont_know``; eval records carry it as the tag ``verdict:dont_know``). The label
names the policy the prompt needs:

================  ===============  ===============  ===============
medium \\ large    correct          incorrect        dont_know
================  ===============  ===============  ===============
correct           Standard_Query   Standard_Query   Ambiguous_Query
incorrect         Complex_Query    Ambiguous_Query  Complex_Query
dont_know         Complex_Query    Ambiguous_Query  Ambiguous_Query
================  ===============  ===============  ===============

The scheme (issue 13): both correct → ``Standard_Query``; medium wrong or unsure but large correct →
``Complex_Query`` (escalate); large unsure → ``Ambiguous_Query`` (clarify) — except the cell the issue
names explicitly: medium **incorrect** and large "I don't know" → ``Complex_Query`` (the medium model is
known to fail, so the request needs the large model's tier even though this large model declined; an
earlier version mapped it to Ambiguous). The three cells the scheme leaves open follow its intent: medium
correct and large wrong → Standard (escalating would hurt), both wrong or medium unsure and large wrong →
Ambiguous (no model answers it, escalation does not help). Pass ``matrix`` to use other labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from routerforge.errors import ValidationError

Outcome = Literal["correct", "incorrect", "dont_know"]
PolicyLabel = str
OUTCOMES: tuple[Outcome, ...] = ("correct", "incorrect", "dont_know")

STANDARD, COMPLEX, AMBIGUOUS = "Standard_Query", "Complex_Query", "Ambiguous_Query"

ORACLE_MATRIX: dict[tuple[Outcome, Outcome], PolicyLabel] = {
    ("correct", "correct"): STANDARD,
    ("correct", "incorrect"): STANDARD,
    ("correct", "dont_know"): AMBIGUOUS,
    ("incorrect", "correct"): COMPLEX,
    ("incorrect", "incorrect"): AMBIGUOUS,
    ("incorrect", "dont_know"): COMPLEX,  # issue 13 names this cell explicitly
    ("dont_know", "correct"): COMPLEX,
    ("dont_know", "incorrect"): AMBIGUOUS,
    ("dont_know", "dont_know"): AMBIGUOUS,
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


def outcome_from_tags(tags: list[str] | None, score: float | None, *, threshold: float = 0.5) -> Outcome:
    """The outcome of one eval record: its ``verdict:<label>`` tag when there is one, else its score."""
    label = next((t.split(":", 1)[1] for t in tags or [] if t.startswith("verdict:")), None)
    if label not in OUTCOMES:
        label = None
    return outcome_of(label, score, threshold=threshold)
