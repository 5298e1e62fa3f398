"""dashboard hourly roll-ups of the request log (gateway/ui/rollup.py)

Settled hours of the request log summed once per (hour, asked-for model, answering model, chosen model,
status), per (hour, tenant) and, for feedback, per (hour, model, policy), plus the hours done (with their
request and error counts); whole days of the model roll-up summed again per day, so the traffic page reads
a 30-day window of a busy gateway from a few thousand rows.

Revision ID: 0110_ui_rollups
Revises: 0130_budget_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0110_ui_rollups"
down_revision = "0130_budget_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_ui_hours",
        sa.Column("hour", sa.DateTime(), primary_key=True),
        sa.Column("rolled_at", sa.DateTime(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("errors", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "gw_ui_days",
        sa.Column("day", sa.DateTime(), primary_key=True),
        sa.Column("rolled_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "gw_ui_daily_models",
        sa.Column("day", sa.DateTime(), primary_key=True),
        sa.Column("asked", sa.String(256), primary_key=True),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("chosen", sa.String(256), primary_key=True),
        sa.Column("status", sa.Integer(), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("fallbacks", sa.Integer(), nullable=False),
    )
    op.create_table(
        "gw_ui_hourly_models",
        sa.Column("hour", sa.DateTime(), primary_key=True),
        sa.Column("asked", sa.String(256), primary_key=True),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("chosen", sa.String(256), primary_key=True),
        sa.Column("status", sa.Integer(), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("fallbacks", sa.Integer(), nullable=False),
    )
    op.create_table(
        "gw_ui_hourly_tenants",
        sa.Column("hour", sa.DateTime(), primary_key=True),
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
    )
    op.create_table(
        "gw_ui_hourly_feedback",
        sa.Column("hour", sa.DateTime(), primary_key=True),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("policy", sa.String(32), primary_key=True),
        sa.Column("ratings", sa.Integer(), nullable=False),
        sa.Column("rating_sum", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "gw_ui_hourly_feedback",
        "gw_ui_hourly_tenants",
        "gw_ui_hourly_models",
        "gw_ui_daily_models",
        "gw_ui_days",
        "gw_ui_hours",
    ):
        op.drop_table(name)
