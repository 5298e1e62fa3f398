"""Open the configured index: Qdrant Edge in a directory (default) or a Qdrant collection by URL."""

from __future__ import annotations

from pathlib import Path

from routerforge.config import IndexSettings
from routerforge.errors import ConfigError
from routerforge.index.base import Index, OpenMode


def open_index(
    settings: IndexSettings | None,
    *,
    dim: int,
    path: str | Path | None = None,
    collection: str = "routerforge",
    exact: bool = False,
    mode: OpenMode = "open_or_create",
    wal: bool = True,
    search_threads: int | None = None,
) -> Index:
    """``settings.kind == "edge"``: an :class:`EdgeIndex` in ``path``; ``"qdrant"``: a :class:`QdrantIndex`
    collection ``collection`` at ``settings.url`` (``":memory:"`` or a directory for qdrant-client's local
    mode). ``exact``: exhaustive dense search; ``mode``: see :data:`~routerforge.index.base.OpenMode`;
    ``wal`` (Edge only): keep a write-ahead log (off for a scratch shard rebuilt from saved vectors);
    ``search_threads`` (Edge only): the shard's search pool (1: search in the calling thread).

    An unreachable server raises :class:`~routerforge.errors.IndexUnavailableError` here, not later.
    """
    settings = settings or IndexSettings()
    if settings.kind == "edge":
        if path is None:
            raise ConfigError(
                "An edge index needs a directory.", hint="Pass path=… (e.g. settings.index_dir / name)."
            )
        from routerforge.index.edge import EdgeIndex

        return EdgeIndex(
            path,
            dim,
            exact=exact,
            mode=mode,
            wal=wal,
            hnsw_ef=settings.hnsw_ef,
            search_threads=search_threads,
        )
    if not settings.url:
        raise ConfigError(
            "index.kind is 'qdrant' but index.url is not set.",
            hint="Set index.url or ROUTERFORGE_INDEX__URL.",
        )
    from routerforge.index.qdrant import QdrantIndex

    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    return QdrantIndex(
        settings.url,
        collection,
        dim,
        api_key=api_key,
        timeout=settings.timeout_s,
        exact=exact,
        hnsw_ef=settings.hnsw_ef,
        mode=mode,
        hnsw_m=settings.hnsw_m,
        quantization=settings.quantization,
        on_disk=settings.on_disk,
    )


def drop_index(
    settings: IndexSettings | None, *, path: str | Path | None = None, collection: str = "routerforge"
) -> bool:
    """Delete an index without knowing its dimension: the Edge shard in ``path`` (``settings`` None or
    kind edge) or the Qdrant collection ``collection``. Returns whether there was one."""
    settings = settings or IndexSettings()
    if settings.kind == "edge":
        if path is None:
            raise ConfigError("Dropping an edge index needs its directory.", hint="Pass path=….")
        import shutil

        from routerforge.index.edge import is_shard

        if not is_shard(path):
            return False
        shutil.rmtree(path)
        return True
    if not settings.url:
        raise ConfigError("index.kind is 'qdrant' but index.url is not set.", hint="Set index.url.")
    from routerforge.index.qdrant import QdrantIndex

    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    return QdrantIndex.drop_collection(settings.url, collection, api_key=api_key, timeout=settings.timeout_s)
