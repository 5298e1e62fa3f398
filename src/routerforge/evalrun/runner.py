"""``run_eval``: call candidate models on a prompt set, judge the answers, store eval records.

- bounded concurrency per model (``concurrency`` workers each), all models at once;
- retries of retryable upstream errors with exponential backoff;
- resumable: cells already scored in the eval set (``Store.existing_cells``) are skipped, and each
  record is written the moment its call is judged (``Store.add_records``), so a crash loses at most the
  calls in flight;
- cost and latency per call; a hard spending cap: a call starts only when the money already spent plus
  the calls in flight plus this call's worst case fit under the cap. Reaching it raises
  :class:`SpendingCapError` after the finished records are stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from routerforge.backends.base import ChatBackend, ChatRequest, ChatResult
from routerforge.data.records import EvalRecord, PromptItem, cost_usd
from routerforge.errors import RouterForgeError, SpendingCapError, UpstreamError, ValidationError
from routerforge.judges.base import Judge, JudgeInput, Verdict

SOURCE = "routerforge-evalrun"


@dataclass
class Candidate:
    """A model to evaluate: its id in the eval set, the backend that calls it, and its prices."""

    id: str
    backend: ChatBackend
    upstream_model: str | None = None
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    max_tokens: int = 64
    system_prompt: str | None = None

    def cost_of(self, result: ChatResult) -> float | None:
        if result.cost_usd is not None:
            return float(result.cost_usd)
        if self.input_usd_per_mtok is None and self.output_usd_per_mtok is None:
            return None
        inp, out = self.input_usd_per_mtok or 0.0, self.output_usd_per_mtok or 0.0
        return float(cost_usd(inp, out, result.tokens_in or 0, result.tokens_out or 0))

    def worst_case_usd(self, prompt: str) -> float:
        """An upper estimate of one call's cost (prompt ≈ 1 token per 3 characters, full max_tokens)."""
        tokens_in = len(prompt) // 3 + 16
        inp, out = self.input_usd_per_mtok or 0.0, self.output_usd_per_mtok or 0.0
        return float(cost_usd(inp, out, tokens_in, self.max_tokens))


@dataclass
class RunReport:
    name: str
    prompts: int
    models: list[str]
    cells: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    judge_failures: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    stopped: str | None = None  # "spending_cap" when the cap stopped the run
    errors: list[str] = field(default_factory=list)
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prompts": self.prompts,
            "models": self.models,
            "cells": self.cells,
            "skipped": self.skipped,
            "done": self.done,
            "failed": self.failed,
            "judge_failures": self.judge_failures,
            "cost_usd": round(self.cost_usd, 8),
            "elapsed_s": round(self.elapsed_s, 2),
            "stopped": self.stopped,
            "errors": self.errors[:20],
            "per_model": self.per_model,
        }


class _Budget:
    """Money spent and reserved by calls in flight, against an optional hard cap."""

    def __init__(self, cap: float | None) -> None:
        self.cap = cap
        self.spent = 0.0
        self.reserved = 0.0
        self.exhausted = False

    def reserve(self, estimate: float) -> bool:
        if self.exhausted:
            return False
        if self.cap is not None and self.spent + self.reserved + estimate > self.cap + 1e-12:
            self.exhausted = True
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float) -> None:
        self.reserved -= estimate
        self.spent += actual
        if self.cap is not None and self.spent >= self.cap:
            self.exhausted = True


class RecordSink:
    """Where finished records go: the store (``add_records``) by default; tests may wrap it."""

    def __init__(self, store: Any, dataset: str) -> None:
        self.store = store
        self.dataset = dataset

    def write(self, record: EvalRecord) -> None:
        self.store.add_records(self.dataset, [record])


ProgressHook = Callable[[str, float], None]  # (model id, running cost in USD) after every finished cell


async def _call_with_retries(
    candidate: Candidate, request: ChatRequest, retries: int, backoff_s: float
) -> ChatResult:
    attempt = 0
    while True:
        try:
            return await candidate.backend.complete(request)
        except UpstreamError as exc:
            if not exc.retryable or attempt >= retries:
                raise
            delay = exc.retry_after_s if getattr(exc, "retry_after_s", None) else backoff_s * (2**attempt)
            attempt += 1
            await asyncio.sleep(float(delay or 0.0))


async def _judge_safely(judge: Judge, item: JudgeInput) -> Verdict:
    try:
        return await judge.judge(item)
    except RouterForgeError as exc:  # a judge problem is recorded on the cell, never a crash of the run
        return Verdict(score=None, label="judge_failure", judge=judge.name, details={"errors": [str(exc)]})


def _record(
    prompt: PromptItem, candidate: Candidate, result: ChatResult, verdict: Verdict, cost: float | None
) -> EvalRecord:
    tags = [f"verdict:{verdict.label}"]
    if verdict.attempts > 1:
        tags.append(f"judge_attempts:{verdict.attempts}")
    if verdict.details.get("position_inconsistent"):
        tags.append(f"position_inconsistent:{verdict.details['position_inconsistent']}")
    return EvalRecord(
        prompt_key=prompt.key,
        prompt=prompt.text,
        model=candidate.id,
        score=verdict.score,
        cost_usd=cost,
        latency_ms=result.latency_ms,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        response=result.text,
        dimensions=verdict.dimensions,
        judge=verdict.judge,
        source=SOURCE,
        split=prompt.split,
        category=prompt.category,
        reference=prompt.reference,
        tags=tags,
        metadata=dict(prompt.metadata),
        choices=prompt.choices,
    )


async def run_eval(
    store: Any,
    *,
    prompts: str | Sequence[PromptItem],
    candidates: Sequence[Candidate],
    judge: Judge,
    name: str,
    concurrency: int = 1,
    max_cost_usd: float | None = None,
    retries: int = 2,
    backoff_s: float = 0.5,
    on_progress: ProgressHook | None = None,
    sink: RecordSink | None = None,
) -> RunReport:
    """Evaluate ``candidates`` on the prompt set ``prompts`` (a dataset name or the items) into eval set
    ``name``. See the module docstring for the guarantees. Returns a :class:`RunReport`.

    Raises :class:`SpendingCapError` (with ``.report``) when ``max_cost_usd`` stopped the run.
    """
    if concurrency < 1:
        raise ValidationError(f"--concurrency must be at least 1, not {concurrency}.")
    if max_cost_usd is not None and max_cost_usd < 0:
        raise ValidationError(f"--max-cost must not be negative, not {max_cost_usd}.")
    if not candidates:
        raise ValidationError("Give at least one model to evaluate.", hint="Pass --models m1,m2.")
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValidationError(f"Models are listed twice: {', '.join(ids)}.")
    items = list(store.iter_prompts(prompts) if isinstance(prompts, str) else prompts)
    if not items:
        raise ValidationError(f"Prompt set {prompts if isinstance(prompts, str) else ''!s} has no prompts.")
    existing: set[tuple[str, str]] = store.existing_cells(name) if store.has_dataset(name) else set()
    sink = sink or RecordSink(store, name)
    report = RunReport(name=name, prompts=len(items), models=ids, cells=len(items) * len(candidates))
    budget = _Budget(max_cost_usd)
    start = time.perf_counter()
    write_lock = asyncio.Lock()  # one write at a time, off the event loop (a database write blocks)

    async def work(candidate: Candidate, queue: asyncio.Queue[PromptItem]) -> None:
        stats = report.per_model.setdefault(
            candidate.id, {"done": 0, "failed": 0, "score_sum": 0.0, "cost_usd": 0.0}
        )
        while not queue.empty():
            prompt = queue.get_nowait()
            estimate = candidate.worst_case_usd(prompt.text)
            if not budget.reserve(estimate):
                return
            messages: list[dict[str, Any]] = []
            if candidate.system_prompt:
                messages.append({"role": "system", "content": candidate.system_prompt})
            messages.append({"role": "user", "content": prompt.text})
            request = ChatRequest(
                model=candidate.upstream_model or candidate.id,
                messages=messages,
                max_tokens=candidate.max_tokens,
                temperature=0.0,
            )
            try:
                result = await _call_with_retries(candidate, request, retries, backoff_s)
            except UpstreamError as exc:
                budget.settle(estimate, 0.0)
                report.failed += 1
                stats["failed"] += 1
                report.errors.append(f"{candidate.id} on {prompt.key}: {exc}")
                continue
            cost = candidate.cost_of(result)
            verdict = await _judge_safely(
                judge,
                JudgeInput(prompt.text, result.text, prompt.reference, prompt.choices, dict(prompt.metadata)),
            )
            total_cost = (cost or 0.0) + verdict.cost_usd
            async with write_lock:
                await asyncio.to_thread(sink.write, _record(prompt, candidate, result, verdict, cost))
            budget.settle(estimate, total_cost)
            report.done += 1
            report.judge_failures += int(verdict.failed)
            stats["done"] += 1
            stats["score_sum"] += verdict.score or 0.0
            stats["cost_usd"] += total_cost
            if on_progress is not None:
                on_progress(candidate.id, budget.spent)

    tasks = []
    for candidate in candidates:
        queue: asyncio.Queue[PromptItem] = asyncio.Queue()
        for prompt in items:
            if (prompt.key, candidate.id) in existing:
                report.skipped += 1
            else:
                queue.put_nowait(prompt)
        tasks += [asyncio.create_task(work(candidate, queue)) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        report.elapsed_s = time.perf_counter() - start
        report.cost_usd = budget.spent
    for stats in report.per_model.values():
        stats["mean_score"] = stats["score_sum"] / stats["done"] if stats["done"] else None  # type: ignore[assignment]
    if budget.exhausted and report.done + report.failed + report.skipped < report.cells:
        report.stopped = "spending_cap"
        error = SpendingCapError(
            f"Spending cap ${max_cost_usd:g} reached after {report.done} calls (${budget.spent:.6f} spent); "
            f"{report.cells - report.done - report.skipped - report.failed} cells not run, the finished ones are stored.",
            hint="Rerun the same command with a higher --max-cost to finish: finished cells are skipped.",
        )
        error.report = report
        raise error
    return report
