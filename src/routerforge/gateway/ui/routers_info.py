"""What the routers page knows about a trained router directory, read from its files (no model loading).

A router is any directory holding ``router.json`` under the routers directory (``settings.routers_dir``)
or under ``routers/tenants/<tenant>/``. Read: ``router.json`` (family, models), ``routing.json`` (the
manifest: dataset, split, training size, mean scores, trained when), ``calibration.json``,
``training_prompts.npy`` (how many training prompts and a fingerprint of their text hashes),
``embedder.json`` (embedder id and size only: never its settings) and benchmark results:
``<router>/bench.json``, or any ``<routers dir>/bench/*.json`` written by ``routerforge bench --json``
whose routers include this router's family and whose data is the router's training dataset.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 20 * 1024 * 1024
_CACHE: dict[tuple[str, int, int], Any] = {}
_CACHE_LOCK = threading.Lock()


def _read_json(path: Path) -> Any:
    """The JSON in ``path`` (cached by path, size and mtime), or ``None`` when absent or unreadable."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    if st.st_size > MAX_JSON_BYTES:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        doc = None
    with _CACHE_LOCK:
        if len(_CACHE) > 500:
            _CACHE.clear()
        _CACHE[key] = doc
    return doc


def _training_hashes(path: Path) -> dict[str, Any] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            return dict(_CACHE[key])
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
        n = int(arr.shape[0])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except (OSError, ValueError):
        return None
    out = {"n": n, "fingerprint": digest}
    with _CACHE_LOCK:
        _CACHE[key] = out
    return dict(out)


@dataclass
class RouterInfo:
    key: str  # the name shown and used in ?a= (relative to the routers dir)
    directory: Path
    family: str | None = None
    models: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    embedder: dict[str, Any] = field(default_factory=dict)
    bench: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (source, results of this family)
    bench_docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (source, whole document)
    error: str | None = None

    @property
    def trained_at(self) -> str | None:
        v = self.manifest.get("trained_at")
        return str(v) if v else None


def list_routers(routers_dir: Path) -> dict[str, Path]:
    """Router directories by key: ``name`` (shared) and ``tenants/<tenant>/<name>`` (private)."""
    from routerforge.policy.trained import router_dirs

    return router_dirs(routers_dir)


def _bench_docs(routers_dir: Path, directory: Path) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    own = _read_json(directory / "bench.json")
    if isinstance(own, dict):
        docs.append(("bench.json", own))
    shared = routers_dir / "bench"
    if shared.is_dir():
        for p in sorted(shared.glob("*.json"))[:50]:
            doc = _read_json(p)
            if isinstance(doc, dict):
                docs.append((f"bench/{p.name}", doc))
    return docs


def read_router(key: str, directory: Path, routers_dir: Path) -> RouterInfo:
    info = RouterInfo(key=key, directory=directory)
    rj = _read_json(directory / "router.json")
    if not isinstance(rj, dict):
        info.error = "router.json is not readable JSON."
        return info
    manifest = _read_json(directory / "routing.json")
    info.manifest = manifest if isinstance(manifest, dict) else {}
    info.family = str(rj.get("type") or info.manifest.get("router") or "?")
    info.models = [str(m) for m in (rj.get("models") or info.manifest.get("models") or [])]
    cal = _read_json(directory / "calibration.json")
    info.calibration = cal if isinstance(cal, dict) else None
    info.training = _training_hashes(directory / "training_prompts.npy")
    emb = _read_json(directory / "embedder.json")
    if isinstance(emb, dict):
        info.embedder = {"id": emb.get("embedder_id"), "dim": emb.get("dim")}
    dataset = info.manifest.get("dataset")
    for source, doc in _bench_docs(routers_dir, directory):
        routers = doc.get("routers")
        if not isinstance(routers, dict):
            continue
        if source != "bench.json" and dataset and doc.get("data") not in (dataset, None):
            continue
        result = routers.get(info.family)
        if isinstance(result, dict):
            info.bench.append((source, result))
            info.bench_docs.append((source, doc))
    return info
