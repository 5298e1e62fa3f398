"""router assignments (synthetic model → router dir, knob), their append-only audit, the gateway state version

Revision ID: 0120_router_assignments
Revises: 0102_gateway_log
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0120_router_assignments"
down_revision = "0102_gateway_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_router_assignments",
        sa.Column("synthetic_model", sa.String(256), primary_key=True),
        sa.Column("router", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("knob", sa.Float(), nullable=True),
        sa.Column("assigned_by", sa.String(256), nullable=False),
        sa.Column("assigned_at", sa.DateTime(), nullable=False),
        sa.Column("previous", sa.JSON(), nullable=True),
    )
    op.create_table(
        "gw_router_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("synthetic_model", sa.String(256), nullable=False),
        sa.Column("router", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("knob", sa.Float(), nullable=True),
        sa.Column("previous_router", sa.Text(), nullable=True),
        sa.Column("previous_kind", sa.String(32), nullable=True),
        sa.Column("previous_knob", sa.Float(), nullable=True),
        sa.Column("state_version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_gw_router_audit_synthetic_model", "gw_router_audit", ["synthetic_model"])
    op.create_table(
        "gw_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gw_state")
    op.drop_index("ix_gw_router_audit_synthetic_model", table_name="gw_router_audit")
    op.drop_table("gw_router_audit")
    op.drop_table("gw_router_assignments")
