"""OpenTelemetry traces and metrics of the gateway, following the GenAI semantic conventions.

Off by default, and then nothing here runs (the service holds ``None``; no OpenTelemetry import). Turned on in
``gateway.yaml``::

    telemetry:
      enabled: true
      exporter: otlp                    # otlp (HTTP/protobuf; needs `pip install routerforge[otel]`) | console
      endpoint: http://collector:4318   # default: OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318
      service_name: routerforge
      capture_content: false            # true: prompts and answers (redacted) go into spans
      sample_ratio: 1.0

Per request (``chat`` and ``route``):

- a SERVER span ``chat {requested model}`` with ``gen_ai.operation.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``/``output_tokens``, ``gen_ai.provider.name`` (and
  the older ``gen_ai.system``), ``server.address``/``server.port`` of the upstream that answered,
  ``error.type`` (the HTTP status) on failure, ``http.response.status_code`` and ``routerforge.*`` facts
  (request id, synthetic model, chosen model, cost, stream);
- a child span ``route {synthetic model}`` for the routing decision: ``routerforge.router``,
  ``routerforge.chosen_model``, ``routerforge.policy``, ``routerforge.knob``, ``routerforge.rule`` (the rules
  that fired), ``routerforge.reason``, ``routerforge.budget_shift``;
- a CLIENT child span ``chat {model}`` per upstream attempt (retries and fallbacks each get one; skipped
  models a zero-length one with ``routerforge.attempt.skipped``), with ``routerforge.attempt.index`` (place in
  the fallback chain), ``routerforge.attempt.retry``, ``error.type`` and an ERROR status on failure.

Metrics (histograms, the GenAI client conventions): ``gen_ai.client.token.usage`` (``{token}``, with
``gen_ai.token.type`` input/output) and ``gen_ai.client.operation.duration`` (``s``).

Spans carry no key, no header and (unless ``capture_content``) no prompt or answer text. The providers are
owned by the :class:`Telemetry` object (never set as OpenTelemetry's globals) and shut down with the gateway.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from routerforge.errors import ConfigError

OTEL_HINT = "Install the OpenTelemetry extra: pip install 'routerforge[otel]'."
INSTRUMENTATION = "routerforge.gateway"
# the GenAI semantic conventions' recommended histogram buckets
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
# the caller's W3C trace context (traceparent/tracestate headers) of the request being handled (set per request)
_REMOTE_PARENT: ContextVar[dict[str, str] | None] = ContextVar("routerforge_remote_parent", default=None)
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]


class TelemetryConfig(BaseModel):
    """The ``telemetry:`` section of ``gateway.yaml`` (OpenTelemetry; off by default)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Emit OpenTelemetry traces and metrics.")
    exporter: Literal["otlp", "console"] = Field(
        default="otlp", description="otlp: OTLP over HTTP (routerforge[otel]); console: print to stdout."
    )
    endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint base (…:4318); default: OTEL_EXPORTER_OTLP_ENDPOINT or localhost.",
    )
    service_name: str = Field(default="routerforge", min_length=1)
    capture_content: bool = Field(
        default=False,
        description="Put prompts and answers (after logging.redact_patterns) into spans; off: no text.",
    )
    metrics: bool = Field(default=True, description="Also export the gen_ai.client.* histograms.")
    metric_interval_s: float = Field(default=30.0, gt=0, description="How often metrics are exported.")
    sample_ratio: float = Field(default=1.0, ge=0, le=1, description="Share of requests traced.")


def _import_sdk() -> Any:
    try:
        from opentelemetry.sdk import metrics, resources, trace
    except ImportError as exc:
        raise ConfigError(
            f"telemetry is enabled but OpenTelemetry is not installed ({exc}).", hint=OTEL_HINT
        ) from exc
    return trace, metrics, resources


def _address(base_url: str | None) -> tuple[str | None, int | None]:
    if not base_url:
        return None, None
    parts = urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname, port


def _redact(text: str | None, patterns: Sequence[re.Pattern[str]]) -> str | None:
    if text is None:
        return None
    for p in patterns:
        text = p.sub("[REDACTED]", text)
    return text


class Telemetry:
    """Tracer and meter of one gateway process. Build with :meth:`from_config` (``None`` when disabled), or pass
    your own providers (an SDK ``TracerProvider`` / ``MeterProvider``, e.g. with in-memory exporters)."""

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        tracer_provider: Any,
        meter_provider: Any | None = None,
        redact_patterns: Sequence[re.Pattern[str]] = (),
        spec_of: Callable[[str], Any] | None = None,
    ) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.config = config
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.patterns = list(redact_patterns)
        self.spec_of = spec_of  # model id -> ModelSpec or None (provider name, base URL), for attributes
        self._addresses: dict[str, tuple[Any, tuple[str | None, str | None, int | None]]] = {}
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION)
        self._kind_server, self._kind_client = SpanKind.SERVER, SpanKind.CLIENT
        self._status, self._error = Status, StatusCode.ERROR
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._propagator = TraceContextTextMapPropagator()
        self.token_usage = self.duration = None
        if meter_provider is not None:
            meter = meter_provider.get_meter(INSTRUMENTATION)
            self.token_usage = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self.duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )

    @classmethod
    def from_config(
        cls,
        config: TelemetryConfig,
        *,
        redact_patterns: Sequence[re.Pattern[str]] = (),
        spec_of: Callable[[str], Any] | None = None,
    ) -> Telemetry | None:
        """The configured exporters, or ``None`` when telemetry is off (then it costs nothing)."""
        if not config.enabled:
            return None
        trace_sdk, metrics_sdk, resources = _import_sdk()
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        resource = resources.Resource.create({"service.name": config.service_name})
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
        tracer_provider = trace_sdk.TracerProvider(resource=resource, sampler=sampler)
        span_exporter, metric_exporter = cls._exporters(config)
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        meter_provider = None
        if config.metrics:
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            reader = PeriodicExportingMetricReader(
                metric_exporter, export_interval_millis=config.metric_interval_s * 1000
            )
            meter_provider = metrics_sdk.MeterProvider(resource=resource, metric_readers=[reader])
        return cls(
            config,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            redact_patterns=redact_patterns,
            spec_of=spec_of,
        )

    @staticmethod
    def _exporters(config: TelemetryConfig) -> tuple[Any, Any]:
        if config.exporter == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter(), ConsoleMetricExporter()
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                f"telemetry.exporter is otlp but the OTLP exporter is not installed ({exc}).", hint=OTEL_HINT
            ) from exc
        if config.endpoint:
            base = config.endpoint.rstrip("/")
            return OTLPSpanExporter(endpoint=base + "/v1/traces"), OTLPMetricExporter(
                endpoint=base + "/v1/metrics"
            )
        return OTLPSpanExporter(), OTLPMetricExporter()

    def shutdown(self) -> None:
        """Flush and stop the exporters (at gateway shutdown)."""
        for provider in (self.tracer_provider, self.meter_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is not None:
                stop()

    # -- per request ----------------------------------------------------------------------------
    @staticmethod
    def remote_parent(traceparent: str | None, tracestate: str | None = None) -> None:
        """Remember the caller's trace context for this request (the app calls it for every request)."""
        carrier = None
        if traceparent:
            carrier = {"traceparent": traceparent}
            if tracestate:
                carrier["tracestate"] = tracestate
        _REMOTE_PARENT.set(carrier)

    def start(self, request_id: str, endpoint: str, model: str, *, stream: bool = False) -> RequestTrace:
        """The span of one request (ended by :meth:`RequestTrace.end`)."""
        operation = "chat" if endpoint == "chat" else f"routerforge.{endpoint}"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "routerforge.request_id": request_id,
            "routerforge.endpoint": endpoint,
        }
        if model:
            attrs["gen_ai.request.model"] = model
        if endpoint == "chat":
            attrs["routerforge.stream"] = stream
        name = f"{operation} {model}" if model else operation
        carrier = _REMOTE_PARENT.get()
        parent = self._propagator.extract(carrier) if carrier else None  # malformed: a new trace
        span = self.tracer.start_span(name, context=parent, kind=self._kind_server, attributes=attrs)
        return RequestTrace(self, span, model, operation, time.perf_counter())

    def provider_of(self, model: str | None) -> tuple[str | None, str | None, int | None]:
        """(gen_ai provider name, server address, server port) of a configured model (cached per spec)."""
        spec = self.spec_of(model) if (self.spec_of is not None and model) else None
        if spec is None:
            return None, None, None
        cached = self._addresses.get(spec.id)
        if cached is not None and cached[0] is spec:
            return cached[1]
        provider = spec.provider.split("/", 1)[0] if "/" in spec.provider else spec.provider
        if spec.kind == "balanced":
            out: tuple[str | None, str | None, int | None] = (provider, None, None)  # address varies per call
        else:
            out = (provider, *_address(spec.base_url))
        self._addresses[spec.id] = (spec, out)
        return out


class RequestTrace:
    """The spans of one request in flight."""

    __slots__ = ("model", "operation", "span", "started", "tel")

    def __init__(self, tel: Telemetry, span: Any, model: str, operation: str, started: float) -> None:
        self.tel = tel
        self.span = span
        self.model = model
        self.operation = operation
        self.started = started

    def _context(self) -> Any:
        from opentelemetry.trace import set_span_in_context

        return set_span_in_context(self.span)

    def routing(self, decision: Any, started_ns: int, router: str | None) -> None:
        """A finished child span for the routing decision (synthetic models only)."""
        if decision.synthetic_model is None or not self.span.is_recording():  # not sampled: no children
            return
        attrs: dict[str, Any] = {
            "routerforge.synthetic_model": decision.synthetic_model,
            "routerforge.chosen_model": decision.model,
            "routerforge.reason": decision.reason,
            "routerforge.routing_ms": float(decision.routing_ms or 0.0),
            "routerforge.fallbacks": list(decision.chain[1:]),
        }
        if router:
            attrs["routerforge.router"] = router
        if decision.policy:
            attrs["routerforge.policy"] = decision.policy
        if decision.knob is not None:
            attrs["routerforge.knob"] = float(decision.knob)
        if decision.budget_shift:
            attrs["routerforge.budget_shift"] = float(decision.budget_shift)
        rules = decision.details.get("rules")
        if rules:
            attrs["routerforge.rule"] = [str(r) for r in rules]
        span = self.tel.tracer.start_span(
            f"route {decision.synthetic_model}",
            context=self._context(),
            attributes=attrs,
            start_time=started_ns,
        )
        span.end()
        self.span.set_attribute("routerforge.chosen_model", decision.model)
        self.span.set_attribute("routerforge.synthetic_model", decision.synthetic_model)

    def attempts(self, attempts: Sequence[Any]) -> None:
        """A CLIENT child span per upstream attempt (already finished: times from the attempt records)."""
        if not self.span.is_recording():
            return
        ctx = self._context()
        now = time.time_ns()
        index = -1
        last_model = None
        for a in attempts:
            if a.model != last_model:
                index, last_model = index + 1, a.model
            provider, host, port = self.tel.provider_of(a.model)
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": a.model,
                "routerforge.attempt.index": index,
                "routerforge.attempt.retry": a.retry,
                "routerforge.attempt.status": a.status,
            }
            if provider:
                attrs["gen_ai.provider.name"] = provider
                attrs["gen_ai.system"] = provider
            if host:
                attrs["server.address"] = host
            if port:
                attrs["server.port"] = port
            if a.status == "skipped":
                attrs["routerforge.attempt.skipped"] = a.error or "skipped"
            elif a.status == "error":
                attrs["error.type"] = str(a.status_code) if a.status_code else "upstream_error"
            if a.ttft_ms is not None:
                attrs["routerforge.ttft_ms"] = float(a.ttft_ms)
            start = getattr(a, "started_ns", 0) or (now - int((a.latency_ms or 0.0) * 1e6))
            span = self.tel.tracer.start_span(
                f"chat {a.model}", context=ctx, kind=self.tel._kind_client, attributes=attrs, start_time=start
            )
            if a.status == "error":
                span.set_status(self.tel._status(self.tel._error, a.error or None))
            span.end(end_time=start + int((a.latency_ms or 0.0) * 1e6))

    def end(self, entry: Any) -> None:
        """End the request span from its finished log entry; record the metrics."""
        tel = self.tel
        span = self.span
        status = entry.status or 500
        answered = entry.answered_model
        provider, host, port = tel.provider_of(answered or entry.chosen_model)
        attrs: dict[str, Any] = {"http.response.status_code": status}
        if answered:
            attrs["gen_ai.response.model"] = answered
        if provider:
            attrs["gen_ai.provider.name"] = provider
            attrs["gen_ai.system"] = provider
        if host:
            attrs["server.address"] = host
        if port:
            attrs["server.port"] = port
        if entry.tokens_in is not None:
            attrs["gen_ai.usage.input_tokens"] = int(entry.tokens_in)
        if entry.tokens_out is not None:
            attrs["gen_ai.usage.output_tokens"] = int(entry.tokens_out)
        if entry.cost_usd is not None:
            attrs["routerforge.cost_usd"] = float(entry.cost_usd)
        error_type = str(status) if status >= 400 else None
        if error_type:
            attrs["error.type"] = error_type
        if tel.config.capture_content:
            prompt = _redact(entry.prompt, tel.patterns)
            if prompt is not None:
                attrs["gen_ai.input.messages"] = json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": prompt}]}], ensure_ascii=False
                )
            answer = _redact(entry.response_text, tel.patterns)
            if answer:
                attrs["gen_ai.output.messages"] = json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}],
                    ensure_ascii=False,
                )
        span.set_attributes(attrs)
        if error_type:
            span.set_status(tel._status(tel._error, f"HTTP {status}"))
        span.end()
        if tel.duration is None or tel.token_usage is None:
            return
        metric_attrs: dict[str, Any] = {"gen_ai.operation.name": self.operation}
        if self.model:
            metric_attrs["gen_ai.request.model"] = self.model
        for key in ("gen_ai.response.model", "gen_ai.provider.name", "server.address", "error.type"):
            if key in attrs:
                metric_attrs[key] = attrs[key]
        tel.duration.record(time.perf_counter() - self.started, metric_attrs)
        if entry.tokens_in is not None:
            tel.token_usage.record(int(entry.tokens_in), {**metric_attrs, "gen_ai.token.type": "input"})
        if entry.tokens_out is not None:
            tel.token_usage.record(int(entry.tokens_out), {**metric_attrs, "gen_ai.token.type": "output"})


__all__ = ["RequestTrace", "Telemetry", "TelemetryConfig"]
