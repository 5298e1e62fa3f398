"""The CLI reference and the settings reference are generated from code and must not drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_docs_are_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    gen_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_docs)
    for rel, render in gen_docs.TARGETS.items():
        assert (ROOT / rel).read_text(encoding="utf-8") == render(), (
            f"{rel} is stale: run `.venv/bin/python tools/gen_docs.py` and commit the result"
        )
