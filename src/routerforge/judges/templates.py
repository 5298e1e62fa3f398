"""Judges from names and template files (YAML or JSON).

A built-in name (``auto``, ``exact``, ``contains``, ``contains-cs``, ``numeric``, ``choice``, ``option``)
or a file such as::

    name: graded-facts
    type: rubric              # exact | contains | numeric | choice | option | regex | auto | rubric | pairwise
    judge_model: my-judge     # rubric/pairwise: a model id the caller's backend factory can build
    rubric:
      scale: [1, 5]
      threshold: 0.6
      dimensions:
        - {name: correctness, weight: 3, description: Is the answer right?}
        - {name: clarity, weight: 1}

``type: rubric`` with ``pulze_template: PATH`` imports a Pulze evaluation template as the rubric.
Pairwise templates take ``reference_model`` (or prompts carrying ``reference_answer``) and ``repeats``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from routerforge.backends.base import ChatBackend
from routerforge.errors import ConfigError
from routerforge.judges.base import Judge
from routerforge.judges.llm import Dimension, PairwiseJudge, Rubric, RubricJudge, load_pulze_rubric
from routerforge.judges.rules import AutoJudge, ChoiceJudge, ExactJudge, NumericJudge, OptionJudge, RegexJudge

BackendFactory = Callable[[str], ChatBackend]

BUILTIN_JUDGES: dict[str, dict[str, Any]] = {
    "auto": {"type": "auto"},
    "exact": {"type": "exact"},
    "contains": {"type": "exact", "mode": "contains"},
    "contains-cs": {"type": "exact", "mode": "contains", "case_sensitive": True},
    "numeric": {"type": "numeric"},
    "choice": {"type": "choice"},
    "option": {"type": "option"},
}


def builtin_judges() -> list[str]:
    return sorted(BUILTIN_JUDGES)


def load_template(path: str | Path) -> dict[str, Any]:
    """Read a judge template file (``.yaml``/``.yml``/``.json``) into a mapping."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Judge template {file} does not exist.") from None
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"Judge template {file} is not valid {file.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Judge template {file} must hold a mapping at the top level.")
    if "evaluation_prompt" in data and "metrics_config" in data:  # a Pulze template file as it is
        return {
            "name": data.get("name") or file.stem,
            "type": "rubric",
            "pulze_template": str(file),
            "judge_model": data.get("rater_model"),
        }
    data.setdefault("name", file.stem)
    base = file.parent
    for key in ("pulze_template",):
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
            data[key] = str(base / data[key])
    return data


def build_judge(
    spec: str | Path | dict[str, Any],
    *,
    backend_factory: BackendFactory | None = None,
    judge_model: str | None = None,
) -> Judge:
    """A judge from a built-in name, a template path, or a template mapping.

    ``judge_model`` overrides the template's judge model (for LLM judges).
    """
    if isinstance(spec, dict):
        template = dict(spec)
    elif str(spec) in BUILTIN_JUDGES:
        template = {"name": str(spec), **BUILTIN_JUDGES[str(spec)]}
    elif Path(spec).suffix in (".yaml", ".yml", ".json"):
        template = load_template(spec)
    else:
        raise ConfigError(
            f"No judge named {str(spec)!r}.",
            hint=f"Use one of {', '.join(builtin_judges())} or the path of a YAML/JSON judge template.",
        )
    if judge_model:
        template["judge_model"] = judge_model
    try:
        return _from_template(template, backend_factory)
    except (TypeError, ValueError) as exc:  # a number or a list of the wrong kind in the template
        raise ConfigError(
            f"Judge {template.get('name')!r}: {exc}.", hint="Check the judge template."
        ) from exc


def _llm_backend(
    template: dict[str, Any], factory: BackendFactory | None, key: str = "judge_model"
) -> ChatBackend:
    model = template.get(key)
    if not isinstance(model, str) or not model:
        raise ConfigError(f"Judge {template.get('name')!r} needs {key}: the model that judges.")
    if factory is None:
        raise ConfigError(f"Judge {template.get('name')!r} calls a model, but no backend factory was given.")
    return factory(model)


def _rubric(template: dict[str, Any]) -> Rubric:
    if template.get("pulze_template"):
        return load_pulze_rubric(str(template["pulze_template"]))
    raw = template.get("rubric")
    if not isinstance(raw, dict):
        raise ConfigError(f"Judge {template.get('name')!r}: a rubric judge needs a 'rubric' mapping.")
    dims = []
    for entry in raw.get("dimensions") or []:
        if isinstance(entry, str):
            dims.append(Dimension(entry))
        elif isinstance(entry, dict) and entry.get("name"):
            dims.append(
                Dimension(str(entry["name"]), float(entry.get("weight", 1.0)), entry.get("description"))
            )
        else:
            raise ConfigError(f"Judge {template.get('name')!r}: bad rubric dimension {entry!r}.")
    scale = raw.get("scale", [1, 5])
    if not (isinstance(scale, list | tuple) and len(scale) == 2):
        raise ConfigError(f"Judge {template.get('name')!r}: rubric scale must be [low, high].")
    return Rubric(
        name=str(template.get("name", "rubric")),
        dimensions=tuple(dims),
        scale=(float(scale[0]), float(scale[1])),
        instructions=str(raw.get("instructions") or ""),
        threshold=float(raw.get("threshold", 0.5)),
    )


def _from_template(template: dict[str, Any], factory: BackendFactory | None) -> Judge:
    kind = template.get("type", "auto")
    name = str(template.get("name", kind))
    try:
        if kind == "auto":
            return AutoJudge(name=name)
        if kind == "exact":
            return ExactJudge(
                mode=template.get("mode", "exact"),
                case_sensitive=bool(template.get("case_sensitive", False)),
                name=name,
            )
        if kind == "contains":
            return ExactJudge(
                mode="contains", case_sensitive=bool(template.get("case_sensitive", False)), name=name
            )
        if kind == "numeric":
            return NumericJudge(
                abs_tol=float(template.get("abs_tol", 1e-6)),
                rel_tol=float(template.get("rel_tol", 0.0)),
                name=name,
            )
        if kind == "choice":
            return ChoiceJudge(labels=template.get("labels", "letters"), name=name)
        if kind == "option":
            return OptionJudge(case_sensitive=bool(template.get("case_sensitive", False)), name=name)
        if kind == "regex":
            return RegexJudge(
                pattern=str(template.get("pattern", "")),
                ignore_case=bool(template.get("ignore_case", True)),
                name=name,
            )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Judge {name!r}: {exc}") from exc
    attempts = int(template.get("max_attempts", 3))
    temperature = float(template.get("temperature", 0.0))
    dont_know = bool(template.get("detect_dont_know", True))
    if kind == "rubric":
        return RubricJudge(
            _llm_backend(template, factory),
            _rubric(template),
            name=name,
            max_attempts=attempts,
            temperature=temperature,
            detect_dont_know=dont_know,
        )
    if kind == "pairwise":
        reference = (
            _llm_backend(template, factory, "reference_model") if template.get("reference_model") else None
        )
        return PairwiseJudge(
            _llm_backend(template, factory),
            reference_backend=reference,
            reference_model=template.get("reference_model"),
            repeats=int(template.get("repeats", 1)),
            name=name,
            max_attempts=attempts,
            temperature=temperature,
            detect_dont_know=dont_know,
        )
    raise ConfigError(
        f"Judge {name!r} has unknown type {kind!r}.",
        hint="Types: auto, exact, contains, numeric, choice, option, regex, rubric, pairwise.",
    )
