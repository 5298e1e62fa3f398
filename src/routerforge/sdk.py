"""``routerforge.Client``: a drop-in for the ``openai`` client that routes.

Two modes, one call shape (``client.chat.completions.create(model="router-knn-0.3", messages=[…])``):

* **in-process** (``Client(config="gateway.yaml")``): no server; the same core as the gateway
  (:class:`~routerforge.gateway.service.GatewayService`: routing, fallbacks, budgets, request log) runs on
  a private event loop in a background thread. Returns the ``openai`` package's own response types
  (``ChatCompletion``, ``ChatCompletionChunk`` for ``stream=True``). Errors are routerforge's
  (``UnknownModelError``, ``BudgetExceededError``, ``FallbackExhaustedError``, …).
* **remote** (``Client(base_url="http://127.0.0.1:8000/v1", api_key="rf-…")``): just the ``openai``
  client pointed at a gateway (attributes are delegated to it).

Extra in-process helpers: :meth:`Client.route` (decision only) and :meth:`Client.feedback`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError

from routerforge.config import Settings, load_settings
from routerforge.errors import ValidationError
from routerforge.gateway.auth import Principal
from routerforge.gateway.config import GatewayConfig, load_gateway_config, parse_gateway_config
from routerforge.gateway.schemas import ChatCompletionRequest, FeedbackRequest, RoutingParams
from routerforge.gateway.service import GatewayService, new_request_id

T = TypeVar("T")


class _LoopThread:
    """An asyncio loop running in a daemon thread; ``run(coro)`` blocks until the coroutine is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="routerforge-sdk", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _next(agen: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await anext(agen)


async def _aclose(agen: AsyncIterator[dict[str, Any]]) -> None:
    close = getattr(agen, "aclose", None)
    if close is not None:
        await close()


class _Completions:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, *, model: str, messages: list[dict[str, Any]], stream: bool = False, **kwargs: Any
    ) -> Any:
        """Same arguments as ``openai.OpenAI().chat.completions.create``."""
        return self._client._create(model=model, messages=messages, stream=stream, **kwargs)


class _Chat:
    def __init__(self, client: Client) -> None:
        self.completions = _Completions(client)


class _Models:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> Any:
        from openai.pagination import SyncPage
        from openai.types import Model

        data = [Model.model_validate(m) for m in self._client._service.list_models(self._client.principal)]
        return SyncPage[Model](data=data, object="list")


class Client:
    """See the module docstring. Use as a context manager, or call :meth:`close` when done."""

    def __init__(
        self,
        *,
        config: str | Path | GatewayConfig | dict[str, Any] | None = None,
        settings: Settings | None = None,
        tenant: str = "default",
        store: bool = True,
        base_url: str | None = None,
        api_key: str | None = None,
        **openai_kwargs: Any,
    ) -> None:
        self._remote: Any = None
        if base_url is not None:
            import openai

            self._remote = openai.OpenAI(base_url=base_url, api_key=api_key or "none", **openai_kwargs)
            return
        self.settings = settings or load_settings()
        if isinstance(config, GatewayConfig):
            gw = config
        elif isinstance(config, dict):
            gw = parse_gateway_config(config)
        else:
            path = config if config is not None else self.settings.gateway.config_file
            if path is None and (self.settings.home / "gateway.yaml").is_file():
                path = self.settings.home / "gateway.yaml"
            gw = load_gateway_config(path)
        self.principal = Principal(tenant=tenant, key_id=None)
        self._service = GatewayService.from_settings(self.settings, gw, store=store)
        self._loop = _LoopThread()
        self._loop.run(self._service.start())
        self.chat = _Chat(self)
        self.models = _Models(self)

    def __getattr__(self, name: str) -> Any:
        remote = self.__dict__.get("_remote")
        if remote is not None:
            return getattr(remote, name)
        raise AttributeError(name)

    # -- in-process calls ---------------------------------------------------------------------------
    def _create(self, **body: Any) -> Any:
        from openai.types.chat import ChatCompletion

        req = ChatCompletionRequest.model_validate(body)
        request_id = new_request_id()
        prep = self._loop.run(self._service.prepare(self.principal, req, request_id))
        if not req.stream:
            return ChatCompletion.model_validate(self._loop.run(self._service.complete(prep)))
        return self._stream(prep)

    def _stream(self, prep: Any) -> Iterator[Any]:
        from openai.types.chat import ChatCompletionChunk

        stream = self._loop.run(self._service.open_stream(prep))
        agen = self._service.stream_bodies(prep, stream)
        try:
            while True:
                try:
                    obj = self._loop.run(_next(agen))
                except StopAsyncIteration:
                    break
                if "error" in obj:
                    from routerforge.errors import UpstreamError

                    raise UpstreamError(obj["error"]["message"])
                yield ChatCompletionChunk.model_validate(obj)
        finally:
            self._loop.run(_aclose(agen))
            self._loop.run(self._service.finish_abandoned(prep, stream))

    def route(
        self, model: str, prompt: str, *, explain: bool = True, routing: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The routing decision for ``prompt`` (chosen model, predictions, reason); no upstream call.
        ``routing``: per-request parameters (max_cost_usd, max_latency_ms, willingness_to_pay, models)."""
        try:
            params = None if routing is None else RoutingParams.model_validate(routing)
        except PydanticValidationError as exc:
            raise ValidationError(f"Invalid routing parameters: {exc.errors()[0]['msg']}") from exc
        return self._loop.run(
            self._service.route(self.principal, model, prompt, explain=explain, routing=params)
        )

    def feedback(
        self, request_id: str, rating: float, labels: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Rate an earlier answer (the response ``id`` is ``chatcmpl-<request id>``)."""
        rid = request_id.removeprefix("chatcmpl-")
        fb = FeedbackRequest(request_id=rid, rating=rating, labels=labels or {})
        return self._service.request_log.rate_for(self.principal, fb)

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
            return
        self._loop.run(self._service.aclose())
        self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
