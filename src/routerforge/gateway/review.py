"""Pre-release review: replay traffic (or an eval set) through a candidate router and the serving one.

``routerforge review``, the dashboard's ``/ui/review`` and the README walkthrough all call :class:`Reviewer`.
Both sides decide through the one decision path the gateway serves with — :meth:`Routing.decide` (the
router directory's ``DecisionEngine``: same candidates, rules, policy resolution, calibrated knob) — the
candidate being the serving synthetic model with only its router and policy replaced (what ``promote``
would do). Sources:

- ``last``: the last N logged requests of the serving model (``gw_requests``; the prompt is in the log when
  ``logging.store_messages`` is on). Each request's own routing parameters (``routing.models``,
  ``max_cost_usd`` …) are replayed; the budget shift is not (it depends on the spend of that moment).
- ``eval``: the prompts of a stored dataset (one split or all), with their true scores and answers.
- ``shadow``: logged requests that carry a shadow decision (``decision.shadow``, gateway/shadow.py): both
  decisions are read from the log, nothing is recomputed.

The report: ``n`` (prompts compared), ``disagreements`` (count, share and the list: prompt, both chosen
models, both predicted scores, both answers where known — the logged answer for the serving choice when
it is the model that answered, the dataset's answer for either model when the prompt is in it, and the
upstream's only on explicit request), ``cost_change`` (predicted USD per request of each side, priced by
one :class:`~routerforge.policy.pricing.PriceEstimator` — the serving router's, the candidate's for models the
serving router cannot price — absolute and relative), ``quality_change`` (true scores, where the dataset
has both chosen models' scores), ``feedback`` (ratings of the served answers) and ``skipped`` (count and
reasons).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from routerforge.config import Settings
from routerforge.errors import NotFoundError, ValidationError
from routerforge.gateway.config import CandidateRouterConfig, GatewayConfig
from routerforge.gateway.routing import Decision, RequestRouting, Routing, Target

MAX_LAST = 100_000
PREDICT_BATCH = 64


@dataclasses.dataclass
class Case:
    """One prompt to replay."""

    text: str
    key: str | None = None  # request id or dataset prompt key
    request: RequestRouting | None = None
    logged_model: str | None = None  # the model that answered (log)
    logged_answer: str | None = None
    messages: list[dict[str, Any]] | None = None
    scores: dict[str, float] | None = None  # true scores (eval set) by model
    answers: dict[str, str] | None = None  # dataset answers by model
    feedback: float | None = None  # mean rating of the served answer
    shadow: dict[str, Any] | None = None  # logged shadow decision (source "shadow")
    serving: dict[str, Any] | None = None  # logged serving decision (source "shadow")


def default_serving(config: GatewayConfig, candidate: str | None = None) -> str:
    """The first named synthetic model, else ``router-<candidate dir name>``."""
    if config.synthetic_models:
        return config.synthetic_models[0].name
    if candidate:
        return f"router-{Path(candidate).name}"
    raise ValidationError(
        "No synthetic model to compare with.",
        hint="Pass --serving MODEL (a synthetic model or router-<dir>).",
    )


def _request_of(logged: dict[str, Any] | None) -> RequestRouting | None:
    if not logged:
        return None
    meta = logged.get("metadata")
    models = logged.get("models")
    return RequestRouting(
        max_cost_usd=logged.get("max_cost_usd"),
        max_latency_ms=logged.get("max_latency_ms"),
        willingness_to_pay=logged.get("willingness_to_pay"),
        models=tuple(models) if models else None,
        metadata=tuple(sorted(meta.items())) if isinstance(meta, dict) and meta else None,
    )


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Reviewer:
    """Compares a candidate router with the router serving a synthetic model (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig,
        *,
        candidate: str,
        serving: str | None = None,
        kind: str | None = None,
        knob: float | None = None,
        routing: Routing | None = None,
        engine: Any = None,
    ) -> None:
        from routerforge.gateway.assignments import Assignments
        from routerforge.gateway.promote import router_path
        from routerforge.gateway.reload import effective_config
        from routerforge.gateway.shadow import candidate_target

        self.settings = settings
        self.engine = engine
        if routing is None:  # the serving state: gateway.yaml plus the promotions recorded in the store
            assigned = Assignments(engine).all() if engine is not None else {}
            routing = Routing(settings, effective_config(config, assigned))
        self.routing = routing
        self.serving_name = serving or default_serving(routing.config, candidate)
        syn = routing._named.get(self.serving_name)
        self.tenant = (syn.tenant if syn is not None else None) or "default"
        self.serving: Target = routing.resolve(self.tenant, self.serving_name)
        if not self.serving.synthetic or self.serving.router is None:
            raise ValidationError(
                f"{self.serving_name!r} is a real model, not a routed one.",
                hint="Pass --serving with a synthetic model or router-<dir>.",
            )
        directory, _ = router_path(settings, candidate)
        arm = CandidateRouterConfig(router=str(directory), kind=kind, knob=knob)  # type: ignore[arg-type]
        self.candidate: Target = candidate_target(routing, self.serving, arm)
        self.candidate_dir = directory

    # -- deciding -------------------------------------------------------------------------------------
    def _decide_all(self, target: Target, cases: Sequence[Case]) -> tuple[list[Decision], np.ndarray]:
        """Decisions for ``cases`` and the router's price rows ``(n, n_models)``."""
        router = target.router
        assert router is not None
        decisions: list[Decision] = []
        prices: list[np.ndarray] = []
        for start in range(0, len(cases), PREDICT_BATCH):
            chunk = cases[start : start + PREDICT_BATCH]
            metas = [c.request.meta_dict() if c.request is not None else None for c in chunk]
            texts = [c.text for c in chunk]
            rows = router.predict_many(texts, metas) if any(metas) else router.predict_many(texts)
            for case, row in zip(chunk, rows, strict=True):
                decisions.append(self.routing.decide(target, case.text, scores=row, request=case.request))
                prices.append(router.split(row)[1])
        return decisions, np.array(prices).reshape(len(cases), len(router.models))

    def decide_prompt(self, text: str) -> dict[str, Any]:
        """Both decisions for one typed prompt (the review page's box)."""
        if not text.strip():
            raise ValidationError("The prompt is empty.", param="prompt")
        case = Case(text=text)
        (s,), _ = self._decide_all(self.serving, [case])
        (c,), _ = self._decide_all(self.candidate, [case])
        return {"prompt": text, "serving": s.to_dict(), "candidate": c.to_dict(), "agree": s.model == c.model}

    # -- sources --------------------------------------------------------------------------------------
    def cases_from_log(self, last: int, *, shadow: bool = False) -> tuple[list[Case], Counter[str]]:
        from routerforge.gateway.db import GwFeedback, GwRequest

        if not 1 <= last <= MAX_LAST:
            raise ValidationError(f"--last must be between 1 and {MAX_LAST}, got {last}.", param="last")
        if self.engine is None:
            raise ValidationError("Replaying the request log needs a store.", hint="Pass --store URL.")
        req = GwRequest.__table__
        stmt = (
            select(req)
            .where(req.c.requested_model == self.serving_name)
            .order_by(req.c.created_at.desc())
            .limit(last)
        )
        skipped: Counter[str] = Counter()
        cases: list[Case] = []
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
            ids = [r["id"] for r in rows]
            ratings: dict[str, list[float]] = {}
            if ids:
                fb = GwFeedback.__table__
                for rid, rating in conn.execute(
                    select(fb.c.request_id, fb.c.rating).where(fb.c.request_id.in_(ids))
                ):
                    ratings.setdefault(rid, []).append(float(rating))
        for r in rows:
            if r["chosen_model"] is None:
                skipped["refused before routing (no decision)"] += 1
                continue
            if not r["prompt"]:
                skipped["prompt not in the log (logging.store_messages is off)"] += 1
                continue
            decision = r["decision"] if isinstance(r["decision"], dict) else {}
            case = Case(
                text=r["prompt"],
                key=r["id"],
                request=_request_of(decision.get("request_routing")),
                logged_model=r["answered_model"],
                logged_answer=r["response_text"] if r["status"] == 200 else None,
                messages=r["messages"] if isinstance(r["messages"], list) else None,
                feedback=float(np.mean(ratings[r["id"]])) if r["id"] in ratings else None,
            )
            if shadow:
                sh = decision.get("shadow")
                if not isinstance(sh, dict) or sh.get("status") != "ok":
                    reason = "no shadow decision logged"
                    if isinstance(sh, dict):
                        reason = f"shadow decision {sh.get('status')}"
                    skipped[reason] += 1
                    continue
                case.shadow = sh
                case.serving = {
                    "model": r["chosen_model"],
                    "predicted": r["predicted"] or {},
                    "prices_usd": decision.get("prices_usd") or {},
                }
            cases.append(case)
        return cases, skipped

    def cases_from_eval(
        self, dataset: str, split: str | None, limit: int | None = None
    ) -> tuple[list[Case], Counter[str]]:
        from routerforge.data.store import Store

        store = Store(self.settings.store_url)
        try:
            matrix = store.load_matrix(dataset)
            keep = [i for i in range(matrix.n_prompts) if split is None or matrix.splits[i] == split]
            if split is not None and not keep:
                raise NotFoundError(
                    f"Dataset {dataset!r} has no prompts in split {split!r}.",
                    hint="`routerforge data show` lists its splits; or leave --eval-split out for all prompts.",
                )
            if limit is not None:
                keep = keep[:limit]
            cases = []
            for i in keep:
                scores = {
                    m: float(matrix.scores[i, j])
                    for j, m in enumerate(matrix.models)
                    if not math.isnan(matrix.scores[i, j])
                }
                cases.append(Case(text=matrix.prompts[i], key=matrix.keys[i], scores=scores))
        finally:
            store.close()
        return cases, Counter()

    def attach_dataset(self, cases: Sequence[Case], dataset: str) -> None:
        """True scores of logged prompts that are also in ``dataset`` (matched by exact text)."""
        from routerforge.data.store import Store

        store = Store(self.settings.store_url)
        try:
            matrix = store.load_matrix(dataset)
        finally:
            store.close()
        row_of = {t: i for i, t in enumerate(matrix.prompts)}
        for c in cases:
            i = row_of.get(c.text)
            if i is not None:
                c.key = c.key or matrix.keys[i]
                c.scores = {
                    m: float(matrix.scores[i, j])
                    for j, m in enumerate(matrix.models)
                    if not math.isnan(matrix.scores[i, j])
                }

    def dataset_answers(self, dataset: str, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The stored answers for (prompt text, model) pairs."""
        from routerforge.data.store import Store

        out: dict[tuple[str, str], str] = {}
        if not wanted:
            return out
        store = Store(self.settings.store_url)
        try:
            for rec in store.iter_records(dataset):
                if rec.response and (rec.prompt, rec.model) in wanted:
                    out[(rec.prompt, rec.model)] = rec.response
        finally:
            store.close()
        return out

    # -- the report ------------------------------------------------------------------------------------
    def run(
        self,
        *,
        last: int | None = None,
        dataset: str | None = None,
        split: str | None = None,
        from_shadow: bool = False,
        max_items: int = 50,
        answers: bool = False,
        config: GatewayConfig | None = None,
    ) -> dict[str, Any]:
        """Replay and compare (module docstring). ``answers``: ask the upstream for answers that neither the
        log nor the dataset has (only for the listed disagreements; it costs money)."""
        if last is None and dataset is None:
            raise ValidationError("Give --last N (the request log) or --dataset D (an eval set).")
        if from_shadow and last is None:
            raise ValidationError("--from-shadow reads the request log: give --last N.")
        if last is not None:
            cases, skipped = self.cases_from_log(last, shadow=from_shadow)
            if dataset is not None:
                self.attach_dataset(cases, dataset)
            source = {"kind": "shadow" if from_shadow else "log", "last": last, "dataset": dataset}
        else:
            assert dataset is not None
            cases, skipped = self.cases_from_eval(dataset, split)
            source = {"kind": "eval", "dataset": dataset, "split": split}
        pairs = self._pairs_from_shadow(cases) if from_shadow else self._pairs(cases)
        report = self._report(cases, pairs, skipped, max_items)
        report["source"] = source
        listed = report["disagreements"]["items"]
        if dataset is not None and listed:
            wanted = {(d["prompt"], d[side]["model"]) for d in listed for side in ("serving", "candidate")}
            found = self.dataset_answers(dataset, wanted)
            for d in listed:
                for side in ("serving", "candidate"):
                    if d[side]["answer"] is None:
                        hit = found.get((d["prompt"], d[side]["model"]))
                        if hit is not None:
                            d[side]["answer"], d[side]["answer_source"] = hit, "dataset"
        if answers and listed:
            self._upstream_answers(listed, config or self.routing.config)
        for d in listed:
            d.pop("messages", None)
        return report

    def _pairs(self, cases: Sequence[Case]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        if not cases:
            return []
        s_dec, s_prices = self._decide_all(self.serving, cases)
        c_dec, c_prices = self._decide_all(self.candidate, cases)
        s_models = self.serving.router.models  # type: ignore[union-attr]
        c_models = self.candidate.router.models  # type: ignore[union-attr]
        out = []
        for i, (s, c) in enumerate(zip(s_dec, c_dec, strict=True)):

            def cost(model: str, i: int = i) -> float | None:
                # one yardstick: the serving router's estimate; the candidate's for models it cannot price
                if model in s_models:
                    v = _finite(s_prices[i, s_models.index(model)])
                    if v is not None:
                        return v
                return _finite(c_prices[i, c_models.index(model)]) if model in c_models else None

            out.append(
                (
                    {
                        "model": s.model,
                        "predicted": s.predicted,
                        "cost_usd": cost(s.model),
                        "reason": s.reason,
                    },
                    {
                        "model": c.model,
                        "predicted": c.predicted,
                        "cost_usd": cost(c.model),
                        "reason": c.reason,
                    },
                )
            )
        return out

    @staticmethod
    def _pairs_from_shadow(cases: Sequence[Case]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for c in cases:
            s, sh = c.serving or {}, c.shadow or {}
            s_prices, c_prices = s.get("prices_usd") or {}, sh.get("prices_usd") or {}

            def cost(
                model: str, s_prices: dict[str, Any] = s_prices, c_prices: dict[str, Any] = c_prices
            ) -> float | None:
                return (
                    _finite(s_prices.get(model))
                    if _finite(s_prices.get(model)) is not None
                    else _finite(c_prices.get(model))
                )

            out.append(
                (
                    {
                        "model": s.get("model"),
                        "predicted": s.get("predicted") or {},
                        "cost_usd": cost(str(s.get("model"))),
                        "reason": "logged",
                    },
                    {
                        "model": sh.get("model"),
                        "predicted": sh.get("predicted") or {},
                        "cost_usd": cost(str(sh.get("model"))),
                        "reason": sh.get("reason") or "logged shadow",
                    },
                )
            )
        return out

    def _report(
        self,
        cases: Sequence[Case],
        pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
        skipped: Counter[str],
        max_items: int,
    ) -> dict[str, Any]:
        n = len(pairs)
        items: list[dict[str, Any]] = []
        s_costs: list[float] = []
        c_costs: list[float] = []
        q_s: list[float] = []
        q_c: list[float] = []
        fb_all: list[float] = []
        fb_dis: list[float] = []
        count = 0
        for case, (s, c) in zip(cases, pairs, strict=True):
            if s["cost_usd"] is not None and c["cost_usd"] is not None:
                s_costs.append(s["cost_usd"])
                c_costs.append(c["cost_usd"])
            if case.scores and s["model"] in case.scores and c["model"] in case.scores:
                q_s.append(case.scores[s["model"]])
                q_c.append(case.scores[c["model"]])
            agree = s["model"] == c["model"]
            if case.feedback is not None:
                fb_all.append(case.feedback)
                if not agree:
                    fb_dis.append(case.feedback)
            if agree:
                continue
            count += 1
            if len(items) >= max_items:
                continue
            logged = case.logged_answer if case.logged_model == s["model"] else None
            items.append(
                {
                    "key": case.key,
                    "prompt": case.text,
                    "serving": {
                        "model": s["model"],
                        "predicted_score": s["predicted"].get(s["model"]),
                        "predicted": s["predicted"],
                        "cost_usd": s["cost_usd"],
                        "reason": s["reason"],
                        "answer": logged,
                        "answer_source": "log" if logged is not None else None,
                        "true_score": (case.scores or {}).get(s["model"]),
                    },
                    "candidate": {
                        "model": c["model"],
                        "predicted_score": c["predicted"].get(c["model"]),
                        "predicted": c["predicted"],
                        "cost_usd": c["cost_usd"],
                        "reason": c["reason"],
                        "answer": None,
                        "answer_source": None,
                        "true_score": (case.scores or {}).get(c["model"]),
                    },
                    "feedback": case.feedback,
                    "messages": case.messages,
                }
            )
        s_mean = float(np.mean(s_costs)) if s_costs else None
        c_mean = float(np.mean(c_costs)) if c_costs else None
        cost_change = None
        if s_mean is not None and c_mean is not None:
            cost_change = {
                "n_priced": len(s_costs),
                "serving_usd_per_request": s_mean,
                "candidate_usd_per_request": c_mean,
                "absolute_usd_per_request": c_mean - s_mean,
                "relative": (c_mean - s_mean) / s_mean if s_mean > 0 else None,
            }
        quality_change = None
        if q_s:
            quality_change = {
                "n_scored": len(q_s),
                "serving": float(np.mean(q_s)),
                "candidate": float(np.mean(q_c)),
                "absolute": float(np.mean(q_c) - np.mean(q_s)),
                "source": "true scores of the eval set",
            }
        feedback = None
        if fb_all:
            feedback = {
                "n_rated": len(fb_all),
                "mean_rating": float(np.mean(fb_all)),
                "n_rated_disagreements": len(fb_dis),
                "mean_rating_disagreements": float(np.mean(fb_dis)) if fb_dis else None,
                "note": "ratings of the served answers; where the routers disagree the candidate's answer is unrated",
            }
        return {
            "n": n,
            "serving": {
                "model": self.serving_name,
                "router": str(self.serving.router.directory) if self.serving.router else None,  # type: ignore[union-attr]
                "kind": self.serving.kind,
                "knob": self.serving.knob,
            },
            "candidate": {
                "router": str(self.candidate_dir),
                "kind": self.candidate.kind,
                "knob": self.candidate.knob,
            },
            "agreement": (n - count) / n if n else None,
            "disagreements": {"count": count, "share": count / n if n else None, "items": items},
            "choices": {
                "serving": dict(Counter(str(s["model"]) for s, _ in pairs)),
                "candidate": dict(Counter(str(c["model"]) for _, c in pairs)),
            },
            "cost_change": cost_change,
            "quality_change": quality_change,
            "feedback": feedback,
            "skipped": {"count": sum(skipped.values()), "reasons": dict(skipped)},
        }

    def _upstream_answers(self, items: list[dict[str, Any]], config: GatewayConfig) -> None:
        """Ask the upstream for the answers still missing (explicit request only)."""
        import asyncio

        from routerforge.backends.base import ChatRequest
        from routerforge.errors import RouterForgeError
        from routerforge.gateway.service import build_pool

        async def fetch() -> None:
            pool = build_pool(config)
            try:
                for d in items:
                    messages = d.get("messages") or [{"role": "user", "content": d["prompt"]}]
                    for side in ("serving", "candidate"):
                        if d[side]["answer"] is not None:
                            continue
                        model = d[side]["model"]
                        try:
                            res = await pool.complete([model], ChatRequest(model=model, messages=messages))
                            d[side]["answer"], d[side]["answer_source"] = res.result.text, "upstream"
                        except RouterForgeError as exc:
                            d[side]["answer_error"] = str(exc)
            finally:
                await pool.aclose()

        asyncio.run(fetch())
