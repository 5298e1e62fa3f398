"""request log partitioning: gw_attempts.created_at (its request's time, the partition key of a partitioned log)

Revision ID: 0140_log_partitions
Revises: 0110_ui_rollups

The column is filled by the log writer from now on (older rows keep NULL). It lets a PostgreSQL log
partitioned by time (``logging.partition``, gateway/partitions.py) partition the attempts like their requests,
so retention drops both with ``DROP TABLE`` of a partition instead of deleting row by row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0140_log_partitions"
down_revision = "0110_ui_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gw_attempts", sa.Column("created_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_attempts") as batch:
        batch.drop_column("created_at")
