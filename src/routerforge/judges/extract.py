"""Pure functions that pull an answer out of a model's free text, and spot "don't know" answers."""

from __future__ import annotations

import re

from routerforge.data.answers import contains_phrase, extract_numbered_option, normalize_text

_NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_FINAL_PATTERNS = (
    re.compile(rf"(?:final answer|answer)\s*(?:is|:|=)?\s*\**\s*\$?({_NUMBER})", re.IGNORECASE),
    re.compile(rf"=\s*\$?({_NUMBER})\s*(?:$|[\s.,;!)\]*])"),
    re.compile(rf"\bis\s+\**\$?({_NUMBER})\**\s*(?:$|[\s.,;!)\]*])", re.IGNORECASE),
)

DONT_KNOW_PATTERNS: tuple[str, ...] = (
    r"\bi\s+(?:do\s+not|don'?t|don’t)\s+know\b",
    r"\bi\s*(?:'m|am|’m)\s+not\s+(?:sure|certain|able)\b",
    r"\bi\s+(?:cannot|can'?t|can’t|am\s+unable\s+to|’m\s+unable\s+to|'m\s+unable\s+to)\s+"
    r"(?:answer|determine|know|tell|say|provide|help)",
    r"\b(?:not|no)\s+(?:enough|sufficient)\s+(?:information|context|data)\b",
    r"\bthere\s+is\s+no\s+way\s+to\s+(?:know|tell|determine)\b",
    r"\bi\s+have\s+no\s+(?:idea|information|knowledge)\b",
    r"\bunknown\b\.?$",
    r"^\s*(?:n/?a|none|unsure|no idea)\s*\.?\s*$",
)
_DONT_KNOW_RE = re.compile("|".join(f"(?:{p})" for p in DONT_KNOW_PATTERNS), re.IGNORECASE | re.MULTILINE)

__all__ = [
    "DONT_KNOW_PATTERNS",
    "contains_phrase",
    "extract_choice",
    "extract_number",
    "first_line",
    "is_dont_know",
    "normalize_text",
    "parse_number",
]


def parse_number(token: str) -> float | None:
    """``"1,234.5"`` → 1234.5; ``None`` when ``token`` is not a number."""
    cleaned = token.replace(",", "").replace("−", "-").strip().rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The number a free-text answer commits to.

    In order: an explicit ``answer is N`` / ``= N`` / ``is N`` on the first line that has a number; the
    only number of that line; else the last number of that line. ``None`` when there is no number.
    """
    for line in text.strip().splitlines():
        numbers = _NUMBER_RE.findall(line)
        if not numbers:
            continue
        for pattern in _FINAL_PATTERNS:
            found = pattern.findall(line)
            if found:
                return parse_number(found[-1])
        return parse_number(numbers[0] if len(numbers) == 1 else numbers[-1])
    return None


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


_LETTER_PATTERNS = (
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\**\(?([A-J])\)?(?![a-z])", re.IGNORECASE),
    re.compile(r"^\s*\**\(?([A-J])\)?\**\s*(?:[.):]|$)", re.MULTILINE),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"\b([A-J])\)"),
)


def extract_choice(
    text: str, n_choices: int = 4, *, labels: str | None = None, options: list[str] | None = None
) -> int | None:
    """The index of the option a free-text answer picks (``A``/``B``/… or ``0``/``1``/… labels).

    ``labels`` is ``"letters"`` (default) or ``"digits"`` (Pulze-style ``0) ... 1) ...``, see
    :func:`routerforge.data.answers.extract_numbered_option`, which also reads the ``options`` texts).
    """
    if labels == "digits":
        return extract_numbered_option(text, options, n_choices)
    valid = "ABCDEFGHIJ"[:n_choices]
    for pattern in _LETTER_PATTERNS:
        for found in pattern.findall(text):
            letter = found.upper()
            if letter in valid:
                return valid.index(letter)
    stripped = normalize_text(text, case_sensitive=True)
    if len(stripped) == 1 and stripped.upper() in valid:
        return valid.index(stripped.upper())
    return None


def is_dont_know(text: str) -> bool:
    """Whether an answer declines to answer ("I don't know", "not enough information", empty…)."""
    if not text.strip():
        return True
    return _DONT_KNOW_RE.search(text) is not None
