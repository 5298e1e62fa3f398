"""Pairwise preference battles (Chatbot Arena style), JSONL or CSV.

One row per battle: ``prompt``, ``model_a``, ``model_b``, ``winner`` ∈ {``model_a``, ``model_b``, ``tie``,
``tie (bothbad)``} (also ``a``/``b``, ``bothbad``, or the winning model's name; or the one-hot columns
``winner_model_a``/``winner_model_b``/``winner_tie`` of the Kaggle arena sets). Optional: ``id`` (or
``battle_id``), ``judge``, ``turn``, ``language``, ``category``, ``split``, ``question_id``,
``response_a``/``response_b``. Instead of ``prompt``: ``conversation_a`` (a list of ``{"role",
"content"}`` messages, as in ``chatbot_arena_conversations`` and ``mt_bench_human_judgments``), or a
``question_id`` looked up in ``--questions``. A prompt given as a list of turns (or the JSON text of
one) becomes the user's turns 1..``turn`` joined by a blank line; ``turn`` defaults to all of them.

**How a battle is stored.** The store holds pointwise records (prompt × model → score), so a battle is
one prompt of its own (key: ``id``, else a hash of its fields) with exactly two records: the winner 1
and the loser 0, 0.5 each for a tie, 0 each for ``tie (bothbad)``. The prompt's metadata keeps
``battle_id``, ``model_a``, ``model_b``, ``winner`` (and ``turn``, ``language``, ``question_id`` and the
other scalar columns). Because every row of the score matrix then holds exactly one comparison, the
pairwise learners read the battles back exactly: ``sw`` and ``mf --param mode=pairwise`` compare only
the two models scored on a row (higher score wins, equal scores tie), so the matrix trains them on the
very battles of the file. Pointwise learners (``knn``, ``mlp``, pointwise ``mf``) see each model's
share of battles won on similar prompts: an approximation that depends on who the opponents were.
Identical prompt texts of different battles are grouped by every split and fold (no leakage).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import ReadContext, parse_int, parse_score
from routerforge.data.importers.mtbench import Question, load_questions
from routerforge.data.importers.rows import iter_rows, json_value, reject, text_list
from routerforge.data.records import EvalRecord, text_hash
from routerforge.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
OUTCOMES = ("model_a", "model_b", "tie", "tie (bothbad)")
SCORES = {"model_a": (1.0, 0.0), "model_b": (0.0, 1.0), "tie": (0.5, 0.5), "tie (bothbad)": (0.0, 0.0)}
_WINNER_WORDS = {
    "model_a": "model_a",
    "a": "model_a",
    "model_b": "model_b",
    "b": "model_b",
    "tie": "tie",
    "draw": "tie",
    "tie (bothbad)": "tie (bothbad)",
    "tie(bothbad)": "tie (bothbad)",
    "bothbad": "tie (bothbad)",
    "both_bad": "tie (bothbad)",
    "tie_bothbad": "tie (bothbad)",
}
ONE_HOT = ("winner_model_a", "winner_model_b", "winner_tie")
FIELDS = (
    "id",
    "battle_id",
    "question_id",
    "prompt",
    "model_a",
    "model_b",
    "winner",
    *ONE_HOT,
    "judge",
    "turn",
    "language",
    "category",
    "split",
    "response_a",
    "response_b",
    "conversation_a",
    "conversation_b",
)
_IN_RECORD = {"id", "battle_id", "prompt", "winner", *ONE_HOT, "judge", "category", "split"}
_IN_RECORD |= {"response_a", "response_b", "conversation_a", "conversation_b"}


def looks_like_battles(columns: list[str]) -> bool:
    keys = set(columns)
    return {"model_a", "model_b"} <= keys and (
        "winner" in keys or {"winner_model_a", "winner_model_b"} <= keys
    )


def read_jsonl(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    yield from _read(path, ctx, JSONL_SUFFIXES)


def read_csv(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    yield from _read(path, ctx, CSV_SUFFIXES)


def _read(path: Path, ctx: ReadContext, suffixes: tuple[str, ...]) -> Iterator[EvalRecord]:
    questions = load_questions(ctx.options.questions) if ctx.options.questions is not None else None
    seen: Counter[str] = Counter()
    winners: Counter[str] = Counter()
    dropped: set[str] = set()
    details = ctx.report.details
    details["scores"] = "winner 1, loser 0; tie 0.5 each; tie (bothbad) 0 each"
    details["battles"] = 0
    for file in ctx.files(path, suffixes):
        where = str(file)
        from_csv = file.suffix.lower() == ".csv"
        for line, obj in iter_rows(file, ctx):
            try:
                pair = _battle(obj, where, line, from_csv, questions, seen, dropped)
            except DataError as exc:
                reject(ctx, exc)
                continue
            winners[str(pair[0].metadata["winner"])] += 1
            details["battles"] += 1
            details["winners"] = {k: winners[k] for k in OUTCOMES}
            if dropped:
                details["columns_not_kept"] = sorted(dropped)
            ctx.report.records += 2
            yield from pair


def _winner(obj: dict[str, Any], model_a: str, model_b: str, where: str, line: int) -> str:
    if "winner" in obj and obj["winner"] not in (None, ""):
        raw = obj["winner"]
        if not isinstance(raw, str):
            raise DataError(f"winner {raw!r} is not a text", path=where, line=line, column="winner")
        word = raw.strip()
        outcome = _WINNER_WORDS.get(word.lower())
        if outcome is None and word in (model_a, model_b):
            outcome = "model_a" if word == model_a else "model_b"
        if outcome is None:
            raise DataError(
                f"winner {raw!r} is not one of: {', '.join(OUTCOMES)} (or the name of model_a or model_b)",
                path=where,
                line=line,
                column="winner",
            )
        return outcome
    if any(c in obj for c in ONE_HOT):
        flags = [parse_score(obj.get(c), None, path=where, line=line, column=c) for c in ONE_HOT]
        set_flags = [o for o, f in zip(("model_a", "model_b", "tie"), flags, strict=True) if f == 1.0]
        if len(set_flags) != 1:
            raise DataError(
                f"exactly one of {', '.join(ONE_HOT)} must be 1",
                path=where,
                line=line,
                column="winner_model_a",
            )
        return set_flags[0]
    raise DataError("missing 'winner'", path=where, line=line, column="winner")


def _turns(
    obj: dict[str, Any], from_csv: bool, questions: dict[str, Question] | None, where: str, line: int
) -> tuple[list[str], list[str] | None, list[str] | None, Question | None]:
    """(user turns, model_a's answers, model_b's answers, the question) of a battle."""
    answers: list[list[str] | None] = []
    conversations = [json_value(obj.get(f"conversation_{s}"), from_csv=from_csv) for s in "ab"]
    for side, conversation in zip("ab", conversations, strict=True):
        response = obj.get(f"response_{side}")
        listed = text_list(response)
        if listed is None and isinstance(response, str) and response:
            listed = [response]
        if listed is None and isinstance(conversation, list):
            listed = [
                str(m.get("content", ""))
                for m in conversation
                if isinstance(m, dict) and m.get("role") == "assistant"
            ] or None
        answers.append(listed)
    prompt = obj.get("prompt")
    turns = text_list(prompt)
    if turns is None and isinstance(prompt, str) and prompt.strip():
        turns = [prompt]
    if turns is None and isinstance(conversations[0], list):
        turns = [
            str(m.get("content", ""))
            for m in conversations[0]
            if isinstance(m, dict) and m.get("role") == "user"
        ] or None
    question = None
    qid = obj.get("question_id")
    if questions is not None and qid not in (None, ""):
        question = questions.get(str(qid))
        if turns is None and question is None:
            raise DataError(
                f"question_id {qid} is not in the --questions file",
                path=where,
                line=line,
                column="question_id",
            )
        if turns is None and question is not None:
            turns = question.turns
    if not turns or not any(t.strip() for t in turns):
        raise DataError(
            "no prompt: give 'prompt', 'conversation_a', or a 'question_id' with --questions",
            path=where,
            line=line,
            column="prompt",
        )
    return turns, answers[0], answers[1], question


def _battle(
    obj: dict[str, Any],
    where: str,
    line: int,
    from_csv: bool,
    questions: dict[str, Question] | None,
    seen: Counter[str],
    dropped: set[str],
) -> tuple[EvalRecord, EvalRecord]:
    names = []
    for column in ("model_a", "model_b"):
        value = obj.get(column)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{column!r} must be a non-empty string", path=where, line=line, column=column)
        names.append(value.strip())
    model_a, model_b = names
    if model_a == model_b:
        raise DataError(
            f"model_a and model_b are the same model ({model_a!r}); a battle needs two",
            path=where,
            line=line,
            column="model_b",
        )
    outcome = _winner(obj, model_a, model_b, where, line)
    turns, answers_a, answers_b, question = _turns(obj, from_csv, questions, where, line)
    turn_value = obj.get("turn")
    turn = (
        parse_int(turn_value, path=where, line=line, column="turn") if turn_value not in (None, "") else None
    )
    if turn is not None and turn < 1:
        raise DataError(f"turn {turn} is not a turn number (1, 2, ...)", path=where, line=line, column="turn")
    upto = len(turns) if turn is None else min(turn, len(turns))
    text = "\n\n".join(turns[:upto])
    metadata: dict[str, Any] = {}
    for key, value in obj.items():
        if key in _IN_RECORD or key in ("model_a", "model_b"):
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            if value not in (None, ""):
                metadata[key] = value
        else:
            dropped.add(key)
    if turn is not None:
        metadata["turn"] = turn
    battle_id = obj.get("id", obj.get("battle_id"))
    if battle_id in (None, ""):
        fields = [text, model_a, model_b, obj.get("question_id"), obj.get("judge"), turn, obj.get("tstamp")]
        digest = text_hash("\x1f".join("" if f is None else str(f) for f in fields))
        seen[digest] += 1
        battle_id = digest if seen[digest] == 1 else f"{digest}#{seen[digest]}"
    key = str(battle_id)
    metadata.update(battle_id=key, model_a=model_a, model_b=model_b, winner=outcome)
    judge = obj.get("judge")
    category = obj.get("category")
    split = obj.get("split")
    common: dict[str, Any] = {
        "prompt_key": key,
        "prompt": text,
        "judge": str(judge) if judge not in (None, "") else None,
        "source": where,
        "split": str(split) if split not in (None, "") else None,
        "category": str(category)
        if category not in (None, "")
        else (question.category if question else None),
        "metadata": metadata,
    }
    score_a, score_b = SCORES[outcome]
    return (
        EvalRecord(model=model_a, score=score_a, response=_joined(answers_a, upto), **common),
        EvalRecord(model=model_b, score=score_b, response=_joined(answers_b, upto), **common),
    )


def _joined(answers: list[str] | None, upto: int) -> str | None:
    if not answers:
        return None
    return "\n\n".join(answers[:upto]) or None
