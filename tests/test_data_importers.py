"""Importers on small files the tests write: each format, auto-detection, bad rows, strict mode, scales."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerforge.data.importers import (
    FORMATS,
    detect_format,
    load_pulze_template,
    parse_scale,
    read_records,
)
from routerforge.data.importers.pulze import model_slug, subject_of
from routerforge.data.importers.routerbench import join_literal
from routerforge.data.records import text_hash
from routerforge.errors import DataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


ROUTELLM = (
    'prompt,model-a,model-b\n"What is 1+1?\nA. 2\nAnswer:",True,False\nSecond,False,True\nSecond,True,True\n'
)

ROUTERBENCH_HEADER = ",sample_id,prompt,eval_name,m1,m2,m1|model_response,m2|model_response,m1|total_cost,m2|total_cost,oracle_model_to_route_to\n"


def routerbench_row(idx: int, sid: str, prompt: list[str], s1: str, s2: str) -> str:
    literal = repr(prompt).replace('"', '""')
    return f'{idx},{sid},"{literal}",arc,{s1},{s2},"[\'A\']","[\'B\']",0.001,0.0001,m1\n'


# -- RouteLLM --------------------------------------------------------------------------------------


def test_routellm_folder_keys_categories_and_scores(tmp_path: Path) -> None:
    folder = tmp_path / "responses"
    write(folder / "mmlu_abstract_algebra.csv", ROUTELLM)
    write(folder / "mmlu_anatomy.csv", "prompt,model-a,model-b\nBones?,1,0\n")
    write(folder / "notes.jsonl", '{"ignored": true}\n')
    assert detect_format(folder) == "routellm-csv"
    records, report = read_records(folder)
    got = list(records)
    assert report.format == "routellm-csv"
    assert report.records == len(got) == 8 and report.skipped == 0
    keys = [r.prompt_key for r in got[::2]]
    assert keys == ["abstract_algebra/0", "abstract_algebra/1", "abstract_algebra/2", "anatomy/0"]
    assert got[0].prompt.startswith("What is 1+1?\nA. 2")  # multi-line quoted field
    assert {r.category for r in got} == {"abstract_algebra", "anatomy"}
    assert [(r.model, r.score) for r in got[:2]] == [("model-a", 1.0), ("model-b", 0.0)]
    # identical texts stay separate prompts (key = subject/row)
    assert got[2].prompt == got[4].prompt and got[2].prompt_key != got[4].prompt_key


def test_routellm_truncated_csv_is_reported_with_line(tmp_path: Path) -> None:
    path = write(tmp_path / "mmlu_x.csv", 'prompt,a,b\nfine,True,False\nshort,True\n"open quote,True,False\n')
    records, report = read_records(path, "routellm-csv")
    got = list(records)
    assert len(got) == 2
    assert report.skipped == 2
    assert report.issues[0].line == 3 and "2 fields" in report.issues[0].reason
    assert report.issues[1].line == 4 and "truncated" in report.issues[1].reason
    with pytest.raises(DataError, match=r"mmlu_x.csv:3"):
        list(read_records(path, "routellm-csv", strict=True)[0])


def test_score_outside_unit_interval_needs_a_scale(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "prompt,a\nq1,7\nq2,10\n")
    records, report = read_records(path, "routellm-csv")
    with pytest.raises(DataError, match=r"s.csv:2 column 'a': 2 of 2 rows .* outside \[0, 1\]") as err:
        list(records)  # most rows out of range: another scale, an error (never a skip keeping the rest)
    assert "--score-scale" in str(err.value) and report.out_of_range == 2
    issue = report.issues[0]
    assert (issue.line, issue.column) == (2, "a") and "--score-scale" in issue.reason
    with pytest.raises(DataError, match="outside"):
        list(read_records(path, "routellm-csv", strict=True)[0])
    scaled, _ = read_records(path, "routellm-csv", scale="0-10")
    assert [r.score for r in scaled] == [0.7, 1.0]
    over, report = read_records(path, "routellm-csv", scale=(0.0, 5.0))
    with pytest.raises(DataError, match="outside the declared scale 0-5"):
        list(over)
    few = write(tmp_path / "f.csv", "prompt,a\nq1,1\nq2,0\nq3,7\n")  # one stray value: skipped, counted
    kept, report = read_records(few, "routellm-csv")
    assert [r.score for r in kept] == [1.0, 0.0] and (report.skipped, report.out_of_range) == (1, 1)


def test_parse_scale() -> None:
    assert parse_scale("0-10") == (0.0, 10.0)
    assert parse_scale("1:5") == (1.0, 5.0)
    assert parse_scale("0-1") is None and parse_scale(None) is None
    with pytest.raises(DataError, match="LO-HI"):
        parse_scale("ten")
    with pytest.raises(DataError):
        parse_scale("5-1")


# -- RouterBench -----------------------------------------------------------------------------------


def test_routerbench_literal_prompts_costs_splits(tmp_path: Path) -> None:
    folder = tmp_path / "rb"
    write(
        folder / "arc_train.csv",
        ROUTERBENCH_HEADER
        + routerbench_row(7, "arc.1", ["Preamble", "Question one?"], "1.0", "0.0")
        + routerbench_row(8, "arc.1", ["Preamble", "Question one?"], "", ""),
    )
    write(folder / "arc_test.csv", ROUTERBENCH_HEADER + routerbench_row(9, "arc.2", ["Q two"], "0.0", "1.0"))
    assert detect_format(folder) == "routerbench-csv"
    records, report = read_records(folder)
    got = list(records)
    assert report.records == 6 and report.skipped == 0
    first = got[2]  # files in name order: arc_test.csv, then arc_train.csv
    assert first.prompt == "Preamble\nQuestion one?"
    assert (first.model, first.score, first.cost_usd, first.response) == ("m1", 1.0, 0.001, "A")
    assert first.category == "arc"
    # the repeated sample id stays two prompts thanks to the row-id column
    assert [r.prompt_key for r in got[::2]] == ["arc.2#9", "arc.1#7", "arc.1#8"]
    assert {r.split for r in got if r.prompt_key == "arc.2#9"} == {"test"}
    assert {r.split for r in got if r.prompt_key.startswith("arc.1")} == {"train"}
    assert got[4].score is None  # empty score = missing cell


def test_join_literal() -> None:
    assert join_literal("['a', 'b']") == "a\nb"
    assert join_literal("plain text") == "plain text"
    assert join_literal("[broken") == "[broken"


# -- Pulze ---------------------------------------------------------------------------------------


def pulze_line(question: str, model: str, score: float, **extra: object) -> dict:
    row = {
        "question": question,
        "gold_answer": "1",
        "model_answer": "The answer is 1",
        "answering_model": model,
        "overall_score": score,
        "label": "Correct Answer",
        "template_id": "t1",
        "relevance": 10,
        "correctness": 5,
    }
    row.update(extra)
    return row


def test_pulze_results(tmp_path: Path) -> None:
    results = tmp_path / "pulze" / "results"
    jsonl(
        results / "tmpl_googlegemini_25_pro_anatomy.jsonl", [pulze_line("Q1", "google/gemini-2.5-pro", 0.9)]
    )
    jsonl(results / "tmpl_openaigpt_5_anatomy.jsonl", [pulze_line("Q1", "openai/gpt-5", 0.5)])
    write(tmp_path / "pulze" / "templates" / "t.json", "{}")
    assert detect_format(tmp_path / "pulze") == "pulze-jsonl"
    records, report = read_records(tmp_path / "pulze")
    got = list(records)
    assert len(report.files) == 2 and len(got) == 2
    r = got[0]
    assert r.prompt_key == text_hash("Q1") == got[1].prompt_key
    assert r.model == "google/gemini-2.5-pro" and r.score == 0.9
    assert r.dimensions == {"relevance": 1.0, "correctness": 0.5}
    assert (r.reference, r.response, r.tags, r.category) == (
        "1",
        "The answer is 1",
        ["Correct Answer"],
        "anatomy",
    )
    assert r.judge == "pulze-template:t1"


MC = "### Question: Which vitamin? ### Choices: 0) Folate 1) Niacin 2) Riboflavin 3) Vitamin B6"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Reasoning...\n\n**The answer is: 1) Niacin**", 1),
        ("**Answer:** 2) Riboflavin, because ...", 2),
        ("Folate is wrong. The final answer is $\\boxed{3}$", 3),
        ("I'd say $\\boxed{\\text{Niacin}}$.", 1),  # the option's text inside \boxed
        (
            "Let me list: **0) Folate** is not it ...\n\nThe correct option is 1.",
            1,
        ),  # the last statement wins
        ("Thinking about each one...\n\n3) Vitamin B6", 3),
        ("1", 1),
        ("After all this, Niacin provides NADPH.", 1),  # the option named alone on the last line
        ("Folate or Niacin, hard to say.", None),  # two options named: no commitment
        ("I don't know.", None),
    ],
)
def test_extract_numbered_option(answer: str, expected: int | None) -> None:
    from routerforge.data.answers import extract_numbered_option
    from routerforge.data.importers.pulze import choices_of

    assert extract_numbered_option(answer, choices_of(MC)) == expected


def test_extract_numbered_option_with_numeric_options() -> None:
    from routerforge.data.answers import extract_numbered_option

    options = ["11", "22", "34", "48"]
    assert extract_numbered_option("*Choice 3) 48:* even.\nThe final answer is $\\boxed{11}$.", options) == 0
    assert extract_numbered_option("So the answer is 48.", options) == 3  # "48" is a text, not label 4
    assert extract_numbered_option("So the answer is 2).", options) == 2  # a closed label is a label


def test_pulze_strict_score_compares_the_answer_with_the_gold_option(tmp_path: Path) -> None:
    rows = [
        pulze_line(MC, "m-right", 0.97, gold_answer="1", model_answer="The answer is **1) Niacin**"),
        pulze_line(MC, "m-wrong", 0.95, gold_answer="1", model_answer="The answer is **0) Folate**"),
        pulze_line(MC, "m-vague", 0.9, gold_answer="1", model_answer="It depends."),
        pulze_line("Capital of France?", "m-free", 0.8, gold_answer="Paris", model_answer="It is Paris."),
    ]
    path = jsonl(tmp_path / "results.jsonl", rows)
    records, _ = read_records(path, "pulze-jsonl")
    assert [r.score for r in records] == [0.97, 0.95, 0.9, 0.8]  # default: their judge's score
    records, _ = read_records(path, "pulze-jsonl", pulze_score="strict")
    got = list(records)
    assert [r.score for r in got] == [1.0, 0.0, 0.0, 1.0]
    assert got[1].dimensions is not None and got[1].dimensions["pulze_judge"] == 0.95
    assert got[0].judge == "pulze-strict-option-match"
    with pytest.raises(DataError, match="Unknown Pulze score"):
        read_records(path, "pulze-jsonl", pulze_score="lenient")
    with pytest.raises(DataError, match="applies to Pulze results, not to wide-jsonl"):
        read_records(path, "wide-jsonl", pulze_score="strict")
    no_gold = jsonl(tmp_path / "nogold.jsonl", [pulze_line(MC, "m", 0.9, gold_answer=None)])
    records, report = read_records(no_gold, "pulze-jsonl", pulze_score="strict")
    assert list(records) == [] and "needs a 'gold_answer'" in report.issues[0].reason


def test_pulze_choices() -> None:
    from routerforge.data.importers.pulze import choices_of

    question = "### Question: Pick ### Choices: 0) True, True 1) False, 2 2) 10) odd"
    assert choices_of(question) == ["True, True", "False, 2", "10) odd"]
    assert choices_of("### Question: open ended") is None
    assert choices_of("### Choices: 1) a 2) b") is None


def test_pulze_slug_and_subject() -> None:
    assert (
        model_slug("groq/meta-llama/llama-4-maverick-17b-128e-instruct")
        == "groqmeta_llamallama_4_maverick_17b_128e_instruct"
    )
    path = Path("pulze_multi_dimensional_evaluation_pulze_v01_googlegemini_25_pro_college_biology.jsonl")
    assert subject_of(path, "google/gemini-2.5-pro") == "college_biology"
    assert subject_of(Path("x.jsonl"), "google/gemini-2.5-pro") is None


def test_pulze_bad_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.jsonl",
        json.dumps(pulze_line("Q1", "m", 0.5))
        + "\n{not json\n"
        + json.dumps(pulze_line("Q2", "m", 3.0))
        + "\n"
        + json.dumps({"question": "Q3", "answering_model": "m"})
        + "\n",
    )
    records, report = read_records(path, "pulze-jsonl")
    assert len(list(records)) == 1
    assert report.skipped == 3
    assert [i.line for i in report.issues] == [2, 3, 4]
    assert "invalid JSON" in report.issues[0].reason
    assert report.issues[1].column == "overall_score"
    assert report.issues[2].column == "overall_score" and "missing" in report.issues[2].reason


def test_pulze_template(tmp_path: Path) -> None:
    raw = {
        "name": "tmpl",
        "description": "d",
        "rater_model": "judge-1",
        "evaluation_prompt": "Grade.\n- Relevance: Is it relevant?\n- Correctness: Is it right?\n",
        "metrics_config": {"metrics": ["relevance", "correctness"], "threshold": 0.6},
    }
    template = load_pulze_template(write(tmp_path / "t.json", json.dumps(raw)))
    assert template.name == "tmpl" and template.threshold == 0.6 and template.rater_model == "judge-1"
    assert [(d.name, d.weight, d.description) for d in template.dimensions] == [
        ("relevance", 1.0, "Is it relevant?"),
        ("correctness", 1.0, "Is it right?"),
    ]
    assert template.overall({"relevance": 10, "correctness": 5}) == pytest.approx(0.75)
    assert template.to_dict()["dimensions"][0]["name"] == "relevance"
    with pytest.raises(DataError, match="not a Pulze evaluation template"):
        load_pulze_template(write(tmp_path / "bad.json", "{}"))
    with pytest.raises(DataError, match="is a JSON file"):
        detect_format(tmp_path / "t.json")


# -- wide and long -----------------------------------------------------------------------------------


def test_wide_jsonl_keeps_unknown_keys_as_metadata(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "w.jsonl",
        [
            {
                "id": "p1",
                "prompt": "Hi",
                "scores": {"a": 1.0, "b": None},
                "cost_usd": {"a": 0.002},
                "split": "train",
                "category": "chat",
                "difficulty": "easy",
                "metadata": {"source_id": 3},
            },
            {"prompt": "No id", "scores": {"a": 0.0}},
        ],
    )
    assert detect_format(path) == "wide-jsonl"
    records, report = read_records(path)
    got = list(records)
    assert report.records == 3
    a, b, c = got
    assert (a.prompt_key, a.model, a.score, a.cost_usd, a.split, a.category) == (
        "p1",
        "a",
        1.0,
        0.002,
        "train",
        "chat",
    )
    assert (b.model, b.score, b.cost_usd) == ("b", None, None)
    assert a.metadata == {"difficulty": "easy", "source_id": 3}
    assert c.prompt_key == text_hash("No id")


def test_wide_jsonl_bad_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.jsonl",
        '{"prompt": "ok", "scores": {"a": 1}}\n{"prompt": "x", "scores": {"a": 1.5}}\n{"prompt": "y"}\n[1]\n',
    )
    records, report = read_records(path, "wide-jsonl")
    assert len(list(records)) == 1
    assert [(i.line, i.column) for i in report.issues] == [(2, "scores.a"), (3, "scores"), (4, None)]


def test_long_jsonl_and_csv(tmp_path: Path) -> None:
    rows = [
        {
            "prompt_key": "k1",
            "prompt": "P",
            "model": "a",
            "score": 1,
            "cost_usd": 0.1,
            "tokens_in": 5,
            "tags": ["x"],
        },
        {"prompt": "Q", "model": "b", "score": None, "dimensions": {"style": 0.5}, "metadata": {"m": 1}},
    ]
    path = jsonl(tmp_path / "l.jsonl", rows)
    assert detect_format(path) == "long-jsonl"
    got = list(read_records(path)[0])
    assert (got[0].prompt_key, got[0].score, got[0].tokens_in, got[0].tags) == ("k1", 1.0, 5, ["x"])
    assert (
        got[1].prompt_key == text_hash("Q")
        and got[1].dimensions == {"style": 0.5}
        and got[1].metadata == {"m": 1}
    )

    csv_path = write(
        tmp_path / "l.csv",
        'prompt_key,prompt,model,score,cost_usd,dimensions,split\nk1,P,a,0.5,0.01,"{""x"": 1}",test\nk2,Q,b,,,,\n',
    )
    assert detect_format(csv_path) == "long-csv"
    got = list(read_records(csv_path)[0])
    assert (got[0].score, got[0].cost_usd, got[0].dimensions, got[0].split) == (0.5, 0.01, {"x": 1.0}, "test")
    assert (got[1].score, got[1].cost_usd, got[1].split) == (None, None, None)


def test_long_csv_unknown_column_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "prompt,model,score,colour\nP,a,1,red\n")
    with pytest.raises(DataError, match="unknown column 'colour'") as info:
        list(read_records(path, "long-csv")[0])
    assert info.value.column == "colour" and info.value.line == 1


def test_long_jsonl_unknown_key_and_bad_types(tmp_path: Path) -> None:
    path = write(
        tmp_path / "l.jsonl",
        '{"prompt": "P", "model": "a", "score": 1, "colour": "red"}\n'
        '{"prompt": "P", "model": "a", "score": 1, "tokens_in": 1.5}\n'
        '{"prompt": "P", "model": "a", "score": "high"}\n'
        '{"prompt": "P", "model": "a", "score": 1, "cost_usd": -1}\n',
    )
    records, report = read_records(path, "long-jsonl")
    assert list(records) == []
    assert [i.column for i in report.issues] == ["colour", "tokens_in", "score", "cost_usd"]


def test_unknown_format_and_missing_path(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match="Unknown format"):
        read_records(tmp_path / "x.csv", "excel")
    with pytest.raises(DataError, match="does not exist"):
        read_records(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="Cannot tell the format"):
        detect_format(write(tmp_path / "y.txt", "hello"))
    assert set(FORMATS) >= {
        "routellm-csv",
        "routerbench-csv",
        "pulze-jsonl",
        "wide-jsonl",
        "long-jsonl",
        "long-csv",
    }


def test_report_lists_only_the_first_issues(tmp_path: Path) -> None:
    path = write(tmp_path / "w.jsonl", "{bad\n" * 30)
    records, report = read_records(path, "wide-jsonl", max_issues=5)
    assert list(records) == []
    assert report.skipped == 30 and len(report.issues) == 5 and report.rows == 30
    assert report.to_dict()["issues"][0] == {
        "path": str(path),
        "line": 1,
        "column": None,
        "reason": report.issues[0].reason,
    }
