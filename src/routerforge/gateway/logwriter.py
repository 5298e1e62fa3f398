"""The request log writer: off the hot path, batched, and flushed on shutdown.

Handlers call :meth:`LogWriter.submit` (a non-blocking ``queue.put``) from a ``finally`` block, so a row is
queued whether the upstream failed, the client disconnected or the request succeeded. A daemon thread
takes rows in batches (up to ``batch_size``, or whatever arrived within ``flush_interval_s``), redacts them
and inserts them in one transaction. :meth:`close` drains the queue before the process exits. A batch
that fails to insert is retried once, then written row by row so one bad row cannot sink the others.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from typing import Any

from routerforge.gateway.db import GatewayDB

log = logging.getLogger("routerforge.gateway.log")

_STOP = object()


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


class LogWriter:
    def __init__(
        self,
        db: GatewayDB,
        *,
        batch_size: int = 200,
        flush_interval_s: float = 0.2,
        redact_patterns: list[re.Pattern[str]] | None = None,
        store_messages: bool = True,
    ) -> None:
        self.db = db
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.patterns = redact_patterns or []
        self.store_messages = store_messages
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="routerforge-logwriter", daemon=True)
            self._thread.start()

    def submit(self, row: dict[str, Any]) -> None:
        self._queue.put(row)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every row submitted so far is written."""
        done = threading.Event()
        self._queue.put(done)
        if self._thread is None:
            self._drain_sync()
        done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        if self._thread is None:
            self._drain_sync()
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        self._thread = None

    def _drain_sync(self) -> None:
        rows: list[dict[str, Any]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, dict):
                rows.append(item)
            elif isinstance(item, threading.Event):
                item.set()
        self._write(rows)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            rows: list[dict[str, Any]] = []
            events: list[threading.Event] = []
            stop = False
            pending = [item]
            while True:
                for it in pending:
                    if it is _STOP:
                        stop = True
                    elif isinstance(it, threading.Event):
                        events.append(it)
                    else:
                        rows.append(it)
                if stop or events or len(rows) >= self.batch_size:
                    break
                try:
                    pending = [self._queue.get(timeout=self.flush_interval_s)]
                except queue.Empty:
                    break
            if stop:  # drain what is left after the stop marker too
                while True:
                    try:
                        it = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(it, dict):
                        rows.append(it)
                    elif isinstance(it, threading.Event):
                        events.append(it)
            self._write(rows)
            for e in events:
                e.set()
            if stop:
                return

    def _prepare(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        if not self.store_messages:
            out["messages"] = None
            out["prompt"] = None
            out["response_text"] = None
        else:
            for field in ("messages", "prompt", "response_text", "error"):
                if out.get(field) is not None:
                    out[field] = redact(out[field], self.patterns)
        return out

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        prepared = [self._prepare(r) for r in rows]
        for attempt in range(2):
            try:
                self.db.write_requests(prepared)
                self.written += len(prepared)
                return
            except Exception:  # a database hiccup must not kill the writer thread
                if attempt == 0:
                    continue
        for r in prepared:
            try:
                self.db.write_requests([r])
                self.written += 1
            except Exception:
                self.failed += 1
                log.exception("could not write request log row %s", r.get("id"))
