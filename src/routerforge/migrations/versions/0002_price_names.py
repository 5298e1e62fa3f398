"""one price spelling: candidate_models.input_usd_per_mtok / output_usd_per_mtok (were input_/output_cost_usd_per_mtok)

Revision ID: 0002_price_names
Revises: 0001_initial
"""

from __future__ import annotations

from alembic import op

revision = "0002_price_names"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_RENAMES = (
    ("input_cost_usd_per_mtok", "input_usd_per_mtok"),
    ("output_cost_usd_per_mtok", "output_usd_per_mtok"),
)


def upgrade() -> None:
    with op.batch_alter_table("candidate_models") as batch:
        for old, new in _RENAMES:
            batch.alter_column(old, new_column_name=new)


def downgrade() -> None:
    with op.batch_alter_table("candidate_models") as batch:
        for old, new in _RENAMES:
            batch.alter_column(new, new_column_name=old)
