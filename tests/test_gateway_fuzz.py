"""Schemathesis against the gateway's JSON endpoints: no generated request, valid or not, gets a 5xx, and every
4xx has the OpenAI error shape.

The app parses bodies by hand (FastAPI's own OpenAPI document has no request bodies), so the OpenAPI
document is built here from the request models in ``gateway/schemas.py``. The run is bounded
(``MAX_EXAMPLES``, a fixed seed) to keep ``make test`` fast; :func:`fuzz` runs bigger ones too:
``.venv/bin/python tests/test_gateway_fuzz.py 5000``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.config import Settings, load_settings
from routerforge.gateway.app import create_app
from routerforge.gateway.config import parse_gateway_config
from routerforge.gateway.schemas import ChatCompletionRequest, FeedbackRequest, RouteRequest

MAX_EXAMPLES = 60
MODELS = ["small", "large", "router-knn", "router-knn-0.5", "smart"]


def _body_schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(doc.pop("$defs", {}))
    if "model" in doc.get("properties", {}):  # mostly names that exist, so requests get past routing
        doc["properties"]["model"] = {"anyOf": [{"enum": MODELS}, {"type": "string"}]}
    return doc


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 document of the gateway's JSON endpoints."""
    components: dict[str, Any] = {}
    ok = {"200": {"description": "ok"}}

    def post(model: Any) -> dict[str, Any]:
        body = {
            "required": True,
            "content": {"application/json": {"schema": _body_schema(model, components)}},
        }
        return {"post": {"requestBody": body, "responses": ok}}

    query = [
        {"name": "tenant", "in": "query", "schema": {"type": "string"}},
        {"name": "since", "in": "query", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
    ]
    paths = {
        "/v1/chat/completions": post(ChatCompletionRequest),
        "/v1/route": post(RouteRequest),
        "/v1/feedback": post(FeedbackRequest),
        "/v1/models": {"get": {"responses": ok}},
        "/v1/logs": {"get": {"parameters": query, "responses": ok}},
        "/v1/logs/{request_id}": {
            "get": {
                "parameters": [
                    {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": ok,
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "routerforge gateway", "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }


def train_knn(settings: Settings) -> None:
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.policy import trained as pipeline

    prompts = [f"math question {i}" for i in range(10)] + [f"say hello {i}" for i in range(10)]
    matrix = ScoreMatrix(
        name="tiny",
        keys=[str(i) for i in range(20)],
        prompts=prompts,
        models=["small", "large"],
        scores=np.array([[0.0, 1.0]] * 10 + [[1.0, 1.0]] * 10),
        costs=np.full((20, 2), np.nan),
    )
    pipeline.train_router("knn", matrix, np.arange(20), settings.embed, settings.routers_dir / "knn", k=3)


@dataclass
class Tally:
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    progress: Callable[[Tally], None] | None = None  # called every 250 requests (long runs)


@dataclass
class FuzzTarget:
    url: str
    key: str
    stop: Callable[[], None]


def start_gateway(home: Path, up: FakeUpstream) -> FuzzTarget:
    settings = load_settings(overrides={"home": home, "embed": {"provider": "hash"}})
    train_knn(settings)
    raw = {
        "models": [
            {
                "id": m,
                "base_url": up.base_url,
                "max_retries": 0,
                "input_usd_per_mtok": p,
                "output_usd_per_mtok": p,
            }
            for m, p in (("small", 1.0), ("large", 30.0))
        ],
        "synthetic_models": [{"name": "smart", "router": "knn"}],
        "tenants": [{"name": "acme", "daily_usd": 1000.0}],
        "limits": {"requests_per_minute": 1_000_000},
        "logging": {"durability": "async", "flush_interval_s": 0.05},
    }
    app = create_app(settings, parse_gateway_config(raw))
    server = LoopbackServer(app).start()
    key, _ = app.state.keys.create("acme")
    return FuzzTarget(server.url, key, server.stop)


def fuzz(target: FuzzTarget, max_examples: int, tally: Tally) -> None:
    """Send ``max_examples`` generated requests (positive and negative) and tally their statuses."""
    schema = schemathesis.openapi.from_dict(openapi_document())
    strategies = [
        op.ok().as_strategy(mode)
        for op in schema.get_all_operations()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    headers = {"authorization": f"Bearer {target.key}"}

    @settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # no shrinking: failures are collected, not raised
    )
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        resp = case.call(base_url=target.url, headers=headers, timeout=30)
        tally.requests += 1
        tally.by_status[resp.status_code] = tally.by_status.get(resp.status_code, 0) + 1
        if tally.progress and tally.requests % 250 == 0:
            tally.progress(tally)
        if resp.status_code >= 500:
            tally.failures.append(
                f"{resp.status_code} {case.method} {case.formatted_path} {case.body!r:.300}"
            )
        elif resp.status_code >= 400:
            err = resp.json()["error"]
            assert set(err) == {"message", "type", "param", "code"}, resp.text

    run()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    with FakeUpstream() as up:
        t = start_gateway(tmp_path_factory.mktemp("fuzz"), up)
        yield t
        t.stop()


def test_no_generated_request_gets_a_5xx(target: FuzzTarget) -> None:
    tally = Tally()
    fuzz(target, MAX_EXAMPLES, tally)
    assert tally.failures == []
    assert tally.requests >= MAX_EXAMPLES // 2
    assert any(200 <= s < 300 for s in tally.by_status)  # valid requests got through, not only refusals


if __name__ == "__main__":  # a bigger run: python tests/test_gateway_fuzz.py 5000
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with FakeUpstream() as up, tempfile.TemporaryDirectory() as tmp:
        t = start_gateway(Path(tmp), up)
        start = time.perf_counter()

        def report(t: Tally) -> None:
            five = sum(c for s, c in t.by_status.items() if s >= 500)
            print(
                f"... requests={t.requests} 5xx={five} seconds={time.perf_counter() - start:.0f}", flush=True
            )

        tally = Tally(progress=report)
        try:
            fuzz(t, n, tally)
        finally:
            t.stop()
        five = sum(c for s, c in tally.by_status.items() if s >= 500)
        print(f"requests={tally.requests} 5xx={five} seconds={time.perf_counter() - start:.0f}")
        print("statuses:", dict(sorted(tally.by_status.items())))
        for f in tally.failures[:20]:
            print(f)
