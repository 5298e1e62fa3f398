"""What every dashboard page can reach: :class:`UIContext`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routerforge.config import Settings
    from routerforge.gateway.auth import KeyStore
    from routerforge.gateway.config import GatewayConfig
    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.routing import LoadedRouter, Routing
    from routerforge.gateway.service import GatewayService


@dataclass
class UIContext:
    """Settings, the gateway config, the store and the key store; in the gateway also its live routers.

    ``service`` is the running gateway's :class:`~routerforge.gateway.service.GatewayService` or ``None``
    under ``routerforge ui``; :attr:`routing` is its live ``Routing`` (read on each use, so a hot reload
    that swaps ``service.routing`` is seen) or, standalone, a private one; :meth:`router` loads a router
    directory either way (lazily, once).
    ``secret`` signs session cookies and CSRF tokens. It is derived from the API-key pepper (HMAC with a
    fixed label), so every worker and replica that shares the pepper accepts the same sessions and nothing
    new has to be stored; rotating the pepper ends every session. It is never shown or logged.
    """

    settings: Settings
    gateway_config: GatewayConfig
    db: GatewayDB
    keys: KeyStore
    service: GatewayService | None = None
    secret: bytes = b""
    session_ttl_s: float = 8 * 3600.0
    _own_routing: Routing | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.secret:
            pepper = getattr(self.keys, "pepper", b"") or secrets.token_bytes(32)
            self.secret = hmac.new(pepper, b"routerforge-ui-session-v1", hashlib.sha256).digest()

    @property
    def routers_dir(self) -> Path:
        return self.settings.routers_dir

    @property
    def routing(self) -> Routing:
        if self.service is not None:
            return self.service.routing
        with self._lock:
            if self._own_routing is None:
                from routerforge.gateway.routing import Routing

                self._own_routing = Routing(self.settings, self.gateway_config)
            return self._own_routing

    def loaded_router(self, directory: Path) -> LoadedRouter | None:
        """The router of ``directory`` if it is already loaded (never loads: cheap, for page views)."""
        return self.routing._routers.get(directory.resolve())

    def router(self, directory: Path) -> LoadedRouter:
        """The loaded router of ``directory`` (the gateway's own when it runs; else loaded here once)."""
        return self.routing._router_at(directory)

    def flush(self) -> None:
        """Make the gateway's log writer write what it holds (a page then shows the request just made)."""
        logs = getattr(self.service, "logs", None)
        if logs is not None:
            logs.flush()

    def close(self) -> None:
        if self._own_routing is not None:
            self._own_routing.close()
