"""The request log writer: off the hot path, batched, and flushed on shutdown.

Handlers call :meth:`LogWriter.submit` (an atomic ``deque.append``: no lock, no thread wake-up) from a
``finally`` block, so a row is queued whether the upstream failed, the client disconnected or the request
succeeded. A daemon thread wakes every ``flush_interval_s`` (or as soon as ``batch_size`` rows wait), takes
the rows in batches, redacts them and inserts each batch in one transaction. :meth:`close` drains the queue before the process exits. A batch
that fails to insert is retried once, then written row by row so one bad row cannot sink the others.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from typing import Any

from routerforge.gateway.db import GatewayDB

log = logging.getLogger("routerforge.gateway.log")


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
        self._rows: deque[dict[str, Any]] = deque()  # append/popleft are atomic: no lock on the hot path
        self._wake = threading.Event()
        self._stop = False
        self._flushed = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="routerforge-logwriter", daemon=True)
            self._thread.start()

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one row (never blocks, never touches the database)."""
        self._submitted += 1
        self._rows.append(row)
        if len(self._rows) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every row submitted so far is written (or failed)."""
        target = self._submitted
        if self._thread is None:
            self._drain()
            return
        self._wake.set()
        with self._flushed:
            self._flushed.wait_for(lambda: self._done >= target, timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything still queued and stop the thread."""
        if self._thread is None:
            self._drain()
            return
        self._stop = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None
        self._drain()

    def _drain(self) -> None:
        while self._rows:
            batch: list[dict[str, Any]] = []
            while self._rows and len(batch) < self.batch_size:
                batch.append(self._rows.popleft())
            self._write(batch)
            with self._flushed:
                self._done += len(batch)
                self._flushed.notify_all()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
        self._drain()

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
