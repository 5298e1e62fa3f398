"""API keys: created once and shown once, stored as peppered SHA-256 hashes, looked up through a small cache.

A key looks like ``rf-<43 url-safe chars>`` (256 random bits), so a fast hash is enough (no password
stretching needed); the pepper — a secret kept outside the database (an env var named in gateway.yaml,
or a 0600 file in the home directory) — makes a leaked table useless on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from routerforge.config import env_value
from routerforge.errors import AuthError, ConfigError
from routerforge.files import private_dir, write_private
from routerforge.gateway.db import GatewayDB, KeyInfo

KEY_PREFIX = "rf-"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, the key id, and whether the key may manage other tenants."""

    tenant: str
    key_id: str | None
    is_admin: bool = False
    requests_per_minute: int | None = None
    daily_usd: float | None = None  # the key's own budgets and token rate (None: only the tenant's)
    monthly_usd: float | None = None
    tokens_per_minute: int | None = None


def load_pepper(home: Path, env_name: str | None = None) -> bytes:
    """The pepper from ``env_name`` when given, else from ``home/gateway_pepper`` (created 0600 once)."""
    if env_name:
        value = env_value(env_name)
        if not value:
            raise ConfigError(
                f"key_pepper_env names {env_name!r} but that variable is empty.",
                hint=f"export {env_name}=<random>",
            )
        return value.encode()
    path = home / "gateway_pepper"
    if not path.exists():
        private_dir(home)
        write_private(path, secrets.token_hex(32).encode(), exclusive=True)  # 0600 whatever the umask
    return path.read_bytes().strip()


def hash_key(key: str, pepper: bytes) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


class KeyStore:
    """Create, list, revoke and verify keys. ``verify`` caches hits and misses for ``ttl_s`` seconds."""

    def __init__(self, db: GatewayDB, pepper: bytes, *, ttl_s: float = 5.0) -> None:
        self.db = db
        self.pepper = pepper
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        tenant: str,
        *,
        name: str | None = None,
        admin: bool = False,
        requests_per_minute: int | None = None,
        daily_usd: float | None = None,
        monthly_usd: float | None = None,
        tokens_per_minute: int | None = None,
    ) -> tuple[str, KeyInfo]:
        """Create a key; returns ``(secret, info)``. The secret is shown once and never stored."""
        if not tenant or len(tenant) > 128:
            raise ConfigError("A tenant name must hold 1 to 128 characters.")
        for label, value in (("--daily-usd", daily_usd), ("--monthly-usd", monthly_usd)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{label} must be a finite number ≥ 0, got {value}.")
        for label, count in (("--rpm", requests_per_minute), ("--tpm", tokens_per_minute)):
            if count is not None and count < 1:
                raise ConfigError(f"{label} must be at least 1, got {count}.")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        info = self.db.add_key(
            key_id="key_" + secrets.token_hex(6),
            tenant=tenant,
            key_hash=hash_key(secret, self.pepper),
            prefix=secret[:8],
            name=name,
            is_admin=admin,
            requests_per_minute=requests_per_minute,
            daily_usd=daily_usd,
            monthly_usd=monthly_usd,
            tokens_per_minute=tokens_per_minute,
        )
        self._changed()
        return secret, info

    def revoke(self, key_id: str) -> None:
        if not self.db.revoke_key(key_id):
            raise AuthError(
                f"No active key with id {key_id!r}.", hint="List keys with `routerforge keys list`."
            )
        self.forget()
        self._changed()

    def forget(self) -> None:
        """Drop every cached verdict (the hot reload calls it when another process changed keys)."""
        with self._lock:
            self._cache.clear()

    def _changed(self) -> None:
        """Bump the gateway state version: every replica's hot reload forgets its cached verdicts."""
        from routerforge.gateway.assignments import Assignments

        Assignments(self.db.engine).bump()

    def lookup(self, secret: str) -> KeyInfo | None:
        """The key's record if ``secret`` is a valid, unrevoked key (cached; safe to call from threads)."""
        digest = hash_key(secret, self.pepper)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = self.db.key_by_hash(digest)
        if info is not None and info.revoked_at is not None:
            info = None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl_s, info)
        return info

    def cached(self, secret: str) -> tuple[bool, KeyInfo | None]:
        """``(found_in_cache, info)`` without touching the database (for the event loop)."""
        digest = hash_key(secret, self.pepper)
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def principal_of(info: KeyInfo) -> Principal:
    return Principal(
        tenant=info.tenant,
        key_id=info.id,
        is_admin=info.is_admin,
        requests_per_minute=info.requests_per_minute,
        daily_usd=info.daily_usd,
        monthly_usd=info.monthly_usd,
        tokens_per_minute=info.tokens_per_minute,
    )
