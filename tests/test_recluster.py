"""``routerforge recluster``: refit a cluster router when enough new records arrived."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.cli.main import main
from routerforge.data.records import EvalRecord


def _records(start: int, n: int) -> list[EvalRecord]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        topic = ("algebra", "poetry")[i % 2]
        for m, p in (("a", 0.9 if topic == "algebra" else 0.1), ("b", 0.5)):
            out.append(
                EvalRecord(
                    prompt_key=f"q{i}",
                    prompt=f"{topic} question {i}",
                    model=m,
                    score=float(rng.random() < p),
                    latency_ms=100.0 if m == "a" else 10.0,
                )
            )
    return out


def test_recluster_waits_for_enough_new_prompts(
    rf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("feedback", _records(0, 40))
    out = tmp_path / "c"
    args = ["train", "cluster", "--data", "feedback", "--out", str(out), "-p", "n_clusters=auto", "--json"]
    assert main([*args, "-p", "weights={quality: 1, latency: 0.5}"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["recluster", str(out), "--data", "feedback", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reclustered"] is False and doc["new_prompts"] == 0
    store.import_records("feedback", _records(40, 10))
    store.close()
    assert main(["recluster", str(out), "--data", "feedback", "--min-new", "20", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reclustered"] is False and doc["new_prompts"] == 10
    assert main(["recluster", str(out), "--data", "feedback", "--min-new", "10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reclustered"] is True and doc["n_train"] == 50 and doc["clusters"] >= 2
    saved = json.loads((out / "router.json").read_text())
    assert saved["n_train"] == 50 and saved["params"]["weights"] == {"quality": 1, "latency": 0.5}
    assert main(["recluster", str(out), "--data", "feedback", "--json"]) == 0  # nothing new any more
    assert json.loads(capsys.readouterr().out)["reclustered"] is False
