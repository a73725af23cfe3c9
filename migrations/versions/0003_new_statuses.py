"""New ledger, run and trigger values: deleted_in_procore, completed_with_problems, webhook and console

A person can delete an entry in Procore (`deleted_in_procore`: not posted again unless asked); a run that leaves
rows failed, unknown, unmapped or in review ends `completed_with_problems`; runs start from webhooks and from the
console too. PostgreSQL's enum types gain the values; SQLite stores them as strings sized to the longest value, so
its columns are widened.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_VALUES = {
    "ledger_status": ["deleted_in_procore"],
    "run_status": ["completed_with_problems"],
    "run_trigger": ["webhook", "console"],
}


# Every value of each type after this revision (SQLite sizes the column to the longest).
COLUMNS = [
    ("ledger_entries", "status", "ledger_status",
     ["pending", "posted", "unknown", "failed", "skipped", "deleted", "needs_review", "deleted_in_procore"]),
    ("sync_runs", "status", "run_status",
     ["queued", "running", "succeeded", "completed_with_problems", "failed", "deferred"]),
    ("sync_runs", "trigger", "run_trigger", ["schedule", "cli", "task", "manual", "retry", "webhook", "console"]),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for table, column, type_name, values in COLUMNS:
            with op.batch_alter_table(table) as batch:
                batch.alter_column(column, type_=sa.Enum(*values, name=type_name),
                                   existing_nullable=False)
        return
    for type_name, values in NEW_VALUES.items():
        for value in values:
            op.execute(f"ALTER TYPE {type_name} ADD VALUE IF NOT EXISTS '{value}'")


def downgrade() -> None:
    # PostgreSQL cannot drop a value from an enum type; rows using them would have nowhere to go anyway.
    pass
