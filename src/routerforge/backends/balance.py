"""Load balancing across several deployments of one model, with cooldowns.

One model id in ``gateway.yaml`` may list several *deployments* — the same model behind different base URLs
(regions, accounts, replicas of a local server), each with its own key and weight::

    models:
      - id: small
        input_usd_per_mtok: 0.15
        output_usd_per_mtok: 0.60
        deployments:
          - {base_url: http://10.0.0.1:9000/v1, api_key_env: SMALL_KEY_A, weight: 3}
          - {base_url: http://10.0.0.2:9000/v1, api_key_env: SMALL_KEY_B, weight: 1}
        balance: {strategy: weighted, cooldown_s: 30, allowed_fails: 1}

Such a model is served by one :class:`BalancedBackend` (backend kind ``balanced``). To the rest of the
gateway it is one model: one :class:`~routerforge.backends.reliability.UpstreamPool` entry, one circuit
breaker, one set of retries, one place in the fallback chain. Inside one attempt of the pool the backend:

- orders the deployments by ``strategy``: ``weighted`` (random, proportional to ``weight``),
  ``least-busy`` (fewest requests in flight here, ties at random) or ``latency`` (lowest moving average of
  latency — the whole answer, or the first chunk of a stream; a deployment without a measurement first);
- skips deployments cooling down; after ``allowed_fails`` consecutive failures that count against the
  model (not 400/413/422, which are the request's fault and are raised at once), a deployment cools down
  for ``cooldown_s`` and then gets traffic again (its first success clears its failures);
- fails over to the next deployment immediately (no backoff: another deployment is another server); the
  pool's retries and breaker see a failure only when every deployment failed, or when all cool down
  (then ``UpstreamError`` says so, not retryable: the chain moves on to the model's fallbacks);
- streams fail over only before their first chunk, like the pool's fallback chain.

Counts (in flight, latency, failures, cooldowns, served) are per process; :meth:`BalancedBackend.stats`
shows them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from routerforge.backends.base import ChatBackend, ChatChunk, ChatRequest, ChatResult
from routerforge.backends.registry import build_backend
from routerforge.backends.reliability import counts_against_model
from routerforge.backends.spec import ModelSpec
from routerforge.errors import ConfigError, UpstreamError

log = logging.getLogger("routerforge.backends.balance")

Strategy = Literal["weighted", "least-busy", "latency"]
STRATEGIES: tuple[Strategy, ...] = ("weighted", "least-busy", "latency")
LATENCY_EWMA = 0.3  # weight of the newest measurement in a deployment's moving average


class DeploymentConfig(BaseModel):
    """One deployment of a model in ``gateway.yaml`` (the key by the *name* of its environment variable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1, description="OpenAI-compatible base URL (…/v1) or LiteLLM api_base.")
    api_key_env: str | None = Field(
        default=None, description="Env var holding this deployment's key (default: the model's api_key_env)."
    )
    upstream_model: str | None = Field(
        default=None, description="Model name sent to this deployment (default: the model's)."
    )
    weight: float = Field(default=1.0, gt=0, description="Share of traffic under the weighted strategy.")
    name: str | None = Field(
        default=None, description="Label in stats and logs (default: host:port of base_url)."
    )


class BalanceConfig(BaseModel):
    """How a model with several deployments spreads its traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = Field(default="weighted", description="weighted | least-busy | latency.")
    cooldown_s: float = Field(default=30.0, gt=0, description="Pause of a deployment after failures.")
    allowed_fails: int = Field(
        default=1, ge=1, description="Consecutive failures of a deployment before it cools down."
    )


@dataclass
class Deployment:
    """A deployment's backend and its live counts (this process only)."""

    name: str
    backend: ChatBackend
    weight: float = 1.0
    in_flight: int = 0
    latency_ms: float | None = None  # moving average of successful calls
    fails: int = 0  # consecutive failures counting against the model
    cooldown_until: float = 0.0  # clock time until which it gets no traffic
    cooldowns: int = 0
    served: int = 0
    failed: int = 0


class BalancedBackend:
    """Serves one model from several deployments (see the module docstring)."""

    def __init__(
        self,
        model_id: str,
        deployments: Sequence[Deployment],
        *,
        strategy: Strategy = "weighted",
        cooldown_s: float = 30.0,
        allowed_fails: int = 1,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not deployments:
            raise ConfigError(f"Model {model_id!r}: deployments is empty.", hint="List at least one.")
        if strategy not in STRATEGIES:
            raise ConfigError(f"Unknown balance strategy {strategy!r}. Available: {', '.join(STRATEGIES)}.")
        self.model_id = model_id
        self.deployments = list(deployments)
        self.strategy = strategy
        self.cooldown_s = cooldown_s
        self.allowed_fails = allowed_fails
        self._clock = clock
        self._rng = rng or random.Random()
        self.enforces_timeouts = all(getattr(d.backend, "enforces_timeouts", False) for d in deployments)

    @property
    def name(self) -> str:
        return f"balanced/{self.model_id}"

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self.deployments)
        return f"BalancedBackend({self.model_id!r}, [{names}], strategy={self.strategy!r})"

    # -- choosing -------------------------------------------------------------------------------
    def order(self) -> list[Deployment]:
        """The deployments to try for the next call, best first; those cooling down are left out."""
        now = self._clock()
        ready = [d for d in self.deployments if d.cooldown_until <= now]
        if self.strategy == "weighted":
            return self._weighted(ready)
        keyed = [(self._key(d), self._rng.random(), d) for d in ready]
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [d for _, _, d in keyed]

    def _key(self, d: Deployment) -> float:
        if self.strategy == "least-busy":
            return float(d.in_flight)
        return -1.0 if d.latency_ms is None else d.latency_ms  # latency: unmeasured first

    def _weighted(self, ready: list[Deployment]) -> list[Deployment]:
        """A weighted random order (each next pick proportional to weight among those left)."""
        left = list(ready)
        out: list[Deployment] = []
        while left:
            total = sum(d.weight for d in left)
            x = self._rng.random() * total
            for i, d in enumerate(left):
                x -= d.weight
                if x < 0 or i == len(left) - 1:
                    out.append(left.pop(i))
                    break
        return out

    def _cooling_error(self) -> UpstreamError:
        now = self._clock()
        wait = min(d.cooldown_until for d in self.deployments) - now
        return UpstreamError(
            f"{self.model_id}: every deployment is cooling down after failures (next in {max(wait, 0):.1f} s)",
            provider=self.name,
            retryable=False,
            hint="See the earlier errors of this model; the fallback chain moves on to other models.",
        )

    # -- bookkeeping ----------------------------------------------------------------------------
    def _succeeded(self, d: Deployment, latency_ms: float) -> None:
        d.fails = 0
        d.served += 1
        d.latency_ms = (
            latency_ms
            if d.latency_ms is None
            else (1 - LATENCY_EWMA) * d.latency_ms + LATENCY_EWMA * latency_ms
        )

    def _failed(self, d: Deployment, err: UpstreamError) -> None:
        d.failed += 1
        d.fails += 1
        if d.fails >= self.allowed_fails:
            d.fails = 0
            d.cooldowns += 1
            d.cooldown_until = self._clock() + self.cooldown_s
            log.warning(
                "deployment %s of model %s cools down for %g s after: %s",
                d.name,
                self.model_id,
                self.cooldown_s,
                err,
            )

    def stats(self) -> list[dict[str, Any]]:
        """Per deployment: in flight, latency average, served, failed, cooldowns, seconds of cooldown left."""
        now = self._clock()
        return [
            {
                "name": d.name,
                "weight": d.weight,
                "in_flight": d.in_flight,
                "latency_ms": d.latency_ms,
                "served": d.served,
                "failed": d.failed,
                "cooldowns": d.cooldowns,
                "cooldown_left_s": max(0.0, d.cooldown_until - now),
            }
            for d in self.deployments
        ]

    # -- the backend contract -------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> ChatResult:
        last: UpstreamError | None = None
        for d in self.order():
            d.in_flight += 1
            start = time.perf_counter()
            try:
                result = await d.backend.complete(request)
            except UpstreamError as err:
                if not counts_against_model(err):
                    raise  # the request's own fault: another deployment would refuse it too
                self._failed(d, err)
                last = err
                continue
            finally:
                d.in_flight -= 1
            self._succeeded(d, (time.perf_counter() - start) * 1000.0)
            return result
        raise last if last is not None else self._cooling_error()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        last: UpstreamError | None = None
        for d in self.order():
            d.in_flight += 1
            start = time.perf_counter()
            iterator = aiter(d.backend.stream(request))
            started = False
            try:
                try:
                    first = await anext(iterator)
                except StopAsyncIteration:
                    self._succeeded(d, (time.perf_counter() - start) * 1000.0)
                    return
                started = True
                self._succeeded(d, (time.perf_counter() - start) * 1000.0)  # time to the first chunk
                yield first
                async for chunk in iterator:
                    yield chunk
                return
            except UpstreamError as err:
                if not counts_against_model(err):
                    raise
                self._failed(d, err)
                if started:
                    raise  # content already went out: no failover mid-stream
                last = err
            finally:
                d.in_flight -= 1
                close = getattr(iterator, "aclose", None)
                if close is not None:
                    await close()
        raise last if last is not None else self._cooling_error()

    async def aclose(self) -> None:
        for d in self.deployments:
            await d.backend.aclose()


def deployment_options(
    deployments: Sequence[DeploymentConfig],
    balance: BalanceConfig,
    keys: Sequence[SecretStr | None],
    kind: str | None = None,
) -> dict[str, Any]:
    """The ``ModelSpec.options`` of a balanced model: its deployments (keys resolved) and strategy."""
    return {
        "deployments": [
            {
                "name": d.name,
                "base_url": d.base_url,
                "api_key": key,
                "upstream_model": d.upstream_model,
                "weight": d.weight,
            }
            for d, key in zip(deployments, keys, strict=True)
        ],
        "balance": balance.model_dump(),
        "child_kind": kind,
    }


def _label(base_url: str, given: str | None, taken: set[str]) -> str:
    label = given or urlsplit(base_url).netloc or base_url
    out, n = label, 2
    while out in taken:
        out, n = f"{label}#{n}", n + 1
    taken.add(out)
    return out


def from_spec(spec: ModelSpec, build: Callable[[ModelSpec], ChatBackend] = build_backend) -> BalancedBackend:
    """Registry factory for kind ``balanced``: one backend per deployment, built like any other model."""
    opts = dict(spec.options)
    raw = opts.pop("deployments", None)
    balance = BalanceConfig.model_validate(opts.pop("balance", None) or {})
    child_kind = opts.pop("child_kind", None)  # the model's own ``kind``, if it named one
    if not raw:
        raise ConfigError(f"Model {spec.id!r} has kind 'balanced' but no deployments.")
    taken: set[str] = set()
    deployments = []
    for item in raw:
        child = spec.model_copy(
            update={
                "kind": child_kind,
                "base_url": item["base_url"],
                "api_key": item.get("api_key"),
                "upstream_model": item.get("upstream_model") or spec.upstream_model,
                "options": opts,
            }
        )
        deployments.append(
            Deployment(
                name=_label(item["base_url"], item.get("name"), taken),
                backend=build(child),
                weight=float(item.get("weight", 1.0)),
            )
        )
    return BalancedBackend(
        spec.id,
        deployments,
        strategy=balance.strategy,
        cooldown_s=balance.cooldown_s,
        allowed_fails=balance.allowed_fails,
    )


__all__ = [
    "STRATEGIES",
    "BalanceConfig",
    "BalancedBackend",
    "Deployment",
    "DeploymentConfig",
    "deployment_options",
    "from_spec",
]
