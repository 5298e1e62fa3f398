"""Battles, MT-Bench judgements, HELM results and ``--map``, on small files the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.cli.main import main
from routerforge.config import load_settings
from routerforge.data.importers import ColumnMap, detect_format, read_records
from routerforge.data.store import Store
from routerforge.errors import DataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def conversation(*turns: str) -> list[dict[str, str]]:
    out = []
    for k, text in enumerate(turns):
        out.append({"role": "user" if k % 2 == 0 else "assistant", "content": text})
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- battles ------------------------------------------------------------------------------------------

ARENA = [
    {
        "question_id": "q1",
        "model_a": "gpt-4",
        "model_b": "llama",
        "winner": "model_a",
        "judge": "arena_user_1",
        "turn": 1,
        "language": "English",
        "conversation_a": conversation("What is 2+2?", "4"),
        "conversation_b": conversation("What is 2+2?", "5"),
        "openai_moderation": {"flagged": False},
        "anony": True,
    },
    {"question_id": "q2", "model_a": "llama", "model_b": "claude", "winner": "model_b", "prompt": "Poem?"},
    {"question_id": "q3", "model_a": "claude", "model_b": "gpt-4", "winner": "tie", "prompt": "Hi"},
    {"question_id": "q4", "model_a": "llama", "model_b": "gpt-4", "winner": "tie (bothbad)", "prompt": "Hm"},
    {
        "question_id": "q5",
        "model_a": "claude",
        "model_b": "gpt-4",
        "winner": "model_b",
        "turn": 2,
        "conversation_a": conversation("Hi", "Hello", "Tell a joke", "Ha"),
    },
    {"question_id": "q6", "model_a": "claude", "model_b": "claude", "winner": "model_a", "prompt": "x"},
    {"question_id": "q7", "model_a": "claude", "model_b": "llama", "winner": "llama wins", "prompt": "x"},
]


def test_battles_jsonl_become_two_records_each(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "battles.jsonl", ARENA)
    assert detect_format(path) == "battles-jsonl"
    records, report = read_records(path)
    got = list(records)
    assert report.rows == 7 and report.records == len(got) == 10 and report.skipped == 2
    assert [i.line for i in report.issues] == [6, 7]
    assert "same model" in report.issues[0].reason and "not one of" in report.issues[1].reason
    scores = [(r.metadata["question_id"], r.model, r.score) for r in got]
    assert scores == [
        ("q1", "gpt-4", 1.0),
        ("q1", "llama", 0.0),
        ("q2", "llama", 0.0),
        ("q2", "claude", 1.0),
        ("q3", "claude", 0.5),
        ("q3", "gpt-4", 0.5),
        ("q4", "llama", 0.0),  # both bad: a tie, and neither answer was good
        ("q4", "gpt-4", 0.0),
        ("q5", "claude", 0.0),
        ("q5", "gpt-4", 1.0),
    ]
    first = got[0]
    assert first.prompt == "What is 2+2?" and first.response == "4" and got[1].response == "5"
    assert first.judge == "arena_user_1" and first.prompt_key == got[1].prompt_key
    assert first.metadata["battle_id"] == first.prompt_key
    assert {k: first.metadata[k] for k in ("model_a", "model_b", "winner", "language", "turn", "anony")} == {
        "model_a": "gpt-4",
        "model_b": "llama",
        "winner": "model_a",
        "language": "English",
        "turn": 1,
        "anony": True,
    }
    assert got[8].prompt == "Hi\n\nTell a joke" and got[8].response == "Hello\n\nHa"  # turns 1..2
    assert len({r.prompt_key for r in got}) == 5  # one prompt per battle
    assert report.details["battles"] == 5
    assert report.details["winners"] == {"model_a": 1, "model_b": 2, "tie": 1, "tie (bothbad)": 1}
    assert report.details["columns_not_kept"] == ["openai_moderation"]
    again = [r.prompt_key for r in read_records(path)[0]]
    assert again == [r.prompt_key for r in got]  # keys are stable across imports


def test_battles_csv_one_hot_winners_ids_and_repeated_battles(tmp_path: Path) -> None:
    text = (
        "id,prompt,model_a,model_b,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"
        '7,"[""Hi"", ""More""]",a,b,"[""x"", ""y""]",z,0,1,0\n'
        "8,Same,a,b,,,0,0,1\n"
        "9,Same,a,b,,,1,1,0\n"
    )
    path = write(tmp_path / "kaggle.csv", text)
    assert detect_format(path) == "battles-csv"
    records, report = read_records(path, "battles")  # the alias picks the CSV reader
    got = list(records)
    assert report.format == "battles-csv" and report.skipped == 1
    assert "exactly one of" in report.issues[0].reason
    assert [(r.prompt_key, r.model, r.score) for r in got] == [
        ("7", "a", 0.0),
        ("7", "b", 1.0),
        ("8", "a", 0.5),
        ("8", "b", 0.5),
    ]
    assert got[0].prompt == "Hi\n\nMore" and got[0].response == "x\n\ny" and got[1].response == "z"
    # without an id, identical battles stay separate prompts (an occurrence number is appended)
    rows = [{"prompt": "Same", "model_a": "a", "model_b": "b", "winner": "a"}] * 2
    keys = [r.prompt_key for r in read_records(jsonl(tmp_path / "rep.jsonl", rows))[0]]
    assert keys[0] == keys[1] and keys[2] == keys[0] + "#2"


def test_battles_prompt_from_questions_and_scale_refused(tmp_path: Path) -> None:
    questions = jsonl(
        tmp_path / "question.jsonl", [{"question_id": 81, "category": "writing", "turns": ["A", "B"]}]
    )
    rows = [
        {
            "question_id": 81,
            "model_a": "a",
            "model_b": "b",
            "winner": "model_a",
            "judge": "expert",
            "turn": 2,
        },
        {"question_id": 99, "model_a": "a", "model_b": "b", "winner": "model_a"},
    ]
    path = jsonl(tmp_path / "human.jsonl", rows)
    records, report = read_records(path, "battles-jsonl", questions=questions)
    got = list(records)
    assert got[0].prompt == "A\n\nB" and got[0].category == "writing"
    assert report.skipped == 1 and "not in the --questions file" in report.issues[0].reason
    with pytest.raises(DataError, match="--score-scale does not apply to battles"):
        read_records(path, "battles-jsonl", scale="0-10")


def _topic_battles(n: int) -> list[dict]:
    """`mathbot` wins algebra battles against `poet` and loses poem battles; `generic` is in between."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        algebra = i % 2 == 0
        text = f"algebra equation {i}: solve for x" if algebra else f"poem verse {i}: write a rhyme"
        a, b = [("mathbot", "poet"), ("mathbot", "generic"), ("poet", "generic")][i % 3]
        strength = {"mathbot": 2.0 if algebra else -2.0, "poet": -2.0 if algebra else 2.0, "generic": 0.0}
        p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
        rows.append(
            {
                "prompt": text,
                "model_a": a,
                "model_b": b,
                "winner": "model_a" if rng.random() < p else "model_b",
            }
        )
    return rows


@pytest.mark.parametrize("router,params", [("sw", []), ("mf", ["-p", "mode=pairwise", "-p", "dim=8"])])
def test_battles_train_pairwise_routers_end_to_end(
    rf_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    router: str,
    params: list[str],
) -> None:
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    path = jsonl(tmp_path / "arena.jsonl", _topic_battles(240))
    code, out, err = run(capsys, "data", "import", str(path), "--name", "arena")
    assert code == 0, err
    assert "240 battles" in out and "routerforge train sw --data arena" in out
    with Store.from_settings(load_settings()) as store:
        matrix = store.load_matrix("arena")
    assert matrix.n_prompts == 240 and (~np.isnan(matrix.scores)).sum(axis=1).tolist() == [2] * 240
    for model in ("mathbot", "poet", "generic"):  # prices, so that `route` can choose among three models
        assert (
            run(capsys, "models", "add", model, "--input-price", "1", "--output-price", "1", "--no-lookup")[0]
            == 0
        )
    out_dir = tmp_path / router
    code, _, err = run(capsys, "train", router, "--data", "arena", "--out", str(out_dir), *params, "--json")
    assert code == 0, err
    for prompt, best, worst in (
        ("algebra equation 999: solve for x", "mathbot", "poet"),
        ("poem verse 999: write a rhyme", "poet", "mathbot"),
    ):
        code, out, err = run(capsys, "route", str(out_dir), prompt, "--json")
        assert code == 0, err
        predicted = json.loads(out)["predicted"]
        assert predicted[best] > predicted["generic"] > predicted[worst], (prompt, predicted)


# -- MT-Bench -----------------------------------------------------------------------------------------

SINGLE = (
    "[Instruction]\nPlease act as an impartial judge ...\n\n[Question]\n{q}\n\n"
    "[The Start of Assistant's Answer]\n{a}\n[The End of Assistant's Answer]"
)
MULTI = (
    "<|The Start of Reference Answer|>\n\n### User:\nignored\n\n### Reference answer:\nr\n\n"
    "<|The End of Reference Answer|>\n\n<|The Start of Assistant A's Conversation with User|>\n\n"
    "### User:\n{q1}\n\n### Assistant A:\n{a1}\n\n### User:\n{q2}\n\n### Assistant A:\n{a2}\n\n"
    "<|The End of Assistant A's Conversation with User|>"
)


def judgment(qid: int, model: str, score: float, turn: int, prompt: str) -> dict:
    return {
        "question_id": qid,
        "model": model,
        "judge": ["gpt-4", "single-v1" if turn == 1 else "single-v1-multi-turn"],
        "user_prompt": prompt,
        "judgment": f"Rating: [[{score}]]",
        "score": score,
        "turn": turn,
        "tstamp": 1.0,
    }


def mtbench_file(path: Path) -> Path:
    return jsonl(
        path,
        [
            judgment(81, "vicuna", 10, 1, SINGLE.format(q="Write a blog post.", a="Sure!")),
            judgment(81, "alpaca", 1, 1, SINGLE.format(q="Write a blog post.", a="No.")),
            judgment(
                81, "vicuna", 7, 2, MULTI.format(q1="Write a blog post.", a1="Sure!", q2="Shorter.", a2="Ok")
            ),
            judgment(82, "alpaca", -1, 1, SINGLE.format(q="Other?", a="?")),
            judgment(83, "alpaca", 5, 1, "no question quoted here"),
        ],
    )


def test_mtbench_judgements_scale_turns_and_bad_rows(tmp_path: Path) -> None:
    path = mtbench_file(tmp_path / "gpt-4_single.jsonl")
    assert detect_format(path) == "mtbench-jsonl"
    records, report = read_records(path)
    got = list(records)
    assert [(r.prompt_key, r.model, r.score) for r in got] == [
        ("81/turn1", "vicuna", 1.0),
        ("81/turn1", "alpaca", 0.0),
        ("81/turn2", "vicuna", pytest.approx(6 / 9)),
    ]
    assert got[0].prompt == "Write a blog post." and got[0].response == "Sure!"
    assert got[2].prompt == "Write a blog post.\n\nShorter." and got[2].response == "Ok"
    assert got[0].judge == "gpt-4/single-v1" and got[2].metadata == {"question_id": "81", "turn": 2}
    assert report.details["score_scale"] == "1-10" and report.details["normalised"] == "(score - 1) / 9"
    assert report.skipped == 2
    assert "no rating (score -1" in report.issues[0].reason
    assert "--questions" in str(report.issues[1]) or "user_prompt" in report.issues[1].reason
    records, report = read_records(path, scale="0-10")
    assert [r.score for r in records][:2] == [1.0, 0.1]
    assert report.details["score_scale"] == "0-10"


def test_mtbench_scores_on_another_scale_are_refused(tmp_path: Path) -> None:
    rows = [judgment(81 + k, "m", 40 + 10 * k, 1, SINGLE.format(q=f"Q{k}", a="A")) for k in range(4)]
    path = jsonl(tmp_path / "judge-100.jsonl", rows)
    with pytest.raises(DataError, match="--score-scale"):
        list(read_records(path, "mtbench-jsonl")[0])
    assert [r.score for r in read_records(path, "mtbench-jsonl", scale="0-100")[0]] == [0.4, 0.5, 0.6, 0.7]


def test_mtbench_questions_file_and_data_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mt_bench"
    jsonl(
        folder / "question.jsonl",
        [
            {
                "question_id": 81,
                "category": "writing",
                "turns": ["Q1 text", "Q2 text"],
                "reference": ["r1", "r2"],
            },
            {"question_id": 83, "category": "math", "turns": ["What is 3*3?"]},
        ],
    )
    mtbench_file(folder / "model_judgment" / "gpt-4_single.jsonl")
    jsonl(
        folder / "model_judgment" / "gpt-4_pair.jsonl", [{"question_id": 81, "model_1": "a", "model_2": "b"}]
    )
    records, report = read_records(folder, "mtbench-jsonl", questions=folder / "question.jsonl")
    got = list(records)
    assert [r.prompt for r in got] == ["Q1 text", "Q1 text", "Q1 text\n\nQ2 text", "What is 3*3?"]
    assert [r.category for r in got] == ["writing"] * 3 + ["math"]
    assert got[2].reference == "r2" and got[3].score == pytest.approx(4 / 9)
    assert report.files == [str(folder / "model_judgment" / "gpt-4_single.jsonl")]
    assert sorted(Path(f).name for f in report.details["files_not_read"]) == [
        "gpt-4_pair.jsonl",
        "question.jsonl",
    ]
    assert report.details["prompt_text"].endswith("question.jsonl")
    with pytest.raises(DataError, match="--questions applies to MT-Bench"):
        read_records(folder / "question.jsonl", "long-jsonl", questions=folder / "question.jsonl")


# -- HELM ---------------------------------------------------------------------------------------------


def stat(name: str, mean: float, **extra: object) -> dict:
    return {"name": {"name": name, "split": "test", **extra}, "count": 1, "sum": mean, "mean": mean}


def helm_run(root: Path, model: str, em: list[float], *, state: bool = False) -> Path:
    slug = model.replace("/", "_")
    run = root / f"mmlu:subject=anatomy,method=multiple_choice_joint,model={slug}"
    run.mkdir(parents=True)
    name = run.name
    write(run / "run_spec.json", json.dumps({"name": name, "adapter_spec": {"model": model}}))
    instances = [
        {
            "id": f"id{k}",
            "split": "test",
            "input": {"text": f"Question {k}?"},
            "references": [
                {"output": {"text": "yes"}, "tags": ["correct"]},
                {"output": {"text": "no"}, "tags": []},
            ],
        }
        for k in range(len(em))
    ]
    if state:
        doc = {"request_states": [{"instance": inst, "train_trial_index": 0} for inst in instances]}
        write(run / "scenario_state.json", json.dumps(doc))
    else:
        write(run / "instances.json", json.dumps(instances))
    stats = [
        {
            "instance_id": f"id{k}",
            "train_trial_index": 0,
            "stats": [stat("exact_match", v), stat("num_tokens", 9)],
        }
        for k, v in enumerate(em)
    ]
    stats.append(
        {
            "instance_id": "id0",
            "train_trial_index": 0,
            "perturbation": {"name": "typos"},
            "stats": [stat("exact_match", 0.0)],
        }
    )
    write(run / "per_instance_stats.json", json.dumps(stats))
    preds = [{"instance_id": f"id{k}", "train_trial_index": 0, "predicted_text": "A"} for k in range(len(em))]
    write(run / "display_predictions.json", json.dumps(preds))
    return run


def test_helm_run_folders(tmp_path: Path) -> None:
    root = tmp_path / "benchmark_output" / "runs" / "v1"
    helm_run(root, "openai/gpt-4", [1.0, 0.0])
    helm_run(root, "meta/llama-7b", [0.0, 0.0], state=True)
    assert detect_format(tmp_path / "benchmark_output") == "helm"
    records, report = read_records(tmp_path / "benchmark_output")
    got = list(records)
    scenario = "mmlu:subject=anatomy,method=multiple_choice_joint"
    assert sorted((r.prompt_key, r.model, r.score) for r in got) == [
        (f"{scenario}/id0", "meta/llama-7b", 0.0),
        (f"{scenario}/id0", "openai/gpt-4", 1.0),
        (f"{scenario}/id1", "meta/llama-7b", 0.0),
        (f"{scenario}/id1", "openai/gpt-4", 0.0),
    ]
    first = next(r for r in got if r.model == "openai/gpt-4")
    assert first.prompt == "Question 0?" and first.category == scenario and first.response == "A"
    assert first.reference == "yes" and first.choices == ["yes", "no"]
    assert report.details == {"metric": "exact_match", "runs": 2, "perturbed_not_imported": 2}
    # one run file given: its folder is read; another metric is chosen by name
    run_file = next(root.glob("*gpt-4*")) / "per_instance_stats.json"
    assert detect_format(run_file) == "helm"
    with pytest.raises(DataError, match=r"no 'f1_score' stat .* it has: exact_match, num_tokens"):
        list(read_records(run_file, metric="f1_score")[0])
    records, _ = read_records(run_file, metric="num_tokens", scale="0-10")
    assert {r.score for r in records} == {0.9}


def test_helm_flat_file(tmp_path: Path) -> None:
    rows = [
        {"instance_id": "i1", "input": {"text": "2+2?"}, "model": "m1", "stats": {"exact_match": 1}},
        {"instance_id": "i1", "input": "2+2?", "model": "m2", "stats": {"exact_match": 0}, "scenario": None},
        {"instance_id": "i2", "input": "3+3?", "model": "m2", "stats": {"quasi_exact_match": 1}},
        {
            "instance_id": "i2",
            "input": "3+3?",
            "model": "m2",
            "stats": {"exact_match": 1},
            "perturbation": {},
        },
    ]
    path = write(tmp_path / "flat.json", json.dumps(rows))
    assert detect_format(path) == "helm"
    records, report = read_records(path)
    assert [(r.prompt_key, r.model, r.score) for r in records] == [("i1", "m1", 1.0), ("i1", "m2", 0.0)]
    assert report.skipped == 1 and "this entry has: quasi_exact_match" in report.issues[0].reason
    lines = jsonl(tmp_path / "flat.jsonl", rows[:1])
    assert detect_format(lines) == "helm" and len(list(read_records(lines)[0])) == 1
    with pytest.raises(DataError, match="--metric applies to HELM"):
        read_records(lines, "long-jsonl", metric="f1")


# -- --map --------------------------------------------------------------------------------------------

PROBLEMS = "problem,answer,solver,correct,level\nWhat is 1+1?,2,gpt-4,True,1\nWhat is 1+1?,2,llama,False,1\n"


def test_map_long_csv_problem_answer_file(tmp_path: Path) -> None:
    path = write(tmp_path / "math.csv", PROBLEMS)
    mapping = ["prompt=problem", "reference=answer", "model=solver", "score=correct"]
    assert detect_format(path, ColumnMap.parse(mapping)) == "long-csv"
    records, report = read_records(path, "long", column_map=mapping)
    got = list(records)
    assert report.format == "long-csv" and report.skipped == 0
    assert [(r.prompt, r.model, r.score, r.reference) for r in got] == [
        ("What is 1+1?", "gpt-4", 1.0, "2"),
        ("What is 1+1?", "llama", 0.0, "2"),
    ]
    assert got[0].metadata == {"level": "1"}  # unmapped columns are kept as metadata
    with pytest.raises(
        DataError,
        match=r"no column 'question' \(given by --map prompt=question\); the file has: 'problem', 'answer'",
    ):
        list(read_records(path, "long-csv", column_map=["prompt=question", "model=solver"])[0])
    with pytest.raises(DataError, match=r"a long CSV needs a 'model' column.*--map model=COLUMN"):
        list(read_records(path, "long-csv", column_map=["prompt=problem"])[0])
    with pytest.raises(DataError, match=r"--map answer=… names no field of long-csv"):
        read_records(path, "long-csv", column_map=["answer=problem"])
    both = write(tmp_path / "both.csv", "prompt,problem,model\nA,B,m\n")
    with pytest.raises(DataError, match=r"--map prompt=problem would hide the file's own column 'prompt'"):
        list(read_records(both, "long-csv", column_map=["prompt=problem"])[0])
    with pytest.raises(DataError, match="not of the form FIELD=COLUMN"):
        read_records(path, "long-csv", column_map=["prompt"])


def test_map_long_jsonl_names_the_file_column_in_issues(tmp_path: Path) -> None:
    rows = [{"q": "Hi", "who": "a", "ok": 1}, {"q": "", "who": "b", "ok": 0}]
    path = jsonl(tmp_path / "x.jsonl", rows)
    records, report = read_records(path, "long", column_map=["prompt=q", "model=who", "score=ok"])
    assert [(r.prompt, r.model, r.score) for r in records] == [("Hi", "a", 1.0)]
    assert report.issues[0].column == "q"  # the file's column, not the field it feeds


def test_map_wide_csv_pattern_list_and_jsonl(tmp_path: Path) -> None:
    path = write(
        tmp_path / "wide.csv", "qid,question,acc_gpt-4,acc_llama,topic\nq1,Hello?,1,0,greet\nq2,Bye?,,1,\n"
    )
    mapping = ["prompt=question", "id=qid", "scores=acc_*"]
    records, report = read_records(path, "wide", column_map=mapping)
    got = list(records)
    assert report.format == "wide-csv"
    assert [(r.prompt_key, r.model, r.score) for r in got] == [
        ("q1", "gpt-4", 1.0),
        ("q1", "llama", 0.0),
        ("q2", "gpt-4", None),
        ("q2", "llama", 1.0),
    ]
    assert got[0].metadata == {"topic": "greet"} and got[2].metadata == {}
    listed = list(read_records(path, "wide-csv", column_map=["prompt=question", "scores=acc_llama"])[0])
    assert {r.model for r in listed} == {"acc_llama"}
    native = write(tmp_path / "native.csv", "id,prompt,scores.a,scores.b,cost_usd.a\n1,Hi,1,0,0.5\n")
    assert detect_format(native) == "wide-csv"
    assert [(r.model, r.score, r.cost_usd) for r in read_records(native)[0]] == [
        ("a", 1.0, 0.5),
        ("b", 0.0, None),
    ]
    with pytest.raises(DataError, match="wide CSV needs one score column per model"):
        list(read_records(write(tmp_path / "none.csv", "prompt,x\nHi,1\n"), "wide-csv")[0])
    with pytest.raises(DataError, match=r"no column matches 'score_\*'"):
        list(read_records(path, "wide-csv", column_map=["prompt=question", "scores=score_*"])[0])
    flat = jsonl(tmp_path / "wide.jsonl", [{"question": "Hi", "gpt": 1, "llama": 0.5}])
    got = list(read_records(flat, "wide", column_map=["prompt=question", "scores=gpt,llama"])[0])
    assert [(r.model, r.score) for r in got] == [("gpt", 1.0), ("llama", 0.5)]


def test_map_refused_by_other_formats(tmp_path: Path) -> None:
    path = write(tmp_path / "mmlu_x.csv", "prompt,a,b\nq,1,0\n")
    with pytest.raises(DataError, match="--map applies to the long, wide, battles and MT-Bench formats"):
        read_records(path, "routellm-csv", column_map=["prompt=prompt"])


def test_cli_import_with_map_and_counts(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "math.csv", PROBLEMS + "Broken,2,gpt-4,maybe,1\n")
    argv = ["data", "import", str(path), "--name", "m", "--format", "long"]
    argv += ["--map", "prompt=problem", "--map", "model=solver", "--map", "score=correct"]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["records"] == 2 and doc["read"]["rows"] == 3 and doc["read"]["skipped"] == 1
    assert doc["read"]["issues"][0]["column"] == "correct"
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "Read 3 rows: 2 records, 1 bad rows skipped." in out
    code, _, err = run(capsys, "data", "import", str(path), "--name", "m", "--map", "prompt=nope")
    assert code == 2 and "no column 'nope'" in err
    mt = mtbench_file(tmp_path / "gpt-4_single.jsonl")
    code, out, err = run(capsys, "data", "import", str(mt), "--name", "mt")
    assert code == 0, err
    assert "Scores on the scale 1-10 normalised to [0, 1] as (score - 1) / 9." in out
