"""Prometheus metrics of one gateway app, in a registry of its own (two apps in one process never clash).

With ``routerforge serve --workers N`` every worker process keeps its own registry and ``/metrics`` shows
the worker that answered the scrape. For one aggregated view, start the server with
``PROMETHEUS_MULTIPROC_DIR`` pointing at an empty directory: prometheus_client then stores values in
files there and :meth:`GatewayMetrics.render` merges them with a ``MultiProcessCollector``.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class GatewayMetrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "routerforge_requests",
            "Chat requests by requested (synthetic) model, chosen model and HTTP status.",
            ["synthetic_model", "chosen_model", "status"],
            registry=r,
        )
        self.routing_latency = Histogram(
            "routerforge_routing_latency_seconds",
            "Time to choose a model (embedding + router + policy).",
            ["synthetic_model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "routerforge_upstream_latency_seconds",
            "Time spent in upstream calls, per answering model.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(
            "routerforge_tokens",
            "Tokens by model and direction (in/out).",
            ["model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "routerforge_cost_usd", "Spend in USD by tenant and model.", ["tenant", "model"], registry=r
        )
        self.budget_left = Gauge(
            "routerforge_budget_left_usd",
            "USD left in the tightest budget of a tenant (last seen by this process).",
            ["tenant"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.upstream_attempts = Counter(
            "routerforge_upstream_attempts",
            "Upstream attempts by model and outcome (ok, error, skipped, open_circuit).",
            ["model", "outcome"],
            registry=r,
        )
        self.log_queue_rows = Gauge(
            "routerforge_log_rows_written", "Request-log rows written by this process.", registry=r
        )

    def render(self) -> bytes:
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=str(self.multiprocess_dir))
            return generate_latest(merged)
        return generate_latest(self.registry)
