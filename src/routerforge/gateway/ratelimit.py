"""Counters shared by every gateway process, and the per-key request-rate limiter built on them.

Three counter stores, one interface (``add`` returns the new value; ``get`` reads several):

* :class:`MemoryCounters` — a dict in this process, lost on restart: only for a gateway without a store
  (``counters.backend: memory`` asks for it explicitly); with ``--workers N`` each process would count
  alone, so ``serve`` refuses that combination.
* :class:`SqlCounters` — a ``gw_counters`` row per key, updated with one atomic
  ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` (PostgreSQL and SQLite). The default whenever there is a
  store, so budgets and rate limits survive a restart, and workers and replicas sharing the database
  share them.
* :class:`RedisCounters` — ``INCRBYFLOAT`` + ``EXPIRE`` in one pipeline (``counters.backend: redis``).

Rate limits are fixed one-minute windows per API key (``rl:<key>:<minute>``) and, when the tenant sets
``requests_per_minute``, per tenant (``rl:t:<tenant>:<minute>``, all its keys together).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol

import anyio.to_thread

from routerforge.errors import ConfigError, RateLimitError
from routerforge.gateway.config import CountersConfig
from routerforge.gateway.db import GatewayDB


class Counters(Protocol):
    kind: str

    async def add(self, key: str, amount: float, ttl_s: float) -> float: ...

    async def get(self, keys: list[str]) -> list[float]: ...

    async def aclose(self) -> None: ...


class MemoryCounters:
    kind = "memory"

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires monotonic)
        self._lock = threading.Lock()

    def add_sync(self, key: str, amount: float, ttl_s: float) -> float:
        now = time.monotonic()
        with self._lock:
            value, expires = self._values.get(key, (0.0, 0.0))
            if expires <= now:
                value, expires = 0.0, now + ttl_s
            value += amount
            self._values[key] = (value, expires)
            if len(self._values) > 50_000:
                self._values = {k: v for k, v in self._values.items() if v[1] > now}
        return value

    async def add(self, key: str, amount: float, ttl_s: float) -> float:
        return self.add_sync(key, amount, ttl_s)

    async def get(self, keys: list[str]) -> list[float]:
        now = time.monotonic()
        with self._lock:
            return [v[0] if (v := self._values.get(k)) and v[1] > now else 0.0 for k in keys]

    async def aclose(self) -> None:
        return None


class SqlCounters:
    kind = "sql"

    def __init__(self, db: GatewayDB) -> None:
        self.db = db
        self._last_purge = 0.0

    async def add(self, key: str, amount: float, ttl_s: float) -> float:
        value = await anyio.to_thread.run_sync(self.db.counter_add, key, amount, ttl_s)
        now = time.monotonic()
        if now - self._last_purge > 300:
            self._last_purge = now
            await anyio.to_thread.run_sync(self.db.counters_purge)
        return value

    async def get(self, keys: list[str]) -> list[float]:
        return await anyio.to_thread.run_sync(self.db.counter_get, keys)

    async def aclose(self) -> None:
        return None


def redis_client(url: str) -> Any:
    """An asyncio Redis client for ``counters.redis_url`` (a clear error when the extra is missing)."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ConfigError(
            "counters.backend is 'redis' but the redis package is not installed.",
            hint="pip install 'routerforge[redis]'",
        ) from exc
    return aioredis.from_url(url)


class RedisCounters:
    kind = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._client: Any = redis_client(url)
        self.prefix = prefix

    async def add(self, key: str, amount: float, ttl_s: float) -> float:
        full = f"{self.prefix}:{key}"
        pipe = self._client.pipeline(transaction=True)
        pipe.incrbyfloat(full, amount)
        pipe.expire(full, max(1, math.ceil(ttl_s)), nx=True)
        value, _ = await pipe.execute()
        return float(value)

    async def get(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        values = await self._client.mget([f"{self.prefix}:{k}" for k in keys])
        return [float(v) if v is not None else 0.0 for v in values]

    async def aclose(self) -> None:
        await self._client.aclose()


def counters_backend(config: CountersConfig, db: GatewayDB | None) -> str:
    """``config.backend`` resolved (``auto``: sql when there is a store, else memory); sql needs a store."""
    backend = config.backend
    if backend == "auto":
        backend = "sql" if db is not None else "memory"
    if backend == "sql" and db is None:
        raise ConfigError("counters.backend 'sql' needs a database store.")
    return backend


def build_counters(config: CountersConfig, db: GatewayDB | None) -> Counters:
    """The counter store named by ``config.backend`` (see :func:`counters_backend`)."""
    backend = counters_backend(config, db)
    if backend == "redis":
        return RedisCounters(config.redis_url, config.prefix)
    if backend == "sql":
        assert db is not None
        return SqlCounters(db)
    return MemoryCounters()


class RateLimiter:
    """Fixed one-minute windows per key, on shared counters."""

    def __init__(self, counters: Counters, default_per_minute: int) -> None:
        self.counters = counters
        self.default_per_minute = default_per_minute

    async def check(
        self,
        key_id: str,
        per_minute: int | None = None,
        *,
        tenant: str | None = None,
        tenant_per_minute: int | None = None,
    ) -> None:
        """Count one request on the key's window (and the tenant's, when the tenant has a limit of its
        own); refuse with :class:`RateLimitError` when either is over. Tokens per minute are reserved with
        the budgets (gateway/budgets.py)."""
        limit = per_minute or self.default_per_minute
        minute = int(time.time() // 60)
        used = await self.counters.add(f"rl:{key_id}:{minute}", 1.0, 120.0)
        retry = 60 - int(time.time() % 60)
        if used > limit:
            raise RateLimitError(
                f"Rate limit of {limit} requests per minute reached for this key.",
                hint=f"Retry in {retry} s or ask for a higher limit.",
            )
        if tenant is not None and tenant_per_minute is not None:
            used = await self.counters.add(f"rl:t:{tenant}:{minute}", 1.0, 120.0)
            if used > tenant_per_minute:
                raise RateLimitError(
                    f"Rate limit of {tenant_per_minute} requests per minute reached for tenant {tenant!r} "
                    "(all its keys together).",
                    hint=f"Retry in {retry} s or ask for a higher limit.",
                )
