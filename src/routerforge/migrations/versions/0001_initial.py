"""Initial schema: candidate models, datasets, prompts, eval records.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "candidate_models",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(255), nullable=True),
        sa.Column("base_url", sa.String(1024), nullable=True),
        sa.Column("input_cost_usd_per_mtok", sa.Float(), nullable=True),
        sa.Column("output_cost_usd_per_mtok", sa.Float(), nullable=True),
        sa.Column("context_window", sa.Integer(), nullable=True),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_candidate_models"),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
    )
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False),
        sa.Column("split", sa.String(64), nullable=True),
        sa.Column("category", sa.String(255), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("choices", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_prompts_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_prompts"),
        sa.UniqueConstraint("dataset_id", "key", name="uq_prompts_dataset_key"),
    )
    op.create_index("ix_prompts_dataset_id", "prompts", ["dataset_id"])
    op.create_index("ix_prompts_text_hash", "prompts", ["text_hash"])
    op.create_table(
        "eval_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("dimensions", sa.JSON(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("judge", sa.String(255), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name="fk_eval_records_prompt_id_prompts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_eval_records"),
        sa.UniqueConstraint("prompt_id", "model", name="uq_eval_records_prompt_model"),
    )
    op.create_index("ix_eval_records_model", "eval_records", ["model"])


def downgrade() -> None:
    op.drop_index("ix_eval_records_model", table_name="eval_records")
    op.drop_table("eval_records")
    op.drop_index("ix_prompts_text_hash", table_name="prompts")
    op.drop_index("ix_prompts_dataset_id", table_name="prompts")
    op.drop_table("prompts")
    op.drop_table("datasets")
    op.drop_table("candidate_models")
