"""webhooks: the deliveries table and the hook secrets of a connection

ServiceTrade signs nothing, so its hook URL carries a token (only its sha256 is kept); Procore sends the bearer
secret we registered (kept encrypted, since it is sent again when the hook is updated).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("st_hook_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("st_webhook_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("procore_hook_secret", sa.Text(), nullable=True))
        batch.add_column(sa.Column("procore_hook_id", sa.BigInteger(), nullable=True))
        batch.create_unique_constraint(op.f("uq_connections_st_hook_token_hash"), ["st_hook_token_hash"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=True),
        sa.Column("connection_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"],
                                name=op.f("fk_webhook_deliveries_connection_id_connections"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("source", "message_id", name=op.f("uq_webhook_deliveries_source")),
    )
    op.create_index(op.f("ix_webhook_deliveries_received_at"), "webhook_deliveries", ["received_at"])
    op.create_index(op.f("ix_webhook_deliveries_outcome"), "webhook_deliveries", ["outcome"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_outcome"), table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_received_at"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("connections") as batch:
        batch.drop_constraint(op.f("uq_connections_st_hook_token_hash"), type_="unique")
        batch.drop_column("procore_hook_id")
        batch.drop_column("procore_hook_secret")
        batch.drop_column("st_webhook_id")
        batch.drop_column("st_hook_token_hash")
