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
    "Client",
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


def __getattr__(name: str) -> object:
    # ``routerforge.Client`` is imported on first use: the SDK pulls in the gateway (FastAPI, httpx).
    if name == "Client":
        from routerforge.sdk import Client

        return Client
    raise AttributeError(f"module 'routerforge' has no attribute {name!r}")
