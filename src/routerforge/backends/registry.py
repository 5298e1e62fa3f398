"""Build a :class:`~routerforge.backends.base.ChatBackend` from a :class:`ModelSpec`, by kind.

Kinds map to factories ``(spec) -> ChatBackend``. Built-in kinds are named by ``"module:function"`` and
imported on first use, so importing this module imports no SDK:

============  ================================================  =====================================
kind          factory                                           chosen when
============  ================================================  =====================================
``openai``    ``routerforge.backends.openai_compat:from_spec``  ``provider="openai"`` (the default)
``litellm``   ``routerforge.backends.litellm_backend:from_spec`` a provider string with ``/``
``llamacpp``  ``routerforge.backends.llamacpp:from_spec``       ``provider="llamacpp"``
``balanced``  ``routerforge.backends.balance:from_spec``        a model with ``deployments`` (gateway.yaml)
============  ================================================  =====================================

Other code adds kinds with :func:`register_backend_kind` (a callable or a ``"module:function"`` path).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from routerforge.backends.base import ChatBackend
from routerforge.backends.spec import Capability, ModelSpec
from routerforge.errors import ConfigError

BackendFactory = Callable[[ModelSpec], ChatBackend]

_KINDS: dict[str, BackendFactory | str] = {
    "openai": "routerforge.backends.openai_compat:from_spec",
    "litellm": "routerforge.backends.litellm_backend:from_spec",
    "llamacpp": "routerforge.backends.llamacpp:from_spec",
    "balanced": "routerforge.backends.balance:from_spec",
}


def register_backend_kind(kind: str, factory: BackendFactory | str, *, replace: bool = False) -> None:
    """Make ``kind`` buildable. ``factory`` is a callable or a lazily imported ``"module:function"``."""
    if not replace and kind in _KINDS and _KINDS[kind] != factory:
        raise ConfigError(
            f"Backend kind {kind!r} is already registered.", hint="Pass replace=True to override it."
        )
    _KINDS[kind] = factory


def available_kinds() -> list[str]:
    return sorted(_KINDS)


def kind_of(spec: ModelSpec) -> str:
    """The backend kind of ``spec``: ``spec.kind``, a registered provider name, or ``litellm`` for ``a/b``."""
    if spec.kind is not None:
        return spec.kind
    if spec.provider in _KINDS:
        return spec.provider
    if "/" in spec.provider:
        return "litellm"
    raise ConfigError(
        f"Model {spec.id!r}: provider {spec.provider!r} is neither a backend kind nor a LiteLLM provider string.",
        hint=f"Use one of {', '.join(available_kinds())} or a LiteLLM string such as 'anthropic/claude-3-haiku'.",
    )


def _resolve(kind: str) -> BackendFactory:
    try:
        factory = _KINDS[kind]
    except KeyError:
        raise ConfigError(
            f"Unknown backend kind {kind!r}. Available: {', '.join(available_kinds())}.",
            hint="Register it with routerforge.backends.registry.register_backend_kind().",
        ) from None
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"Backend kind {kind!r} is not available: cannot import {module_name} ({exc}).",
                hint="Install the matching extra, e.g. `pip install routerforge[local]` for llamacpp.",
            ) from exc
        resolved: BackendFactory = getattr(module, attr)
        _KINDS[kind] = resolved
        return resolved
    return factory


def build_backend(spec: ModelSpec) -> ChatBackend:
    """A new backend for ``spec`` (the caller owns it and must ``await backend.aclose()``)."""
    return _resolve(kind_of(spec))(spec)


__all__ = [
    "BackendFactory",
    "Capability",
    "ModelSpec",
    "available_kinds",
    "build_backend",
    "kind_of",
    "register_backend_kind",
]
