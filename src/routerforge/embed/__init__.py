"""Text -> vectors: dense embedders (ONNX MiniLM, static MiniLM token vectors, ...), sparse BM25, a persistent cache."""

from __future__ import annotations

from routerforge.embed.base import Embedder, SparseVector
from routerforge.embed.cache import CachedEmbedder
from routerforge.embed.encode import encode
from routerforge.embed.factory import PROVIDERS, available_providers, build_embedder
from routerforge.embed.hashing import HashEmbedder
from routerforge.embed.http import HttpEmbedder
from routerforge.embed.onnx import MiniLMOnnxEmbedder
from routerforge.embed.sbert import SentenceTransformerEmbedder
from routerforge.embed.sparse import Bm25Encoder
from routerforge.embed.static import StaticEmbedder
from routerforge.embed.text import BoilerplateStripper, truncate_ids

__all__ = [
    "PROVIDERS",
    "Bm25Encoder",
    "BoilerplateStripper",
    "CachedEmbedder",
    "Embedder",
    "HashEmbedder",
    "HttpEmbedder",
    "MiniLMOnnxEmbedder",
    "SentenceTransformerEmbedder",
    "SparseVector",
    "StaticEmbedder",
    "available_providers",
    "build_embedder",
    "encode",
    "truncate_ids",
]
