"""routerforge: LLM routers from evaluation results, measured honestly, served behind an OpenAI-compatible gateway."""

from __future__ import annotations

from routerforge.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    RouterForgeError,
    UnknownDatasetError,
    UnknownModelError,
    UnknownRouterError,
    UpstreamError,
)

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "NotFittedError",
    "RouterForgeError",
    "UnknownDatasetError",
    "UnknownModelError",
    "UnknownRouterError",
    "UpstreamError",
    "__version__",
]
