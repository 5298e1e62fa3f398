"""State shared by CLI commands: the settings (built lazily, once) and output helpers."""

from __future__ import annotations

import json
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


def print_json(payload: Any) -> None:
    """Write ``payload`` as JSON to stdout (for ``--json``)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
