"""evaluation results and per-example routing records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=250), nullable=False),
        sa.Column("em", sa.Double(), nullable=True),
        sa.Column("f1", sa.Double(), nullable=True),
        sa.Column("accuracy", sa.Double(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("loss", sa.Double(), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_evaluation_results_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_evaluation_results"),
    )
    op.create_index("ix_evaluation_results_run_id_step", "evaluation_results", ["run_id", "step"])
    op.create_table(
        "routing_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=64), nullable=False),
        sa.Column("example_id", sa.String(length=250), nullable=False),
        sa.Column("dataset", sa.String(length=250), nullable=True),
        sa.Column("domain", sa.String(length=250), nullable=True),
        sa.Column("ood", sa.Boolean(), nullable=False),
        sa.Column("answer_type", sa.String(length=32), nullable=True),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("gold", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.Text(), nullable=False),
        sa.Column("expert", sa.Integer(), nullable=True),
        sa.Column("probs", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("entropy", sa.Double(), nullable=True),
        sa.Column("em", sa.Double(), nullable=True),
        sa.Column("f1", sa.Double(), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_routing_records_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_routing_records"),
    )
    op.create_index("ix_routing_records_run_id_step_split", "routing_records", ["run_id", "step", "split"])


def downgrade() -> None:
    op.drop_table("routing_records")
    op.drop_table("evaluation_results")
