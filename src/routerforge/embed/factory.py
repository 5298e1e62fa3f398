"""Build the configured embedder: ``build_embedder(settings.embed, cache_dir=settings.cache_dir)``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from routerforge.embed.base import Embedder
from routerforge.embed.cache import CachedEmbedder
from routerforge.embed.hashing import HashEmbedder
from routerforge.embed.http import HttpEmbedder
from routerforge.embed.onnx import MiniLMOnnxEmbedder
from routerforge.embed.sbert import SentenceTransformerEmbedder
from routerforge.embed.static import StaticEmbedder
from routerforge.errors import ConfigError

if TYPE_CHECKING:
    from routerforge.config import EmbedSettings


class _Provider(Protocol):
    def from_settings(self, settings: EmbedSettings) -> Embedder: ...


#: provider name (``embed.provider``) -> embedder class with a ``from_settings`` classmethod.
PROVIDERS: dict[str, _Provider] = {
    "minilm-onnx": MiniLMOnnxEmbedder,
    "static": StaticEmbedder,
    "sentence-transformers": SentenceTransformerEmbedder,
    "http": HttpEmbedder,
    "hash": HashEmbedder,
}


def available_providers() -> list[str]:
    return sorted(PROVIDERS)


def build_embedder(settings: EmbedSettings, cache_dir: str | Path | None = None) -> Embedder:
    """The embedder ``settings`` describe, wrapped in a persistent cache when ``settings.cache`` is on
    and a ``cache_dir`` is given. Nothing is loaded or called until the first ``embed``."""
    try:
        provider = PROVIDERS[settings.provider]
    except KeyError:
        raise ConfigError(
            f"Unknown embedding provider {settings.provider!r}. Available: {', '.join(available_providers())}."
        ) from None
    embedder = provider.from_settings(settings)
    if settings.cache and cache_dir is not None:
        return CachedEmbedder(embedder, cache_dir)
    return embedder
