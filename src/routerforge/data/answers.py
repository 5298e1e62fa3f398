"""Which option a free-text answer picks: text normalisation and numbered-option extraction.

Pure functions shared by the importers (the strict Pulze score) and the judges (which re-export them
from ``routerforge.judges.extract``): the data layer must not import the judges.
"""

from __future__ import annotations

import re
import unicodedata

_LABEL_END = r"(\))?(?![\d.,]\d|\d)"  # one digit: not the start of "48", "2.01" or "1,000"
_STATED = re.compile(
    r"\banswer\s*(?:is|would\s+be|will\s+be|should\s+be)?\s*(?:is)?[\s:*_\-–—=]*"
    r"(?:(?:option|choice)\s*)?\(?(\d)" + _LABEL_END,
    re.IGNORECASE,
)
_CHOSEN = re.compile(r"\b(?:option|choice)\s+(?:is|would\s+be)\s*[\s:*_]*\(?(\d)" + _LABEL_END, re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{\s*(?:\\text(?:bf)?\{)?([^{}$]*?)\s*\}")
_BOLD_LABEL = re.compile(r"\*\*\s*\(?(\d)\)")
_LINE_LABEL = re.compile(r"^\W*\(?(\d)[).:]?(?:\s|$)")


def normalize_text(text: str, *, case_sensitive: bool = False) -> str:
    """Unicode-normalised, whitespace-collapsed text without surrounding quotes and punctuation."""
    value = unicodedata.normalize("NFKC", text).strip()
    value = re.sub(r"\s+", " ", value)
    value = value.strip(" \t\"'`*.,;:!?()[]{}“”‘’")
    return value if case_sensitive else value.casefold()


def contains_phrase(text: str, phrase: str, *, case_sensitive: bool = False) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words (not inside a longer word)."""
    target = normalize_text(phrase, case_sensitive=case_sensitive)
    if not target:
        return False
    haystack = unicodedata.normalize("NFKC", text)
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.search(rf"(?<!\w){re.escape(target)}(?!\w)", haystack, flags) is not None


def _token_choice(token: str, closed: bool, options: list[str], n: int) -> int | None:
    """A stated token: an option's own text first (options may be numbers), else a label ``0``…``n-1``."""
    if not closed:
        wanted = normalize_text(token)
        same = [i for i, option in enumerate(options) if normalize_text(option) == wanted]
        if len(same) == 1:
            return same[0]
    if token.isdigit() and int(token) < n:
        return int(token)
    return None


def _named_options(line: str, options: list[str]) -> set[int]:
    """Indices of the options whose text occurs in ``line`` (longest first, so "No reduction" does not
    also count inside "No reduction in the incidence")."""
    named: set[int] = set()
    rest = unicodedata.normalize("NFKC", line)
    for i in sorted(range(len(options)), key=lambda j: -len(options[j])):
        target = normalize_text(options[i])
        if not target:
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(target)}(?!\w)", re.IGNORECASE)
        if pattern.search(rest):
            named.add(i)
            rest = pattern.sub(" ", rest)
    return named


def extract_numbered_option(
    text: str, options: list[str] | None = None, n_choices: int | None = None
) -> int | None:
    """The index of the option an answer picks among options labelled ``0) … 1) …`` (Pulze's MMLU form).

    In order: the last explicit statement (``\\boxed{2}``, ``the answer is 2)``, ``**Answer:** 2)``,
    ``the correct option is 2``); else the last bold label (``**3) …``); else a label opening the last
    line (``3) Biological aging``, a bare ``1``); else the option text named alone on the last line that
    names any. A stated token equal to one option's text (options may be numbers) means that option.
    ``None`` when the answer commits to nothing.
    """
    opts = list(options or [])
    n = n_choices if n_choices is not None else (len(opts) or 10)
    stated: list[tuple[int, int | None]] = []
    for match in _BOXED.finditer(text):
        stated.append((match.start(), _token_choice(match.group(1), False, opts, n)))
    for pattern in (_STATED, _CHOSEN):
        for match in pattern.finditer(text):
            stated.append((match.start(), _token_choice(match.group(1), bool(match.group(2)), opts, n)))
    if stated:
        return max(stated, key=lambda pair: pair[0])[1]
    bold = [int(m.group(1)) for m in _BOLD_LABEL.finditer(text) if int(m.group(1)) < n]
    if bold:
        return bold[-1]
    lines = [line for line in text.splitlines() if line.strip()]
    last = _LINE_LABEL.match(lines[-1]) if lines else None  # "3) Biological aging" or a bare "1"
    if last is not None and int(last.group(1)) < n:
        return int(last.group(1))
    if opts:
        for line in reversed(lines):
            named = _named_options(line, opts)
            if named:
                return named.pop() if len(named) == 1 else None
    return None
