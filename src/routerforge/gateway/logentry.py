"""One row of the request log, typed: every column of ``gw_requests`` plus the row's upstream attempts.

The service fills a :class:`LogEntry` as a request goes through the gateway and hands it to the log writer
when the request ends; the database layer writes every field of every entry, so no row can lose a column
because another row of its batch left it unset.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

UNKNOWN_TENANT = "-"  # the tenant logged for a request refused before its caller was known (401)


@dataclass(slots=True)
class AttemptEntry:
    """One try (or skip) of one upstream model for a request (``gw_attempts``)."""

    model: str
    status: str  # "ok" | "error" | "skipped"
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


@dataclass(slots=True)
class LogEntry:
    """A ``gw_requests`` row. Field names are the column names; a test keeps the two lists equal."""

    id: str
    tenant: str
    created_at: dt.datetime
    requested_model: str
    endpoint: str = "chat"  # "chat" | "route"
    key_id: str | None = None
    stream: bool = False
    # what was asked (redacted, or dropped with logging.store_messages: false)
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    # the routing decision
    synthetic_model: str | None = None
    chosen_model: str | None = None
    policy: str | None = None
    knob: float | None = None
    predicted: dict[str, float] | None = None
    reason: str | None = None
    decision: dict[str, Any] | None = None  # the decision's full details (filled by the routing code)
    routing_ms: float | None = None
    # the answer
    answered_model: str | None = None
    response_text: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    usage_estimated: bool | None = None  # True: the upstream reported no usage; tokens are estimates
    cost_usd: float | None = None
    upstream_ms: float | None = None
    # the outcome
    status: int | None = None  # HTTP status; 499: the client went away
    error: str | None = None
    total_ms: float | None = None
    attempts: list[AttemptEntry] = field(default_factory=list)  # not a column: rows of gw_attempts
