"""Reservations against limited windows (budgets in USD, tokens per minute), shared by every replica.

A *window* is one limited counter: a tenant's spend today, an organisation's spend this month, a key's
tokens this minute. Before the upstream call the gateway reserves the request's estimated amount on every
window that applies, all or nothing: the reservation succeeds only if, on each window,
``spent + reserved + amount <= limit``. After the call it *settles*: the actual amount is added to
``spent`` and the reservation is removed; a failed call settles with 0 (a release). A reservation is a
*lease*: not settled within ``lease_s`` (its replica was killed), it expires and any replica removes it.

Three stores, one protocol, each atomic across processes and hosts:

* :class:`MemoryLedger` — a lock in this process (only for a gateway without a store).
* :class:`SqlLedger` — ``gw_budget_windows`` (spent, reserved) and ``gw_budget_leases``; a reservation is
  one transaction of conditional ``UPDATE … SET reserved = reserved + x WHERE spent + reserved + x <= limit``
  in key order (PostgreSQL re-checks the condition after a concurrent update's row lock; SQLite serialises
  writers), rolled back when any window refuses. Settling and expiry ``DELETE … RETURNING`` the lease, so a
  lease's amounts are taken off exactly once.
* :class:`RedisLedger` — a hash per window (``s``, ``r``), a JSON string per lease and a sorted set of lease
  expiries, changed only by Lua scripts (one script = one atomic step). Single Redis server (not a cluster:
  the scripts touch keys of several windows).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread
from sqlalchemy import JSON, DateTime, Float, String, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from routerforge.data.schema import Base
from routerforge.data.sqlutil import dialect_insert
from routerforge.gateway.config import CountersConfig
from routerforge.gateway.db import GatewayDB, utcnow
from routerforge.gateway.ratelimit import counters_backend, redis_client

EPS = 1e-9  # float slack when comparing sums of USD amounts with a limit


class GwBudgetWindow(Base):
    """One limited window: what was spent (settled) and what requests in flight hold (reserved)."""

    __tablename__ = "gw_budget_windows"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    spent: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    reserved: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, index=True)


class GwBudgetLease(Base):
    """A reservation in flight: its windows and amounts (``[[key, amount], …]``) and when it expires."""

    __tablename__ = "gw_budget_leases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    windows: Mapped[Any] = mapped_column(JSON, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, index=True)


@dataclass(frozen=True)
class Window:
    """A limited counter and what this request reserves on it.

    ``label`` names it for error messages ("tenant 'acme' daily budget"); ``unit`` is ``usd`` or ``tokens``;
    ``ttl_s``: how long the window's row lives after its creation (a day's window: two days)."""

    key: str
    limit: float
    amount: float
    ttl_s: float
    label: str
    unit: str = "usd"


@dataclass(frozen=True)
class Refusal:
    """The first window that could not hold the reservation, and what it held then."""

    window: Window
    spent: float
    reserved: float


class Ledger(Protocol):
    kind: str

    async def reserve(self, lease_id: str, windows: Sequence[Window], lease_s: float) -> Refusal | None:
        """Reserve every window's amount, or none (returns the refusing window)."""
        ...

    async def settle(self, lease_id: str, windows: Sequence[Window], actual: Sequence[float]) -> None:
        """Remove the reservation (if it has not expired) and add ``actual[i]`` to window ``i``'s spend."""
        ...

    async def usage(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        """``(spent, reserved)`` of each key (0, 0 for an unknown one)."""
        ...

    async def aclose(self) -> None: ...


# -- memory ------------------------------------------------------------------------------------------
class MemoryLedger:
    kind = "memory"

    def __init__(self) -> None:
        self._windows: dict[str, list[float]] = {}  # key -> [spent, reserved, expires (monotonic)]
        self._leases: dict[str, tuple[list[tuple[str, float]], float]] = {}
        self._lock = threading.Lock()

    def _sweep(self, now: float) -> None:
        for lid, (ws, expires) in list(self._leases.items()):
            if expires <= now:
                del self._leases[lid]
                for key, amount in ws:
                    if key in self._windows:
                        self._windows[key][1] -= amount
        self._windows = {k: v for k, v in self._windows.items() if v[2] > now or v[1] > EPS}

    def _row(self, key: str, ttl_s: float, now: float) -> list[float]:
        row = self._windows.get(key)
        if row is None:
            row = self._windows[key] = [0.0, 0.0, now + ttl_s]
        return row

    async def reserve(self, lease_id: str, windows: Sequence[Window], lease_s: float) -> Refusal | None:
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            for w in windows:
                spent, reserved, _ = self._windows.get(w.key, (0.0, 0.0, 0.0))
                if spent + reserved + w.amount > w.limit + EPS:
                    return Refusal(w, spent, reserved)
            for w in windows:
                self._row(w.key, w.ttl_s, now)[1] += w.amount
            self._leases[lease_id] = ([(w.key, w.amount) for w in windows], now + lease_s)
        return None

    async def settle(self, lease_id: str, windows: Sequence[Window], actual: Sequence[float]) -> None:
        now = time.monotonic()
        with self._lock:
            lease = self._leases.pop(lease_id, None)
            held = dict(lease[0]) if lease else {}
            for w, amount in zip(windows, actual, strict=True):
                row = self._row(w.key, w.ttl_s, now)
                row[0] += amount
                row[1] -= held.get(w.key, 0.0)

    async def usage(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        with self._lock:
            return [(r[0], r[1]) if (r := self._windows.get(k)) else (0.0, 0.0) for k in keys]

    async def aclose(self) -> None:
        return None


# -- SQL ---------------------------------------------------------------------------------------------
_W = GwBudgetWindow.__table__
_L = GwBudgetLease.__table__


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


class SqlLedger:
    """PostgreSQL or SQLite (the gateway's store). Synchronous work runs in worker threads."""

    kind = "sql"
    SWEEP_EVERY_S = 5.0

    def __init__(self, db: GatewayDB) -> None:
        self.db = db
        self._last_sweep = 0.0

    def reserve_sync(self, lease_id: str, windows: Sequence[Window], lease_s: float) -> Refusal | None:
        now = utcnow()
        ordered = sorted(windows, key=lambda w: w.key)  # one lock order: no deadlock between reservations
        try:
            with self.db.engine.begin() as conn:
                ins = dialect_insert(conn)(GwBudgetWindow)
                for w in ordered:
                    conn.execute(
                        ins.values(
                            key=w.key, spent=0.0, reserved=0.0, expires_at=now + dt.timedelta(seconds=w.ttl_s)
                        ).on_conflict_do_nothing(index_elements=[GwBudgetWindow.key])
                    )
                for w in ordered:
                    res = conn.execute(
                        update(GwBudgetWindow)
                        .where(
                            GwBudgetWindow.key == w.key,
                            GwBudgetWindow.spent + GwBudgetWindow.reserved + w.amount <= w.limit + EPS,
                        )
                        .values(reserved=GwBudgetWindow.reserved + w.amount)
                    )
                    if res.rowcount != 1:
                        row = conn.execute(
                            select(GwBudgetWindow.spent, GwBudgetWindow.reserved).where(
                                GwBudgetWindow.key == w.key
                            )
                        ).first()
                        spent, reserved = (float(row[0]), float(row[1])) if row else (0.0, 0.0)
                        raise _Refused(Refusal(w, spent, reserved))
                conn.execute(
                    insert(GwBudgetLease).values(
                        id=lease_id,
                        windows=[[w.key, w.amount] for w in ordered],
                        expires_at=now + dt.timedelta(seconds=lease_s),
                    )
                )
        except _Refused as refused:
            return refused.refusal
        return None

    def settle_sync(self, lease_id: str, windows: Sequence[Window], actual: Sequence[float]) -> None:
        now = utcnow()
        with self.db.engine.begin() as conn:
            row = conn.execute(
                delete(GwBudgetLease).where(GwBudgetLease.id == lease_id).returning(_L.c.windows)
            ).first()
            held = {str(k): float(a) for k, a in (row[0] if row else [])}
            pairs = sorted(zip(windows, actual, strict=True), key=lambda p: p[0].key)
            ins = dialect_insert(conn)(GwBudgetWindow)
            for w, amount in pairs:
                stmt = ins.values(
                    key=w.key, spent=amount, reserved=0.0, expires_at=now + dt.timedelta(seconds=w.ttl_s)
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[GwBudgetWindow.key],
                        set_={
                            "spent": GwBudgetWindow.spent + amount,
                            "reserved": GwBudgetWindow.reserved - held.get(w.key, 0.0),
                        },
                    )
                )

    def sweep_sync(self) -> int:
        """Remove expired leases (their replica died) and give their amounts back; purge old windows."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            rows = conn.execute(
                delete(GwBudgetLease).where(GwBudgetLease.expires_at < now).returning(_L.c.windows)
            ).all()
            back: dict[str, float] = {}
            for (ws,) in rows:
                for key, amount in ws:
                    back[str(key)] = back.get(str(key), 0.0) + float(amount)
            for key in sorted(back):
                conn.execute(
                    update(GwBudgetWindow)
                    .where(GwBudgetWindow.key == key)
                    .values(reserved=GwBudgetWindow.reserved - back[key])
                )
            conn.execute(
                delete(GwBudgetWindow).where(GwBudgetWindow.expires_at < now, GwBudgetWindow.reserved <= EPS)
            )
        return len(rows)

    async def _maybe_sweep(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_sweep > self.SWEEP_EVERY_S:
            self._last_sweep = now
            await anyio.to_thread.run_sync(self.sweep_sync)

    async def reserve(self, lease_id: str, windows: Sequence[Window], lease_s: float) -> Refusal | None:
        await self._maybe_sweep()
        refusal = await anyio.to_thread.run_sync(self.reserve_sync, lease_id, windows, lease_s)
        if refusal is not None and refusal.reserved > EPS:  # maybe held by a dead replica's expired lease
            await self._maybe_sweep(force=True)
            refusal = await anyio.to_thread.run_sync(self.reserve_sync, lease_id, windows, lease_s)
        return refusal

    async def settle(self, lease_id: str, windows: Sequence[Window], actual: Sequence[float]) -> None:
        await anyio.to_thread.run_sync(self.settle_sync, lease_id, windows, actual)

    def usage_sync(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        if not keys:
            return []
        with self.db.engine.connect() as conn:
            found = {
                r[0]: (float(r[1]), float(r[2]))
                for r in conn.execute(
                    select(GwBudgetWindow.key, GwBudgetWindow.spent, GwBudgetWindow.reserved).where(
                        GwBudgetWindow.key.in_(list(keys))
                    )
                )
            }
        return [found.get(k, (0.0, 0.0)) for k in keys]

    async def usage(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        return await anyio.to_thread.run_sync(self.usage_sync, keys)

    async def aclose(self) -> None:
        return None


# -- Redis -------------------------------------------------------------------------------------------
_SWEEP_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 200)
for _, id in ipairs(expired) do
  local lk = ARGV[1] .. id
  local body = redis.call('GET', lk)
  if body then
    for _, w in ipairs(cjson.decode(body)) do redis.call('HINCRBYFLOAT', w[1], 'r', -w[2]) end
    redis.call('DEL', lk)
  end
  redis.call('ZREM', KEYS[1], id)
end
return now
"""

# KEYS[1] leases zset, KEYS[2] this lease's key, KEYS[3..] window hashes;
# ARGV[1] lease key prefix, ARGV[2] lease id, ARGV[3] lease ms, ARGV[4] lease JSON,
# then per window: amount, limit, ttl_s
_RESERVE_LUA = (
    _SWEEP_LUA.replace("return now", "")
    + """
local n = #KEYS - 2
for i = 1, n do
  local base = 4 + 3 * (i - 1)
  local amount, limit = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local v = redis.call('HMGET', KEYS[i + 2], 's', 'r')
  local s, r = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if s + r + amount > limit + 1e-9 then return {i, tostring(s), tostring(r)} end
end
for i = 1, n do
  local base = 4 + 3 * (i - 1)
  redis.call('HINCRBYFLOAT', KEYS[i + 2], 'r', ARGV[base + 1])
  redis.call('EXPIRE', KEYS[i + 2], ARGV[base + 3], 'NX')
end
local lease_ms = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'PX', lease_ms + 86400000)
redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[2])
return {0}
"""
)

# KEYS[1] leases zset, KEYS[2] this lease's key, KEYS[3..] window hashes; ARGV[1] lease id,
# then per window: actual, ttl_s
_SETTLE_LUA = """
local body = redis.call('GET', KEYS[2])
if body then
  for _, w in ipairs(cjson.decode(body)) do redis.call('HINCRBYFLOAT', w[1], 'r', -w[2]) end
  redis.call('DEL', KEYS[2])
end
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 1, #KEYS - 2 do
  local actual = ARGV[2 * i]
  if tonumber(actual) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[i + 2], 's', actual) end
  redis.call('EXPIRE', KEYS[i + 2], ARGV[2 * i + 1], 'NX')
end
return 1
"""


class RedisLedger:
    kind = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._client: Any = redis_client(url)
        self.prefix = prefix
        self._reserve = self._client.register_script(_RESERVE_LUA)
        self._settle = self._client.register_script(_SETTLE_LUA)

    def _w(self, key: str) -> str:
        return f"{self.prefix}:bw:{key}"

    def _lease(self, lease_id: str) -> str:
        return f"{self.prefix}:lease:{lease_id}"

    async def reserve(self, lease_id: str, windows: Sequence[Window], lease_s: float) -> Refusal | None:
        keys = [f"{self.prefix}:leases", self._lease(lease_id), *(self._w(w.key) for w in windows)]
        body = json.dumps([[self._w(w.key), w.amount] for w in windows])
        args: list[Any] = [f"{self.prefix}:lease:", lease_id, int(lease_s * 1000), body]
        for w in windows:
            args += [repr(float(w.amount)), repr(float(w.limit)), max(1, math.ceil(w.ttl_s))]
        out = await self._reserve(keys=keys, args=args)
        if int(out[0]) == 0:
            return None
        return Refusal(windows[int(out[0]) - 1], float(out[1]), float(out[2]))

    async def settle(self, lease_id: str, windows: Sequence[Window], actual: Sequence[float]) -> None:
        keys = [f"{self.prefix}:leases", self._lease(lease_id), *(self._w(w.key) for w in windows)]
        args: list[Any] = [lease_id]
        for w, amount in zip(windows, actual, strict=True):
            args += [repr(float(amount)), max(1, math.ceil(w.ttl_s))]
        await self._settle(keys=keys, args=args)

    async def usage(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        if not keys:
            return []
        pipe = self._client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(self._w(k), "s", "r")
        out = []
        for s, r in await pipe.execute():
            out.append((float(s or 0.0), float(r or 0.0)))
        return out

    async def aclose(self) -> None:
        await self._client.aclose()


def build_ledger(config: CountersConfig, db: GatewayDB | None) -> Ledger:
    """The ledger on the same store as the counters (``counters.backend``, resolved by ``counters_backend``)."""
    backend = counters_backend(config, db)
    if backend == "redis":
        return RedisLedger(config.redis_url, config.prefix)
    if backend == "sql":
        assert db is not None
        return SqlLedger(db)
    return MemoryLedger()
