"""dashboard indexes: the request log by time (covering the traffic page's columns) and feedback by time

The dashboard (``gateway/ui/queries.py``) filters every query on ``created_at`` over all tenants; the
existing ``(tenant, created_at)`` index only serves one tenant. ``ix_gw_requests_ui_time`` leads with
``created_at`` and carries the columns the traffic page aggregates, so its counts, costs and latency
samples are read from the index alone (no table lookups into the wide prompt/answer rows).

Revision ID: 0110_ui_indexes
Revises: 0120_router_assignments
"""

from __future__ import annotations

from alembic import op

revision = "0110_ui_indexes"
down_revision = "0120_router_assignments"
branch_labels = None
depends_on = None

UI_TIME_COLUMNS = [
    "created_at",
    "synthetic_model",
    "requested_model",
    "answered_model",
    "chosen_model",
    "status",
    "tenant",
    "cost_usd",
    "routing_ms",
    "upstream_ms",
]


def upgrade() -> None:
    op.create_index("ix_gw_requests_ui_time", "gw_requests", UI_TIME_COLUMNS)
    op.create_index("ix_gw_feedback_created_at", "gw_feedback", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_gw_feedback_created_at", table_name="gw_feedback")
    op.drop_index("ix_gw_requests_ui_time", table_name="gw_requests")
