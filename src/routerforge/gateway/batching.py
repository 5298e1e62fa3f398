"""Micro-batching of router predictions on the request path.

Concurrent requests for the same router are gathered and embedded + predicted together, one call per
batch, on ``workers`` threads per router: batched ONNX inference costs far less per prompt than one call
per prompt, and the event loop never blocks. A request that arrives while every worker is busy waits for
the next batch (at most ``max_batch`` prompts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PredictMany = Callable[..., np.ndarray]  # (texts[, metadata]) -> rows


class PredictBatcher:
    def __init__(
        self, predict_many: PredictMany, *, max_batch: int = 32, workers: int = 1, name: str = "router"
    ) -> None:
        self._predict_many = predict_many
        self.max_batch = max_batch
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"rf-predict-{name}")
        self._pending: list[tuple[str, dict[str, str] | None, asyncio.Future[np.ndarray]]] = []
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.prompts = 0

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The router's one worker thread (also used for ``explain``, so calls never overlap)."""
        return self._executor

    async def predict(self, text: str, metadata: dict[str, str] | None = None) -> np.ndarray:
        """Predicted scores (one row) for ``text`` (and its routing ``metadata``), computed in a batch with
        concurrent callers."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((text, metadata, fut))
        if self._active < self.workers:
            self._active += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)  # keep a reference: tasks are weakly held
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                live = [(t, m, f) for t, m, f in batch if not f.done()]
                if not live:
                    continue
                texts = [t for t, _, _ in live]
                metas = [m for _, m, _ in live]
                args: tuple[object, ...] = (texts, metas) if any(metas) else (texts,)
                try:
                    out = await loop.run_in_executor(self._executor, self._predict_many, *args)
                except Exception as exc:  # handed to every waiting caller, which raises it
                    for _, _, f in live:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                self.batches += 1
                self.prompts += len(texts)
                for (_, _, f), row in zip(live, np.asarray(out, dtype=np.float64), strict=True):
                    if not f.done():
                        f.set_result(row)
        finally:
            self._active -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
