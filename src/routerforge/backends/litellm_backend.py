"""A backend for LiteLLM provider strings (``openai/…``, ``anthropic/…``, ``ollama/…``, …).

LiteLLM is imported on first use (it takes ~2.4 s): :func:`import_litellm` first tells LiteLLM to read
its bundled price/context-window map instead of fetching it from the internet (unless asked
otherwise), and silences its help banners. LiteLLM's own retries are switched off — retries,
fallbacks and circuit breaking belong to :mod:`routerforge.backends.reliability`.

Every LiteLLM exception is translated once into :class:`~routerforge.errors.UpstreamError` using its
``status_code`` (retryable: 408/409/425/429/5xx, timeouts, connection errors); its text is redacted of
credentials first (:func:`~routerforge.backends.redact.redact_secrets`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from pydantic import SecretStr

from routerforge.backends.base import ChatChunk, ChatRequest, ChatResult
from routerforge.backends.openai_compat import is_retryable_status, parse_retry_after
from routerforge.backends.redact import redact_secrets, secrets_of
from routerforge.backends.spec import ModelSpec
from routerforge.errors import ConfigError, UpstreamError

_import_lock = threading.Lock()


def import_litellm(*, local_cost_map: bool = True) -> ModuleType:
    """Import LiteLLM once, offline by default (its bundled price map; no fetch at import)."""
    with _import_lock:
        if local_cost_map:
            # LiteLLM decides at import time whether to download its price map; this is the switch it reads.
            os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        try:
            import litellm
        except ImportError as exc:
            raise ConfigError(
                "LiteLLM is not installed.", hint="Install it with `pip install 'routerforge[litellm]'`."
            ) from exc
        litellm.suppress_debug_info = True
        litellm.telemetry = False
        return litellm


class LiteLLMBackend:
    """Calls ``model`` (a LiteLLM provider string) through ``litellm.acompletion``."""

    def __init__(
        self,
        model: str,
        api_key: SecretStr | None = None,
        api_base: str | None = None,
        timeout_s: float = 60.0,
        headers: dict[str, str] | None = None,
        *,
        params: dict[str, Any] | None = None,
        local_cost_map: bool = True,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.timeout_s = timeout_s
        self.provider = model.split("/", 1)[0] if "/" in model else "litellm"
        self._api_key = api_key
        self._headers = dict(headers or {})
        self._params = dict(params or {})
        self._local_cost_map = local_cost_map
        self._litellm: ModuleType | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> LiteLLMBackend:
        options = dict(spec.options)
        local_cost_map = bool(options.pop("local_cost_map", True))
        return cls(
            model=spec.upstream_name,
            api_key=spec.api_key,
            api_base=spec.base_url,
            timeout_s=spec.timeout_s,
            headers=spec.headers,
            params=options,
            local_cost_map=local_cost_map,
        )

    @property
    def name(self) -> str:
        return f"litellm:{self.model}"

    def __repr__(self) -> str:
        return f"LiteLLMBackend(model={self.model!r}, api_base={self.api_base!r})"

    def _lib(self) -> ModuleType:
        if self._litellm is None:
            self._litellm = import_litellm(local_cost_map=self._local_cost_map)
        return self._litellm

    def _kwargs(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {**self._params, **request.extra}
        kwargs.update(
            model=self.model,
            messages=request.messages,
            timeout=request.timeout_s if request.timeout_s is not None else self.timeout_s,
            num_retries=0,
            max_retries=0,
        )
        for key in ("max_tokens", "temperature", "stop", "tools", "response_format"):
            value = getattr(request, key)
            if value is not None:
                kwargs[key] = value
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key.get_secret_value()
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self._headers:
            kwargs["extra_headers"] = self._headers
        if stream:
            kwargs["stream"] = True
            kwargs.setdefault("stream_options", {"include_usage": True})
        else:
            kwargs.pop("stream", None)
            kwargs.pop("stream_options", None)
        return kwargs

    def _secrets(self) -> list[str]:
        return secrets_of(self._api_key, self._headers)

    def _translate(self, exc: Exception) -> UpstreamError:
        lib = self._lib()
        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
        if isinstance(exc, lib.Timeout | lib.APIConnectionError | TimeoutError):
            retryable, status = True, None
        elif status is not None:
            retryable = is_retryable_status(status)
        else:
            retryable = False
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
        message = redact_secrets(str(getattr(exc, "message", None) or exc), self._secrets())[:300]
        return UpstreamError(
            f"{self.name}: {type(exc).__name__}: {message}",
            provider=self.provider,
            status_code=status,
            retryable=retryable,
            retry_after_s=retry_after,
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        lib = self._lib()
        kwargs = self._kwargs(request, stream=False)  # outside the SDK boundary: our bugs stay our bugs
        start = time.perf_counter()
        try:
            response = await lib.acompletion(**kwargs)
        except Exception as exc:  # the SDK boundary: every LiteLLM failure becomes one UpstreamError
            raise self._translate(exc) from exc
        latency_ms = (time.perf_counter() - start) * 1000.0
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError) as exc:
            text = redact_secrets(f"{response!r:.200}", self._secrets())
            raise UpstreamError(
                f"{self.name}: malformed response: {text}", provider=self.provider, retryable=False
            ) from exc
        usage = getattr(response, "usage", None)
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
        return ChatResult(
            text=text,
            model=str(getattr(response, "model", None) or self.model),
            finish_reason=getattr(choice, "finish_reason", None),
            tokens_in=getattr(usage, "prompt_tokens", None),
            tokens_out=getattr(usage, "completion_tokens", None),
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            latency_ms=latency_ms,
            raw=response.model_dump() if hasattr(response, "model_dump") else None,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        lib = self._lib()
        kwargs = self._kwargs(request, stream=True)
        try:
            response = await lib.acompletion(**kwargs)
            async for chunk in response:
                yield _chunk(chunk)
        except UpstreamError:
            raise
        except Exception as exc:  # the SDK boundary, mid-stream included
            raise self._translate(exc) from exc

    async def aclose(self) -> None:
        return None  # LiteLLM pools its own HTTP clients per provider


def _chunk(chunk: Any) -> ChatChunk:
    delta_text = ""
    finish = None
    choices = getattr(chunk, "choices", None) or []
    if choices:
        delta = getattr(choices[0], "delta", None)
        content = getattr(delta, "content", None)
        delta_text = content if isinstance(content, str) else ""
        finish = getattr(choices[0], "finish_reason", None)
    usage = getattr(chunk, "usage", None)
    return ChatChunk(
        delta=delta_text,
        finish_reason=finish,
        tokens_in=getattr(usage, "prompt_tokens", None) if usage else None,
        tokens_out=getattr(usage, "completion_tokens", None) if usage else None,
        raw=chunk.model_dump() if hasattr(chunk, "model_dump") else None,
    )


def from_spec(spec: ModelSpec) -> LiteLLMBackend:
    """Registry factory for kind ``"litellm"``."""
    return LiteLLMBackend.from_spec(spec)
