"""Generate docs/cli.md (CLI reference) and docs/settings.md (settings schema) from the code.

.venv/bin/python tools/gen_docs.py          # rewrite both files
.venv/bin/python tools/gen_docs.py --check  # exit 1 if they are stale (tests/test_docs.py runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

ROOT = Path(__file__).resolve().parents[1]


def _walk(cmd: Any, path: list[str], out: list[str]) -> None:
    name = " ".join(path)
    if path:
        out.append(f"{'#' * min(len(path) + 1, 4)} `{name}`\n")
    help_text = (cmd.help or "").strip()
    if help_text:
        out.append(help_text.split("\b")[0].strip() + "\n")
    params = [p for p in cmd.params if p.name not in {"help"}]
    if params and not hasattr(cmd, "commands"):
        out.append("| option | help |\n| --- | --- |")
        for p in params:
            if getattr(p, "param_type_name", "") == "option":
                flags = ", ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts))
                help_line = (p.help or "").replace("|", "\\|").replace("\n", " ")
                if (
                    p.default not in (None, False, (), [])
                    and not callable(p.default)
                    and p.show_default is not False
                ):
                    help_line += f" (default: `{p.default}`)"
                out.append(f"| {flags} | {help_line} |")
            else:
                out.append(f"| `{p.name.upper()}` | argument |")
        out.append("")
    if hasattr(cmd, "commands"):
        for sub_name in sorted(cmd.commands):
            sub = cmd.commands[sub_name]
            if not getattr(sub, "hidden", False):
                _walk(sub, [*path, sub_name], out)


def render_cli() -> str:
    from routerforge.cli.main import app

    command = typer.main.get_command(app)
    out = ["# CLI reference\n", "Generated from the code by `tools/gen_docs.py`; do not edit by hand.\n"]
    _walk(command, ["routerforge"], out)
    return "\n".join(out).rstrip() + "\n"


def render_settings() -> str:
    from pydantic import BaseModel

    from routerforge.config import Settings

    out = [
        "# Settings reference\n",
        "Generated from `routerforge.config.Settings` by `tools/gen_docs.py`; do not edit by hand. "
        "Environment variables: `ROUTERFORGE_<SECTION>__<FIELD>`; YAML: nested mappings.\n",
        "| setting | type | default | description |",
        "| --- | --- | --- | --- |",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            default = "(computed)" if field.default_factory is not None else repr(field.default)
            type_name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
            desc = (field.description or "").replace("|", "\\|")
            out.append(f"| `{prefix}{name}` | `{type_name}` | `{default}` | {desc} |")

    walk(Settings, "")
    return "\n".join(out) + "\n"


TARGETS = {"docs/cli.md": render_cli, "docs/settings.md": render_settings}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for rel, render in TARGETS.items():
        text = render()
        path = ROOT / rel
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale generated docs: {', '.join(stale)}; run `.venv/bin/python tools/gen_docs.py`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
