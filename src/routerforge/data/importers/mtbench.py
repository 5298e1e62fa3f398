"""MT-Bench single-answer judgements: FastChat's ``model_judgment/<judge>_single.jsonl``.

One line per (question, model, turn): ``{"question_id": 81, "model": "vicuna-13b-v1.3", "judge":
["gpt-4", "single-v1"], "user_prompt": "...", "judgment": "... Rating: [[7]]", "score": 7, "turn": 1}``.
Each line is one eval record of prompt ``<question_id>/turn<turn>``: the judge's 1–10 rating normalised
to [0, 1] as ``(score − 1) / 9`` (``--score-scale`` declares another range). A score of −1 (FastChat's
mark for a judgement with no parsable rating) is a bad row.

The prompt of turn *t* is the user's turns 1..*t* joined by a blank line (what the conversation holds when
the routing decision for turn *t* is made). They come from a questions file (``--questions
question.jsonl``: ``question_id``, ``turns``, optional ``category`` and ``reference``) when one is given,
else from the judge prompt (``user_prompt``) of the line. The model's answer is read from the judge
prompt too (record ``response``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import (
    ReadContext,
    ReadReport,
    Scale,
    find_files,
    iter_jsonl,
    parse_int,
    parse_score,
)
from routerforge.data.importers.rows import columns_of, iter_rows, reject, text_list
from routerforge.data.records import EvalRecord
from routerforge.errors import DataError

SUFFIXES = (".jsonl", ".ndjson")
DEFAULT_SCALE: Scale = (1.0, 10.0)
REQUIRED = ("question_id", "model", "score")
FIELDS = ("question_id", "model", "judge", "score", "turn", "user_prompt", "judgment")

_SINGLE_QUESTION = re.compile(r"\[Question\]\n(.*?)\n\n\[The Start of ", re.DOTALL)
_SINGLE_ANSWER = re.compile(
    r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.DOTALL
)
_CONVERSATION = "<|The Start of Assistant A's Conversation with User|>"
_USER_TURN = re.compile(r"### User:\n(.*?)\n\n### Assistant A:", re.DOTALL)
_ASSISTANT_TURN = re.compile(
    r"### Assistant A:\n(.*?)(?=\n\n### User:|\n\n<\|The End of Assistant A's Conversation)", re.DOTALL
)


@dataclass(frozen=True)
class Question:
    """One question of a questions file: its user turns, category and reference answers per turn."""

    turns: list[str]
    category: str | None = None
    references: list[str] | None = None


def load_questions(path: Path) -> dict[str, Question]:
    """``question_id`` → :class:`Question` from a JSONL file (MT-Bench's ``question.jsonl``).

    A line needs ``question_id`` and ``turns`` (a list of strings; ``prompt``, ``question`` or ``text``
    are read as a single turn).
    """
    if not path.is_file():
        raise DataError(f"{path} does not exist.", hint="Check the path given to --questions.")
    report_ctx = ReadContext(report=ReadReport(format="questions"), strict=True)
    out: dict[str, Question] = {}
    for line, obj in iter_jsonl(path, report_ctx):
        qid = obj.get("question_id")
        if qid is None or isinstance(qid, bool | dict | list):
            raise DataError(
                "a question needs a 'question_id'", path=str(path), line=line, column="question_id"
            )
        turns = text_list(obj.get("turns"))
        if turns is None:
            single = next(
                (obj[k] for k in ("prompt", "question", "text") if isinstance(obj.get(k), str)), None
            )
            turns = [single] if single else None
        if not turns:
            raise DataError(
                "a question needs 'turns' (a list of strings)", path=str(path), line=line, column="turns"
            )
        refs = obj.get("reference")
        category = obj.get("category")
        out[str(qid)] = Question(
            turns=turns,
            category=str(category) if isinstance(category, str | int) and category != "" else None,
            references=[str(r) for r in refs] if isinstance(refs, list) else None,
        )
    if not out:
        raise DataError(f"{path} holds no questions.", hint="Pass MT-Bench's question.jsonl to --questions.")
    return out


def user_turns(user_prompt: str) -> list[str]:
    """The user's turns quoted in a FastChat judge prompt ([] when it quotes none)."""
    if _CONVERSATION in user_prompt:
        return _USER_TURN.findall(user_prompt.split(_CONVERSATION, 1)[1])
    match = _SINGLE_QUESTION.search(user_prompt)
    return [match.group(1)] if match else []


def answer_of(user_prompt: str, turn: int) -> str | None:
    """The judged model's answer for ``turn`` quoted in a FastChat judge prompt."""
    if _CONVERSATION in user_prompt:
        answers = _ASSISTANT_TURN.findall(user_prompt.split(_CONVERSATION, 1)[1])
        return answers[turn - 1] if 0 < turn <= len(answers) else None
    match = _SINGLE_ANSWER.search(user_prompt)
    return match.group(1) if match else None


def looks_like_judgments(columns: list[str]) -> bool:
    return set(REQUIRED) <= set(columns) and ("turn" in columns or "user_prompt" in columns)


def read(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    questions = load_questions(ctx.options.questions) if ctx.options.questions is not None else None
    scale = ctx.scale or DEFAULT_SCALE
    details = ctx.report.details
    details["score_scale"] = f"{scale[0]:g}-{scale[1]:g}"
    details["normalised"] = f"(score - {scale[0]:g}) / {scale[1] - scale[0]:g}"
    details["prompt_text"] = str(ctx.options.questions) if questions is not None else "user_prompt"
    for judgments in _judgment_files(path, ctx):
        for file in ctx.files(judgments, SUFFIXES):
            where = str(file)
            for line, obj in iter_rows(file, ctx):
                try:
                    record = _record(obj, where, line, scale, questions)
                except DataError as exc:
                    reject(ctx, exc)
                    continue
                ctx.report.records += 1
                yield record


def _judgment_files(path: Path, ctx: ReadContext) -> list[Path]:
    """The judgement files: ``path`` itself, or the JSONL files under it that hold judgements (MT-Bench's
    data folder also holds questions, answers and pairwise judgements; those are listed as not read)."""
    if path.is_file():
        return [path]
    mapping = ctx.options.column_map
    found = []
    for file in find_files(path, SUFFIXES):
        columns = columns_of(file)
        if looks_like_judgments(mapping.renamed(columns) if mapping is not None else columns):
            found.append(file)
        else:
            ctx.report.details.setdefault("files_not_read", []).append(str(file))
    if not found:
        raise DataError(
            f"{path} holds no MT-Bench single-answer judgement files (JSONL lines with question_id, model, "
            "score and turn).",
            hint="Pass the judgement file itself, e.g. model_judgment/gpt-4_single.jsonl.",
        )
    return found


def _record(
    obj: dict[str, Any], where: str, line: int, scale: Scale, questions: dict[str, Question] | None
) -> EvalRecord:
    qid = obj.get("question_id")
    if qid is None or qid == "" or isinstance(qid, bool | dict | list):
        raise DataError("missing 'question_id'", path=where, line=line, column="question_id")
    qid = str(qid)
    model = obj.get("model")
    if not isinstance(model, str) or not model.strip():
        raise DataError("'model' must be a non-empty string", path=where, line=line, column="model")
    turn = parse_int(obj.get("turn", 1) or 1, path=where, line=line, column="turn") or 1
    if turn < 1:
        raise DataError(f"turn {turn} is not a turn number (1, 2, ...)", path=where, line=line, column="turn")
    raw = obj.get("score")
    if raw in (-1, "-1", -1.0):
        raise DataError(
            "the judge gave no rating (score -1, FastChat's mark for an unparsable judgement)",
            path=where,
            line=line,
            column="score",
        )
    score = parse_score(raw, scale, path=where, line=line, column="score")
    if score is None:
        raise DataError("missing 'score'", path=where, line=line, column="score")
    user_prompt = obj.get("user_prompt")
    user_prompt = user_prompt if isinstance(user_prompt, str) else ""
    category = reference = None
    if questions is not None:
        question = questions.get(qid)
        if question is None:
            raise DataError(
                f"question_id {qid} is not in the --questions file",
                path=where,
                line=line,
                column="question_id",
            )
        turns = question.turns
        category = question.category
        if question.references and turn <= len(question.references):
            reference = question.references[turn - 1]
    else:
        turns = user_turns(user_prompt)
    if len(turns) < turn:
        raise DataError(
            f"cannot find the user's turn {turn} of question {qid}"
            + (" in the --questions file" if questions is not None else " in 'user_prompt'"),
            path=where,
            line=line,
            column="user_prompt" if questions is None else "turn",
            hint="Pass MT-Bench's question.jsonl with --questions." if questions is None else None,
        )
    judge = obj.get("judge")
    if isinstance(judge, list):
        judge = "/".join(str(j) for j in judge)
    return EvalRecord(
        prompt_key=f"{qid}/turn{turn}",
        prompt="\n\n".join(turns[:turn]),
        model=model.strip(),
        score=score,
        response=answer_of(user_prompt, turn) if user_prompt else None,
        judge=str(judge) if judge not in (None, "") else None,
        source=where,
        category=category,
        reference=reference,
        metadata={"question_id": qid, "turn": turn},
    )
