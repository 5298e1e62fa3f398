from __future__ import annotations

from pathlib import Path

import pytest

from routerforge.config import load_settings
from routerforge.errors import ConfigError


def test_defaults_put_everything_in_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTERFORGE_HOME", str(tmp_path))
    s = load_settings()
    assert s.home == tmp_path
    assert s.store_url == f"sqlite:///{tmp_path / 'routerforge.db'}"
    assert s.gateway.host == "127.0.0.1"


def test_precedence_flags_over_env_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("embed:\n  batch_size: 7\n  max_tokens: 100\ngateway:\n  port: 9000\n")
    monkeypatch.setenv("ROUTERFORGE_HOME", str(tmp_path))
    monkeypatch.setenv("ROUTERFORGE_EMBED__BATCH_SIZE", "11")
    s = load_settings(cfg)
    assert (s.embed.batch_size, s.embed.max_tokens, s.gateway.port) == (11, 100, 9000)
    s = load_settings(cfg, overrides={"embed": {"batch_size": 3, "max_tokens": None}})
    assert (s.embed.batch_size, s.embed.max_tokens) == (3, 100)


def test_bad_yaml_and_bad_values_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTERFORGE_HOME", str(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("gateway:\n  port: 99999\n")
    with pytest.raises(ConfigError, match=r"gateway\.port"):
        load_settings(wrong)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("embedd: {}\n")
    with pytest.raises(ConfigError, match="embedd"):
        load_settings(unknown)
