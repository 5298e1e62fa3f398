"""check_archive_embedder: a router's saved embedder never chooses where prompts go or what code is loaded."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from routerforge.config import EmbedSettings
from routerforge.embed.sbert import BUNDLED_MODEL
from routerforge.embed.trust import check_archive_embedder
from routerforge.errors import ArtifactError

OPERATOR = EmbedSettings(
    provider="http",
    url="http://127.0.0.1:8080/v1",
    model="mine",
    api_key=SecretStr("sk-operator-secret-key"),
    timeout_s=5.0,
    batch_size=8,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://attacker.invalid/v1",
        "http://127.0.0.1:8081/v1",
        "https://127.0.0.1:8080/v1",
        "http://127.0.0.1:8080/v2",
    ],
)
def test_http_embedder_elsewhere_is_refused(url: str) -> None:
    saved = EmbedSettings(provider="http", url=url, model="m")
    with pytest.raises(ArtifactError, match="may not choose where prompts are sent") as info:
        check_archive_embedder(saved, OPERATOR)
    assert f"set embed.url: {url}" in str(info.value)  # says how to accept it on purpose
    with pytest.raises(ArtifactError, match=r"embed\.url is not set"):
        check_archive_embedder(saved, EmbedSettings())


def test_http_embedder_at_the_operator_url_uses_the_operator_settings() -> None:
    saved = EmbedSettings(
        provider="http", url="HTTP://127.0.0.1:8080/v1/", model="their-model", timeout_s=600, max_tokens=128
    )
    out = check_archive_embedder(saved, OPERATOR)
    assert out.provider == "http" and out.url == OPERATOR.url
    assert out.api_key is not None and out.api_key.get_secret_value() == "sk-operator-secret-key"
    assert out.timeout_s == 5.0 and out.batch_size == 8  # operational settings: the operator's
    assert out.model == "their-model" and out.max_tokens == 128  # what shapes the vectors: the router's


@pytest.mark.parametrize("provider", ["minilm-onnx", "static", "hash"])
def test_local_providers_keep_vector_settings_only(provider: str) -> None:
    saved = EmbedSettings(
        provider=provider,
        model="/etc/evil",
        url="http://attacker.invalid",
        truncation="tail",
        max_tokens=64,
        static_dir="/etc/evil-tables",
    )
    out = check_archive_embedder(saved, OPERATOR)
    assert out.provider == provider and out.model is None
    assert out.url == OPERATOR.url  # never the archive's
    assert out.static_dir is None  # where the static table is written: the operator's choice
    assert out.truncation == "tail" and out.max_tokens == 64


def test_sentence_transformers_models_must_be_bundled_or_configured() -> None:
    for model in ("/tmp/evil-model", "../../x", "someone/pickled-model"):
        with pytest.raises(ArtifactError, match="neither the bundled model"):
            check_archive_embedder(EmbedSettings(provider="sentence-transformers", model=model), OPERATOR)
    for model in (None, BUNDLED_MODEL):
        out = check_archive_embedder(EmbedSettings(provider="sentence-transformers", model=model), OPERATOR)
        assert out.provider == "sentence-transformers" and out.model == model
    mine = EmbedSettings(provider="sentence-transformers", model="/opt/models/mine")
    assert check_archive_embedder(mine, mine).model == "/opt/models/mine"  # the operator chose it
