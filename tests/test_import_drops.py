"""Imports that cannot lie: a score file on another scale is an error naming --score-scale, and every row
left out (bad rows, stray out-of-range scores, merged duplicates) is counted in the output and --json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def judge_file(path: Path, n: int = 160) -> Path:
    """A 1-10 judge's scores (one row per prompt and model), as an MT-Bench-style judge writes them; one
    row in 160 happens to score 1, which alone looks like a valid score in [0, 1]."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        score = 1 if i == 7 else int(rng.integers(2, 11))
        lines.append(json.dumps({"prompt": f"question {i // 2}", "model": f"m{i % 2}", "score": score}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_one_to_ten_judge_scale_is_an_error_naming_score_scale(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = judge_file(tmp_path / "judge.jsonl")
    code, out, err = run(capsys, "data", "import", str(path), "--name", "j")
    assert code == 2 and out == ""
    assert "159 of 160 rows have a score outside [0, 1]" in err and "--score-scale" in err
    assert "Nothing was imported" in err
    code, out, _ = run(capsys, "data", "list", "--json")
    assert json.loads(out) == []  # the one in-range row was not kept as a 1.0
    code, out, _ = run(capsys, "data", "import", str(path), "--name", "j", "--score-scale", "1-10", "--json")
    report = json.loads(out)
    assert code == 0 and report["records"] == 160
    assert report["dropped"] == {"bad_rows": 0, "score_out_of_range": 0, "duplicate_outcomes": 0}
    code, out, _ = run(capsys, "data", "stats", "j", "--json")
    assert 0.0 < min(m["mean_score"] for m in json.loads(out)["models"]) < 1.0


def test_stray_scores_duplicates_and_missing_costs_are_counted(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"prompt": "a", "model": "x", "score": 1, "cost_usd": 0.01},
        {"prompt": "a", "model": "x", "score": 0, "cost_usd": 0.01},  # a duplicate outcome
        {"prompt": "a", "model": "y", "score": 0, "cost_usd": "nan"},  # NaN cost
        {"prompt": "b", "model": "x", "score": 7, "cost_usd": 0.01},  # a stray out-of-range score
        {"prompt": "b", "model": "y", "score": 1},
        {"prompt": "c", "model": "x", "score": 0.5, "cost_usd": 0.02},
    ]
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "data", "import", str(path), "--name", "d", "--json")
    report = json.loads(out)
    assert code == 0 and report["records"] == 4
    assert report["dropped"] == {"bad_rows": 1, "score_out_of_range": 1, "duplicate_outcomes": 1}
    assert report["read"]["out_of_range"] == 1 and report["read"]["missing_cost"] == 2
    code, out, _ = run(capsys, "data", "import", str(path), "--name", "d2")
    assert code == 0
    assert "1 bad rows skipped (1 with a score outside [0, 1]: see --score-scale)" in out
    assert "1 duplicate outcomes merged by 'min'" in out and "2 of 5 records have no cost" in out


def test_bench_counts_test_prompts_whose_text_is_in_train(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    monkeypatch.setenv("COLUMNS", "220")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(120):
        j = i + 3 if i % 4 == 0 else i  # rows 0, 4, … (test) repeat the text of rows 3, 7, … (train)
        text = f"topic {j % 3} question {j}"
        split = "test" if i % 4 in (0, 2) else "train"
        p = {"s": 0.9, "w": 0.3 if i % 3 == 0 else 0.8}
        scores = {m: float(rng.random() < q) for m, q in p.items()}
        lines.append(json.dumps({"id": f"k{i}", "prompt": text, "scores": scores, "split": split}))
    path = tmp_path / "wide.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run(capsys, "data", "import", str(path), "--name", "t")[0] == 0
    out = tmp_path / "b.json"
    code, _, err = run(
        capsys, "bench", "--data", "t", "-r", "knn", "--split", "test", "--json", str(out),
        "--latency-sample", "2", "--bootstrap", "100",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["dropped"]["test_text_in_train"] == 30 and doc["n_prompts"] == 30
    assert "30 held out but their text is a training prompt" in err


@pytest.mark.parametrize("command", ["import", "import-stream"])
def test_a_lone_surrogate_escape_is_a_counted_bad_row(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = tmp_path / "surrogate.jsonl"
    path.write_text(
        '{"prompt": "fine question", "model": "a", "score": 1}\n'
        '{"prompt": "bad \\ud800 question", "model": "a", "score": 0}\n'
        '{"prompt": "ok", "model": "b", "score": 0, "metadata": {"\\udfff": 1}}\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "data", command, str(path), "--name", f"s-{command}", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert "Traceback" not in err
    assert doc["outcomes"] == 1 and doc["read"]["rows"] == 3 and doc["read"]["skipped"] == 2
    assert {i["line"] for i in doc["read"]["issues"]} == {2, 3}
    assert all("lone UTF-16 surrogate" in i["reason"] for i in doc["read"]["issues"])
