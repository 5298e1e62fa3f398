"""State shared by CLI commands: the settings (built lazily, once) and output helpers."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import typer

from routerforge.config import Settings, load_settings


@dataclass
class AppState:
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_file, self.overrides)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):  # invoked without the root callback (tests calling a command directly)
        obj = AppState()
        ctx.find_root().obj = obj
    return obj


def _finite(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def print_json(payload: Any) -> None:
    """Write ``payload`` as strict JSON to stdout (for ``--json``); NaN and infinities become null."""
    sys.stdout.write(json.dumps(_finite(payload), indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()
