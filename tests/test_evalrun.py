"""Evaluation runs on a real SQLite store with scripted candidate models (ChatBackend doubles)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
from routerforge.cli.main import main
from routerforge.data.records import EvalRecord, PromptItem
from routerforge.data.store import Store
from routerforge.errors import SpendingCapError, UpstreamError, ValidationError
from routerforge.evalrun import Candidate, RecordSink, run_eval
from routerforge.evalrun.prompts import read_prompt_file
from routerforge.judges import AutoJudge, JudgeInput, Verdict


class ScriptedModel:
    """Answers ``answer_for(prompt)``; can fail the first ``fail_first`` calls of a prompt."""

    def __init__(
        self,
        name: str,
        answers: dict[str, str],
        *,
        fail_first: int = 0,
        retryable: bool = True,
        delay_s: float = 0.0,
    ) -> None:
        self._name = name
        self.answers = answers
        self.fail_first = fail_first
        self.retryable = retryable
        self.delay_s = delay_s
        self.calls: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResult:
        prompt = request.messages[-1]["content"]
        self.calls.append(prompt)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.calls.count(prompt) <= self.fail_first:
            raise UpstreamError("HTTP 503", provider="fake", status_code=503, retryable=self.retryable)
        return ChatResult(
            text=self.answers.get(prompt, "I don't know"),
            model=self._name,
            tokens_in=10,
            tokens_out=5,
            latency_ms=12.5,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:  # pragma: no cover - unused
        yield ChatChunk(delta=(await self.complete(request)).text, finish_reason="stop")

    async def aclose(self) -> None:
        return None


PROMPTS = [
    PromptItem(
        key=f"p{i}",
        text=f"What is {i} + {i}?",
        reference=str(2 * i),
        category="add",
        split="train" if i % 3 else "test",
    )
    for i in range(12)
]
RIGHT = {p.text: f"It is {2 * i}." for i, p in enumerate(PROMPTS)}
WRONG = {p.text: "It is 1." for p in PROMPTS}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'rf.db'}")
    s.add_prompts("qs", PROMPTS)
    yield s
    s.close()


def records(store: Store, name: str) -> list[EvalRecord]:
    return list(store.iter_records(name))


def cand(model: ScriptedModel, price: float | None = None) -> Candidate:
    return Candidate(
        id=model.name, backend=model, input_usd_per_mtok=price, output_usd_per_mtok=price, max_tokens=5
    )


async def test_run_writes_one_judged_record_per_cell(store: Store) -> None:
    strong, weak = ScriptedModel("strong", RIGHT), ScriptedModel("weak", WRONG)
    report = await run_eval(
        store,
        prompts="qs",
        candidates=[cand(strong, 1.0), cand(weak)],
        judge=AutoJudge(),
        name="ev",
        concurrency=3,
    )
    assert report.done == 24 and report.failed == 0 and report.skipped == 0
    recs = records(store, "ev")
    assert len(recs) == 24
    by_model = {m: [r for r in recs if r.model == m] for m in ("strong", "weak")}
    assert all(r.score == 1.0 and "verdict:correct" in (r.tags or []) for r in by_model["strong"])
    assert all(r.score == 0.0 for r in by_model["weak"])
    first = by_model["strong"][0]
    assert first.cost_usd == pytest.approx(15 / 1e6) and first.latency_ms == 12.5 and first.judge == "auto"
    assert first.reference is not None and first.split in ("train", "test")
    assert all(r.cost_usd is None for r in by_model["weak"])  # no price known
    matrix = store.load_matrix("ev")
    assert matrix.scores.shape == (12, 2)


async def test_dont_know_answers_are_labelled(store: Store) -> None:
    await run_eval(
        store, prompts="qs", candidates=[cand(ScriptedModel("shy", {}))], judge=AutoJudge(), name="ev"
    )
    recs = records(store, "ev")
    assert all(r.score == 0.0 and r.tags == ["verdict:dont_know"] for r in recs)


async def test_spending_cap_stops_then_rerun_finishes_without_duplicates(store: Store) -> None:
    strong, weak = ScriptedModel("strong", RIGHT), ScriptedModel("weak", WRONG)
    price = 1000.0  # USD per million tokens: 15 tokens = $0.015 per call, worst case (5 out + ~21 in) higher
    candidates = [cand(strong, price), cand(weak, price)]
    with pytest.raises(SpendingCapError) as info:
        await run_eval(
            store, prompts="qs", candidates=candidates, judge=AutoJudge(), name="ev", max_cost_usd=0.2
        )
    partial = info.value.report  # type: ignore[attr-defined]
    assert partial.stopped == "spending_cap" and 0 < partial.done < 24
    assert partial.cost_usd <= 0.2  # the cap is hard
    kept = {(r.prompt_key, r.model): r.response for r in records(store, "ev")}
    assert len(kept) == partial.done  # everything that finished is stored
    calls_before = len(strong.calls) + len(weak.calls)
    assert calls_before == partial.done

    report = await run_eval(store, prompts="qs", candidates=candidates, judge=AutoJudge(), name="ev")
    assert report.skipped == partial.done and report.done == 24 - partial.done
    final = records(store, "ev")
    assert len(final) == 24 and len({(r.prompt_key, r.model) for r in final}) == 24
    assert len(strong.calls) + len(weak.calls) == 24  # no cell was called twice
    for r in final:
        if (r.prompt_key, r.model) in kept:
            assert r.response == kept[(r.prompt_key, r.model)]


class StopAfter(RecordSink):
    """Writes records, and cancels the run after ``n`` of them (a crash in the middle of a run)."""

    def __init__(self, store: Store, dataset: str, n: int, task: list[asyncio.Task[object]]) -> None:
        super().__init__(store, dataset)
        self.n = n
        self.written = 0
        self.task = task

    def write(self, record: EvalRecord) -> None:
        super().write(record)
        self.written += 1
        if self.written == self.n:
            self.task[0].cancel()


async def test_cancelled_run_loses_at_most_calls_in_flight(store: Store) -> None:
    model = ScriptedModel("m", RIGHT, delay_s=0.001)
    holder: list[asyncio.Task[object]] = []
    sink = StopAfter(store, "ev", 5, holder)
    task = asyncio.create_task(
        run_eval(
            store,
            prompts="qs",
            candidates=[cand(model)],
            judge=AutoJudge(),
            name="ev",
            concurrency=2,
            sink=sink,
        )
    )
    holder.append(task)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = records(store, "ev")
    assert len(stored) == 5
    assert len(model.calls) <= 5 + 2  # at most the calls in flight were lost
    report = await run_eval(store, prompts="qs", candidates=[cand(model)], judge=AutoJudge(), name="ev")
    assert report.skipped == 5 and report.done == 7
    assert len(records(store, "ev")) == 12


async def test_retries_and_failures(store: Store) -> None:
    flaky = ScriptedModel("flaky", RIGHT, fail_first=1)
    report = await run_eval(
        store, prompts="qs", candidates=[cand(flaky)], judge=AutoJudge(), name="ev", backoff_s=0
    )
    assert report.done == 12 and report.failed == 0 and len(flaky.calls) == 24

    broken = ScriptedModel("broken", RIGHT, fail_first=1, retryable=False)
    report = await run_eval(
        store, prompts="qs", candidates=[cand(broken)], judge=AutoJudge(), name="ev2", backoff_s=0
    )
    assert report.failed == 12 and report.done == 0 and not store.has_dataset("ev2")
    again = await run_eval(store, prompts="qs", candidates=[cand(broken)], judge=AutoJudge(), name="ev2")
    assert again.done == 12 and len(records(store, "ev2")) == 12  # failed cells are retried by a rerun


class FlakyJudge:
    name = "flaky-judge"

    def __init__(self) -> None:
        self.calls = 0

    async def judge(self, item: JudgeInput) -> Verdict:
        self.calls += 1
        if self.calls <= 3:
            return Verdict(score=None, label="judge_failure", judge=self.name, attempts=3)
        return Verdict(score=1.0, label="correct", judge=self.name)


async def test_judge_failures_are_stored_unscored_and_rejudged(store: Store) -> None:
    judge = FlakyJudge()
    report = await run_eval(
        store, prompts="qs", candidates=[cand(ScriptedModel("m", RIGHT))], judge=judge, name="ev"
    )
    assert report.judge_failures == 3 and report.done == 12
    recs = records(store, "ev")
    failed = [r for r in recs if r.score is None]
    assert len(failed) == 3 and all("verdict:judge_failure" in (r.tags or []) for r in failed)
    again = await run_eval(
        store, prompts="qs", candidates=[cand(ScriptedModel("m", RIGHT))], judge=judge, name="ev"
    )
    assert again.skipped == 9 and again.done == 3
    assert all(r.score == 1.0 for r in records(store, "ev"))


async def test_bad_arguments(store: Store) -> None:
    m = ScriptedModel("m", RIGHT)
    with pytest.raises(ValidationError):
        await run_eval(store, prompts="qs", candidates=[cand(m)], judge=AutoJudge(), name="ev", concurrency=0)
    with pytest.raises(ValidationError):
        await run_eval(store, prompts="qs", candidates=[cand(m), cand(m)], judge=AutoJudge(), name="ev")


def test_prompt_files_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps({"id": "a", "question": "2+2?", "answer": 4, "subject": "math", "level": 1})
        + "\n"
        + json.dumps({"prompt": "Pick", "choices": ["x", "y"], "reference": "B", "split": "test"})
        + "\n",
        encoding="utf-8",
    )
    items = list(read_prompt_file(jsonl))
    assert items[0].key == "a" and items[0].reference == "4" and items[0].category == "math"
    assert items[0].metadata == {"level": 1}
    assert items[1].choices == ["x", "y"] and items[1].split == "test" and len(items[1].key) == 32
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("key,text,reference,choices\nk1,Colour?,red,red|blue\n", encoding="utf-8")
    (only,) = read_prompt_file(csv_file)
    assert only.choices == ["red", "blue"] and only.reference == "red"


def test_cli_prompts_import_show_generate(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "2+2?", "answer": "4"}) + "\n", encoding="utf-8")
    assert main(["data", "prompts", "import", str(path), "--name", "mine"]) == 0
    assert main(["data", "prompts", "generate", "--name", "suite", "--size", "30", "--json"]) == 0
    capsys.readouterr()
    assert main(["data", "prompts", "show", "suite", "--limit", "3", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == 3 and all(row["reference"] for row in shown)
    assert main(["data", "prompts", "list", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"mine", "suite"} <= names
    assert main(["eval", "run", "--prompts", "suite", "--models", "no-such-model", "--name", "ev"]) == 2


async def test_llm_judge_cost_and_tags_are_recorded(store: Store) -> None:
    from routerforge.judges import PairwiseJudge

    class AlwaysFirst(ScriptedModel):
        async def complete(self, request: ChatRequest) -> ChatResult:
            return ChatResult(text="[[A]]", model="judge", cost_usd=0.01)

    prompts = [PromptItem(key="q", text="Capital of France?", metadata={"reference_answer": "Paris"})]
    judge = PairwiseJudge(AlwaysFirst("judge", {}))
    report = await run_eval(
        store, prompts=prompts, candidates=[cand(ScriptedModel("m", {}))], judge=judge, name="pw"
    )
    assert report.cost_usd == pytest.approx(0.0)  # "I don't know" is not sent to the judge
    answers = {"Capital of France?": "Lyon"}
    report = await run_eval(
        store, prompts=prompts, candidates=[cand(ScriptedModel("n", answers))], judge=judge, name="pw"
    )
    assert report.cost_usd == pytest.approx(0.02)  # two orders, one judge call each
    (rec,) = [r for r in records(store, "pw") if r.model == "n"]
    assert rec.score == 0.5 and "position_inconsistent:1" in (rec.tags or [])


def _one_line_error(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_cli_prompt_files_that_are_wrong_fail_in_one_line_and_write_nothing(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "truncated.csv").write_text('prompt,answer\n"never closed,1\n', encoding="utf-8")
    (tmp_path / "extra.csv").write_text("prompt,answer\nq,a,surplus\n", encoding="utf-8")
    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{oops\n', encoding="utf-8")
    cases = {
        "folder": "is a folder",
        "empty.jsonl": "holds no prompts",
        "truncated.csv": "truncated.csv:2: malformed CSV",
        "extra.csv": "extra.csv:2: row has 3 fields",
        "latin1.jsonl": "latin1.jsonl:1: not UTF-8 text",
        "bad.jsonl": "bad.jsonl:2: invalid JSON",
    }
    for name, expected in cases.items():
        code = main(["data", "prompts", "import", str(tmp_path / name), "--name", "p"])
        err = capsys.readouterr().err
        assert code == 2 and expected in _one_line_error(err), (name, err)
    assert main(["data", "prompts", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_eval_run_wrong_inputs_fail_in_one_line(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "prompts", "generate", "--name", "suite", "--size", "2", "--json"]) == 0
    assert main(["data", "prompts", "generate", "--name", "none", "--kinds", ",,"]) == 2
    assert "names no task kind" in _one_line_error(capsys.readouterr().err)
    broken = tmp_path / "broken.yaml"
    broken.write_text("type: [\n", encoding="utf-8")
    weights = tmp_path / "weights.yaml"
    weights.write_text(
        "type: rubric\njudge_model: m\nrubric:\n  dimensions:\n    - {name: a, weight: heavy}\n",
        encoding="utf-8",
    )
    base = ["eval", "run", "--prompts", "suite", "--models", "m", "--no-progress"]
    cases = [
        ([*base, "--name", " "], "non-empty name"),
        (["eval", "run", "--prompts", "nope", "--models", "m", "--name", "e"], "No dataset named 'nope'"),
        ([*base, "--name", "e"], "No model named 'm'"),
        (["eval", "run", "--prompts", "suite", "--models", "a,b,a", "--name", "e"], "lists a more than once"),
    ]
    capsys.readouterr()
    for argv, expected in cases:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and expected in _one_line_error(err), (argv, err)
    assert main(["models", "add", "m", "--base-url", "http://127.0.0.1:9/v1", "--no-lookup"]) == 0
    for judge, expected in [(broken, "is not valid yaml"), (weights, "could not convert")]:
        code = main([*base, "--name", "e", "--judge", str(judge)])
        err = capsys.readouterr().err
        assert code == 2 and expected in _one_line_error(err), err


def test_cli_eval_run_where_every_call_fails_exits_non_zero(
    rf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "prompts", "generate", "--name", "suite", "--size", "1"]) == 0
    # port 9 (discard) on loopback: nothing listens, the connection is refused at once
    assert main(["models", "add", "dead", "--base-url", "http://127.0.0.1:9/v1", "--no-lookup"]) == 0
    capsys.readouterr()
    code = main(["eval", "run", "--prompts", "suite", "--models", "dead", "--name", "e", "--no-progress"])
    out, err = capsys.readouterr()
    assert code != 0 and "dead" in out  # the report table (mean score "-") is printed first
    assert "All 1 calls failed" in _one_line_error(err)
