"""job host and run-id high-water mark

``runs.host``: the machine a job runs on, recorded with its pid. Several studios may share one
PostgreSQL database from different machines; a pid means something only on its own host, so another
host's job is judged by its heartbeat alone.

``id_counters``: the highest run id ever given. SQLite reuses the largest INTEGER PRIMARY KEY after
its row is deleted (no AUTOINCREMENT on this table, and adding it means rebuilding ``runs``), so
deleting the newest run would hand its id to the next one and an open page would show another run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # batch: SQLite adds the column without a rebuild
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
    counters = op.create_table(
        "id_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_id_counters"),
    )
    last = op.get_bind().execute(sa.text("SELECT MAX(id) FROM runs")).scalar() or 0
    op.bulk_insert(counters, [{"name": "runs", "last_id": int(last)}])


def downgrade() -> None:
    op.drop_table("id_counters")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("host")
