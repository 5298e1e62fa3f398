"""The router registry: registry name -> router class, filled by :func:`register_router`.

Router modules are imported lazily (the first time the registry is used), from the explicit list
:data:`ROUTER_MODULES`; a listed module that does not exist (yet    "routerforge.routers.llm_policy",
) is skipped. Heavy dependencies are
imported by each router only when it fits or predicts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, TypeVar

from routerforge.errors import ArtifactError, ConfigError, UnknownRouterError
from routerforge.routers.artifact import read_router_json
from routerforge.routers.base import Router

ROUTER_MODULES: tuple[str, ...] = (
    "routerforge.routers.random",
    "routerforge.routers.oracle",
    "routerforge.routers.knn",
    "routerforge.routers.mlp",
    "routerforge.routers.mf",
    "routerforge.routers.sw",
    "routerforge.routers.lexical",
    "routerforge.routers.cluster",
    "routerforge.routers.ensemble",
    "routerforge.routers.prior",
    "routerforge.routers.semantic",
    "routerforge.routers.llm_policy",
)

_REGISTRY: dict[str, type[Router]] = {}
_loaded = False

T = TypeVar("T", bound=type[Router])


def register_router(cls: T) -> T:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute `name` to be registered.")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise TypeError(
            f"Router name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}."
        )
    _REGISTRY[cls.name] = cls
    return cls


def _load_modules() -> None:
    global _loaded
    if _loaded:
        return
    for module in ROUTER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but one of its imports is missing: a real error
                raise
    _loaded = True


def available_routers() -> list[str]:
    """Registry names of every router that can be created, sorted."""
    _load_modules()
    return sorted(_REGISTRY)


def router_class(name: str) -> type[Router]:
    _load_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownRouterError(name, _REGISTRY, hint="Use one of these names.") from None


def create_router(name: str, **params: Any) -> Router:
    """A new, unfitted router ``name`` with ``params``; unknown parameters are a ``ConfigError``."""
    cls = router_class(name)
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise ConfigError(
            f"Router {name!r} has no parameter(s) {unknown}. Its parameters: {', '.join(cls.param_names())}."
        )
    return cls(**params)


def load_router(directory: str | Path) -> Router:
    """Load any saved router; its type comes from ``router.json``."""
    path = Path(directory)
    doc = read_router_json(path)
    name = str(doc["type"])
    try:
        cls = router_class(name)
    except UnknownRouterError as exc:
        raise ArtifactError(
            f"{path} holds a {name!r} router, which this installation does not know "
            f"(available: {', '.join(available_routers())})."
        ) from exc
    return cls.load(path)
