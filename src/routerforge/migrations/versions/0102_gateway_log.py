"""gateway request log: the routing policy and decision details, and whether usage was estimated

Revision ID: 0102_gateway_log
Revises: 0101_gateway
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0102_gateway_log"
down_revision = "0101_gateway"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gw_requests", sa.Column("policy", sa.String(32), nullable=True))
    op.add_column("gw_requests", sa.Column("decision", sa.JSON(), nullable=True))
    op.add_column("gw_requests", sa.Column("usage_estimated", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_requests") as batch:
        for name in ("usage_estimated", "decision", "policy"):
            batch.drop_column(name)
