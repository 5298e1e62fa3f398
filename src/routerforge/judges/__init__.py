"""Scoring answers: rule extractors, LLM-as-judge rubrics, pairwise comparison, the oracle matrix."""

from __future__ import annotations

from routerforge.judges.base import Judge, JudgeInput, Verdict, normalize_scale
from routerforge.judges.extract import extract_choice, extract_number, is_dont_know
from routerforge.judges.llm import (
    Dimension,
    PairwiseJudge,
    Rubric,
    RubricJudge,
    load_pulze_rubric,
    rubric_from_pulze,
)
from routerforge.judges.oracle import ORACLE_MATRIX, oracle_label, oracle_labels, outcome_of
from routerforge.judges.rules import AutoJudge, ChoiceJudge, ExactJudge, NumericJudge, OptionJudge, RegexJudge
from routerforge.judges.templates import build_judge, builtin_judges, load_template

__all__ = [
    "ORACLE_MATRIX",
    "AutoJudge",
    "ChoiceJudge",
    "Dimension",
    "ExactJudge",
    "Judge",
    "JudgeInput",
    "NumericJudge",
    "OptionJudge",
    "PairwiseJudge",
    "RegexJudge",
    "Rubric",
    "RubricJudge",
    "Verdict",
    "build_judge",
    "builtin_judges",
    "extract_choice",
    "extract_number",
    "is_dont_know",
    "load_pulze_rubric",
    "load_template",
    "normalize_scale",
    "oracle_label",
    "oracle_labels",
    "outcome_of",
    "rubric_from_pulze",
]
