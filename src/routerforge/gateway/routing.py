"""Resolving the ``model`` field: real models pass through, synthetic models are routed.

Names, checked in this order:

1. a real model id from ``gateway.yaml`` → passes straight through (no router, no policy shift);
2. a named synthetic model from ``gateway.yaml`` (router dir + candidates + policy + knob);
3. ``router-<router>-<threshold>`` (RouteLLM's convention): the router directory ``<router>`` under
   ``$ROUTERFORGE_HOME/routers/tenants/<tenant>/`` (the caller's private routers) and then under
   ``$ROUTERFORGE_HOME/routers/`` (shared), with the binary threshold policy between the most and the least
   expensive of the router's models.

Routers are loaded once (at startup for every directory found, later on first use) and predict in a worker
thread; nothing here imports torch. As a tenant's budget runs low the knob shifts toward cheaper models
(:func:`shift_policy`).
"""

from __future__ import annotations

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
    GatewayConfig,
    ModelConfig,
    PolicyConfig,
    RoutingConfig,
    SyntheticModelConfig,
)
from routerforge.policy import choose_tolerance, choose_wtp, parse_router_model, strong_probability


class LoadedRouter:
    """A trained router directory, loaded once; thin adapter over ``routers.pipeline.TrainedRouter``."""

    def __init__(self, directory: Path, settings: Settings, options: RoutingConfig | None = None) -> None:
        from routerforge.routers.pipeline import TrainedRouter

        self.directory = directory
        embedder = _serving_embedder(directory, settings, options or RoutingConfig())
        self._router: Any = TrainedRouter.load(directory, settings, embedder=embedder)
        self.models: list[str] = list(self._router.models)
        self.name: str = directory.name
        self._lock = threading.Lock()  # index shards are not guaranteed thread-safe

    def predict_many(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), n_models)`` predicted scores. Embedding runs unlocked (onnxruntime sessions are
        thread-safe); the router and its index shard are used by one thread at a time."""
        batch = self._router.batch(list(texts))
        with self._lock:
            return np.asarray(self._router.router.predict_scores(batch), dtype=np.float64)

    def predict(self, text: str) -> np.ndarray:
        return self.predict_many([text])[0]

    def explain(self, text: str) -> dict[str, Any]:
        with self._lock:
            exp = self._router.explain(text)
        details = getattr(exp, "details", {}) or {}
        return {
            "router": getattr(exp, "router", self.name),
            "reason": getattr(exp, "reason", ""),
            "details": details,
        }


def _serving_embedder(directory: Path, settings: Settings, options: RoutingConfig) -> Any:
    """The router's saved embedder, rebuilt with the gateway's thread and cache overrides (``None``: as saved)."""
    import json

    from routerforge.config import EmbedSettings
    from routerforge.embed.factory import build_embedder

    try:
        doc = json.loads((directory / "embedder.json").read_text(encoding="utf-8"))
        saved = EmbedSettings(**doc["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unknown layout or no recorded settings: let TrainedRouter.load decide
    update: dict[str, Any] = {"cache": options.embed_cache}
    if options.embed_threads is not None:
        update["threads"] = options.embed_threads
    if settings.embed.api_key is not None and (settings.embed.provider, settings.embed.url) == (
        saved.provider,
        saved.url,
    ):
        update["api_key"] = settings.embed.api_key
    return build_embedder(saved.model_copy(update=update), cache_dir=settings.cache_dir)


@dataclass
class Target:
    """What a requested ``model`` resolves to."""

    requested: str
    synthetic: bool
    candidates: list[str]
    router: LoadedRouter | None = None
    policy: PolicyConfig | None = None
    fallbacks: list[str] = field(default_factory=list)


@dataclass
class Decision:
    """The routing outcome for one prompt."""

    model: str
    synthetic_model: str | None
    policy: str | None
    knob: float | None
    predicted: dict[str, float]
    reason: str
    routing_ms: float
    chain: list[str]
    budget_shift: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "synthetic_model": self.synthetic_model,
            "policy": self.policy,
            "knob": self.knob if self.knob is None or math.isfinite(self.knob) else None,
            "predicted": self.predicted,
            "reason": self.reason,
            "routing_ms": round(self.routing_ms, 3),
            "fallbacks": self.chain[1:],
            "budget_shift": self.budget_shift,
        }


def shift_amount(fraction_left: float | None, low_fraction: float) -> float:
    """0 when the budget is comfortable (or absent), rising linearly to 1 as it runs out."""
    if fraction_left is None or low_fraction <= 0 or fraction_left >= low_fraction:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - fraction_left / low_fraction)))


def shift_policy(kind: str, knob: float, shift: float, prices: np.ndarray) -> float:
    """The knob moved toward cheaper models by ``shift`` ∈ [0, 1] (1 = cheapest model always).

    threshold: t → t + shift·(1 − t) (fewer strong calls; t = 1 only calls the strong model when it is
    predicted to be perfect and the weak one useless); wtp: λ → λ + shift·(1 / cheapest positive price)
    (paying the cheapest model's price again costs a whole quality point); tolerance: δ → δ + shift·(1 − δ).
    """
    if shift <= 0:
        return knob
    if kind == "threshold":
        return knob + shift * (1.0 - knob) + (1e-9 if shift >= 1 else 0.0)
    if kind == "wtp":
        positive = prices[np.isfinite(prices) & (prices > 0)]
        scale = 1.0 / float(positive.min()) if positive.size else 0.0
        return float(np.inf) if shift >= 1 else knob + shift * scale
    return knob + shift * (1.0 - knob)


class Routing:
    """Holds the loaded routers and turns ``(tenant, model, prompt)`` into a :class:`Decision`."""

    def __init__(self, settings: Settings, config: GatewayConfig) -> None:
        self.settings = settings
        self.config = config
        self.routers_dir = settings.routers_dir
        self._routers: dict[Path, LoadedRouter] = {}
        self._load_lock = threading.Lock()
        self._named = {s.name: s for s in config.synthetic_models}
        self._batchers: dict[int, PredictBatcher] = {}

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
        loaded = []
        for base in (self.routers_dir, *sorted((self.routers_dir / "tenants").glob("*"))):
            if base.is_dir():
                for d in sorted(base.iterdir()):
                    if (d / "router.json").is_file():
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
                        ):
                            continue  # a broken dir must not stop the gateway; using it reports the error
        return loaded

    def _named_dir(self, syn: SyntheticModelConfig) -> Path:
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
                hit = LoadedRouter(directory, self.settings, self.config.routing)
                hit.predict_many(["warm-up"])  # load the embedder and index now, not on the first request
                self._routers[directory] = hit
        return hit

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
            return Target(name, True, candidates, router, syn.policy, list(syn.fallbacks))
        parsed = parse_router_model(name)
        if parsed is not None:
            router_name, threshold = parsed
            directory = self._find_router_dir(tenant, router_name)
            router = self._router_at(directory)
            candidates = list(router.models)
            self._check_models(name, candidates, router)
            pol = PolicyConfig(kind="threshold", knob=min(1.0, threshold))
            return Target(name, True, candidates, router, pol, [])
        available = [m.id for m in self.config.models] + self.synthetic_names(tenant)
        available += [f"router-{r}-<threshold>" for r in self.router_names(tenant)]
        raise UnknownModelError(name, available, hint="GET /v1/models lists them.")

    def _find_router_dir(self, tenant: str, router_name: str) -> Path:
        if "/" in router_name or router_name.startswith("."):
            raise ValidationError(f"Invalid router name {router_name!r}.")
        private = self.routers_dir / "tenants" / tenant / router_name
        if (private / "router.json").is_file():
            return private
        shared = self.routers_dir / router_name
        if (shared / "router.json").is_file():
            return shared
        # another tenant's private router of that name stays invisible: the same "unknown" answer
        raise UnknownModelError(
            f"router-{router_name}-<threshold>",
            [f"router-{r}-<threshold>" for r in self.router_names(tenant)],
            hint=f"No router directory {router_name!r} for this tenant; train one with `routerforge train`.",
        )

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
    ) -> Decision:
        """Choose a model for ``text``. ``scores`` are the router's predictions for it (in the router's
        model order) when already computed (the gateway batches them); else the router predicts here."""
        start = time.perf_counter()
        if not target.synthetic or target.router is None or target.policy is None:
            model = target.candidates[0]
            return Decision(
                model,
                None,
                None,
                None,
                {},
                "pass-through",
                (time.perf_counter() - start) * 1000,
                self._chain(model, target),
            )
        router = target.router
        scores_all = router.predict(text) if scores is None else np.asarray(scores, dtype=np.float64)
        cols = [router.models.index(m) for m in target.candidates]
        scores = scores_all[cols]
        models = list(target.candidates)
        if allowed is not None:
            keep = [i for i, m in enumerate(models) if m in allowed]
            if not keep:
                raise ValidationError("No candidate model of this synthetic model fits the request.")
            models = [models[i] for i in keep]
            scores = scores[keep]
        prices = np.array([self._price(m) for m in models], dtype=np.float64)
        shift = shift_amount(fraction_left, self.config.limits.low_budget_fraction)
        pol = target.policy
        knob = float(pol.knob if pol.knob is not None else 0.0)
        knob_used = shift_policy(pol.kind, knob, shift, prices)
        predicted = {m: round(float(s), 6) for m, s in zip(models, scores, strict=True) if math.isfinite(s)}
        if len(models) == 1:
            choice, reason = models[0], "only one candidate fits the request"
        elif pol.kind == "threshold":
            strong = models[int(np.argmax(prices))]
            weak = models[int(np.argmin(prices))]
            if strong == weak:
                strong, weak = models[-1], models[0]
            si, wi = models.index(strong), models.index(weak)
            p = float(strong_probability(scores[None, :], si, wi)[0])
            choice = strong if p >= knob_used else weak
            reason = f"P(strong needed)={p:.3f} {'≥' if choice == strong else '<'} threshold {knob_used:.3f}"
        elif pol.kind == "wtp":
            idx = int(choose_wtp(scores[None, :], prices[None, :], knob_used)[0])
            choice = models[idx]
            reason = f"max predicted score − λ·price with λ={knob_used:.4g}"
        else:
            idx = int(choose_tolerance(scores[None, :], prices[None, :], knob_used)[0])
            choice = models[idx]
            reason = f"cheapest model within δ={knob_used:.3f} of the best prediction"
        if shift > 0:
            reason += f"; budget low ({fraction_left:.0%} left): knob shifted from {knob:.4g}"
        elapsed = (time.perf_counter() - start) * 1000
        return Decision(
            choice,
            target.requested,
            pol.kind,
            knob_used,
            predicted,
            reason,
            elapsed,
            self._chain(choice, target),
            shift,
        )

    def _price(self, model_id: str) -> float:
        m: ModelConfig | None = self.config.model(model_id)
        return m.unit_price if m is not None else float("nan")

    def _chain(self, first: str, target: Target) -> list[str]:
        """The chosen model, then the target's fallbacks, then the chosen model's own fallbacks."""
        chain = [first]
        own = self.config.model(first)
        for m in [*target.fallbacks, *(own.fallbacks if own else [])]:
            if m not in chain:
                chain.append(m)
        return chain
