"""Hot reload: promotions, config edits, new keys and new routers reach a running gateway without a restart.

Every gateway process runs one :class:`Reloader` (started by the service). Every ``reload.interval_s``
seconds (gateway.yaml, default 2 s) it reads two cheap things:

- the *state version* — one primary-key row (``gw_state``, gateway/assignments.py) bumped in the same
  transaction as every promote/rollback and by API-key changes;
- gateway.yaml's mtime and size (its SHA-256 only when they changed).

On a change it builds the new state in a worker thread — the file parsed and validated, router assignments
applied (:func:`effective_config`), every named synthetic model resolved and its routers (shadow and canary
included) loaded and warmed — and only then swaps it in with one attribute assignment per object
(``service.routing``, ``service.config``, and ``service.pool`` when the models changed). Requests already
routed finish on the objects they hold (their router, its batcher, the old pool stays open for
:data:`GRACE_S`); no request is dropped. Routers whose directory did not change are carried over, not
reloaded. A bad new state (invalid YAML, a router that does not load, a synthetic model whose models the
config does not serve) is refused: the error is logged, counted (``routerforge_reload_total{outcome="error"}``)
and shown by ``GET /v1/admin/state``; the old state keeps serving and the poll retries only after the next change.

Sections read once at start (``limits``, ``logging``, ``counters``, ``metrics``, ``require_auth``, ``reload``)
need a restart; a reload that changes them says so in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from prometheus_client import Counter, Gauge

from routerforge.errors import ConfigError, RouterForgeError
from routerforge.gateway.assignments import Assignment, Assignments
from routerforge.gateway.config import GatewayConfig, PolicyConfig, load_gateway_config
from routerforge.gateway.routing import Routing

if TYPE_CHECKING:
    from routerforge.gateway.auth import KeyStore
    from routerforge.gateway.service import GatewayService

log = logging.getLogger("routerforge.gateway.reload")

SETTLE_S = 0.1  # a changed config file must keep its size and mtime this long before it is read
GRACE_S = 120.0  # how long replaced batchers and upstream pools stay open for requests still using them
RESTART_SECTIONS = ("limits", "logging", "counters", "metrics", "require_auth", "reload", "key_pepper_env")


def effective_config(config: GatewayConfig, assignments: dict[str, Assignment]) -> GatewayConfig:
    """``config`` with each promoted synthetic model's router (and policy, when the promotion set one)
    replaced by its assignment. A promotion without kind and knob keeps the configured policy; one with a
    kind only takes the new router's calibrated knob. Rules, candidates, fallbacks and latency weight stay
    the config's. Assignments naming no synthetic model are ignored."""
    synthetic = []
    for syn in config.synthetic_models:
        a = assignments.get(syn.name)
        if a is None:
            synthetic.append(syn)
            continue
        policy = syn.policy
        if a.kind is not None or a.knob is not None:
            policy = PolicyConfig(kind=a.kind, knob=a.knob, latency_weight=syn.policy.latency_weight)  # type: ignore[arg-type]
        synthetic.append(syn.model_copy(update={"router": a.router, "policy": policy}))
    return config.model_copy(update={"synthetic_models": synthetic})


def check_routing(routing: Routing) -> None:
    """Load and resolve every named synthetic model (and its shadow/canary routers) of ``routing``:
    raises when one cannot serve."""
    from routerforge.gateway.shadow import candidate_target

    for syn in routing.config.synthetic_models:
        target = routing.resolve(syn.tenant or "default", syn.name)
        for arm in (syn.shadow, syn.canary):
            if arm is not None:
                candidate_target(routing, target, arm)


def file_signature(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def file_hash(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Reloader:
    """Polls the state version and the config file; builds and swaps new state (module docstring)."""

    def __init__(
        self,
        service: GatewayService,
        config_path: str | Path | None,
        *,
        base_config: GatewayConfig,
        keys: KeyStore | None = None,
    ) -> None:
        self.service = service
        self.path = Path(config_path).expanduser().resolve() if config_path is not None else None
        self.base = base_config  # gateway.yaml as read (before assignments)
        self.keys = keys
        self.interval_s = base_config.reload.interval_s
        self.assignments = Assignments(service.db.engine) if service.db is not None else None
        self.version = 0
        self.sig = file_signature(self.path)
        self.sha256 = file_hash(self.path)
        self.error: str | None = None
        self.error_at: float | None = None
        self.reloads = 0
        self.reloaded_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._retired: list[Any] = []  # (deadline, closer) of replaced batchers and pools
        self._check_lock = asyncio.Lock()
        registry = service.metrics.registry
        self.m_reloads = Counter(
            "routerforge_reload", "Hot reloads by outcome (ok, error).", ["outcome"], registry=registry
        )
        self.m_version = Gauge(
            "routerforge_state_version",
            "The gateway state version this process serves (gw_state 'routing').",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.m_error = Gauge(
            "routerforge_reload_failing",
            "1 while the latest change could not be loaded (the previous state keeps serving).",
            registry=registry,
            multiprocess_mode="max",
        )

    # -- lifecycle ------------------------------------------------------------------------------------
    def prime(self) -> None:
        """Before the first load (worker thread): apply the assignments recorded so far, so a replica
        started after a promotion serves the promoted router from its first request."""
        if self.assignments is None:
            return
        version, assigned = self.assignments.snapshot()
        self.version = version
        self.m_version.set(version)
        if not assigned:
            return
        config = effective_config(self.base, assigned)
        routing = Routing(self.service.settings, config)
        try:
            routing.load_all()
            check_routing(routing)
        except (RouterForgeError, OSError, ValueError, KeyError, TypeError, ImportError) as exc:
            # a promoted router that no longer loads must not stop the gateway: gateway.yaml's serves
            self._close_new(routing, self.service.routing)
            self._refuse(version, self.sha256, exc)
            return
        self._install_config(config)
        self.service.routing = routing

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="routerforge-reload")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _deadline, closer in self._retired:
            with contextlib.suppress(Exception):  # shutting down: close what is left, whatever it raises
                await closer()
        self._retired.clear()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything (a DB blip); the next poll retries
                log.exception("hot reload: poll failed")
            await self._close_retired()

    # -- one poll ---------------------------------------------------------------------------------------
    async def check(self) -> bool:
        """Poll once; reload when something changed. True when a new state was swapped in."""
        async with self._check_lock:  # the poll loop and an admin "reload now" never build at once
            changed = await anyio.to_thread.run_sync(self._changed)
            if changed is None:
                return False
            version, sha = changed
            try:
                built = await anyio.to_thread.run_sync(self._build, sha)
            except (RouterForgeError, OSError, ValueError, KeyError, TypeError, ImportError) as exc:
                self._refuse(version, sha, exc)
                return False
            self._swap(version, sha, *built)
            return True

    def _changed(self) -> tuple[int, str | None] | None:
        """(new state version, new file hash) when either moved; None when nothing did."""
        version = self.assignments.version() if self.assignments is not None else self.version
        sig = file_signature(self.path)
        sha = self.sha256
        if sig != self.sig:
            time.sleep(SETTLE_S)  # an editor may still be writing: read it only once it stopped moving
            if file_signature(self.path) != sig:
                sig, sha = self.sig, self.sha256  # still changing: the next poll looks again
            else:
                self.sig = sig
                sha = file_hash(self.path)
        if version == self.version and sha == self.sha256:
            return None
        if version != self.version and self.keys is not None:
            self.keys.forget()  # a key may have been revoked: no cached verdict outlives the change
        return version, sha

    def _build(self, sha: str | None) -> tuple[GatewayConfig, GatewayConfig, Routing]:
        """The new (base config, effective config, loaded routing); raises when it cannot serve."""
        base = self.base
        if sha != self.sha256 and self.path is not None:
            if not self.path.read_text(encoding="utf-8").strip():
                raise ConfigError(f"{self.path} is empty; a hot reload never serves an empty config.")
            base = load_gateway_config(self.path)
        assigned = self.assignments.all() if self.assignments is not None else {}
        config = effective_config(base, assigned)
        old: Routing = self.service.routing
        routing = Routing(self.service.settings, config)
        batchers = dict(old._batchers)  # copies: the event loop may add to them meanwhile
        for directory, router in list(old._routers.items()):  # carry over routers whose files did not change
            if _unchanged(router):
                routing._routers[directory] = router
                hit = batchers.get(id(router))
                if hit is not None:
                    routing._batchers[id(router)] = hit
        try:
            routing.load_all()
            check_routing(routing)
        except BaseException:
            self._close_new(routing, old)
            raise
        return base, config, routing

    def _swap(
        self, version: int, sha: str | None, base: GatewayConfig, config: GatewayConfig, routing: Routing
    ) -> None:
        svc = self.service
        old = svc.routing
        changes = [k for k in RESTART_SECTIONS if getattr(base, k) != getattr(self.base, k)]
        if changes:
            log.warning(
                "hot reload: %s changed in %s; they take effect on restart", ", ".join(changes), self.path
            )
        self._install_config(config)
        svc.routing = routing  # the swap: requests resolved from now on use the new routers
        if getattr(svc, "drift", None) is not None:
            svc.drift.routing = routing  # type: ignore[union-attr]
        self.base = base
        self.version, self.sha256 = version, sha
        self.error = None
        self.m_error.set(0)
        self.m_version.set(version)
        self.m_reloads.labels("ok").inc()
        self.reloads += 1
        self.reloaded_at = time.time()
        kept = {id(b) for b in routing._batchers.values()}
        stale = [b for b in list(old._batchers.values()) if id(b) not in kept]
        carried = {id(r) for r in routing._routers.values()}
        for r in list(old._routers.values()):  # replaced routers (their files changed) close after the grace
            if id(r) not in carried and hasattr(getattr(r, "trained", None), "close"):
                self._retire(lambda r=r: anyio.to_thread.run_sync(r.trained.close))
        if stale:

            def close_stale() -> None:
                for b in stale:
                    b.close()

            self._retire(lambda: anyio.to_thread.run_sync(close_stale))
        log.info(
            "hot reload: state version %d, config %s, %d routers loaded",
            version,
            (sha or "-")[:12],
            len(routing.loaded),
        )

    def _install_config(self, config: GatewayConfig) -> None:
        """Config-derived objects of the service that follow a reload: the config itself, budgets, the
        metric label set, and the upstream pool when the models changed (the old one retires)."""
        from routerforge.gateway.budgets import Budgets
        from routerforge.gateway.service import build_pool

        svc = self.service
        if [m.model_dump() for m in config.models] != [m.model_dump() for m in svc.config.models]:
            old_pool = svc.pool
            svc.pool = build_pool(config)
            self._retire(old_pool.aclose)
        svc.config = config
        svc.budgets = Budgets(config, svc.ledger)  # reservations on the shared ledger (gateway/ledger.py)
        svc.metrics.labels.models = frozenset(
            [m.id for m in config.models] + [s.name for s in config.synthetic_models]
        )
        svc.metrics.labels.tenants = frozenset(t.name for t in config.tenants)

    def _refuse(self, version: int, sha: str | None, exc: BaseException) -> None:
        # Remember what was seen so the same broken state is not rebuilt every poll; the next change retries.
        self.version, self.sha256 = version, sha
        self.error = f"{type(exc).__name__}: {exc}"
        self.error_at = time.time()
        self.m_error.set(1)
        self.m_reloads.labels("error").inc()
        log.error("hot reload refused (the previous state keeps serving): %s", self.error)

    def _close_new(self, routing: Routing, old: Routing) -> None:
        kept = {id(b) for b in list(old._batchers.values())}
        for b in routing._batchers.values():
            if id(b) not in kept:
                b.close()

    def _retire(self, closer: Any) -> None:
        self._retired.append((time.monotonic() + GRACE_S, closer))

    async def _close_retired(self) -> None:
        now = time.monotonic()
        due = [c for d, c in self._retired if d <= now]
        self._retired = [(d, c) for d, c in self._retired if d > now]
        for closer in due:
            try:
                await closer()
            except Exception:  # a retired pool failing to close must not stop the poll loop
                log.exception("hot reload: closing a replaced object failed")

    def status(self, *, detail: bool = False) -> dict[str, Any]:
        """What ``/readyz`` (``detail`` False: no error text) and ``GET /v1/admin/state`` show."""
        out: dict[str, Any] = {
            "version": self.version,
            "config_sha256": (self.sha256 or "")[:16] or None,
            "reloads": self.reloads,
            "reload_error": self.error is not None,
            "interval_s": self.interval_s,
        }
        if detail:
            out["error"] = self.error
            out["reloaded_at"] = self.reloaded_at
            out["config_path"] = str(self.path) if self.path else None
        return out


def _unchanged(router: Any) -> bool:
    """True when the router directory a loaded router came from still holds the same ``router.json``."""
    directory = getattr(router, "directory", None)
    loaded = getattr(router, "loaded_mtime_ns", None)
    if directory is None or loaded is None:
        return True  # a router without a recorded mtime (tests' stand-ins) is kept as it is
    try:
        return (Path(directory) / "router.json").stat().st_mtime_ns == loaded
    except OSError:
        return False
