"""The request log writer: one background thread, batched inserts, two durability modes.

``logging.durability`` in gateway.yaml:

* ``commit`` — the caller awaits :meth:`LogWriter.record` until the entry's transaction has committed
  (SQLite: ``synchronous=FULL``; PostgreSQL: ``synchronous_commit=on``), so a response goes out only
  once its row is on disk. Group commit: the writer wakes at once, takes every entry queued by concurrent
  requests (up to ``batch_size``) into one transaction and then wakes all their waiters; entries that
  arrive during a commit form the next batch. If the row cannot be written the request fails with
  :class:`~routerforge.errors.RequestLogError` (503) instead of answering without a log row.
* ``async`` — :meth:`record` only appends to a deque (no lock, no thread wake-up); the thread writes
  every ``flush_interval_s`` or as soon as ``batch_size`` entries wait. Rows still queued when the process
  is killed (``kill -9``, OOM) are lost; a normal shutdown drains the queue.

A batch that fails to insert is retried once, then written row by row so one bad row cannot sink the
others. Entries are redacted (``redact_patterns``) or stripped of text (``store_messages: false``) here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import threading
from collections import deque
from typing import Any

from routerforge.errors import RequestLogError
from routerforge.gateway.logentry import LogEntry
from routerforge.gateway.requestlog import RequestLog

log = logging.getLogger("routerforge.gateway.log")

Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def redact(value: Any, patterns: list[re.Pattern[str]]) -> Any:
    """``value`` with every match of ``patterns`` in its strings replaced by ``[REDACTED]``."""
    if not patterns:
        return value
    if isinstance(value, str):
        for p in patterns:
            value = p.sub("[REDACTED]", value)
        return value
    if isinstance(value, list):
        return [redact(v, patterns) for v in value]
    if isinstance(value, dict):
        return {k: redact(v, patterns) for k, v in value.items()}
    return value


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the waiter gave up (timeout, cancellation)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class LogWriter:
    def __init__(
        self,
        requests: RequestLog,
        *,
        durable: bool = False,
        batch_size: int = 200,
        flush_interval_s: float = 0.2,
        commit_timeout_s: float = 30.0,
        redact_patterns: list[re.Pattern[str]] | None = None,
        store_messages: bool = True,
    ) -> None:
        self.requests = requests
        self.durable = durable
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.commit_timeout_s = commit_timeout_s
        self.patterns = redact_patterns or []
        self.store_messages = store_messages
        # append/popleft are atomic: no lock on the hot path
        self._queue: deque[tuple[LogEntry, Waiter | None]] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._flushed = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed = 0
        self.transactions = 0  # batches committed (written / transactions: the mean group-commit size)

    def start(self) -> None:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="routerforge-logwriter", daemon=True)
            self._thread.start()

    # -- the hot path ------------------------------------------------------------------------------
    async def record(self, entry: LogEntry, *, wait: bool = True) -> None:
        """Log ``entry``. In ``commit`` mode (and ``wait``) return only once its row has committed."""
        if not (self.durable and wait):
            self.submit(entry)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._submitted += 1
        self._queue.append((entry, (loop, future)))
        if self._thread is None:  # not started (a script using the service directly): write inline
            await asyncio.to_thread(self._drain)
        else:
            self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), self.commit_timeout_s)
        except TimeoutError as exc:
            raise RequestLogError(
                f"The request log did not commit request {entry.id} within {self.commit_timeout_s:g} s.",
                hint="Check the database; or set logging.durability: async to answer without waiting.",
            ) from exc

    def submit(self, entry: LogEntry) -> None:
        """Queue ``entry`` without waiting (never blocks, never touches the database)."""
        self._submitted += 1
        self._queue.append((entry, None))
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    # -- control -----------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every entry submitted so far is written (or failed)."""
        target = self._submitted
        if self._thread is None:
            self._drain()
            return
        self._wake.set()
        with self._flushed:
            self._flushed.wait_for(lambda: self._done >= target, timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything still queued and stop the thread."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join(timeout_s)
            self._thread = None
        self._drain()

    # -- the writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while self._queue:
            batch: list[tuple[LogEntry, Waiter | None]] = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            errors = self._write([e for e, _ in batch])
            for entry, waiter in batch:
                if waiter is not None:
                    error = errors.get(entry.id)
                    loop, future = waiter
                    with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits any more
                        loop.call_soon_threadsafe(_settle, future, error)
            with self._flushed:
                self._done += len(batch)
                self._flushed.notify_all()

    def _prepare(self, entry: LogEntry) -> LogEntry:
        if not self.store_messages:
            return dataclasses.replace(entry, messages=None, prompt=None, response_text=None)
        if not self.patterns:
            return entry
        return dataclasses.replace(
            entry,
            messages=redact(entry.messages, self.patterns),
            prompt=redact(entry.prompt, self.patterns),
            response_text=redact(entry.response_text, self.patterns),
            error=redact(entry.error, self.patterns),
        )

    def _write(self, entries: list[LogEntry]) -> dict[str, RequestLogError]:
        """Write ``entries``; returns the error of each entry that could not be written, by id."""
        prepared = [self._prepare(e) for e in entries]
        for _ in range(2):
            try:
                self.requests.write(prepared)
                self.written += len(prepared)
                self.transactions += 1
                return {}
            except Exception:  # a database hiccup must not kill the writer thread: retry, then row by row
                continue
        errors: dict[str, RequestLogError] = {}
        for entry in prepared:
            try:
                self.requests.write([entry])
                self.written += 1
                self.transactions += 1
            except Exception as exc:
                self.failed += 1
                log.exception("could not write request log row %s", entry.id)
                errors[entry.id] = RequestLogError(
                    f"The request log could not store request {entry.id}: {type(exc).__name__}.",
                    hint="Check the database (disk full, permissions, connection).",
                )
        return errors
