"""Prometheus metrics of one gateway app, in a registry of its own (two apps in one process never clash).

With ``routerforge serve --workers N`` every worker process keeps its own registry and ``/metrics`` shows
the worker that answered the scrape. For one aggregated view, start the server with
``PROMETHEUS_MULTIPROC_DIR`` pointing at an empty directory: prometheus_client then stores values in
files there and :meth:`GatewayMetrics.render` merges them with a ``MultiProcessCollector``.

Label values are bounded (:class:`MetricLabels`): a ``model`` label is a configured model id, a synthetic
model name, ``router-<router>[-<threshold>]`` for a router that is loaded (threshold rounded to 2 decimals),
``""`` (none chosen) or ``"other"``; a ``tenant`` label is a tenant of gateway.yaml or ``"other"``. So a
client cannot grow the registry (or plant a key in a label) by sending made-up names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from routerforge.gateway.config import GatewayConfig
from routerforge.policy.binary import parse_router_model, router_model_name

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
MEMO_SIZE = 4096  # label values remembered by MetricLabels.model


class MetricLabels:
    """Maps client-controlled strings to a bounded set of label values (see the module docstring).

    ``models``: configured model ids and synthetic model names; ``tenants``: configured tenants;
    ``routers``: called for the directories of the routers loaded now (their names make the
    ``router-<name>-…`` labels).
    """

    def __init__(
        self,
        models: Iterable[str] = (),
        tenants: Iterable[str] = (),
        routers: Callable[[], Iterable[str | Path]] = tuple,
    ) -> None:
        self.models = frozenset(models)
        self.tenants = frozenset(tenants)
        self.routers = routers
        # value -> (the loaded routers it was computed for, its label): a request's label costs a dict hit
        # instead of two regex matches and a Path per loaded router (bounded: cleared when full)
        self._memo: dict[str, tuple[tuple[str | Path, ...], str]] = {}

    @classmethod
    def of(cls, config: GatewayConfig, routers: Callable[[], Iterable[str | Path]] = tuple) -> MetricLabels:
        models = [m.id for m in config.models] + [s.name for s in config.synthetic_models]
        return cls(models, [t.name for t in config.tenants], routers)

    def model(self, value: str) -> str:
        if value in self.models or value == "":
            return value
        routers = tuple(self.routers())
        hit = self._memo.get(value)
        if hit is not None and hit[0] == routers:
            return hit[1]
        label = OTHER
        readings = parse_router_model(value)
        if readings:
            loaded = {Path(p).name for p in routers}
            for router, threshold in readings:
                if router in loaded:
                    knob = None if threshold is None else round(min(threshold, 1.0), 2)
                    label = router_model_name(router, knob)
                    break
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[value] = (routers, label)
        return label

    def tenant(self, value: str) -> str:
        return value if value in self.tenants else OTHER


def _status(value: str) -> str:
    return value if value.isdigit() and len(value) == 3 else OTHER


def _drift_check(value: str) -> str:
    return value if value in ("coverage", "share", "feedback") else OTHER


class BoundedMetric:
    """A labelled prometheus metric whose label values go through ``normalise`` (one per label, or None)."""

    def __init__(self, metric: Any, *normalise: Callable[[str], str] | None) -> None:
        self.metric = metric
        self._normalise = normalise

    def labels(self, *values: str) -> Any:
        return self.metric.labels(
            *(v if f is None else f(v) for f, v in zip(self._normalise, values, strict=True))
        )


class GatewayMetrics:
    def __init__(self, multiprocess_dir: Path | None = None, *, labels: MetricLabels | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.labels = labels or MetricLabels()
        model, tenant = self.labels.model, self.labels.tenant
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = BoundedMetric(
            Counter(
                "routerforge_requests",
                "Chat requests by requested (synthetic) model, chosen model and HTTP status.",
                ["synthetic_model", "chosen_model", "status"],
                registry=r,
            ),
            model,
            model,
            _status,
        )
        self.routing_latency = BoundedMetric(
            Histogram(
                "routerforge_routing_latency_seconds",
                "Time to choose a model (embedding + router + policy).",
                ["synthetic_model"],
                buckets=LATENCY_BUCKETS_S,
                registry=r,
            ),
            model,
        )
        self.upstream_latency = BoundedMetric(
            Histogram(
                "routerforge_upstream_latency_seconds",
                "Time spent in upstream calls, per answering model.",
                ["model"],
                buckets=LATENCY_BUCKETS_S,
                registry=r,
            ),
            model,
        )
        self.tokens = BoundedMetric(
            Counter(
                "routerforge_tokens",
                "Tokens by model and direction (in/out).",
                ["model", "direction"],
                registry=r,
            ),
            model,
            None,
        )
        self.cost = BoundedMetric(
            Counter(
                "routerforge_cost_usd", "Spend in USD by tenant and model.", ["tenant", "model"], registry=r
            ),
            tenant,
            model,
        )
        self.budget_left = BoundedMetric(
            Gauge(
                "routerforge_budget_left_usd",
                "USD left in the tightest budget of a tenant (last seen by this process).",
                ["tenant"],
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            tenant,
        )
        self.upstream_attempts = BoundedMetric(
            Counter(
                "routerforge_upstream_attempts",
                "Upstream attempts by model and outcome (ok, error, skipped, open_circuit).",
                ["model", "outcome"],
                registry=r,
            ),
            model,
            None,
        )
        self.log_queue_rows = Gauge(
            "routerforge_log_rows_written", "Request-log rows written by this process.", registry=r
        )
        # drift and quality alerts (gateway/drift.py, docs/drift.md); router = a synthetic model name
        self.drift_coverage = BoundedMetric(
            Gauge(
                "routerforge_drift_low_coverage_share",
                "Share of recent prompts whose nearest training prompt is less similar than the training "
                "prompts' own 5th-percentile nearest-neighbour similarity (about 0.05 without drift).",
                ["router"],
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            model,
        )
        self.drift_share_tvd = BoundedMetric(
            Gauge(
                "routerforge_drift_share_tvd",
                "Total variation distance between recent chosen-model shares and the reference's.",
                ["router"],
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            model,
        )
        self.drift_feedback_gap = BoundedMetric(
            Gauge(
                "routerforge_drift_feedback_gap",
                "Mean feedback rating minus the predicted score of the answering model (recent window).",
                ["router"],
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            model,
        )
        self.drift_status = BoundedMetric(
            Gauge(
                "routerforge_drift_status",
                "Overall drift status: -1 insufficient data, 0 ok, 1 warn, 2 alert.",
                ["router"],
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            model,
        )
        self.drift_check_status = BoundedMetric(
            Gauge(
                "routerforge_drift_check_status",
                "Status of one drift check (coverage, share, feedback): -1 insufficient data, 0 ok, 1 warn, "
                "2 alert.",
                ["router", "check"],
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            model,
            _drift_check,
        )
        self.drift_window = BoundedMetric(
            Gauge(
                "routerforge_drift_window_requests",
                "Requests in the window the drift checks last looked at.",
                ["router"],
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            model,
        )

    @classmethod
    def for_gateway(
        cls, config: GatewayConfig, loaded_routers: Callable[[], Iterable[str | Path]] = tuple
    ) -> GatewayMetrics:
        """Metrics whose labels are bounded by ``config`` and the router directories loaded."""
        return cls(labels=MetricLabels.of(config, loaded_routers))

    def render(self) -> bytes:
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=str(self.multiprocess_dir))
            return generate_latest(merged)
        return generate_latest(self.registry)
