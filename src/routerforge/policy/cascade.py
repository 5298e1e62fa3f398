"""Cascades (frugal routing): answer with the cheapest candidate, score the answer, escalate while the score
is below a threshold; the last candidate's answer is kept whatever its score.

The same definition serves ``bench`` (a replay over recorded answers, scores and costs: no live calls) and
the gateway (live, with a verifier that reads the answer). Every step is paid: a prompt escalated twice costs
the three calls. Candidates are tried in order of their estimated price (cheapest first) unless an order is
given.

Verifiers — what "score the answer" means:

* ``judge``: the eval's own verdict on the answer (replay: the recorded score). Live this is a judge run on
  the answer. When the recorded scores come from comparing with a reference answer (exact match on MMLU,
  say), no live verifier can know them, and the replay is an *upper bound* of any real cascade — reports say so.
* ``router``: the router's predicted score for the model being tried (no answer needed: a confidence the
  router gives before the call).
* live only: ``numeric`` (the answer contains a number), ``json`` (the answer parses as JSON), ``nonempty``
  (the answer is not empty and not a refusal such as "I don't know").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from routerforge.errors import ValidationError

LIVE_VERIFIERS: tuple[str, ...] = ("numeric", "json", "nonempty")
REPLAY_VERIFIERS: tuple[str, ...] = ("judge", "router")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")
_REFUSAL = re.compile(r"\b(i don'?t know|i do not know|cannot answer|can't answer|not sure|unsure)\b", re.I)


@dataclass
class CascadeReplay:
    """Per prompt: the column answering, the total cost of every call made, and how many calls."""

    chosen: np.ndarray  # (n,) column indices
    cost: np.ndarray  # (n,) USD, every step paid
    steps: np.ndarray  # (n,) calls made (1 = no escalation)

    def summary(self, scores: np.ndarray) -> dict[str, float]:
        n = self.chosen.size
        quality = float(np.asarray(scores)[np.arange(n), self.chosen].mean()) if n else float("nan")
        return {
            "quality": quality,
            "cost": float(self.cost.mean()) if n else float("nan"),
            "escalation_rate": float((self.steps > 1).mean()) if n else float("nan"),
            "calls_per_prompt": float(self.steps.mean()) if n else float("nan"),
        }


def cascade_order(prices: np.ndarray, candidates: Sequence[int] | None = None) -> list[int]:
    """Columns cheapest first by mean price (ties by column)."""
    price = np.nanmean(np.atleast_2d(np.asarray(prices, dtype=np.float64)), axis=0)
    cols = list(range(price.size)) if candidates is None else list(candidates)
    return sorted(cols, key=lambda j: (float(price[j]) if np.isfinite(price[j]) else np.inf, j))


def replay_cascade(
    confidence: np.ndarray, costs: np.ndarray, threshold: float, order: Sequence[int]
) -> CascadeReplay:
    """Replay a cascade: step k answers with column ``order[k]``; a prompt stops at the first step whose
    ``confidence`` is ≥ ``threshold`` (the last step always stops). Vectorised over prompts."""
    conf = np.atleast_2d(np.asarray(confidence, dtype=np.float64))
    cost = np.atleast_2d(np.asarray(costs, dtype=np.float64))
    if conf.shape != cost.shape:
        raise ValidationError(f"Confidence {conf.shape} and costs {cost.shape} must have the same shape.")
    if not order:
        raise ValidationError("A cascade needs at least one candidate model.")
    n = conf.shape[0]
    chosen = np.full(n, order[-1], dtype=np.int64)
    total = np.zeros(n)
    steps = np.zeros(n, dtype=np.int64)
    open_ = np.ones(n, dtype=bool)
    for k, col in enumerate(order):
        total[open_] += np.nan_to_num(cost[open_, col], nan=0.0)
        steps[open_] += 1
        last = k == len(order) - 1
        stop = open_ & (np.nan_to_num(conf[:, col], nan=-np.inf) >= threshold) if not last else open_
        chosen[stop] = col
        open_ &= ~stop
        if not open_.any():
            break
    return CascadeReplay(chosen, total, steps)


def live_verdict(verifier: str, answer: str) -> float:
    """A live verifier's score in [0, 1] for one answer (see the module docstring)."""
    text = (answer or "").strip()
    if verifier == "numeric":
        return 1.0 if _NUMBER.search(text) else 0.0
    if verifier == "json":
        try:
            json.loads(text)
        except ValueError:
            return 0.0
        return 1.0
    if verifier == "nonempty":
        return 0.0 if not text or _REFUSAL.search(text) else 1.0
    raise ValidationError(
        f"Unknown live verifier {verifier!r}.", hint=f"Use one of {', '.join(LIVE_VERIFIERS)}."
    )
