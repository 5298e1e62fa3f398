"""Embeddings from a server: any OpenAI-compatible ``/v1/embeddings`` or a TEI ``/embed`` endpoint."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import SecretStr

from routerforge.embed.vectors import empty_vectors, l2_normalize
from routerforge.errors import ConfigError, UpstreamError

if TYPE_CHECKING:
    import httpx

    from routerforge.config import EmbedSettings

HttpFormat = Literal["auto", "openai", "tei"]
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_MAX_DELAY_S = 8.0


def resolve_endpoint(url: str, api_format: HttpFormat = "auto") -> tuple[str, Literal["openai", "tei"]]:
    """The full endpoint URL and wire format for a configured URL.

    ``…/embeddings`` is OpenAI, ``…/embed`` is TEI; a bare base URL gets ``/embeddings`` (after ``/v1``)
    or ``/v1/embeddings`` for OpenAI and ``/embed`` for TEI.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"embed.url {url!r} is not an http(s) URL.", hint="Example: http://127.0.0.1:8080/v1"
        )
    path = parts.path.rstrip("/")
    base = url.rstrip("/")
    if path.endswith("/embeddings"):
        fmt: Literal["openai", "tei"] = "tei" if api_format == "tei" else "openai"
        return base, fmt
    if path.endswith("/embed"):
        return base, "openai" if api_format == "openai" else "tei"
    if api_format == "tei":
        return base + "/embed", "tei"
    return base + ("/embeddings" if path.endswith("/v1") else "/v1/embeddings"), "openai"


class HttpEmbedder:
    """Calls an embedding server in batches, with retries (exponential backoff + jitter) on 429/5xx.

    The API key is kept as a ``SecretStr`` and only ever put in the ``Authorization`` header. Returned
    vectors are L2-normalised here whatever the server did. ``dim`` is probed with one request when not
    given.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: SecretStr | str | None = None,
        api_format: HttpFormat = "auto",
        batch_size: int = 32,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        dim: int | None = None,
    ) -> None:
        self.endpoint, self.api_format = resolve_endpoint(url, api_format)
        if self.api_format == "openai" and not model:
            raise ConfigError(
                "The OpenAI-compatible embeddings API needs a model name.",
                hint="Set embed.model (e.g. text-embedding-3-small).",
            )
        if batch_size < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ConfigError("batch_size must be >= 1, max_retries >= 0, timeout_s > 0 and backoff_s >= 0.")
        self.model = model
        self._api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._dim = dim
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent (retries included)

    @classmethod
    def from_settings(cls, settings: EmbedSettings) -> HttpEmbedder:
        if not settings.url:
            raise ConfigError(
                "The http embedder needs a URL.",
                hint="Set embed.url (or ROUTERFORGE_EMBED__URL), e.g. http://127.0.0.1:8080/v1.",
            )
        return cls(
            settings.url,
            model=settings.model,
            api_key=settings.api_key,
            api_format=settings.http_format,
            batch_size=settings.batch_size,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
        )

    def __repr__(self) -> str:
        return f"HttpEmbedder(endpoint={self.endpoint!r}, format={self.api_format!r}, model={self.model!r})"

    @property
    def id(self) -> str:
        return f"http:{self.api_format}:{self.endpoint}:{self.model or '-'}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._request(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return empty_vectors(self.dim)
        parts = [
            self._request(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)
        ]
        out = l2_normalize(np.concatenate(parts, axis=0))
        if self._dim is None:
            self._dim = out.shape[1]
        elif out.shape[1] != self._dim:
            raise UpstreamError(
                f"The embeddings server returned {out.shape[1]}-dimensional vectors, expected {self._dim}.",
                provider=self.endpoint,
            )
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- HTTP --------------------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            with self._lock:
                if self._client is None:
                    headers = {"Content-Type": "application/json"}
                    if self._api_key is not None and self._api_key.get_secret_value():
                        headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
                    self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
        return self._client

    def _payload(self, texts: list[str]) -> dict[str, Any]:
        if self.api_format == "tei":
            return {"inputs": texts, "truncate": True, "normalize": True}
        return {"model": self.model, "input": texts, "encoding_format": "float"}

    def _request(self, texts: list[str]) -> np.ndarray:
        import httpx

        client = self._http()
        payload = self._payload(texts)
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            self.requests += 1
            try:
                response = client.post(self.endpoint, json=payload)
            except httpx.TransportError as exc:
                if last:
                    raise UpstreamError(
                        f"Cannot reach the embeddings server {self.endpoint}: {exc}",
                        provider=self.endpoint,
                        retryable=True,
                        hint="Check that the server runs and embed.url is right.",
                    ) from exc
                self._sleep(attempt, None)
                continue
            if response.status_code < 400:
                return self._parse(response, len(texts))
            retryable = response.status_code in _RETRY_STATUS
            if not retryable or last:
                raise UpstreamError(
                    f"The embeddings server {self.endpoint} answered HTTP {response.status_code}: "
                    f"{response.text[:200]}",
                    provider=self.endpoint,
                    status_code=response.status_code,
                    retryable=retryable,
                    hint="Check embed.api_key." if response.status_code in (401, 403) else None,
                )
            self._sleep(attempt, response.headers.get("retry-after"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * (2**attempt)
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                delay = max(delay, float(retry_after))
        delay = min(delay, _MAX_DELAY_S)
        time.sleep(delay + random.uniform(0.0, 0.1 * delay))

    def _parse(self, response: httpx.Response, n: int) -> np.ndarray:
        try:
            body = response.json()
            if self.api_format == "tei":
                rows = body
            else:
                data = sorted(body["data"], key=lambda item: item.get("index", 0))
                rows = [item["embedding"] for item in data]
            matrix = np.asarray(rows, dtype=np.float32)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UpstreamError(
                f"The embeddings server {self.endpoint} sent an answer that is not {self.api_format} embeddings: {exc}",
                provider=self.endpoint,
            ) from exc
        if matrix.ndim != 2 or matrix.shape[0] != n:
            raise UpstreamError(
                f"The embeddings server {self.endpoint} returned {matrix.shape} for {n} inputs.",
                provider=self.endpoint,
            )
        return matrix
