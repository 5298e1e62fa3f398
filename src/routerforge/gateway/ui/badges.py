"""Badges shown next to each router on ``/ui/routers`` and each synthetic model on ``/ui/traffic``: drift.

:func:`router_badges` is called once per router directory listed; return HTML snippets (already escaped;
``layout.badge(text, level)`` builds one with level ok/info/warn/bad). Keep it fast (no model loading): it
runs on every page view. Errors raised here are caught and shown as a neutral "badge unavailable".

The drift badge shows the last drift report (gateway/drift.py, docs/drift.md) of each synthetic model: the
running gateway's cached one, or under ``routerforge ui`` the one the gateway or ``routerforge drift`` saved
last. Nothing is computed on a page view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from routerforge.gateway.ui import layout
from routerforge.gateway.ui.context import UIContext

DRIFT_LEVELS = {"ok": "ok", "warn": "warn", "alert": "bad", "insufficient data": "info"}


def drift_reports(ctx: UIContext) -> dict[str, dict[str, Any]]:
    """The latest drift report of each synthetic model, as plain dicts."""
    drift = getattr(ctx.service, "drift", None)
    if drift is not None and drift.reports:
        return {name: r.to_dict() for name, r in drift.reports.items()}
    from routerforge.gateway.drift import load_saved_reports

    return load_saved_reports(ctx.settings)


def _drift_badge(doc: dict[str, Any], label: str = "drift") -> str:
    status = str(doc.get("status", ""))
    checks = doc.get("checks") or {}
    flagged = [n for n, c in checks.items() if isinstance(c, dict) and c.get("status") in ("warn", "alert")]
    text = f"{label}: {status}" + (f" ({', '.join(flagged)})" if flagged else "")
    return layout.badge(text, DRIFT_LEVELS.get(status, "info"))


def drift_badge(
    ctx: UIContext, synthetic_model: str, reports: dict[str, dict[str, Any]] | None = None
) -> str:
    """The drift badge of one synthetic model ("drift: not computed" before the first report)."""
    doc = (reports if reports is not None else drift_reports(ctx)).get(synthetic_model)
    if doc is None:
        return layout.badge("drift: not computed", "info")
    return _drift_badge(doc)


def router_badges(ctx: UIContext, name: str, directory: Path) -> list[str]:
    """HTML badges for router ``name`` at ``directory``: the drift of each synthetic model it serves."""
    target = str(directory.resolve())
    out = []
    for synthetic, doc in sorted(drift_reports(ctx).items()):
        if isinstance(doc, dict) and doc.get("router") == target:
            out.append(_drift_badge(doc, f"drift {synthetic}"))
    return out
