"""Binary (strong/weak) routing: send a prompt to the strong model when P(strong needed) ≥ threshold.

``P(strong needed)`` is defined from the predicted score matrix as

    p = clip(0.5 + (ŝ_strong − ŝ_weak) / 2, 0, 1)

so p = 0.5 when the router expects both models to do equally well, p → 1 when only the strong model is
expected to succeed and p → 0 when the weak model is expected to do better. A threshold t therefore means
"call the strong model when its predicted advantage is at least 2·(t − 0.5)"; t = 0 always calls the strong
model, t > 1 never does. Synthetic model names follow RouteLLM: ``router-<router>-<threshold>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from routerforge.errors import ValidationError

_NAME = re.compile(r"^router-(?P<router>[A-Za-z0-9_.:-]+?)-(?P<threshold>\d+(?:\.\d+)?)$")


def strong_probability(predicted: np.ndarray, strong: int, weak: int) -> np.ndarray:
    """P(strong needed) per prompt from an ``(n, m)`` predicted score matrix (columns ``strong``, ``weak``)."""
    pred = np.asarray(predicted, dtype=np.float64)
    if pred.ndim != 2:
        raise ValidationError(
            f"Predicted scores must be a 2-d (prompts × models) array, got shape {pred.shape}."
        )
    diff = np.nan_to_num(pred[:, strong], nan=0.0) - np.nan_to_num(pred[:, weak], nan=0.0)
    return np.clip(0.5 + diff / 2.0, 0.0, 1.0)


def route_strong(p_strong: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask: True where the strong model is called (``p ≥ threshold``)."""
    return np.asarray(p_strong, dtype=np.float64) >= float(threshold)


def threshold_for_share(p_strong: np.ndarray, share: float) -> float:
    """A threshold that sends (about) ``share`` of these prompts to the strong model.

    It is the ``share``-quantile from the top of ``p_strong``; ties may make the achieved share larger.
    ``share`` ≤ 0 gives a threshold above every p (never strong), ≥ 1 gives 0 (always strong).
    """
    p = np.sort(np.asarray(p_strong, dtype=np.float64))[::-1]
    if share <= 0 or p.size == 0:
        return float(np.nextafter(p.max(), np.inf)) if p.size else 1.0
    if share >= 1:
        return 0.0
    k = max(1, round(share * p.size))
    return float(p[k - 1])


@dataclass(frozen=True)
class BinaryPolicy:
    """Strong/weak choice with a threshold on P(strong needed)."""

    strong: str
    weak: str
    threshold: float = 0.5

    def choose(self, models: list[str], predicted: np.ndarray) -> list[str]:
        """The chosen model for every row of ``predicted`` (columns named by ``models``)."""
        si, wi = _index(models, self.strong), _index(models, self.weak)
        mask = route_strong(strong_probability(np.atleast_2d(predicted), si, wi), self.threshold)
        return [self.strong if m else self.weak for m in mask]


def parse_router_model(name: str) -> tuple[str, float] | None:
    """``"router-knn-0.35"`` → ``("knn", 0.35)``; ``None`` when ``name`` is not a synthetic router name."""
    match = _NAME.match(name)
    if match is None:
        return None
    return match.group("router"), float(match.group("threshold"))


def router_model_name(router: str, threshold: float) -> str:
    """The synthetic model name for ``router`` at ``threshold`` (inverse of :func:`parse_router_model`)."""
    return f"router-{router}-{threshold:g}"


def _index(models: list[str], name: str) -> int:
    from routerforge.errors import UnknownModelError

    try:
        return models.index(name)
    except ValueError:
        raise UnknownModelError(name, models, hint="The router was trained on these models.") from None
