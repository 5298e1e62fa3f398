"""Shared setup of the review / promote / hot-reload / shadow tests (not a test module).

Two real trained router directories on the same two models, trained with the hash embedder on data
with opposite signals, so they disagree on known prompts:

- ``v1``: the weak model fails on algebra and chemistry → algebra prompts go to the strong model;
- ``v2``: the weak model fails on history and chemistry → algebra prompts go to the weak model, history
  prompts to the strong one; both send chemistry to the strong model and poetry to the weak one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from routerforge.data.records import EvalRecord

WEAK, STRONG = "weak", "strong"
TOPICS = ["algebra", "history", "poetry", "chemistry"]
ALGEBRA = "algebra question 3: explain algebra item 8"
HISTORY = "history question 1: explain history item 7"


def records(hard_topics: tuple[str, ...], n: int = 120, seed: int = 7) -> list[EvalRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        topic = TOPICS[i % 4]
        text = f"{topic} question {i}: explain {topic} item {i * 7 % 13}"
        p = {STRONG: 1.0, WEAK: 0.0 if topic in hard_topics else 1.0}
        for m in (WEAK, STRONG):
            out.append(
                EvalRecord(
                    prompt_key=f"q{i}",
                    prompt=text,
                    model=m,
                    score=float(rng.random() < p[m]),
                    cost_usd={STRONG: 0.01, WEAK: 0.001}[m],
                    response=f"{m} answers {i}",
                    split="test" if i % 5 == 0 else "train",
                    category=topic,
                )
            )
    return out


def train_two(home: Path) -> tuple[Path, Path]:
    """Import the two datasets into the home's store and train ``v1`` and ``v2`` (CLI, hash embedder)."""
    from routerforge.cli.main import main
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    settings = load_settings()
    store = Store.from_settings(settings)
    store.import_records("d1", records(("algebra", "chemistry")))
    store.import_records("d2", records(("history", "chemistry")))
    store.close()
    dirs = []
    for name, data in (("v1", "d1"), ("v2", "d2")):
        out = settings.routers_dir / name
        code = main(["train", "knn", "--data", data, "--out", str(out), "-p", "k=7", "--json"])
        assert code == 0
        dirs.append(out)
    return dirs[0], dirs[1]


def gateway_raw(base_url: str, **synthetic: Any) -> dict[str, Any]:
    """A gateway config: the two models on ``base_url`` and synthetic model ``smart`` on router v1."""
    syn: dict[str, Any] = {
        "name": "smart",
        "router": "v1",
        "models": [WEAK, STRONG],
        "policy": {"kind": "threshold", "knob": 0.6},
    }
    syn.update(synthetic)
    return {
        "models": [
            {"id": WEAK, "base_url": base_url, "input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.1},
            {"id": STRONG, "base_url": base_url, "input_usd_per_mtok": 10.0, "output_usd_per_mtok": 30.0},
        ],
        "synthetic_models": [syn],
        "tenants": [{"name": "acme"}],
        "reload": {"interval_s": 0.2},
        "limits": {"requests_per_minute": 1_000_000},  # load tests: the rate limit is not under test
    }


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def cli_json(capsys: Any, args: list[str]) -> Any:
    from routerforge.cli.main import main

    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def cli_error(capsys: Any, args: list[str]) -> str:
    from routerforge.cli.main import main

    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    assert code != 0, captured.out
    assert "Traceback" not in captured.err
    return captured.err
