"""Router artifacts on disk: ``router.json`` + ``.npy`` arrays (+ extra files such as an index shard).

``router.json`` holds ``format_version`` (:data:`ROUTER_FORMAT_VERSION`), ``type`` (registry name),
``params``, ``models``, ``fingerprint`` (training data), ``n_train``, ``dim``, the names of the arrays and
a JSON ``state`` dict. Arrays are written with ``np.save(..., allow_pickle=False)`` and read the same way,
so loading an artifact never executes code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from routerforge.errors import ArtifactError
from routerforge.files import private_dir

ROUTER_FORMAT_VERSION = 1


class Saveable(Protocol):
    """What this module needs of a router (``routers.base.Router`` satisfies it); no import of ``base`` here,
    so the dependency runs one way: ``base`` → ``artifact``."""

    name: ClassVar[str]
    models_: list[str] | None
    n_train_: int
    dim_: int
    fingerprint_: str

    def __init__(self, **params: Any) -> None: ...

    @classmethod
    def param_names(cls) -> list[str]: ...

    def get_params(self) -> dict[str, Any]: ...

    def _state_arrays(self) -> dict[str, np.ndarray]: ...

    def _state_meta(self) -> dict[str, Any]: ...

    def _restore_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path
    ) -> None: ...

    def _save_extra(self, directory: Path) -> None: ...


R = TypeVar("R", bound=Saveable)

ROUTER_JSON = "router.json"
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def write_router(router: Saveable, directory: Path) -> Path:
    """Save a fitted router into ``directory`` (created if needed); returns ``directory``."""
    private_dir(directory)
    arrays = router._state_arrays()
    for name, arr in arrays.items():
        if not _ARRAY_NAME.match(name):
            raise ArtifactError(f"Invalid array name {name!r} in router {router.name!r}.")
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise ArtifactError(
                f"Array {name!r} of router {router.name!r} has dtype object; cannot save without pickle."
            )
        np.save(directory / f"{name}.npy", arr, allow_pickle=False)
    doc = {
        "format_version": ROUTER_FORMAT_VERSION,
        "type": router.name,
        "params": router.get_params(),
        "models": list(router.models_ or []),
        "fingerprint": router.fingerprint_,
        "n_train": int(router.n_train_),
        "dim": int(router.dim_),
        "arrays": sorted(arrays),
        "state": router._state_meta(),
    }
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"Router {router.name!r} has state that is not plain JSON: {exc}") from exc
    router._save_extra(directory)
    (directory / ROUTER_JSON).write_text(text + "\n", encoding="utf-8")
    return directory


def read_router_json(directory: Path) -> dict[str, Any]:
    """Read and check ``router.json`` (exists, is JSON, has a known format version)."""
    path = directory / ROUTER_JSON
    if not path.is_file():
        raise ArtifactError(
            f"{directory} is not a router directory: {ROUTER_JSON} is missing.",
            hint="Train one with `routerforge train` or pass the directory it wrote.",
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path} must hold a JSON object.")
    version = doc.get("format_version")
    if version != ROUTER_FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has router format version {version!r}, but this routerforge reads version "
            f"{ROUTER_FORMAT_VERSION}.",
            hint="Retrain the router with this version of routerforge.",
        )
    for key in ("type", "params", "models"):
        if key not in doc:
            raise ArtifactError(f"{path} lacks the field {key!r}.")
    return doc


def read_router(cls: type[R], directory: Path) -> R:
    """Load a router of class ``cls`` from ``directory`` (see :func:`write_router`)."""
    doc = read_router_json(directory)
    if cls.name and doc["type"] != cls.name:
        raise ArtifactError(
            f"{directory} holds a {doc['type']!r} router, not a {cls.name!r} router ({cls.__name__}).",
            hint="Load it with routerforge.routers.registry.load_router(), which picks the right class.",
        )
    params = dict(doc["params"])
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise ArtifactError(
            f"{directory / ROUTER_JSON} has parameters {unknown} that {cls.__name__} does not take "
            f"(it takes {cls.param_names()})."
        )
    router = cls(**params)
    arrays: dict[str, np.ndarray] = {}
    root = directory.resolve()
    names = doc.get("arrays", [])
    for name in names if isinstance(names, list) else [names]:
        path = directory / f"{name}.npy"
        # array names come from the file: plain names only, and the file must resolve inside the directory
        if not isinstance(name, str) or not _ARRAY_NAME.match(name) or path.resolve().parent != root:
            raise ArtifactError(
                f"{directory / ROUTER_JSON} names an invalid array {name!r} (expected letters, digits, "
                "'_', '.', '-', a file inside the router directory); refusing to read it."
            )
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"Cannot read array {path}: {exc}") from exc
    router.models_ = list(doc["models"])
    router.n_train_ = int(doc.get("n_train", 0))
    router.dim_ = int(doc.get("dim", 0))
    router.fingerprint_ = str(doc.get("fingerprint", ""))
    try:
        router._restore_state(arrays, dict(doc.get("state", {})), directory)
    except KeyError as exc:
        router.models_ = None
        raise ArtifactError(
            f"{directory} is incomplete: missing {exc}.", hint="Save the router again."
        ) from exc
    return router


def check_models(directory: Path, doc: dict[str, Any], expected: list[str]) -> None:
    """Raise ``ArtifactError`` naming both sides when the saved model list differs from ``expected``."""
    saved = list(doc.get("models", []))
    if saved != list(expected):
        raise ArtifactError(f"{directory} was trained for models {saved}, but {expected} were expected.")
