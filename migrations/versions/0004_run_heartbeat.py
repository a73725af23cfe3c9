"""sync_runs.heartbeat_at: a running run's lease

A run renews it while it works; a run whose lease is older than LEASE_TTL_S belongs to a worker that died, and the
dispatcher finds it within about two minutes instead of after the hard time limit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("heartbeat_at")
