"""Route inside a LiteLLM proxy with a routerforge router, without switching gateways.

A LiteLLM ``CustomLogger`` whose ``async_pre_call_hook`` looks at the requested ``model``: when it is a
routerforge synthetic model (``router-<dir>[-<threshold>]``, or a name listed in ``names``), it asks routerforge
for the decision and rewrites ``model`` to the chosen deployment (a ``model_name`` of LiteLLM's ``model_list``;
``models`` maps routerforge model ids to LiteLLM names when they differ). Every other request passes untouched.
The decision is routerforge's own — the same :class:`~routerforge.policy.engine.DecisionEngine`, prompt text
(``gateway.schemas.prompt_text``), knob and rules as the gateway, ``route`` and ``bench`` — made either

* **remotely**: ``RouterforgeHook(url="http://routerforge:8000", api_key_env="RF_KEY")`` posts the prompt to the
  gateway's ``POST /v1/route`` (``explain: false``); or
* **in-process**: ``RouterforgeHook(config="gateway.yaml")`` (or ``client=routerforge.sdk.Client(...)``) runs
  the decision in the LiteLLM process (router files under ``$ROUTERFORGE_HOME/routers``), in a worker
  thread so LiteLLM's event loop keeps serving.

The decision goes into the request's ``metadata["routerforge"]`` (synthetic model, chosen model, policy, knob,
reason), which LiteLLM passes to its loggers. A request's own ``routing`` object (per-request routing
parameters, see docs/gateway.md) is taken out of the body and sent with the decision request.

If routerforge cannot decide (unknown router, gateway unreachable), the request fails with routerforge's
status and message — or, with ``fallback_model`` set, goes to that model (fail-open, counted in ``failures``).

LiteLLM config (``callbacks`` names a module-level instance; a file beside the config is searched first)::

    # rf_hook.py, next to litellm's config.yaml
    from routerforge.integrations.litellm_hook import RouterforgeHook
    handler = RouterforgeHook(url="http://127.0.0.1:8000", api_key_env="ROUTERFORGE_KEY")

    # config.yaml
    litellm_settings:
      callbacks: ["rf_hook.handler"]

``routerforge.integrations.litellm_hook.handler`` is a ready instance for the in-process mode with the default
settings (``$ROUTERFORGE_HOME/gateway.yaml``); it loads nothing until its first routed request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from litellm.integrations.custom_logger import CustomLogger

from routerforge.config import env_value
from routerforge.errors import ConfigError, RouterForgeError
from routerforge.gateway.schemas import prompt_text

ROUTED_CALL_TYPES = frozenset({"completion", "acompletion", "text_completion", "atext_completion"})


class RoutingFailed(Exception):
    """routerforge could not decide; carries the HTTP status LiteLLM should answer with."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class RouterforgeHook(CustomLogger):  # type: ignore[misc]  # LiteLLM's class is untyped
    """See the module docstring. Exactly one of ``url``, ``config`` or ``client`` (none: in-process with
    the default settings)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key_env: str | None = None,
        config: str | Path | Mapping[str, Any] | None = None,
        client: Any = None,
        tenant: str = "default",
        names: Sequence[str] = (),
        prefix: str = "router-",
        models: Mapping[str, str] | None = None,
        fallback_model: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        if sum(x is not None for x in (url, config, client)) > 1:
            raise ConfigError("RouterforgeHook: give one of url, config or client.")
        self.url = url.rstrip("/") if url else None
        self.api_key_env = api_key_env
        self.config = config
        self.tenant = tenant
        self.names = frozenset(names)
        self.prefix = prefix
        self.models = dict(models or {})
        self.fallback_model = fallback_model
        self.timeout_s = timeout_s
        self.routed = 0
        self.failures = 0
        self._client = client
        self._http: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    # -- which requests -------------------------------------------------------------------------
    def is_synthetic(self, model: object) -> bool:
        return isinstance(model, str) and (
            model in self.names or (bool(self.prefix) and model.startswith(self.prefix))
        )

    # -- deciding -------------------------------------------------------------------------------
    async def decide(self, model: str, messages: list[dict[str, Any]], routing: Any = None) -> dict[str, Any]:
        """routerforge's decision for ``messages`` under synthetic ``model`` (the ``/v1/route`` body)."""
        text = prompt_text(messages)
        if self.url is not None:
            return await self._decide_remote(model, text, routing)
        client = self._in_process()
        try:
            return await asyncio.to_thread(client.route, model, text, explain=False, routing=routing)
        except RouterForgeError as exc:
            raise RoutingFailed(str(exc), exc.http_status) from exc

    async def _decide_remote(self, model: str, text: str, routing: Any) -> dict[str, Any]:
        if self._http is None:
            headers = {}
            key = env_value(self.api_key_env) if self.api_key_env else None
            if key:
                headers["authorization"] = f"Bearer {key}"
            self._http = httpx.AsyncClient(base_url=str(self.url), headers=headers, timeout=self.timeout_s)
        body: dict[str, Any] = {"model": model, "prompt": text, "explain": False}
        if routing is not None:
            body["routing"] = routing
        try:
            response = await self._http.post("/v1/route", json=body)
        except httpx.HTTPError as exc:
            raise RoutingFailed(
                f"routerforge at {self.url} is unreachable: {type(exc).__name__}", 503
            ) from exc
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise RoutingFailed(f"routerforge: {message}", response.status_code)
        out: dict[str, Any] = response.json()
        return out

    def _in_process(self) -> Any:
        with self._lock:
            if self._client is None:
                from routerforge.sdk import Client

                config = dict(self.config) if isinstance(self.config, Mapping) else self.config
                self._client = Client(config=config, tenant=self.tenant, store=False)
            return self._client

    # -- the LiteLLM hook -----------------------------------------------------------------------
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        model = data.get("model")
        if call_type not in ROUTED_CALL_TYPES or not self.is_synthetic(model):
            return data
        messages = data.get("messages")
        if not isinstance(messages, list):
            messages = [{"role": "user", "content": str(data.get("prompt") or "")}]
        routing = data.pop("routing", None)
        try:
            decision = await self.decide(str(model), messages, routing)
        except RoutingFailed as exc:
            self.failures += 1
            if self.fallback_model is None:
                from fastapi import HTTPException

                raise HTTPException(status_code=exc.status_code, detail=str(exc)) from exc
            decision = {"model": self.fallback_model, "reason": f"routerforge failed: {exc}"}
        chosen = str(decision["model"])
        data["model"] = self.models.get(chosen, chosen)
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        metadata["routerforge"] = {
            "synthetic_model": model,
            "chosen_model": chosen,
            "policy": decision.get("policy"),
            "knob": decision.get("knob"),
            "reason": decision.get("reason"),
        }
        self.routed += 1
        return data

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None


handler = RouterforgeHook()  # in-process with the default settings; loads nothing until first used

__all__ = ["RouterforgeHook", "RoutingFailed", "handler"]
