"""The text side of the ``llm-policy`` router: policies, the prompt, the target text and the parser.

The model reads the policies (name + description) and the query and answers
``[REASONING] <why> [DECISION] <policy>``. :func:`parse_decision` turns any answer into one policy:

* the text after the last ``[DECISION]`` tag (also ``DECISION:``, ``**Decision**``, any case) is searched
  for a policy name; the first one found wins, so a name mentioned in the reasoning never overrides it;
* names match case-insensitively with ``_``, ``-`` or a space between words (``complex query``), and by
  their first word when that word is unique among the policies (``Complex`` → ``Complex_Query``);
* without a decision tag, a text that names exactly one policy gives that policy (``untagged``);
* anything else gives the fallback policy, with the reason counted: ``no_decision`` (no tag and zero or
  several names), ``unknown_policy`` (a tag followed by no known name) or ``empty`` (blank output).

Pure functions, no model: the router (``routers/llm_policy.py``) and the training code share them, so the
model is trained on exactly the text it is prompted with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from routerforge.judges.oracle import AMBIGUOUS, COMPLEX, STANDARD

DEFAULT_POLICIES: dict[str, str] = {
    STANDARD: "a routine request a mid-sized model answers correctly.",
    COMPLEX: "a hard request (multi-step reasoning, expert knowledge, code) that needs a large model.",
    AMBIGUOUS: "an unclear or unanswerable request, even for a large model; ask the user to clarify.",
}
MAX_QUERY_CHARS = 600  # longer queries are cut: the start says what is asked, and CPU training stays cheap

# Reasoning templated from the oracle verdicts (training targets: what the label means, in words).
DEFAULT_REASONING: dict[str, str] = {
    STANDARD: "A mid-sized model answers this correctly, so no escalation is needed.",
    COMPLEX: "A mid-sized model gets this wrong or is unsure, but a large model answers it: escalate.",
    AMBIGUOUS: "Even a large model is unsure or wrong here: the request needs clarification.",
}

SYSTEM_TEMPLATE = (
    "You route user queries. Policies:\n{policies}\n"
    "Read the query, then answer exactly: [REASONING] one short sentence [DECISION] one policy name."
)

# A tag is the word in brackets (``[DECISION]``) or followed by a colon (``Decision:``, ``**Decision**:``);
# the bare word inside a sentence ("my decision is") is not a tag.
_DECISION_TAG = re.compile(r"\[\s*decision\s*\]|\**\bdecision\**\s*:\**", re.IGNORECASE)
_REASONING_TAG = re.compile(r"\[\s*reasoning\s*\]|\**\breasoning\**\s*:\**", re.IGNORECASE)

FALLBACK_REASONS = ("empty", "no_decision", "unknown_policy")


@dataclass(frozen=True)
class ParsedDecision:
    """One parsed answer: the policy, the reasoning text, and how it was found.

    ``how`` is ``tagged`` or ``untagged`` when a policy was read, else the fallback reason
    (one of :data:`FALLBACK_REASONS`); ``fallback`` is true exactly then.
    """

    policy: str
    reasoning: str
    how: str

    @property
    def fallback(self) -> bool:
        return self.how in FALLBACK_REASONS


def system_prompt(policies: Mapping[str, str]) -> str:
    lines = "\n".join(f"- {name}: {desc}" for name, desc in policies.items())
    return SYSTEM_TEMPLATE.format(policies=lines)


def messages_for(query: str, policies: Mapping[str, str]) -> list[dict[str, str]]:
    """The chat messages the policy model reads for ``query``."""
    return [
        {"role": "system", "content": system_prompt(policies)},
        {"role": "user", "content": f"Query: {query.strip()[:MAX_QUERY_CHARS]}"},
    ]


def target_text(policy: str, reasoning: str) -> str:
    """The answer the model is trained to give."""
    return f"[REASONING] {reasoning} [DECISION] {policy}"


def _alias_patterns(policies: list[str]) -> list[tuple[re.Pattern[str], str]]:
    firsts = [re.split(r"[_\-\s]+", p)[0].lower() for p in policies]
    out: list[tuple[re.Pattern[str], str]] = []
    for name, first in zip(policies, firsts, strict=True):
        words = [re.escape(w) for w in re.split(r"[_\-\s]+", name) if w]
        out.append(
            (re.compile(r"(?<![A-Za-z0-9])" + r"[_\-\s]?".join(words) + r"(?![A-Za-z0-9])", re.I), name)
        )
        if len(words) > 1 and firsts.count(first) == 1:
            out.append((re.compile(r"(?<![A-Za-z0-9])" + words[0] + r"(?![A-Za-z0-9])", re.I), name))
    return out


def _first_policy(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str | None:
    best: tuple[int, int, str] | None = None
    for pattern, name in patterns:
        found = pattern.search(text)
        if found is not None:
            key = (found.start(), -(found.end() - found.start()), name)
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


def parse_decision(text: str | None, policies: list[str], fallback: str) -> ParsedDecision:
    """The policy an answer names (see the module docstring); never raises on model output."""
    if fallback not in policies:
        raise ValueError(f"fallback policy {fallback!r} is not one of {policies}")
    raw = (text or "").strip()
    if not raw:
        return ParsedDecision(fallback, "", "empty")
    patterns = _alias_patterns(policies)
    tags = list(_DECISION_TAG.finditer(raw))
    if tags:
        last = tags[-1]
        reasoning = _REASONING_TAG.sub("", raw[: last.start()], count=1).strip()
        policy = _first_policy(raw[last.end() :], patterns)
        if policy is None:
            return ParsedDecision(fallback, reasoning, "unknown_policy")
        return ParsedDecision(policy, reasoning, "tagged")
    reasoning = _REASONING_TAG.sub("", raw, count=1).strip()
    named = {name for pattern, name in patterns if pattern.search(raw)}
    if len(named) == 1:
        return ParsedDecision(named.pop(), reasoning, "untagged")
    return ParsedDecision(fallback, reasoning, "no_decision")
