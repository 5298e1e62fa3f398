"""budget ledger: limited windows (spent, reserved) and reservation leases; per-key budgets and tokens/minute

Revision ID: 0130_budget_ledger
Revises: 0110_ui_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0130_budget_ledger"
down_revision = "0110_ui_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_budget_windows",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("reserved", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_gw_budget_windows_expires_at", "gw_budget_windows", ["expires_at"])
    op.create_table(
        "gw_budget_leases",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("windows", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_gw_budget_leases_expires_at", "gw_budget_leases", ["expires_at"])
    op.add_column("gw_api_keys", sa.Column("daily_usd", sa.Float(), nullable=True))
    op.add_column("gw_api_keys", sa.Column("monthly_usd", sa.Float(), nullable=True))
    op.add_column("gw_api_keys", sa.Column("tokens_per_minute", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_api_keys") as batch:
        for name in ("tokens_per_minute", "monthly_usd", "daily_usd"):
            batch.drop_column(name)
    op.drop_index("ix_gw_budget_leases_expires_at", "gw_budget_leases")
    op.drop_table("gw_budget_leases")
    op.drop_index("ix_gw_budget_windows_expires_at", "gw_budget_windows")
    op.drop_table("gw_budget_windows")
