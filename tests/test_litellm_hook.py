"""The LiteLLM integration (integrations/litellm_hook.py) against the REAL LiteLLM proxy on loopback: LiteLLM's
callbacks load the hook, the hook asks a routerforge gateway (``/v1/route``) and LiteLLM calls the chosen
deployment on a fake upstream; the official ``openai`` client talks to LiteLLM. Also the in-process mode."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

pytest.importorskip("litellm", reason="the litellm extra is not installed")

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.integrations.litellm_hook import RouterforgeHook
from routerforge.sdk import Client
from test_gateway_routing import StubRouter, raw_config, router_dir, settings_for, stub_app

LITELLM = Path(sys.executable).parent / "litellm"
MASTER_KEY = "sk-" + secrets.token_hex(32)  # the proxy refuses to start without one
PROMPTS = [
    "a hard question about proofs",
    "an easy one",
    "hard: integrate x^2",
    "say hello",
    "another hard one",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def litellm_config(up: FakeUpstream, directory: Path) -> Path:
    models = [
        {
            "model_name": m,
            "litellm_params": {"model": f"openai/{m}", "api_base": up.base_url, "api_key": "upstream-key"},
        }
        for m in ("small", "large")
    ]
    path = directory / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model_list": models,
                "litellm_settings": {"callbacks": ["rf_hook.handler"], "telemetry": False, "num_retries": 0},
            }
        )
    )
    return path


@pytest.fixture
def stack(rf_home: Path, tmp_path: Path) -> Iterator[tuple[FakeUpstream, str, str, str]]:
    """(fake upstream, routerforge gateway URL, a gateway key, LiteLLM proxy URL)."""
    if not LITELLM.is_file():
        pytest.skip("the litellm proxy CLI is not installed (pip install 'routerforge[litellm]')")
    settings = settings_for(rf_home)
    d = router_dir(settings.routers_dir / "stub")
    app = stub_app(settings, raw_config(FakeUpstream(), require_auth=True), [d])
    with FakeUpstream() as up, LoopbackServer(app) as gateway:
        key, _ = app.state.keys.create("globex")
        hook_dir = tmp_path / "litellm"
        hook_dir.mkdir()
        (hook_dir / "rf_hook.py").write_text(
            "from routerforge.integrations.litellm_hook import RouterforgeHook\n"
            f"handler = RouterforgeHook(url={gateway.url!r}, api_key_env='RF_HOOK_KEY')\n"
        )
        config = litellm_config(up, hook_dir)
        port = free_port()
        env = {
            **os.environ,
            "RF_HOOK_KEY": key,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "PYTHONPATH": os.pathsep.join([str(hook_dir), os.environ.get("PYTHONPATH", "")]),
        }
        log = (tmp_path / "litellm.log").open("wb")
        proc = subprocess.Popen(
            [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=hook_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("litellm exited:\n" + (tmp_path / "litellm.log").read_text()[-3000:])
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "litellm did not start:\n" + (tmp_path / "litellm.log").read_text()[-3000:]
                    )
                time.sleep(0.5)
            yield up, gateway.url, key, f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


@pytest.mark.slow
def test_litellm_proxy_routes_like_routerforge(stack: tuple[FakeUpstream, str, str, str]) -> None:
    up, gateway, key, proxy = stack
    client = openai.OpenAI(base_url=proxy + "/v1", api_key=MASTER_KEY, max_retries=0)
    for prompt in PROMPTS:
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
        expected = httpx.post(  # routerforge's own decision for the same messages
            gateway + "/v1/route",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "router-stub-0.6", "messages": messages, "explain": False},
        ).json()["model"]
        before = len(up.calls)
        r = client.chat.completions.create(model="router-stub-0.6", messages=messages)
        [call] = up.calls[before:]
        assert call.model == expected, (prompt, call.model, expected)
        assert r.choices[0].message.content == f"{expected} says: {prompt}"
    assert {c.model for c in up.calls} == {"small", "large"}  # both branches taken
    # a real model name passes through untouched
    before = len(up.calls)
    client.chat.completions.create(model="small", messages=[{"role": "user", "content": "a hard one"}])
    assert [c.model for c in up.calls[before:]] == ["small"]
    # routerforge cannot decide (no such router): LiteLLM answers with routerforge's 404, nothing goes upstream
    before = len(up.calls)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="router-nosuch-0.5", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404 and "nosuch" in str(info.value)
    assert len(up.calls) == before


def test_in_process_hook_matches_the_sdk_decision(rf_home: Path) -> None:
    settings = settings_for(rf_home)
    d = router_dir(settings.routers_dir / "stub")
    with FakeUpstream() as up:
        client = Client(config=raw_config(up), settings=settings, tenant="globex", store=False)
        client._service.routing._routers[d.resolve()] = StubRouter(d)
        hook = RouterforgeHook(client=client, models={"large": "gpt-large"}, names=["smart"])
        try:

            async def run() -> list[tuple[str, str]]:
                out = []
                for prompt in PROMPTS:
                    data = {"model": "router-stub-0.6", "messages": [{"role": "user", "content": prompt}]}
                    data = await hook.async_pre_call_hook(None, None, data, "acompletion")
                    expected = client.route("router-stub-0.6", prompt, explain=False)["model"]
                    out.append((data["model"], expected))
                    assert data["metadata"]["routerforge"]["chosen_model"] == expected
                passthrough = await hook.async_pre_call_hook(
                    None, None, {"model": "small", "messages": []}, "acompletion"
                )
                assert passthrough == {"model": "small", "messages": []}
                embedding = {"model": "router-stub-0.6", "input": "x"}
                assert await hook.async_pre_call_hook(None, None, dict(embedding), "aembedding") == embedding
                return out

            pairs = asyncio.run(run())
        finally:
            client.close()
    assert pairs == [({"large": "gpt-large"}.get(e, e), e) for _, e in pairs]
    assert {e for _, e in pairs} == {"small", "large"} and hook.routed == len(PROMPTS)


def test_fallback_model_when_routerforge_is_down() -> None:
    port = free_port()  # nothing listens there
    hook = RouterforgeHook(url=f"http://127.0.0.1:{port}", fallback_model="small", timeout_s=2)

    async def run() -> dict[str, Any]:
        data = {"model": "router-knn", "messages": [{"role": "user", "content": "hi"}]}
        out = await hook.async_pre_call_hook(None, None, data, "acompletion")
        await hook.aclose()
        return out

    out = asyncio.run(run())
    assert out["model"] == "small" and hook.failures == 1
    assert "unreachable" in out["metadata"]["routerforge"]["reason"]
    strict = RouterforgeHook(url=f"http://127.0.0.1:{port}", timeout_s=2)
    from fastapi import HTTPException

    with pytest.raises(HTTPException) as info:
        asyncio.run(
            strict.async_pre_call_hook(None, None, {"model": "router-x", "messages": []}, "completion")
        )
    assert info.value.status_code == 503
