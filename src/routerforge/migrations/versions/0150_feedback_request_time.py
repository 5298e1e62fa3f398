"""gw_feedback.request_created_at: the rated request's time, the partition key of a log partitioned by time

Revision ID: 0150_feedback_request_time
Revises: 0140_log_partitions

Filled by ``RequestLog.rate_for`` from now on (older ratings keep NULL). The dashboard groups the ratings of
a window by the rated request's model and policy; on a log partitioned by time (``logging.partition``) a
join by request id alone probes every partition's key index once per rating (38 daily partitions: 85-265 ms
for two hours of ratings at 10M rows), while a join that also matches ``created_at`` is pruned to the one
partition holding the request.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0150_feedback_request_time"
down_revision = "0140_log_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gw_feedback", sa.Column("request_created_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_feedback") as batch:
        batch.drop_column("request_created_at")
