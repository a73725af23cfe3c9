"""clock_events.last_seen_at becomes changed_at

A stored clock event is now written only when ServiceTrade changed it, so the column says when that last happened
(its value so far, the last read, is the closest thing to it). Whether an event is still listed is `deleted_at`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clock_events") as batch:
        batch.alter_column("last_seen_at", new_column_name="changed_at")


def downgrade() -> None:
    with op.batch_alter_table("clock_events") as batch:
        batch.alter_column("changed_at", new_column_name="last_seen_at")
