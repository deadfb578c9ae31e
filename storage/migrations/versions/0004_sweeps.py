"""sweeps and executor submission ids

``sweeps``: a base configuration, a grid over configuration keys and a list of seeds, expanded to
runs of one experiment; ``runs.sweep_id`` and ``runs.grid_point`` tie each run to its sweep and its
point of the grid, so a sweep can be listed, resumed, cancelled and deleted as a whole.

``runs.submission_id``: the executor's handle on a job that is not a local process (the Ray job's
submission id), stored before the job is submitted, so a restarted studio finds its jobs again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], name="fk_sweeps_experiment_id_experiments"),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
    )
    # Plain ADD COLUMN, never a batch copy of ``runs``: on SQLite the copy would drop the old table,
    # and with foreign keys on, that cascades into every run's params, metrics and evaluations.
    # SQLite cannot ALTER a constraint in, but takes one inline with ADD COLUMN.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE runs ADD COLUMN sweep_id INTEGER "
                   "CONSTRAINT fk_runs_sweep_id_sweeps REFERENCES sweeps (id)")
    else:
        sweep_fk = sa.ForeignKey("sweeps.id", name="fk_runs_sweep_id_sweeps")
        op.add_column("runs", sa.Column("sweep_id", sa.Integer(), sweep_fk, nullable=True))
    op.add_column("runs", sa.Column("grid_point", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("submission_id", sa.String(length=255), nullable=True))
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_sweep_id", table_name="runs")
    if op.get_bind().dialect.name != "sqlite":  # SQLite's DROP COLUMN takes the column's REFERENCES with it
        op.drop_constraint("fk_runs_sweep_id_sweeps", "runs", type_="foreignkey")
    for column in ("submission_id", "grid_point", "sweep_id"):
        op.drop_column("runs", column)
    op.drop_table("sweeps")
