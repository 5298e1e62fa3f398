"""Logged prompts → a prompt set (``routerforge data prompts from-logs``), feedback or not.

The first step of the improvement loop: prompts the gateway saw become a prompt set that ``eval run`` asks
the candidate models and judges, so the next router is trained on the traffic it serves. Unlike
``data import-logs`` (gateway/export.py), which needs feedback because it turns a rating into a score,
this takes every successfully answered or routed request.

Rules, each drop counted by reason: requests of tenants that opted out of training (``training_opt_out`` in
gateway.yaml or in the database) are skipped (``opt_out``); so are refused or failed requests (``failed``:
status ≠ 200), requests whose prompt was not logged (``no_prompt``: ``logging.store_messages: false``) and
repeats of a prompt already taken (``duplicate``: same text hash — the key of the prompt in the set, so
re-running adds nothing twice). Each prompt gets a ``train``/``test`` split from its text hash. With ``references``, a prompt whose text is in that prompt set takes its
reference answer, choices, category and judge rule, so rule judges can score the answers offline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from routerforge.data.records import PromptItem, text_hash
from routerforge.errors import ValidationError
from routerforge.gateway.db import GatewayDB, GwRequest

SKIP_REASONS = ("opt_out", "failed", "no_prompt", "duplicate")


@dataclass
class LogPrompts:
    """The prompts taken from the log and what was skipped, by reason."""

    items: list[PromptItem] = field(default_factory=list)
    requests_seen: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    tenants: set[str] = field(default_factory=set)
    with_reference: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests_seen": self.requests_seen,
            "prompts": len(self.items),
            "with_reference": self.with_reference,
            "splits": dict(sorted(Counter(str(p.split) for p in self.items).items())),
            "skipped": {r: int(self.skipped.get(r, 0)) for r in SKIP_REASONS},
            "tenants": sorted(self.tenants),
        }


def prompts_from_logs(
    db: GatewayDB,
    *,
    tenant: str | None = None,
    since: dt.datetime | None = None,
    synthetic_model: str | None = None,
    opted_out: Iterable[str] = (),
    limit: int = 100_000,
    references: Mapping[str, PromptItem] | None = None,
    test_fraction: float = 0.2,
) -> LogPrompts:
    """The distinct prompts of the newest ``limit`` logged chat and route requests (filters: ``tenant``,
    ``since``, ``synthetic_model``), oldest first. ``references`` maps text hashes to prompts whose
    reference fields are copied. Each prompt gets split ``test`` with probability ``test_fraction``, decided
    by its text hash (the same prompt always lands on the same side), else ``train`` — so ``train`` learns
    from the new prompts and ``bench``/``calibrate`` have held-out ones."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValidationError(f"The test fraction must be in [0, 1), not {test_fraction}.")
    out = LogPrompts()
    opt_out = set(opted_out) | {name for name, flag in db.list_tenants() if flag}
    req = GwRequest.__table__
    stmt = (
        select(req.c.id, req.c.tenant, req.c.prompt, req.c.status, req.c.synthetic_model, req.c.created_at)
        .where(req.c.endpoint.in_(("chat", "route")))
        .order_by(req.c.created_at.desc(), req.c.id)
        .limit(limit)
    )
    if tenant is not None:
        stmt = stmt.where(req.c.tenant == tenant)
    if since is not None:
        stmt = stmt.where(req.c.created_at >= since)
    if synthetic_model is not None:
        stmt = stmt.where(req.c.synthetic_model == synthetic_model)
    with db.engine.connect() as conn:
        rows = list(conn.execute(stmt).mappings())
    taken: dict[str, PromptItem] = {}
    for row in reversed(rows):  # oldest first: a prompt keeps the id of its first request
        out.requests_seen += 1
        if row["tenant"] in opt_out:
            out.skipped["opt_out"] += 1
            continue
        if row["status"] != 200:
            out.skipped["failed"] += 1
            continue
        text = row["prompt"]
        if not text or not text.strip():
            out.skipped["no_prompt"] += 1
            continue
        key = text_hash(text)
        if key in taken:
            out.skipped["duplicate"] += 1
            taken[key].metadata["occurrences"] += 1
            continue
        out.tenants.add(row["tenant"])
        item = PromptItem(
            key=key,
            text=text,
            split="test" if int(key[:8], 16) / 0x1_0000_0000 < test_fraction else "train",
            metadata={
                "source": "gateway-log",
                "first_request_id": row["id"],
                "synthetic_model": row["synthetic_model"],
                "occurrences": 1,
            },
        )
        ref = references.get(key) if references else None
        if ref is not None:
            item.reference, item.choices, item.category = ref.reference, ref.choices, ref.category
            if "judge" in ref.metadata:
                item.metadata["judge"] = ref.metadata["judge"]
            out.with_reference += 1
        taken[key] = item
    out.items = list(taken.values())
    return out


def write_prompts_jsonl(items: Iterable[PromptItem], path: str | Path) -> int:
    """Write prompts as JSONL that ``data prompts import`` reads back (private file, atomic)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    count = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for item in items:
                doc: dict[str, Any] = {"id": item.key, "prompt": item.text}
                if item.reference is not None:
                    doc["reference"] = item.reference
                if item.choices is not None:
                    doc["choices"] = item.choices
                if item.category is not None:
                    doc["category"] = item.category
                if item.split is not None:
                    doc["split"] = item.split
                doc["metadata"] = item.metadata
                fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
                count += 1
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
