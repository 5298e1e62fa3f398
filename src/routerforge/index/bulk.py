"""Embed and index a large dataset with bounded memory, in several processes, resumably.

Two steps, each restartable after a kill:

1. :func:`embed_dataset` embeds the prompts of a dataset (read from the store in insertion order) chunk by
   chunk into ``DIR/vectors.npy``, a float32 ``.npy`` file written in place through a memory map, never
   held in memory. Chunks go to ``workers`` processes (each builds its own embedder from the settings);
   a chunk's vectors are flushed to disk before the chunk is marked done in ``DIR/embed_done.npy`` (one
   byte per chunk), so a killed run redoes at most the chunks in flight.
2. :func:`index_vectors` upserts the vectors into an :class:`~routerforge.index.base.Index` (Edge shard or
   Qdrant collection) in batches, point id = prompt position, payload ``{"prompt_id", "dataset"}``, and
   records after each batch how many points are in (``DIR/index_done.json``). A resumed run starts at that
   count; upserts are keyed by id, so a batch written twice changes nothing.

``DIR/embed_meta.json`` names the dataset, its prompt count, the embedder id, the dimension and the chunk
size: resuming with anything else is refused (delete the directory to start over).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.errors import ValidationError
from routerforge.files import create_private_file, private_dir

if TYPE_CHECKING:
    from routerforge.config import EmbedSettings
    from routerforge.data.store import Store
    from routerforge.index.base import Index

VECTORS_FILE = "vectors.npy"
DONE_FILE = "embed_done.npy"
META_FILE = "embed_meta.json"
INDEX_DONE_FILE = "index_done.json"
DEFAULT_EMBED_CHUNK = 8192
DEFAULT_INDEX_BATCH = 4096

#: ``progress(done, total)``: prompts embedded / points indexed so far.
Progress = Callable[[int, int], None]


@dataclass
class EmbedReport:
    dataset: str
    prompts: int
    dim: int
    embedder: str
    chunks: int
    chunks_resumed: int  # chunks already done when the run started
    chunks_embedded: int
    workers: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class IndexReport:
    points: int
    resumed_from: int
    upserted: int
    count: int  # points in the index afterwards
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    create_private_file(tmp)
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(
            f"Cannot read {path}: {exc}.", hint="Delete the directory to start the run again."
        ) from exc
    if not isinstance(doc, dict):
        raise ValidationError(f"{path} is not a routerforge checkpoint.")
    return doc


# --------------------------------------------------------------------------------------- embedding
_worker_embedder: Any = None


def _init_worker(settings: EmbedSettings) -> None:
    global _worker_embedder
    from routerforge.embed.factory import build_embedder

    _worker_embedder = build_embedder(settings)  # no vector cache: the vectors file is the cache


def _embed_chunk(vectors_path: str, start: int, texts: list[str]) -> tuple[int, int]:
    vectors = _worker_embedder.embed(texts)
    out = np.load(vectors_path, mmap_mode="r+")
    out[start : start + len(texts)] = vectors
    out.flush()  # on disk before the parent marks the chunk done
    del out
    return start, len(texts)


def _texts(store: Store, dataset: str) -> Iterator[str]:
    for item in store.iter_prompts(dataset):
        yield item.text


def open_vectors(directory: str | Path) -> np.ndarray:
    """The embedded vectors of a finished :func:`embed_dataset` run, memory-mapped read-only."""
    path = Path(directory)
    meta = _read_json(path / META_FILE)
    done = np.load(path / DONE_FILE) if (path / DONE_FILE).is_file() else None
    if meta is None or done is None or not bool(done.all()):
        raise ValidationError(
            f"{path} holds no finished embedding run.", hint="Run the embedding step (again) first."
        )
    return np.load(path / VECTORS_FILE, mmap_mode="r")


def embed_dataset(
    store: Store,
    dataset: str,
    settings: EmbedSettings,
    directory: str | Path,
    *,
    workers: int = 2,
    chunk_size: int = DEFAULT_EMBED_CHUNK,
    progress: Progress | None = None,
) -> EmbedReport:
    """Embed every prompt of ``dataset`` into ``directory/vectors.npy`` (see the module doc); resumable.

    ``workers`` ≥ 2 embeds in that many processes (the parent reads the store and keeps at most two chunks
    per worker in flight); 1 embeds in this process.
    """
    from routerforge.embed.factory import build_embedder

    if workers < 1 or chunk_size < 1:
        raise ValidationError(f"workers and chunk_size must be ≥ 1 (got {workers}, {chunk_size}).")
    started = time.perf_counter()
    out = Path(directory)
    private_dir(out)
    n = store.count_prompts(dataset)
    probe = build_embedder(settings)
    dim = int(probe.embed(["routerforge"]).shape[1])
    meta = {"dataset": dataset, "prompts": n, "embedder": probe.id, "dim": dim, "chunk_size": chunk_size}
    close = getattr(probe, "close", None)
    if callable(close):
        close()
    n_chunks = (n + chunk_size - 1) // chunk_size
    saved = _read_json(out / META_FILE)
    vectors_path = out / VECTORS_FILE
    if saved is not None and saved != meta:
        raise ValidationError(
            f"{out} holds an embedding run of {saved}, not of {meta}.",
            hint="Use another directory, or delete this one to start again.",
        )
    if saved is None or not vectors_path.is_file() or not (out / DONE_FILE).is_file():
        create_private_file(vectors_path)
        np.lib.format.open_memmap(vectors_path, mode="w+", dtype=np.float32, shape=(n, dim)).flush()
        np.save(out / DONE_FILE, np.zeros(n_chunks, dtype=np.uint8))
        _write_json(out / META_FILE, meta)
    done = np.load(out / DONE_FILE, mmap_mode="r+")
    resumed = int(done.sum())
    embedded = 0
    finished = sum(min(chunk_size, n - c * chunk_size) for c in range(n_chunks) if done[c])

    def mark(start: int, count: int) -> None:
        nonlocal embedded, finished
        done[start // chunk_size] = 1
        done.flush()
        embedded += 1
        finished += count
        if progress is not None:
            progress(finished, n)

    def pending() -> Iterator[tuple[int, list[str]]]:
        texts = _texts(store, dataset)
        for c in range(n_chunks):
            chunk = list(islice(texts, chunk_size))
            if not done[c]:
                yield c * chunk_size, chunk

    if progress is not None:
        progress(finished, n)
    if workers == 1:
        _init_worker(settings)
        for start, texts in pending():
            mark(*_embed_chunk(str(vectors_path), start, texts))
    else:
        ctx = mp.get_context("spawn")  # the parent holds database connections and threads: never fork
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(settings,)
        ) as pool:
            in_flight: set[Future[tuple[int, int]]] = set()
            for start, texts in pending():
                in_flight.add(pool.submit(_embed_chunk, str(vectors_path), start, texts))
                if len(in_flight) >= 2 * workers:
                    ready, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in ready:
                        mark(*fut.result())
            for fut in in_flight:
                mark(*fut.result())
    done.flush()
    return EmbedReport(
        dataset=dataset,
        prompts=n,
        dim=dim,
        embedder=str(meta["embedder"]),
        chunks=n_chunks,
        chunks_resumed=resumed,
        chunks_embedded=embedded,
        workers=workers,
        seconds=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------------------- indexing
def index_vectors(
    index: Index,
    directory: str | Path,
    *,
    batch_size: int = DEFAULT_INDEX_BATCH,
    optimize: bool = True,
    progress: Progress | None = None,
) -> IndexReport:
    """Upsert the vectors of a finished :func:`embed_dataset` run into ``index`` (see the module doc).

    The checkpoint ``directory/index_done.json`` names the index it belongs to (``index_id`` below); a
    resumed run with another index starts from 0.
    """
    if batch_size < 1:
        raise ValidationError(f"batch_size must be ≥ 1, got {batch_size}.")
    started = time.perf_counter()
    out = Path(directory)
    vectors = open_vectors(out)
    meta = _read_json(out / META_FILE) or {}
    dataset = str(meta.get("dataset", ""))
    n = int(vectors.shape[0])
    target = index_id(index)
    saved = _read_json(out / INDEX_DONE_FILE)
    start = int(saved["points"]) if saved is not None and saved.get("index") == target else 0
    resumed = start
    if progress is not None:
        progress(start, n)
    dim = int(vectors.shape[1])
    assert isinstance(vectors, np.memmap)  # np.load(mmap_mode=...) of a .npy file
    offset = int(vectors.offset)  # the .npy header; rows follow, C order
    del vectors  # read batches with plain reads: a memory map would keep every page read resident (RSS)
    with (out / VECTORS_FILE).open("rb") as fh:
        while start < n:
            end = min(start + batch_size, n)
            ids = range(start, end)
            fh.seek(offset + start * dim * 4)
            batch = np.fromfile(fh, dtype=np.float32, count=(end - start) * dim).reshape(end - start, dim)
            index.upsert(ids, batch, payloads=[{"prompt_id": i, "dataset": dataset} for i in ids])
            _write_json(out / INDEX_DONE_FILE, {"index": target, "points": end})
            start = end
            if progress is not None:
                progress(end, n)
    if optimize:
        index.optimize()
    return IndexReport(
        points=n,
        resumed_from=resumed,
        upserted=n - resumed,
        count=index.count(),
        seconds=time.perf_counter() - started,
    )


def index_id(index: Index) -> str:
    """What names an index in a checkpoint: an Edge shard's path or a Qdrant location + collection."""
    path = getattr(index, "path", None)
    if path is not None:
        return f"edge:{Path(path).resolve()}"
    return f"qdrant:{getattr(index, 'location', '?')}/{getattr(index, 'collection', '?')}"


__all__ = ["EmbedReport", "IndexReport", "embed_dataset", "index_id", "index_vectors", "open_vectors"]
