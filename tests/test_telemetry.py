"""OpenTelemetry (gateway/telemetry.py) through a real gateway on loopback: the official ``openai`` client, a fake
upstream with injected faults, the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra (routerforge[otel]) is not installed")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fake_upstream import FakeUpstream, Fault
from gateway_server import LoopbackServer
from routerforge.errors import ConfigError
from routerforge.gateway.config import parse_gateway_config
from routerforge.gateway.telemetry import Telemetry, TelemetryConfig
from test_gateway_routing import raw_config, router_dir, settings_for, stub_app


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer_provider = tracer_provider

    def install(self, app: Any, **config: Any) -> None:
        svc = app.state.service
        svc.telemetry = Telemetry(
            TelemetryConfig(enabled=True, **config),
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            redact_patterns=svc.config.logging.compiled(),
            spec_of=svc._spec_or_none,
        )

    def finished(self) -> list[Any]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out


def gateway(home: Path, up: FakeUpstream, otel: Otel, **config: Any) -> Any:
    settings = settings_for(home)
    d = router_dir(settings.routers_dir / "stub")
    raw = raw_config(up, require_auth=False)
    raw["models"][1]["max_retries"] = 1
    app = stub_app(settings, raw, [d])
    otel.install(app, **config)
    return app


def by_name(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


def test_request_routing_and_attempt_spans(rf_home: Path, upstream: FakeUpstream) -> None:
    otel = Otel()
    app = gateway(rf_home, upstream, otel)
    upstream.inject(Fault("status", status=503, model="large", times=1))  # one retry, visible as its own span
    secret = "sk-abcdefghijklmnop-secret"
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="caller-key", max_retries=0)
        r = client.chat.completions.create(
            model="router-stub-0.6", messages=[{"role": "user", "content": f"a hard question {secret}"}]
        )
    assert r.model == "large"
    spans = otel.finished()
    [request] = by_name(spans, "chat router-stub-0.6")
    [routing] = by_name(spans, "route router-stub-0.6")
    attempts = by_name(spans, "chat large")
    assert request.kind == SpanKind.SERVER and request.parent is None
    a = request.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "router-stub-0.6"
    assert a["gen_ai.response.model"] == "large"
    assert a["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == r.usage.completion_tokens
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.system"] == "openai"
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == upstream.port
    assert a["http.response.status_code"] == 200 and "error.type" not in a
    assert a["routerforge.chosen_model"] == "large"
    # routing: a child of the request span
    assert routing.parent.span_id == request.context.span_id
    assert routing.context.trace_id == request.context.trace_id
    ra = routing.attributes
    assert ra["routerforge.router"] == "stub" and ra["routerforge.chosen_model"] == "large"
    assert ra["routerforge.policy"] == "threshold" and ra["routerforge.knob"] == pytest.approx(0.6)
    # the failed first try and the retry that answered, each a CLIENT child span, in order
    assert len(attempts) == 2
    attempts.sort(key=lambda s: s.start_time)
    failed, ok = attempts
    assert all(s.kind == SpanKind.CLIENT and s.parent.span_id == request.context.span_id for s in attempts)
    assert failed.attributes["error.type"] == "503" and failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["routerforge.attempt.retry"] == 0
    assert (
        ok.attributes["routerforge.attempt.retry"] == 1
        and ok.attributes["routerforge.attempt.status"] == "ok"
    )
    assert failed.end_time <= ok.start_time <= ok.end_time <= request.end_time
    assert request.start_time <= routing.start_time <= routing.end_time <= failed.start_time
    # no secret, no key and (by default) no text in any span
    dump = repr([dict(s.attributes) for s in spans]) + repr([s.name for s in spans])
    assert secret not in dump and "caller-key" not in dump and "hard question" not in dump
    # metrics: token usage (input and output) and the operation duration
    m = otel.metrics()
    usage = {p.attributes["gen_ai.token.type"]: p for p in m["gen_ai.client.token.usage"]}
    assert usage["input"].sum == r.usage.prompt_tokens and usage["output"].sum == r.usage.completion_tokens
    assert usage["input"].attributes["gen_ai.response.model"] == "large"
    [duration] = m["gen_ai.client.operation.duration"]
    assert duration.count == 1 and 0 < duration.sum < 10
    assert duration.attributes["gen_ai.request.model"] == "router-stub-0.6"


def test_fallback_stream_and_failure(rf_home: Path, upstream: FakeUpstream) -> None:
    otel = Otel()
    settings = settings_for(rf_home)
    raw = raw_config(upstream, require_auth=False)
    raw["models"][0]["fallbacks"] = ["large"]
    raw["models"][0]["max_retries"] = 0
    app = stub_app(settings, raw, [])
    otel.install(app)
    upstream.inject(Fault("status", status=500, model="small", times=1))
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="small",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None
        upstream.inject(Fault("status", status=500, model="small", times=1))
        upstream.inject(Fault("status", status=400, model="large", times=1))
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="small", messages=[{"role": "user", "content": "x"}])
    spans = otel.finished()
    requests = sorted(by_name(spans, "chat small"), key=lambda s: s.start_time)
    servers = [s for s in requests if s.kind == SpanKind.SERVER]
    assert len(servers) == 2
    streamed, refused = servers
    assert streamed.attributes["routerforge.stream"] is True
    assert streamed.attributes["gen_ai.response.model"] == "large"  # the fallback answered
    assert streamed.attributes["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens
    children = [s for s in spans if s.parent is not None and s.parent.span_id == streamed.context.span_id]
    assert [
        (s.name, s.attributes["routerforge.attempt.index"])
        for s in sorted(children, key=lambda s: s.start_time)
    ] == [
        ("chat small", 0),
        ("chat large", 1),
    ]
    assert refused.attributes["error.type"] == "502" and refused.status.status_code == StatusCode.ERROR
    assert "gen_ai.response.model" not in refused.attributes
    durations = otel.metrics()["gen_ai.client.operation.duration"]
    assert sum(p.count for p in durations) == 2
    assert {p.attributes.get("error.type") for p in durations} == {None, "502"}


def test_caller_trace_context_is_joined(rf_home: Path, upstream: FakeUpstream) -> None:
    otel = Otel()
    app = gateway(rf_home, upstream, otel)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        client.chat.completions.create(
            model="small",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
        )
        client.chat.completions.create(  # a malformed header starts a new trace, and the request succeeds
            model="small", messages=[{"role": "user", "content": "hi"}], extra_headers={"traceparent": "junk"}
        )
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
    joined, malformed, plain = sorted(
        (s for s in otel.finished() if s.kind == SpanKind.SERVER), key=lambda s: s.start_time
    )
    assert f"{joined.context.trace_id:032x}" == trace_id and f"{joined.parent.span_id:016x}" == parent_id
    assert joined.parent.is_remote
    assert malformed.parent is None and plain.parent is None  # nothing leaks from one request to the next
    assert len({joined.context.trace_id, malformed.context.trace_id, plain.context.trace_id}) == 3


def test_sampled_out_requests_make_no_spans_but_count_in_metrics(
    rf_home: Path, upstream: FakeUpstream
) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    otel = Otel()
    otel.tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    otel.tracer_provider.add_span_processor(SimpleSpanProcessor(otel.spans))
    app = gateway(rf_home, upstream, otel)
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        for prompt in ("a hard one", "easy"):
            client.chat.completions.create(
                model="router-stub-0.6", messages=[{"role": "user", "content": prompt}]
            )
    assert otel.finished() == []
    durations = otel.metrics()["gen_ai.client.operation.duration"]
    assert sum(p.count for p in durations) == 2
    assert {p.attributes["gen_ai.response.model"] for p in durations} == {"small", "large"}


def test_capture_content_is_opt_in_and_redacted(rf_home: Path, upstream: FakeUpstream) -> None:
    otel = Otel()
    app = gateway(rf_home, upstream, otel, capture_content=True)
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": "my key is sk-abcdefghijklmnop ok"}]
        )
    [request] = [s for s in otel.finished() if s.kind == SpanKind.SERVER]
    assert "my key is [REDACTED] ok" in request.attributes["gen_ai.input.messages"]
    assert "sk-abcdefghijklmnop" not in request.attributes["gen_ai.output.messages"]


def test_off_by_default_and_clear_error_without_the_extra(rf_home: Path, upstream: FakeUpstream) -> None:
    app = stub_app(settings_for(rf_home), raw_config(upstream), [])
    assert app.state.service.telemetry is None
    assert Telemetry.from_config(TelemetryConfig()) is None
    cfg = parse_gateway_config({"telemetry": {"enabled": True, "exporter": "console", "sample_ratio": 0.5}})
    tel = Telemetry.from_config(cfg.telemetry)
    assert tel is not None
    tel.shutdown()
    with pytest.raises(ConfigError, match="telemetry"):
        parse_gateway_config({"telemetry": {"enabled": True, "exporter": "zipkin"}})
