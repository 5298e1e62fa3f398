"""``routerforge data ...`` and ``routerforge models ...`` through the real CLI entry point."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from routerforge.cli.main import main

ROUTELLM = "prompt,strong,weak\nq1,True,False\nq2,True,True\nq3,False,False\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def responses(tmp_path: Path) -> Path:
    folder = tmp_path / "responses"
    folder.mkdir()
    (folder / "mmlu_algebra.csv").write_text(ROUTELLM, encoding="utf-8")
    return folder


def test_import_stats_list_export_delete(
    rf_home: Path, responses: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "data", "import", str(responses), "--name", "mm", "--format", "routellm-csv")
    assert code == 0 and "3 prompts" in out
    assert (rf_home / "routerforge.db").exists()

    code, out, _ = run(capsys, "data", "stats", "mm", "--json")
    stats = json.loads(out)
    assert code == 0
    assert stats["prompts"] == 3 and stats["records"] == 6
    assert [(m["id"], m["n"], m["mean_score"]) for m in stats["models"]] == [
        ("strong", 3, pytest.approx(2 / 3)),
        ("weak", 3, pytest.approx(1 / 3)),
    ]
    assert stats["oracle_score"] == pytest.approx(2 / 3)
    assert stats["splits"] == {"none": 3}

    code, out, _ = run(capsys, "data", "stats", "mm")
    assert code == 0 and "strong" in out and "oracle" in out

    code, out, _ = run(capsys, "data", "import", str(responses), "--name", "mm", "--json")
    report = json.loads(out)
    assert code == 0 and report["new_prompts"] == 0 and report["read"]["format"] == "routellm-csv"
    code, out, _ = run(capsys, "data", "stats", "mm", "--json")
    assert json.loads(out) == stats  # re-importing the same folder changed nothing

    code, out, _ = run(capsys, "data", "list", "--json")
    assert [d["name"] for d in json.loads(out)] == ["mm"]
    code, out, _ = run(capsys, "data", "list")
    assert code == 0 and "mm" in out

    target = tmp_path / "mm.jsonl"
    code, out, _ = run(capsys, "data", "export", "mm", str(target), "--format", "long-jsonl")
    assert code == 0 and len(target.read_text(encoding="utf-8").splitlines()) == 6
    code, _, _ = run(capsys, "data", "import", str(target), "--name", "copy")
    assert code == 0
    code, out, _ = run(capsys, "data", "stats", "copy", "--json")
    assert json.loads(out)["models"] == stats["models"]

    code, out, _ = run(capsys, "data", "delete", "mm")
    assert code == 0
    code, _, err = run(capsys, "data", "stats", "mm")
    assert code == 2 and "No dataset named 'mm'" in err and "Traceback" not in err


def test_bad_rows_strict_and_lenient(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(
        '{"prompt": "a", "scores": {"m": 1}}\n{oops\n{"prompt": "b", "scores": {"m": 4}}\n', encoding="utf-8"
    )
    code, _, err = run(capsys, "data", "import", str(path), "--name", "w", "--strict")
    assert code == 2
    assert err.count("\n") == 1 and "w.jsonl:2" in err and "invalid JSON" in err
    code, out, _ = run(capsys, "data", "list", "--json")
    assert json.loads(out) == []  # strict: nothing written

    code, out, _ = run(capsys, "data", "import", str(path), "--name", "w", "--json")
    report = json.loads(out)
    assert code == 0 and report["records"] == 1 and report["read"]["skipped"] == 2
    assert [(i["line"], i["column"]) for i in report["read"]["issues"]] == [(2, None), (3, "scores.m")]
    code, out, _ = run(capsys, "data", "import", str(path), "--name", "w")
    assert code == 0 and "2 bad rows skipped" in out

    code, out, _ = run(
        capsys, "data", "import", str(path), "--name", "w10", "--score-scale", "0-10", "--json"
    )
    assert json.loads(out)["records"] == 2


def test_usage_errors_are_one_line(
    rf_home: Path, tmp_path: Path, responses: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "data", "import", str(tmp_path / "nope.csv"), "--name", "x")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    code, _, err = run(capsys, "data", "import", str(responses), "--name", "x", "--format", "excel")
    assert code == 2 and "--format 'excel'" in err
    code, _, err = run(capsys, "data", "import", str(responses), "--name", "x", "--rule", "max")
    assert code == 2 and "--rule" in err
    code, _, err = run(capsys, "data", "import", str(responses), "--name", "x", "--score-scale", "big")
    assert code == 2 and "LO-HI" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,model,score,colour\np,m,1,red\n", encoding="utf-8")
    code, _, err = run(capsys, "data", "import", str(bad), "--name", "x", "--format", "long-csv")
    assert code == 2 and "unknown column 'colour'" in err
    code, _, err = run(capsys, "data", "export", "nothing", str(tmp_path / "o.jsonl"))
    assert code == 2 and "No dataset named 'nothing'" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_models_commands(rf_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("litellm") is None:
        pytest.skip("the litellm extra is not installed")
    code, out, _ = run(capsys, "models", "add", "mini", "--provider", "openai/gpt-4o-mini", "--json")
    added = json.loads(out)
    assert code == 0
    assert added["input_usd_per_mtok"] > 0 and added["context_window"] >= 100_000
    assert "gpt-4o-mini" in added["defaults_from"]

    code, out, _ = run(
        capsys,
        "models",
        "add",
        "mini",
        "--provider",
        "openai/gpt-4o-mini",
        "--input-price",
        "1.5",
        "-c",
        "no-vision",
    )
    assert code == 0
    code, out, _ = run(capsys, "models", "show", "mini", "--json")
    shown = json.loads(out)
    assert shown["input_usd_per_mtok"] == 1.5 and shown["capabilities"]["vision"] is False
    assert shown["output_usd_per_mtok"] == added["output_usd_per_mtok"]

    code, _, _ = run(capsys, "models", "add", "local-llm", "--base-url", "http://127.0.0.1:8080/v1")
    assert code == 0
    code, out, _ = run(capsys, "models", "list", "--json")
    assert [m["id"] for m in json.loads(out)] == ["local-llm", "mini"]
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "mini" in out
    code, out, _ = run(capsys, "models", "show", "mini")
    assert code == 0 and "openai/gpt-4o-mini" in out
    code, _, err = run(capsys, "models", "show", "maxi")
    assert code == 2 and "No model named 'maxi'" in err
    code, _, _ = run(capsys, "models", "remove", "local-llm")
    assert code == 0


def _one_line_error(err: str) -> str:
    """The CLI's error output: exactly one line, no traceback."""
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "import", "{ok}"],  # --name missing
        ["data", "import", "{ok}", "--name", "x", "--bogus"],
        ["data", "import", "{ok}", "--name", "x", "--max-errors", "-1"],
        ["data", "import", "{ok}", "--name", "x", "--max-errors", "many"],
        ["data", "stats"],
        ["data", "no-such-command"],
        ["models", "add", "m", "--input-price", "-1"],
        ["models", "add", "m", "--context-window", "0"],
        ["data", "prompts", "show", "x", "--limit", "0"],
        ["eval", "run", "--prompts", "p", "--models", "m", "--name", "e", "--max-cost", "-1"],
    ],
)
def test_click_usage_errors_are_one_line_without_traceback(
    argv: list[str], rf_home: Path, responses: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = str(responses / "mmlu_algebra.csv")
    code, out, err = run(capsys, *[a.replace("{ok}", ok) for a in argv])
    assert code == 2 and out == ""
    assert "--help" in _one_line_error(err)
    code, out, _ = run(capsys, "data", "list", "--json")
    assert json.loads(out) == []


def test_a_bare_command_group_prints_its_help_and_no_error(
    rf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "data")
    assert code != 0 and "import" in out and "error" not in err


def test_bad_files_fail_in_one_line_and_write_nothing(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "nocsv").mkdir()
    (tmp_path / "nocsv" / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "latin1.csv").write_bytes("prompt,a\nq1,1\ncaf\xe9,0\n".encode("latin-1"))
    (tmp_path / "all_bad.jsonl").write_text('{"prompt": "a", "scores": {"m": 7}}\n', encoding="utf-8")
    (tmp_path / "w.jsonl").write_text('{"prompt": "a", "scores": {"m": 1}}\n', encoding="utf-8")
    (tmp_path / "markup.csv").write_text("prompt,model,score,[red]hue\np,m,1,x\n", encoding="utf-8")
    cases = [
        (["empty.csv"], "is empty"),
        (["nocsv"], "holds no .csv"),
        (["latin1.csv"], "latin1.csv:3: not UTF-8 text"),
        (["all_bad.jsonl"], "1 of 1 rows have a score outside [0, 1]"),
        (["w.jsonl", "--format", "routellm-csv"], "is a .jsonl file but --format routellm-csv reads CSV"),
        (["markup.csv"], "unknown column '[red]hue'"),  # printed as text, not as rich markup
    ]
    for args, expected in cases:
        code, out, err = run(capsys, "data", "import", str(tmp_path / args[0]), "--name", "x", *args[1:])
        assert code == 2 and out == "" and expected in _one_line_error(err), (args, err)
    code, out, _ = run(capsys, "data", "list", "--json")
    assert json.loads(out) == []  # no empty dataset left behind by a failed import


def test_an_all_bad_file_names_the_row_once(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "scores": {"m": 7}}\n', encoding="utf-8")
    code, _, err = run(capsys, "data", "import", str(path), "--name", "x")
    assert code == 2 and _one_line_error(err).count("bad.jsonl:1") == 1 and "--score-scale" in err


def test_export_and_home_paths_that_cannot_be_written(
    rf_home: Path, responses: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "data", "import", str(responses), "--name", "mm")[0] == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("x", encoding="utf-8")
    code, _, err = run(capsys, "data", "export", "mm", str(a_file / "out.jsonl"))
    assert code == 2 and "Cannot write" in _one_line_error(err)
    code, _, err = run(capsys, "--home", str(a_file), "data", "list")
    assert code == 2 and "Cannot create the folder" in _one_line_error(err)


def test_models_add_rejects_blank_ids_bad_prices_and_urls(
    rf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, expected in [
        (["models", "add", " ", "--no-lookup"], "without leading or trailing spaces"),
        (["models", "add", "m", "--input-price", "inf", "--no-lookup"], "finite number"),
        (["models", "add", "m", "--base-url", "localhost:8000", "--no-lookup"], "http:// or https://"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and expected in _one_line_error(err)
    code, out, _ = run(capsys, "models", "list", "--json")
    assert json.loads(out) == []


def test_import_pulze_strict_score(rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pulze.jsonl"
    question = "### Question: 2+2? ### Choices: 0) 3 1) 4"
    rows = [
        {
            "question": question,
            "answering_model": m,
            "overall_score": 1.0,
            "gold_answer": "1",
            "model_answer": a,
        }
        for m, a in (("right", "The answer is 1) 4"), ("wrong", "The answer is 0) 3"))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, _, err = run(capsys, "data", "import", str(path), "--name", "p", "--pulze-score", "lenient")
    assert code == 2 and "--pulze-score 'lenient'" in _one_line_error(err)
    assert run(capsys, "data", "import", str(path), "--name", "p", "--pulze-score", "strict")[0] == 0
    code, out, _ = run(capsys, "data", "stats", "p", "--json")
    assert {m["id"]: m["mean_score"] for m in json.loads(out)["models"]} == {"right": 1.0, "wrong": 0.0}
