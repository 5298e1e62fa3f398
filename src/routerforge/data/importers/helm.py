"""HELM per-instance results: one eval record per (instance, model), scored by one metric.

Two shapes:

* **HELM run folders** (``benchmark_output/runs/<suite>/<run>/``, or any folder above them): each run
  folder holding ``per_instance_stats.json`` or ``display_predictions.json`` is one model on one scenario.
  The model is ``run_spec.json``'s ``adapter_spec.model`` (else the ``model=`` argument of the folder
  name); the input texts come from ``instances.json`` (else ``scenario_state.json``); the model's answer
  from ``display_predictions.json``'s ``predicted_text``.
* **A flat file** (a JSON list or JSONL) of ``{"instance_id", "input", "model", "stats": {"exact_match":
  1.0, ...}}`` objects; optional ``scenario``, ``references``, ``predicted_text``, ``split``.

The score is the stat named by ``--metric`` (default ``exact_match``; its ``mean`` in HELM's stat lists),
normalised by ``--score-scale`` when it is not in [0, 1]. The prompt key is ``<scenario>/<instance id>``,
where the scenario is the run name without its ``model=``/``model_deployment=`` arguments, so every
model's run of a scenario lands on the same prompts; the scenario is also the category. The prompt is
the instance's input text (without HELM's few-shot examples and instructions); the multiple-choice
options go to ``choices`` and the correct reference to ``reference``. Perturbed instances (HELM's
robustness and fairness variants) are not imported and are counted as ``perturbed_not_imported``; several
train trials of one instance are duplicates resolved by ``--rule`` (``--rule mean`` averages them as
HELM does). A run whose stats lack the metric is an error that lists the metrics it has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerforge.data.importers.base import ReadContext, iter_jsonl, parse_score
from routerforge.data.records import EvalRecord
from routerforge.errors import DataError

STATS_FILES = ("per_instance_stats.json", "display_predictions.json")
RUN_FILES = (*STATS_FILES, "instances.json", "scenario_state.json", "run_spec.json")
_MODEL_ARGS = ("model", "model_deployment")


@dataclass(frozen=True)
class Instance:
    text: str
    reference: str | None = None
    choices: list[str] | None = None
    split: str | None = None


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in STATS_FILES)


def find_runs(path: Path) -> list[Path]:
    """Run folders at or under ``path`` (hidden folders skipped)."""
    found = {
        p.parent
        for name in STATS_FILES
        for p in path.rglob(name)
        if not any(part.startswith(".") for part in p.relative_to(path).parts)
    }
    return sorted(found)


def read(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    details = ctx.report.details
    details["metric"] = ctx.options.metric
    details.setdefault("runs", 0)
    details.setdefault("perturbed_not_imported", 0)
    if path.is_dir():
        runs = find_runs(path)
        if not runs:
            raise DataError(
                f"{path} holds no HELM run folders (folders with per_instance_stats.json or "
                "display_predictions.json).",
                hint="Point at benchmark_output/runs/<suite> or at one run folder.",
            )
        for run in runs:
            yield from _read_run(run, ctx)
    elif path.name in RUN_FILES:
        yield from _read_run(path.parent, ctx)
    else:
        yield from _read_flat(path, ctx)


# -- run folders ------------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at line {exc.lineno})", path=str(path)) from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path=str(path), hint="Save the file as UTF-8.") from None


def _run_args(name: str) -> tuple[str, dict[str, str]]:
    head, _, args = name.partition(":")
    parsed = {}
    for part in args.split(","):
        key, sep, value = part.partition("=")
        if sep:
            parsed[key.strip()] = value.strip()
    return head, parsed


def scenario_of(run_name: str) -> str:
    """``mmlu:subject=anatomy,method=multiple_choice_joint,model=openai_gpt-4`` → the same without ``model=``."""
    head, _, args = run_name.partition(":")
    kept = [p for p in args.split(",") if p and p.partition("=")[0].strip() not in _MODEL_ARGS]
    return head + (":" + ",".join(kept) if kept else "")


def _instance(obj: dict[str, Any]) -> Instance | None:
    raw = obj.get("input")
    text = raw.get("text") if isinstance(raw, dict) else raw
    if not isinstance(text, str) or not text.strip():
        return None
    refs = []
    correct = []
    for ref in obj.get("references") or []:
        if isinstance(ref, dict):
            output = ref.get("output")
            out_text = output.get("text") if isinstance(output, dict) else output
            if isinstance(out_text, str):
                refs.append(out_text)
                if "correct" in (ref.get("tags") or []):
                    correct.append(out_text)
        elif isinstance(ref, str):
            refs.append(ref)
    if not correct and len(refs) == 1:
        correct = refs
    split = obj.get("split")
    return Instance(
        text=text,
        reference=correct[0] if correct else None,
        choices=refs if len(refs) > 1 and len(correct) == 1 else None,
        split=str(split) if isinstance(split, str) else None,
    )


def _instances(run: Path) -> dict[str, Instance]:
    out: dict[str, Instance] = {}
    if (run / "instances.json").is_file():
        items = _load(run / "instances.json")
        entries = items if isinstance(items, list) else []
    elif (run / "scenario_state.json").is_file():
        state = _load(run / "scenario_state.json")
        states = state.get("request_states", []) if isinstance(state, dict) else []
        entries = [s.get("instance") for s in states if isinstance(s, dict)]
    else:
        raise DataError(
            f"HELM run {run} has no instances.json or scenario_state.json (the input texts).",
            path=str(run),
            hint="Copy the run folder whole (HELM writes both files next to per_instance_stats.json).",
        )
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("perturbation") is not None:
            continue
        iid = entry.get("id")
        instance = _instance(entry)
        if iid is not None and instance is not None:
            out.setdefault(str(iid), instance)
    return out


def _metric_values(stats: Any) -> dict[str, Any]:
    """{metric name: value} of HELM's stat list (unperturbed stats, ``mean`` else ``sum/count``) or a dict."""
    if isinstance(stats, dict):
        return dict(stats)
    out: dict[str, Any] = {}
    for stat in stats if isinstance(stats, list) else []:
        if not isinstance(stat, dict):
            continue
        name = stat.get("name")
        if isinstance(name, dict):
            if name.get("perturbation") is not None:
                continue
            name = name.get("name")
        if not isinstance(name, str):
            continue
        value = stat.get("mean")
        if value is None and stat.get("count"):
            value = float(stat.get("sum", 0.0)) / float(stat["count"])
        out.setdefault(name, value)
    return out


def _check_metric(entries: list[dict[str, Any]], metric: str, where: str) -> None:
    names: set[str] = set()
    for entry in entries:
        values = _metric_values(entry.get("stats"))
        if metric in values:
            return
        names.update(values)
    if entries:
        raise DataError(
            f"no {metric!r} stat in {where}; it has: {', '.join(sorted(names)) or 'none'}",
            path=where,
            hint="Choose one with --metric.",
        )


def _model_of(run: Path, spec: dict[str, Any]) -> str:
    adapter = spec.get("adapter_spec") if isinstance(spec, dict) else None
    model = adapter.get("model") if isinstance(adapter, dict) else None
    if isinstance(model, str) and model:
        return model
    args = _run_args(str(spec.get("name") or run.name))[1]
    if args.get("model"):
        return args["model"]
    raise DataError(
        f"cannot tell the model of HELM run {run}: no run_spec.json with adapter_spec.model and no model= in "
        "the folder name.",
        path=str(run),
    )


def _read_run(run: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    spec = _load(run / "run_spec.json") if (run / "run_spec.json").is_file() else {}
    name = str(spec.get("name") or run.name) if isinstance(spec, dict) else run.name
    model = _model_of(run, spec if isinstance(spec, dict) else {})
    scenario = scenario_of(name)
    metric = ctx.options.metric
    stats_file = run / "per_instance_stats.json"
    predictions_file = run / "display_predictions.json"
    predictions = _load(predictions_file) if predictions_file.is_file() else []
    predicted = {
        (str(p.get("instance_id")), p.get("train_trial_index", 0)): p.get("predicted_text")
        for p in predictions
        if isinstance(p, dict) and p.get("perturbation") is None
    }
    entries = _load(stats_file) if stats_file.is_file() else predictions
    if not isinstance(entries, list):
        raise DataError("expected a JSON list of per-instance entries", path=str(stats_file))
    file = stats_file if stats_file.is_file() else predictions_file
    where = str(file)
    ctx.report.details["runs"] += 1
    _check_metric(
        [e for e in entries if isinstance(e, dict) and e.get("perturbation") is None], metric, where
    )
    instances = _instances(run)
    for _ in ctx.files(file, (file.name,)):  # recorded in the report, checked for the score scale
        yield from _run_records(entries, instances, predicted, scenario, model, ctx, where)


def _run_records(
    entries: list[Any],
    instances: dict[str, Instance],
    predicted: dict[tuple[str, Any], Any],
    scenario: str,
    model: str,
    ctx: ReadContext,
    where: str,
) -> Iterator[EvalRecord]:
    metric = ctx.options.metric
    for number, entry in enumerate(entries, start=1):
        ctx.report.rows += 1
        if not isinstance(entry, dict):
            ctx.reject(DataError("expected a JSON object", path=where, line=number))
            continue
        if entry.get("perturbation") is not None:
            ctx.report.details["perturbed_not_imported"] += 1
            continue
        iid = str(entry.get("instance_id"))
        instance = instances.get(iid)
        try:
            if instance is None:
                raise DataError(
                    f"instance {iid!r} has no input text in the run's instances", path=where, line=number
                )
            score = _score(entry, metric, ctx, where, number)
        except DataError as exc:
            ctx.reject(exc)
            continue
        response = predicted.get((iid, entry.get("train_trial_index", 0)))
        ctx.report.records += 1
        yield _record(scenario, iid, instance, model, score, response, where)


def _score(entry: dict[str, Any], metric: str, ctx: ReadContext, where: str, line: int) -> float:
    values = _metric_values(entry.get("stats"))
    if metric not in values:
        raise DataError(
            f"no {metric!r} stat; this entry has: {', '.join(sorted(values)) or 'none'}",
            path=where,
            line=line,
            column=metric,
        )
    score = parse_score(values[metric], ctx.scale, path=where, line=line, column=metric)
    if score is None:
        raise DataError(f"{metric!r} is empty", path=where, line=line, column=metric)
    return score


def _record(
    scenario: str | None,
    iid: str,
    instance: Instance,
    model: str,
    score: float,
    response: Any,
    where: str,
) -> EvalRecord:
    metadata: dict[str, Any] = {"instance_id": iid}
    if instance.split:
        metadata["helm_split"] = instance.split
    return EvalRecord(
        prompt_key=f"{scenario}/{iid}" if scenario else iid,
        prompt=instance.text,
        model=model,
        score=score,
        response=response if isinstance(response, str) else None,
        source=where,
        category=scenario,
        reference=instance.reference,
        choices=instance.choices,
        metadata=metadata,
    )


# -- flat files ---------------------------------------------------------------------------------------


def _flat_objects(path: Path, ctx: ReadContext) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".json":
        items = _load(path)
        if not isinstance(items, list):
            raise DataError("a flat HELM file is a JSON list of per-instance objects", path=str(path), line=1)
        for number, obj in enumerate(items, start=1):
            ctx.report.rows += 1
            if not isinstance(obj, dict):
                ctx.reject(DataError("expected a JSON object", path=str(path), line=number))
                continue
            yield number, obj
    else:
        yield from iter_jsonl(path, ctx)


def _read_flat(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    for file in ctx.files(path, (path.name,)):
        yield from _flat_records(file, ctx)


def _flat_records(path: Path, ctx: ReadContext) -> Iterator[EvalRecord]:
    where = str(path)
    metric = ctx.options.metric
    for line, obj in _flat_objects(path, ctx):
        if obj.get("perturbation") is not None:
            ctx.report.details["perturbed_not_imported"] += 1
            continue
        try:
            iid = obj.get("instance_id", obj.get("id"))
            if iid in (None, ""):
                raise DataError("missing 'instance_id'", path=where, line=line, column="instance_id")
            model = obj.get("model")
            if not isinstance(model, str) or not model.strip():
                raise DataError("'model' must be a non-empty string", path=where, line=line, column="model")
            instance = _instance({**obj, "input": obj.get("input", obj.get("prompt"))})
            if instance is None:
                raise DataError("'input' must be a non-empty text", path=where, line=line, column="input")
            score = _score(obj, metric, ctx, where, line)
        except DataError as exc:
            ctx.reject(exc)
            continue
        scenario = obj.get("scenario")
        ctx.report.records += 1
        yield _record(
            str(scenario) if scenario not in (None, "") else None,
            str(iid),
            instance,
            model.strip(),
            score,
            obj.get("predicted_text", obj.get("response")),
            where,
        )
