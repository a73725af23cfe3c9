"""connections: the company's name and where and when its daily digest goes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 07:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("procore_company_name", sa.String(300), nullable=True))
        batch.add_column(sa.Column("digest_recipients", sa.Text(), nullable=True))
        batch.add_column(sa.Column("digest_local_time", sa.Time(), nullable=True))
        batch.add_column(sa.Column("digest_time_zone", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        for column in ("digest_time_zone", "digest_local_time", "digest_recipients", "procore_company_name"):
            batch.drop_column(column)
