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

import numpy as np

from routerforge.errors import ValidationError

_ROUTER = r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}"
_NAME = re.compile(rf"^router-(?P<router>{_ROUTER}?)-(?P<threshold>\d{{1,6}}(?:\.\d{{1,12}})?)$")
_BARE = re.compile(rf"^router-(?P<router>{_ROUTER})$")


def strong_probability(predicted: np.ndarray, strong: int, weak: int) -> np.ndarray:
    """P(strong needed) per prompt from an ``(n, m)`` predicted score matrix (columns ``strong``, ``weak``)."""
    pred = np.asarray(predicted, dtype=np.float64)
    if pred.ndim != 2:
        raise ValidationError(
            f"Predicted scores must be a 2-d (prompts × models) array, got shape {pred.shape}."
        )
    diff = np.nan_to_num(pred[:, strong], nan=0.0) - np.nan_to_num(pred[:, weak], nan=0.0)
    return np.clip(0.5 + diff / 2.0, 0.0, 1.0)


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


def parse_router_model(name: str) -> list[tuple[str, float | None]]:
    """The readings of a synthetic router name, most specific first; ``[]`` when it is not one.

    ``"router-knn-0.35"`` → ``[("knn", 0.35), ("knn-0.35", None)]`` (threshold 0.35 of router ``knn``, or
    the calibrated knob of a router directory named ``knn-0.35``); ``"router-knn"`` → ``[("knn", None)]``
    (the router's calibrated knob). Router names are at most 128 characters.
    """
    out: list[tuple[str, float | None]] = []
    match = _NAME.match(name)
    if match is not None:
        out.append((match.group("router"), float(match.group("threshold"))))
    bare = _BARE.match(name)
    if bare is not None:
        out.append((bare.group("router"), None))
    return out


def router_model_name(router: str, threshold: float | None = None) -> str:
    """The synthetic model name for ``router`` at ``threshold`` (``None``: its calibrated knob)."""
    return f"router-{router}" if threshold is None else f"router-{router}-{threshold:g}"
