"""Logged requests with feedback → eval records (``routerforge data import-logs``).

Each successful logged request that has at least one feedback rating becomes one record: the prompt the
router saw (the last user message), the model that answered, ``score`` = the mean rating, the cost,
tokens and upstream latency, the response, ``judge="feedback"`` and ``source="gateway-log"``. The prompt
key is the hash of the prompt text, so several models answering the same prompt fill one matrix row
(duplicates of one (prompt, model) are resolved by the store's rule). Tenants that opted out of training
(``training_opt_out`` in gateway.yaml or in the database) are skipped entirely.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from routerforge.data.records import EvalRecord, text_hash
from routerforge.gateway.db import GatewayDB
from routerforge.gateway.requestlog import RequestLog


@dataclass
class LogExport:
    records: list[EvalRecord] = field(default_factory=list)
    requests_seen: int = 0
    skipped_opt_out: int = 0
    skipped_other: int = 0
    tenants: set[str] = field(default_factory=set)


def records_from_logs(
    db: GatewayDB,
    *,
    tenant: str | None = None,
    since: dt.datetime | None = None,
    opted_out: Iterable[str] = (),
    limit: int = 1_000_000,
) -> LogExport:
    out = LogExport()
    opt_out = set(opted_out) | {name for name, flag in db.list_tenants() if flag}
    log = RequestLog(db)
    rows = log.query(tenant=tenant, since=since, limit=limit, with_feedback=True)
    feedback = log.feedback_for(r["id"] for r in rows)
    for row in rows:
        out.requests_seen += 1
        if row["tenant"] in opt_out:
            out.skipped_opt_out += 1
            continue
        ratings = [f["rating"] for f in feedback.get(row["id"], []) if f["tenant"] == row["tenant"]]
        prompt = row.get("prompt")
        model = row.get("answered_model")
        if not ratings or not prompt or not model or row.get("status") != 200:
            out.skipped_other += 1
            continue
        labels: dict[str, object] = {}
        for f in feedback.get(row["id"], []):
            labels.update(f.get("labels") or {})
        out.tenants.add(row["tenant"])
        out.records.append(
            EvalRecord(
                prompt_key=text_hash(prompt),
                prompt=prompt,
                model=model,
                score=float(sum(ratings) / len(ratings)),
                cost_usd=row.get("cost_usd"),
                latency_ms=row.get("upstream_ms"),
                tokens_in=row.get("tokens_in"),
                tokens_out=row.get("tokens_out"),
                response=row.get("response_text"),
                judge="feedback",
                source="gateway-log",
                tags=sorted(str(k) for k, v in labels.items() if v is True) or None,
                metadata={"request_id": row["id"], "tenant": row["tenant"], "labels": labels},
            )
        )
    return out
