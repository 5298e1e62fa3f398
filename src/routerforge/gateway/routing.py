"""Resolving the ``model`` field: real models pass through, synthetic models are routed.

Names, checked in this order:

1. a real model id from ``gateway.yaml`` → passes straight through (no router, no policy);
2. a named synthetic model from ``gateway.yaml`` (router dir + candidates + optional policy kind/knob);
3. ``router-<router>-<threshold>`` (RouteLLM's convention: the threshold policy at that knob) or
   ``router-<router>`` (the router's calibrated knob): the router directory ``<router>`` under
   ``$ROUTERFORGE_HOME/routers/tenants/<tenant>/`` (the caller's private routers) and then under
   ``$ROUTERFORGE_HOME/routers/`` (shared).

The decision itself is the router directory's :class:`~routerforge.policy.engine.DecisionEngine` — the same
one ``route``, ``calibrate`` and ``bench`` use: same strong/weak definition, same per-prompt price estimate
(the router's; models it has no price for take the list prices in ``gateway.yaml``), same calibrated knob
(unless the model name or the config sets one), and the same budget shift. Routers are loaded once (at
startup for every directory found, later on first use) and predict in a worker thread; nothing here
imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.config import Settings
from routerforge.errors import (
    ArtifactError,
    ConfigError,
    PermissionDeniedError,
    UnknownModelError,
    ValidationError,
)
from routerforge.gateway.batching import PredictBatcher
from routerforge.gateway.config import (
    CandidateRouterConfig,
    CascadeConfig,
    GatewayConfig,
    RoutingConfig,
    SyntheticModelConfig,
)
from routerforge.policy import parse_router_model
from routerforge.policy.cascade import cascade_order
from routerforge.policy.decision import RoutingDecision
from routerforge.policy.rules import RuleSet

LATENCY_EWMA = 0.05  # weight of one observed call in a model's running mean latency


class LoadedRouter:
    """A trained router directory, loaded once through ``TrainedRouter.load`` (the one owner of its files)."""

    def __init__(self, directory: Path, settings: Settings, config: GatewayConfig) -> None:
        from routerforge.policy.trained import TrainedRouter

        options = config.routing or RoutingConfig()
        overrides: dict[str, Any] = {"cache": options.embed_cache}
        if options.embed_threads is not None:
            overrides["threads"] = options.embed_threads
        self.directory = directory
        self.loaded_mtime_ns = (directory / "router.json").stat().st_mtime_ns  # hot reload: changed files
        self.trained = TrainedRouter.load(directory, settings, embed_overrides=overrides)
        listed = {
            m.id: (m.input_usd_per_mtok, m.output_usd_per_mtok)
            for m in config.models
            if m.input_usd_per_mtok or m.output_usd_per_mtok
        }
        self.engine = self.trained.engine
        self.engine.prices = self.engine.prices.with_list_prices(listed)
        self.models: list[str] = list(self.trained.models)
        self.name: str = directory.name
        self._lock = threading.Lock()  # index shards are not guaranteed thread-safe

    def predict_many(
        self, texts: Sequence[str], metadata: Sequence[dict[str, str] | None] | None = None
    ) -> np.ndarray:
        """``(len(texts), 2·n_models)``: predicted scores, then decision prices. Embedding runs unlocked
        (onnxruntime sessions are thread-safe); the router and its index are used by one thread at a time.
        ``metadata``: one dict (or None) per text, what the caller said about the prompt."""
        batch = self.trained.batch(list(texts), metadata)
        with self._lock:
            scores = np.asarray(self.trained.router.predict_scores(batch), dtype=np.float64)
        prices = self.engine.prices.estimate(batch.texts, batch.dense)
        return np.hstack([scores, prices])

    def split(self, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A row of :meth:`predict_many` as (predicted scores, decision prices)."""
        m = len(self.models)
        return row[:m], row[m : 2 * m]

    def explain(self, text: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        with self._lock:
            exp = self.trained.explain(text, metadata)
        return {"router": exp.router, "reason": exp.reason, "details": exp.details or {}}


@dataclass
class Target:
    """What a requested ``model`` resolves to (``kind``/``knob`` None: the router's calibrated policy)."""

    requested: str
    synthetic: bool
    candidates: list[str]
    router: LoadedRouter | None = None
    kind: str | None = None
    knob: float | None = None
    knob_source: str = "config"
    fallbacks: list[str] = field(default_factory=list)
    rules: RuleSet | None = None
    latency_weight: float = 0.0
    cascade: CascadeConfig | None = None


@dataclass(frozen=True)
class RequestRouting:
    """Per-request routing parameters (the ``routing`` object of a chat or route body), already validated."""

    max_cost_usd: float | None = None
    max_latency_ms: float | None = None
    willingness_to_pay: float | None = None
    models: tuple[str, ...] | None = None
    metadata: tuple[tuple[str, str], ...] | None = None  # (key, value) pairs, for the router

    def meta_dict(self) -> dict[str, str] | None:
        return dict(self.metadata) if self.metadata else None


@dataclass
class Decision:
    """The routing outcome for one prompt (the engine's decision plus gateway facts)."""

    model: str
    synthetic_model: str | None
    policy: str | None
    knob: float | None
    predicted: dict[str, float]
    reason: str
    routing_ms: float
    chain: list[str]
    budget_shift: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    prices_usd: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "synthetic_model": self.synthetic_model,
            "policy": self.policy,
            "knob": self.knob if self.knob is None or math.isfinite(self.knob) else None,
            "predicted": self.predicted,
            "prices_usd": self.prices_usd,
            "reason": self.reason,
            "routing_ms": round(self.routing_ms, 3),
            "fallbacks": self.chain[1:],
            "budget_shift": self.budget_shift,
            "details": self.details,
        }


class Routing:
    """Holds the loaded routers and turns ``(tenant, model, prompt)`` into a :class:`Decision`."""

    def __init__(self, settings: Settings, config: GatewayConfig) -> None:
        self.settings = settings
        self.config = config
        self.routers_dir = settings.routers_dir
        self._routers: dict[Path, LoadedRouter] = {}
        self._load_lock = threading.Lock()
        self._named = {s.name: s for s in config.synthetic_models}
        self._rules = {s.name: s.ruleset() for s in config.synthetic_models}
        self._batchers: dict[int, PredictBatcher] = {}
        self.failed: dict[str, str] = {}  # router dirs found by scanning that did not load: path -> error

    def batcher(self, router: LoadedRouter) -> PredictBatcher:
        """The micro-batcher (and worker thread) of ``router``."""
        hit = self._batchers.get(id(router))
        if hit is None:
            hit = PredictBatcher(
                router.predict_many,
                max_batch=self.config.routing.max_batch,
                workers=self.config.routing.predict_workers,
                name=router.name,
            )
            self._batchers[id(router)] = hit
        return hit

    def close(self) -> None:
        for b in self._batchers.values():
            b.close()
        self._batchers.clear()

    # -- loading ------------------------------------------------------------------------------------
    def load_all(self) -> list[str]:
        """Load every named synthetic model's router and every router dir found; returns their paths."""
        for syn in self.config.synthetic_models:
            self._router_at(self._named_dir(syn))
            for arm in (syn.shadow, syn.canary):  # candidate routers (gateway/shadow.py)
                if arm is not None:
                    self._router_at(self._named_dir(arm))
        loaded = []
        from routerforge.policy.trained import router_dirs

        for d in router_dirs(self.routers_dir).values():
            try:
                self._router_at(d)
                loaded.append(str(d))
            except (
                ArtifactError,
                ConfigError,
                ValidationError,
                ImportError,
                OSError,
                ValueError,
                KeyError,
                TypeError,
            ) as exc:  # a broken dir must not stop the gateway; using it answers 503 (service)
                self.failed[str(d)] = str(exc)
        return loaded

    def _named_dir(self, syn: SyntheticModelConfig | CandidateRouterConfig) -> Path:
        p = Path(syn.router).expanduser()
        return p if p.is_absolute() else self.routers_dir / p

    def _router_at(self, directory: Path) -> LoadedRouter:
        directory = directory.resolve()
        hit = self._routers.get(directory)
        if hit is not None:
            return hit
        with self._load_lock:
            hit = self._routers.get(directory)
            if hit is None:
                if not (directory / "router.json").is_file():
                    raise ArtifactError(
                        f"No trained router in {directory}.",
                        hint="Train one with `routerforge train … --out DIR`.",
                    )
                hit = LoadedRouter(directory, self.settings, self.config)
                hit.predict_many(["warm-up"])  # load the embedder and index now, not on the first request
                self._routers[directory] = hit
        return hit

    def observe_latency(self, model: str, latency_ms: float) -> None:
        """Fold a successful upstream call's latency into every loaded router's mean latency of ``model``
        (exponential moving average, weight :data:`LATENCY_EWMA`; the eval records' mean is the start), so
        ``max_latency_ms`` and ``latency_weight`` follow what the gateway sees."""
        for router in list(self._routers.values()):
            engine = getattr(router, "engine", None)
            if engine is None or model not in engine.models:
                continue
            old = engine.latency_ms.get(model)
            engine.latency_ms[model] = latency_ms if old is None else old + LATENCY_EWMA * (latency_ms - old)

    @property
    def loaded(self) -> list[str]:
        return [str(p) for p in self._routers]

    # -- names --------------------------------------------------------------------------------------
    def router_names(self, tenant: str) -> list[str]:
        names = []
        for base in (self.routers_dir / "tenants" / tenant, self.routers_dir):
            if base.is_dir():
                names += [d.name for d in sorted(base.iterdir()) if (d / "router.json").is_file()]
        return sorted(set(names))

    def synthetic_names(self, tenant: str) -> list[str]:
        return [s.name for s in self.config.synthetic_models if s.tenant in (None, tenant)]

    def resolve(self, tenant: str, name: str) -> Target:
        real = self.config.model(name)
        if real is not None:
            return Target(requested=name, synthetic=False, candidates=[name], fallbacks=list(real.fallbacks))
        syn = self._named.get(name)
        if syn is not None:
            if syn.tenant not in (None, tenant):
                raise PermissionDeniedError(f"Model {name!r} belongs to another tenant.")
            router = self._router_at(self._named_dir(syn))
            candidates = list(syn.models or router.models)
            self._check_models(name, candidates, router)
            pol = syn.policy
            return Target(
                name,
                True,
                candidates,
                router,
                pol.kind,
                pol.knob,
                "config",
                list(syn.fallbacks),
                self._rules[name],
                pol.latency_weight,
                syn.cascade,
            )
        readings = parse_router_model(name)
        for router_name, threshold in readings:
            directory = self._find_router_dir(tenant, router_name)
            if directory is None:
                continue
            router = self._router_at(directory)
            candidates = list(router.models)
            self._check_models(name, candidates, router)
            kind = "threshold" if threshold is not None else None
            return Target(name, True, candidates, router, kind, threshold, "name", [])
        available = [m.id for m in self.config.models] + self.synthetic_names(tenant)
        available += [f"router-{r}[-<threshold>]" for r in self.router_names(tenant)]
        if readings:  # another tenant's private router of that name stays invisible: the same answer
            raise UnknownModelError(
                name,
                available,
                hint=f"No router directory {readings[-1][0]!r} for this tenant; train one with `routerforge train`.",
            )
        raise UnknownModelError(name, available, hint="GET /v1/models lists them.")

    def _find_router_dir(self, tenant: str, router_name: str) -> Path | None:
        if "/" in router_name or router_name.startswith("."):
            return None
        for base in (self.routers_dir / "tenants" / tenant, self.routers_dir):
            if (base / router_name / "router.json").is_file():
                return base / router_name
        return None

    def _check_models(self, name: str, candidates: Sequence[str], router: LoadedRouter) -> None:
        missing = [m for m in candidates if self.config.model(m) is None]
        if missing:
            raise ConfigError(
                f"Synthetic model {name!r} routes to {missing}, which gateway.yaml does not define.",
                hint="Add them under `models:` with a provider and base_url.",
            )
        unknown = [m for m in candidates if m not in router.models]
        if unknown:
            raise ConfigError(
                f"Synthetic model {name!r}: router {router.name!r} has no predictions for {unknown}; "
                f"it knows {router.models}."
            )

    # -- deciding -----------------------------------------------------------------------------------
    def decide(
        self,
        target: Target,
        text: str,
        *,
        fraction_left: float | None = None,
        allowed: Sequence[str] | None = None,
        scores: np.ndarray | None = None,
        request: RequestRouting | None = None,
    ) -> Decision:
        """Choose a model for ``text`` through the router's decision engine. ``scores`` is the router's
        :meth:`LoadedRouter.predict_many` row for it when already computed (the gateway batches them);
        ``request`` holds the caller's per-request routing parameters (they narrow, never widen, the
        synthetic model's candidates; ``willingness_to_pay`` sets the wtp policy's λ)."""
        start = time.perf_counter()
        if not target.synthetic or target.router is None:
            model = target.candidates[0]
            elapsed = (time.perf_counter() - start) * 1000
            return Decision(model, None, None, None, {}, "pass-through", elapsed, self._chain(model, target))
        router = target.router
        req = request or RequestRouting()
        if scores is None:
            row = router.predict_many([text], None if req.metadata is None else [req.meta_dict()])[0]
        else:
            row = np.asarray(scores, dtype=np.float64)
        predicted, prices = router.split(row)
        kind, knob, source = target.kind, target.knob, target.knob_source
        candidates = list(target.candidates)
        if req.models is not None:
            unknown = [m for m in req.models if m not in candidates]
            if unknown:
                raise ValidationError(
                    f"routing.models names {unknown}, which {target.requested!r} cannot route to.",
                    hint=f"Its candidates: {', '.join(candidates)}.",
                )
            narrowed = [m for m in candidates if m in set(req.models)]
            allowed = narrowed if allowed is None else [m for m in allowed if m in set(narrowed)]
        if req.willingness_to_pay is not None:
            kind, knob, source = "wtp", req.willingness_to_pay, "request"
        made = router.engine.decide(
            predicted,
            prices,
            kind=kind,
            knob=knob,
            knob_source=source,
            candidates=candidates,
            allowed=allowed,
            budget_fraction_left=fraction_left,
            low_budget_fraction=self.config.limits.low_budget_fraction,
            text=text,
            rules=target.rules,
            max_cost_usd=req.max_cost_usd,
            max_latency_ms=req.max_latency_ms,
            latency_weight=target.latency_weight,
        )
        if request is not None:  # logged with the decision: what the caller asked for
            made.details["request_routing"] = {
                k: (dict(v) if k == "metadata" else list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(request).items()
                if v is not None
            }
        if target.cascade is not None and made.policy != "rule":
            made = self._cascade(target.cascade, made, prices, router)
        elapsed = (time.perf_counter() - start) * 1000
        return Decision(
            made.model,
            target.requested,
            made.policy,
            made.knob,
            {m: round(v, 6) for m, v in made.predicted.items() if math.isfinite(v)},
            made.reason,
            elapsed,
            self._chain(made.details.get("routed_choice", made.model), target),  # streams: no cascade
            float(made.details.get("budget_shift", 0.0)),
            details=dict(made.details),
            prices_usd=made.prices_usd,
        )

    @staticmethod
    def _cascade(
        cascade: CascadeConfig, made: RoutingDecision, prices: np.ndarray, router: LoadedRouter
    ) -> RoutingDecision:
        """Turn a decision into a cascade plan over its usable candidates: the first step is the model the
        request goes to (streaming requests stop there), the rest is in ``details["cascade"]``."""
        usable = list(made.details.get("candidates") or [made.model])
        if cascade.order:
            order = [m for m in cascade.order if m in usable]
        else:
            cols = cascade_order(prices, [router.models.index(m) for m in usable])  # cheapest first
            order = [router.models[j] for j in cols]
        details = {
            **made.details,
            "cascade": {"order": order, "verifier": cascade.verifier, "threshold": cascade.threshold},
            "routed_choice": made.model,
        }
        reason = (
            f"cascade {' → '.join(order)}: escalate while the {cascade.verifier} verifier scores below "
            f"{cascade.threshold:g}"
        )
        return dataclasses.replace(made, model=order[0], policy="cascade", reason=reason, details=details)

    def _chain(self, first: str, target: Target) -> list[str]:
        """The chosen model, then the target's fallbacks, then the chosen model's own fallbacks."""
        chain = [first]
        own = self.config.model(first)
        for m in [*target.fallbacks, *(own.fallbacks if own else [])]:
            if m not in chain:
                chain.append(m)
        return chain
