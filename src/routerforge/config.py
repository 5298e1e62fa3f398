"""The one typed settings model.

Precedence, highest first: explicit overrides (CLI flags) > ``ROUTERFORGE_*`` environment variables >
the YAML file (``--config``, ``ROUTERFORGE_CONFIG`` or ``$ROUTERFORGE_HOME/config.yaml``) > defaults.
Nested fields use ``__`` in the environment: ``ROUTERFORGE_EMBED__BATCH_SIZE=64``.
Nothing else in routerforge reads ``os.environ``; settings are built once and passed down explicitly.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from routerforge.errors import ConfigError

DuplicateRule = Literal["min", "mean", "last"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSettings(_Section):
    store_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store; default: a SQLite file in the home directory."
    )
    duplicate_rule: DuplicateRule = Field(
        default="min", description="How duplicate (prompt, model) outcomes in one import are resolved."
    )


class EmbedSettings(_Section):
    provider: Literal["minilm-onnx", "static", "sentence-transformers", "http", "hash"] = "minilm-onnx"
    model: str | None = Field(
        default=None, description="Model name for the http / sentence-transformers providers."
    )
    url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible or TEI /embeddings endpoint."
    )
    api_key: SecretStr | None = None
    batch_size: int = Field(default=32, ge=1, le=4096)
    max_tokens: int = Field(default=256, ge=8, le=8192, description="Truncate inputs to this many tokens.")
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads; 0 = library default.")
    cache: bool = True
    truncation: Literal["head", "tail", "head_tail"] = Field(
        default="head_tail",
        description="Which tokens to keep when a prompt is longer than max_tokens (head_tail: 1/4 head, 3/4 tail).",
    )
    http_format: Literal["auto", "openai", "tei"] = Field(
        default="auto", description="Wire format of the http provider; auto: /embed -> TEI, else OpenAI."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one http embedding request.")
    max_retries: int = Field(default=3, ge=0, le=20, description="Retries of the http provider on 429/5xx.")
    static_dir: Path | None = Field(
        default=None,
        description="Where the static provider's token table is built and read; default ~/.cache/routerforge/static.",
    )


class IndexSettings(_Section):
    kind: Literal["edge", "qdrant"] = "edge"
    url: str | None = Field(
        default=None, description="Qdrant server URL when kind=qdrant (':memory:' for local mode)."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Qdrant API key; set it in the environment (ROUTERFORGE_INDEX__API_KEY), not in a file.",
    )
    timeout_s: int = Field(default=5, ge=1, le=600, description="Timeout of one Qdrant server request.")
    hnsw_m: int | None = Field(
        default=None, ge=4, le=128, description="HNSW edges per node of new server collections (Qdrant: 16)."
    )
    hnsw_ef: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="HNSW search width of queries, Edge shard and server (Qdrant default: ef_construct).",
    )
    quantization: Literal["none", "int8"] = Field(
        default="none",
        description="int8: new server collections keep int8 scalar-quantized vectors in RAM (4x less); the "
        "originals rescore the best candidates (from disk with on_disk: true).",
    )
    on_disk: bool = Field(
        default=False, description="New server collections keep the original vectors on disk (mmap)."
    )


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    config_file: Path | None = None


class Settings(BaseSettings):
    """All routerforge settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="ROUTERFORGE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(default_factory=lambda: Path.home() / ".routerforge")
    data: DataSettings = Field(default_factory=DataSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI overrides (init kwargs) > ROUTERFORGE_* variables > the YAML file > defaults.
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # -- derived locations -------------------------------------------------------------------
    @property
    def store_url(self) -> str:
        return self.data.store_url or f"sqlite:///{self.home / 'routerforge.db'}"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def routers_dir(self) -> Path:
        return self.home / "routers"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"Config file {path} does not exist.", hint="Check the path given to --config."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping at the top level, not {type(loaded).__name__}."
        )
    return loaded


def _format_validation_error(exc: PydanticValidationError, origin: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return f"Invalid settings ({origin}): " + "; ".join(parts)


_yaml_values: ContextVar[dict[str, Any] | None] = ContextVar("routerforge_yaml_values", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    """Feeds the values of the YAML file that :func:`load_settings` read."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_values.get() or {})


def load_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from YAML, ``ROUTERFORGE_*`` variables and explicit overrides (highest).

    ``overrides`` is a nested mapping such as ``{"embed": {"batch_size": 8}}``; ``None`` values are
    ignored so CLI flags that were not given do not mask lower layers.
    """
    env = os.environ if environ is None else environ
    home = Path(env.get("ROUTERFORGE_HOME", str(Path.home() / ".routerforge"))).expanduser()
    path: Path | None = None
    if config_file is not None:
        path = Path(config_file).expanduser()
    elif env.get("ROUTERFORGE_CONFIG"):
        path = Path(env["ROUTERFORGE_CONFIG"]).expanduser()
    elif (home / "config.yaml").is_file():
        path = home / "config.yaml"
    values: dict[str, Any] = _read_yaml(path) if path is not None else {}
    origin = f"{path} or ROUTERFORGE_* variables" if path else "ROUTERFORGE_* variables"
    token = _yaml_values.set(values)
    try:
        return Settings(**_drop_none(overrides or {}))
    except PydanticValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from exc
    finally:
        _yaml_values.reset(token)


def _drop_none(mapping: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            inner = _drop_none(value)
            if inner:
                out[key] = inner
        elif value is not None:
            out[key] = value
    return out


def env_value(name: str, environ: dict[str, str] | None = None) -> str | None:
    """The value of one environment variable named in a config file (e.g. a model's ``api_key_env``).

    The one sanctioned way for other modules to resolve an ``*_env`` reference: they never touch
    ``os.environ`` themselves. Returns ``None`` when the variable is unset or empty.
    """
    env = os.environ if environ is None else environ
    value = env.get(name)
    return value or None
