"""Prometheus metrics of load-balanced deployments (models with ``deployments:``, ``backends/balance.py``).

Read at scrape time from each :class:`~routerforge.backends.balance.BalancedBackend`'s counts (this process):

- ``routerforge_deployment_in_flight{model, deployment}`` — requests in flight now;
- ``routerforge_deployment_requests_total{model, deployment, outcome}`` — ``ok`` / ``error``;
- ``routerforge_deployment_cooldowns_total{model, deployment}`` and ``routerforge_deployment_cooling`` (1 while
  the deployment gets no traffic);
- ``routerforge_deployment_latency_seconds{model, deployment}`` — the moving average the ``latency`` strategy
  uses (absent until measured).

Labels are configured model ids and deployment names only. Registered by the service only when a model has
deployments. Not merged across ``--workers`` processes (``PROMETHEUS_MULTIPROC_DIR`` mode shows none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from routerforge.backends.balance import BalancedBackend

LABELS = ["model", "deployment"]


class DeploymentCollector:
    """A prometheus_client collector over the balanced backends of the current upstream pool."""

    def __init__(self, pool: Callable[[], Any]) -> None:
        self._pool = pool  # called at every scrape: a hot reload may have replaced the pool

    def _backends(self) -> Iterator[BalancedBackend]:
        pool = self._pool()
        for model_id in pool.models:
            if pool.spec(model_id).kind == "balanced":
                backend = pool.backend(model_id)
                if isinstance(backend, BalancedBackend):
                    yield backend

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "routerforge_deployment_in_flight", "Requests in flight per deployment.", labels=LABELS
        )
        requests = CounterMetricFamily(
            "routerforge_deployment_requests",
            "Calls per deployment by outcome.",
            labels=[*LABELS, "outcome"],
        )
        cooldowns = CounterMetricFamily(
            "routerforge_deployment_cooldowns", "Times a deployment was cooled down.", labels=LABELS
        )
        cooling = GaugeMetricFamily(
            "routerforge_deployment_cooling", "1 while a deployment is cooling down.", labels=LABELS
        )
        latency = GaugeMetricFamily(
            "routerforge_deployment_latency_seconds",
            "Moving average of a deployment's latency (first chunk for streams).",
            labels=LABELS,
        )
        for backend in self._backends():
            for s in backend.stats():
                labels = [backend.model_id, s["name"]]
                in_flight.add_metric(labels, s["in_flight"])
                requests.add_metric([*labels, "ok"], s["served"])
                requests.add_metric([*labels, "error"], s["failed"])
                cooldowns.add_metric(labels, s["cooldowns"])
                cooling.add_metric(labels, 1.0 if s["cooldown_left_s"] > 0 else 0.0)
                if s["latency_ms"] is not None:
                    latency.add_metric(labels, s["latency_ms"] / 1000.0)
        yield from (in_flight, requests, cooldowns, cooling, latency)

    def describe(self) -> list[Metric]:
        return []  # described at collection time (labels depend on the config)


__all__ = ["DeploymentCollector"]
