"""A cheap prompt-complexity estimate in [0, 1], for routing with no eval data.

No model: a weighted sum of squashed text features — length (words), reasoning keywords ("prove",
"step by step", "why", "compare", …), several questions in one prompt, constraints ("must", "at least",
"without"), code markers (fences, ``def``/``class``, braces) and math markers (digits with operators,
LaTeX, equations). Each feature lies in [0, 1]; the weights sum to 1. It is a prior, not a judge: see
``docs/routers.md`` for what it was measured against.
"""

from __future__ import annotations

import math
import re

REASONING = re.compile(
    r"\b(prove|proof|derive|step[- ]by[- ]step|explain why|why|analy[sz]e|compare|contrast|trade-?offs?|"
    r"evaluate|justify|reason|optimi[sz]e|design|architecture|algorithm|complexity|implications?|"
    r"critique|pros and cons|in depth|detailed)\b",
    re.IGNORECASE,
)
CONSTRAINTS = re.compile(
    r"\b(must|should not|without|at least|at most|exactly|only if|unless|ensure|constraint|edge cases?)\b",
    re.IGNORECASE,
)
CODE = re.compile(
    r"```|\bdef |\bclass |\breturn\b|\bimport |[{};]\s*$|\bfunction\b|\bSELECT\b|=>|\bregex\b|\bpython\b|"
    r"\bjavascript\b|\bsql\b|\bbug\b|\bcompile",
    re.IGNORECASE | re.MULTILINE,
)
MATH = re.compile(
    r"\d\s*[-+*/^=<>]\s*\d|\\frac|\\sum|\\int|\$[^$]+\$|\b(integral|derivative|equation|matrix|probability|"
    r"theorem|lemma|polynomial|eigen\w*|limit)\b",
    re.IGNORECASE,
)

WEIGHTS = {"length": 0.3, "reasoning": 0.25, "questions": 0.1, "constraints": 0.1, "code": 0.1, "math": 0.15}


def _squash(x: float, scale: float) -> float:
    """0 at 0, → 1 as x grows; ``scale`` is where it reaches ~0.63."""
    return 1.0 - math.exp(-max(x, 0.0) / scale)


def complexity_features(text: str) -> dict[str, float]:
    """Each feature in [0, 1]."""
    words = len(text.split())
    return {
        "length": _squash(words, 120.0),
        "reasoning": _squash(len(REASONING.findall(text)), 2.0),
        "questions": _squash(max(text.count("?") - 1, 0), 2.0),
        "constraints": _squash(len(CONSTRAINTS.findall(text)), 2.0),
        "code": _squash(len(CODE.findall(text)), 2.0),
        "math": _squash(len(MATH.findall(text)), 2.0),
    }


def estimate_complexity(text: str) -> float:
    """A number in [0, 1]: 0 for a short greeting, near 1 for a long multi-part reasoning or coding task."""
    feats = complexity_features(text)
    return float(min(1.0, max(0.0, sum(WEIGHTS[k] * v for k, v in feats.items()))))
