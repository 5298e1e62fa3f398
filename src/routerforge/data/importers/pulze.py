"""Pulze evaluation results (JSONL) and Pulze evaluation templates (JSON).

Results: one line per answer with ``question``, ``answering_model``, ``overall_score`` (0-1, their judge),
dimension grades 0-10 (normalised to [0, 1] in ``dimensions``), ``label``, ``gold_answer`` (kept as the
prompt's reference; the numbered options after ``### Choices:`` become ``choices``) and ``model_answer``
(the response). The prompt key is the text hash of the question,
so the same question answered by several models is one prompt. The category is the subject at the end of
the file name (``<template>_<model>_<subject>.jsonl``) when it can be told apart from the model's name.

Scores: ``pulze_score="judge"`` (the default) keeps Pulze's ``overall_score``, which is lenient (1,985 of
the 1,995 v1 answers are labelled correct); ``"strict"`` scores 1 when the option the answer picks
(:func:`routerforge.data.answers.extract_numbered_option`: a stated label, ``\boxed{}``, or the option
text) is the ``gold_answer`` and 0 otherwise (an answer that commits to no option scores 0); the judge's
score is then kept as the ``pulze_judge`` dimension. Without numbered options the gold answer must occur
in the answer as whole words.

Templates: :func:`load_pulze_template` gives a plain :class:`PulzeTemplate` (rubric prompt, dimensions with
weights, pass threshold) that the judges layer turns into an LLM-judge rubric.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routerforge.data.answers import contains_phrase, extract_numbered_option
from routerforge.data.importers.base import ReadContext, iter_jsonl, parse_float, parse_score
from routerforge.data.records import EvalRecord, text_hash
from routerforge.errors import DataError

SUFFIXES = (".jsonl",)
SCORE_MODES = ("judge", "strict")
DIMENSION_SCALE = (0.0, 10.0)
REQUIRED = ("question", "answering_model", "overall_score")
# Fields of a result line that are not dimension grades.
_NOT_DIMENSIONS = {
    "question",
    "gold_answer",
    "model_answer",
    "answering_model",
    "overall_score",
    "label",
    "created_at",
    "evaluation_result_id",
    "evaluation_run_id",
    "dataset_item_id",
    "template_id",
    "model_response",
    "rater_response",
    "metrics_scores",
}


def model_slug(model: str) -> str:
    """Pulze's file-name form of a model id: ``google/gemini-2.5-pro`` → ``googlegemini_25_pro``."""
    return re.sub(r"[^a-z0-9_]", "", model.lower().replace("-", "_"))


def subject_of(path: Path, model: str) -> str | None:
    slug = f"_{model_slug(model)}_"
    stem = path.stem
    if slug in stem:
        return stem.rsplit(slug, 1)[1] or None
    return None


_CHOICES = re.compile(r"###\s*Choices:\s*(.*)$", re.DOTALL)
_CHOICE_SPLIT = re.compile(r"(?:^|\s)(\d+)\)\s")


def choices_of(question: str) -> list[str] | None:
    """``"... ### Choices: 0) a 1) b"`` → ``["a", "b"]`` (None when the options are not numbered 0, 1, ...)."""
    found = _CHOICES.search(question)
    if found is None:
        return None
    parts = _CHOICE_SPLIT.split(found.group(1))
    numbers, options = parts[1::2], [p.strip() for p in parts[2::2]]
    if parts[0].strip() or not options or numbers != [str(i) for i in range(len(options))]:
        return None
    return options


def strict_score(question: str, gold: Any, answer: Any) -> float:
    """1.0 when ``answer`` picks the ``gold`` option of ``question`` (or names a free-form gold), else 0.0."""
    text = answer if isinstance(answer, str) else ""
    wanted = str(gold).strip()
    choices = choices_of(question)
    if choices and wanted.isdigit():
        return 1.0 if extract_numbered_option(text, choices) == int(wanted) else 0.0
    return 1.0 if contains_phrase(text, wanted) else 0.0


def read(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    if ctx.pulze_score not in SCORE_MODES:
        raise DataError(
            f"Unknown Pulze score {ctx.pulze_score!r}.", hint=f"Use one of: {', '.join(SCORE_MODES)}."
        )
    for file in ctx.files(path, SUFFIXES, exclude_dirs=("templates", "data")):
        yield from _read_file(file, ctx)


def _read_file(file: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    where = str(file)
    for line, obj in iter_jsonl(file, ctx):
        try:
            record = _record(obj, where, line, ctx)
        except DataError as exc:
            ctx.reject(exc)
            continue
        ctx.report.records += 1
        yield record


def _record(obj: dict[str, Any], where: str, line: int, ctx: ReadContext) -> EvalRecord:
    for name in REQUIRED:
        if obj.get(name) is None:
            raise DataError(f"missing {name!r}", path=where, line=line, column=name)
    question, model = obj["question"], obj["answering_model"]
    if not isinstance(question, str) or not question.strip():
        raise DataError("'question' must be a non-empty string", path=where, line=line, column="question")
    if not isinstance(model, str) or not model.strip():
        raise DataError(
            "'answering_model' must be a non-empty string", path=where, line=line, column="answering_model"
        )
    score = parse_score(obj["overall_score"], ctx.scale, path=where, line=line, column="overall_score")
    dimensions: dict[str, float] = {}
    raw_metrics = obj.get("metrics_scores")
    metrics: dict[str, Any] = raw_metrics if isinstance(raw_metrics, dict) else {}
    for name, value in [*obj.items(), *metrics.items()]:
        if name in _NOT_DIMENSIONS or isinstance(value, str | dict | list) or value is None:
            continue
        grade = parse_score(value, DIMENSION_SCALE, path=where, line=line, column=name)
        if grade is not None:
            dimensions[name] = grade
    label = obj.get("label")
    template_id = obj.get("template_id")
    gold = obj.get("gold_answer")
    answer = obj.get("model_answer", obj.get("model_response"))
    judge = f"pulze-template:{template_id}" if template_id else "pulze"
    if ctx.pulze_score == "strict":
        if gold is None or not str(gold).strip():
            raise DataError(
                "--pulze-score strict needs a 'gold_answer'", path=where, line=line, column="gold_answer"
            )
        if score is not None:
            dimensions["pulze_judge"] = score
        score = strict_score(question, gold, answer)
        judge = "pulze-strict-option-match"
    return EvalRecord(
        prompt_key=text_hash(question),
        prompt=question,
        model=model,
        score=score,
        response=answer if isinstance(answer, str) else None,
        dimensions=dimensions or None,
        judge=judge,
        source=where,
        category=subject_of(Path(where), model),
        reference=str(gold) if gold is not None else None,
        choices=choices_of(question),
        tags=[str(label)] if label else None,
        latency_ms=parse_float(obj.get("latency_ms"), path=where, line=line, column="latency_ms"),
    )


# -- templates ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RubricDimension:
    name: str
    weight: float = 1.0
    description: str | None = None


@dataclass(frozen=True)
class PulzeTemplate:
    """A Pulze multi-dimensional evaluation template as plain data.

    ``overall = sum(weight * grade / 10) / sum(weight)``; an answer passes when overall ≥ ``threshold``.
    ``prompt`` is the judge's instruction; ``scale`` the grade range of each dimension.
    """

    name: str
    prompt: str
    dimensions: list[RubricDimension]
    threshold: float | None = None
    description: str | None = None
    rater_model: str | None = None
    scale: tuple[float, float] = DIMENSION_SCALE
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def overall(self, grades: dict[str, float]) -> float:
        """The overall score in [0, 1] from raw dimension grades (missing dimensions are left out)."""
        lo, hi = self.scale
        pairs = [(d.weight, (grades[d.name] - lo) / (hi - lo)) for d in self.dimensions if d.name in grades]
        total = sum(w for w, _ in pairs)
        if not pairs or total <= 0:
            raise DataError(f"No grades for the dimensions of template {self.name!r}.")
        return sum(w * g for w, g in pairs) / total

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "rater_model": self.rater_model,
            "threshold": self.threshold,
            "scale": list(self.scale),
            "dimensions": [
                {"name": d.name, "weight": d.weight, "description": d.description} for d in self.dimensions
            ],
            "prompt": self.prompt,
        }


_CRITERION = re.compile(r"^\s*-\s*([A-Za-z][\w ]*?)\s*:\s*(.+?)\s*$", re.MULTILINE)


def load_pulze_template(path: str | Path) -> PulzeTemplate:
    """Parse a Pulze evaluation template JSON file into a :class:`PulzeTemplate`."""
    file = Path(path)
    where = str(file)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{where} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=where, line=exc.lineno) from None
    if not isinstance(raw, dict):
        raise DataError("a Pulze template is a JSON object", path=where)
    prompt = raw.get("evaluation_prompt")
    config = raw.get("metrics_config")
    if not isinstance(prompt, str) or not isinstance(config, dict):
        raise DataError(
            "not a Pulze evaluation template (needs 'evaluation_prompt' and 'metrics_config')", path=where
        )
    metrics = config.get("metrics") or []
    raw_weights = config.get("weights")
    weights: dict[str, Any] = raw_weights if isinstance(raw_weights, dict) else {}
    descriptions = {m.group(1).strip().lower(): m.group(2) for m in _CRITERION.finditer(prompt)}
    dimensions: list[RubricDimension] = []
    for item in metrics:
        if isinstance(item, dict):  # {"name": ..., "weight": ...}
            name = str(item.get("name"))
            weight = float(item.get("weight", 1.0))
        else:
            name = str(item)
            weight = float(weights.get(name, 1.0))
        dimensions.append(RubricDimension(name, weight, descriptions.get(name.lower())))
    if not dimensions:
        raise DataError("the template lists no metrics", path=where, column="metrics_config.metrics")
    threshold = config.get("threshold")
    return PulzeTemplate(
        name=str(raw.get("name") or file.stem),
        prompt=prompt,
        dimensions=dimensions,
        threshold=float(threshold) if threshold is not None else None,
        description=raw.get("description"),
        rater_model=raw.get("rater_model"),
        raw=raw,
    )
