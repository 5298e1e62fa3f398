"""Turn model names from the command line into :class:`Candidate` objects with backends.

A name is, in order: a packaged local model (``smollm2-135m``, ``gemma3-270m``) or ``llamacpp/…``
(a local id or a ``.gguf`` path); a model registered in the store (``routerforge models add``), built
through the backend registry. Local models get their nominal prices only when ``nominal_prices`` is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routerforge.backends.base import ChatBackend
from routerforge.errors import UnknownModelError
from routerforge.evalrun.runner import Candidate

LOCAL_PREFIX = "llamacpp/"


def _local_names() -> list[str]:
    from routerforge.backends.llamacpp import local_models

    return [spec.id for spec in local_models()]


def is_local(name: str) -> bool:
    return name.startswith(LOCAL_PREFIX) or name in _local_names()


def local_candidate(
    name: str,
    *,
    cache_dir: Path,
    max_tokens: int = 48,
    nominal_prices: bool = False,
    n_threads: int = 1,
    prices: tuple[float, float] | None = None,
) -> Candidate:
    """A candidate for a local GGUF model. ``prices`` (USD per million input, output tokens) are the ones
    registered for it (``routerforge models add``); else ``nominal_prices`` gives it a made-up price per
    parameter; else it is free."""
    from routerforge.backends.llamacpp import LlamaCppBackend, find_local_model

    spec = find_local_model(name.removeprefix(LOCAL_PREFIX))
    price = spec.nominal_price_usd_per_mtok() if nominal_prices else 0.0
    price_in, price_out = prices if prices is not None else (price, price)
    backend = LlamaCppBackend(
        spec,
        cache_dir=cache_dir,
        n_threads=n_threads,
        default_max_tokens=max_tokens,
        input_usd_per_mtok=price_in,
        output_usd_per_mtok=price_out,
    )
    return Candidate(
        id=spec.id,
        backend=backend,
        input_usd_per_mtok=price_in,
        output_usd_per_mtok=price_out,
        max_tokens=max_tokens,
    )


def resolve_backend(name: str, *, store: Any, cache_dir: Path) -> ChatBackend:
    """A backend for ``name`` (local model or a model registered in the store)."""
    return resolve_candidates([name], store=store, cache_dir=cache_dir)[0].backend


def resolve_candidates(
    names: Sequence[str],
    *,
    store: Any,
    cache_dir: Path,
    max_tokens: int = 64,
    nominal_prices: bool = False,
) -> list[Candidate]:
    """Candidates for the named models, in order. Unknown names raise :class:`UnknownModelError`."""
    from routerforge.backends.registry import build_backend
    from routerforge.backends.spec import ModelSpec

    out: list[Candidate] = []
    registered = {m.id: m for m in store.list_models()}
    for name in names:
        if is_local(name):
            own = registered.get(name)  # prices registered for a local model (the quickstart's nominal ones)
            prices = None
            if own is not None and None not in (own.input_usd_per_mtok, own.output_usd_per_mtok):
                prices = (float(own.input_usd_per_mtok), float(own.output_usd_per_mtok))
            out.append(
                local_candidate(
                    name,
                    cache_dir=cache_dir,
                    max_tokens=max_tokens,
                    nominal_prices=nominal_prices,
                    prices=prices,
                )
            )
            continue
        model = registered.get(name)
        if model is None:
            raise UnknownModelError(
                name,
                sorted(registered) + _local_names(),
                hint="Register it with `routerforge models add` or use a local model.",
            )
        spec = ModelSpec.from_candidate(model)
        if spec.provider == "llamacpp":
            spec = spec.model_copy(update={"options": {**spec.options, "cache_dir": str(cache_dir)}})
        out.append(
            Candidate(
                id=model.id,
                backend=build_backend(spec),
                upstream_model=spec.upstream_name,
                input_usd_per_mtok=model.input_usd_per_mtok,
                output_usd_per_mtok=model.output_usd_per_mtok,
                max_tokens=max_tokens,
            )
        )
    return out


async def close_all(candidates: Sequence[Candidate]) -> None:
    for candidate in candidates:
        await candidate.backend.aclose()
