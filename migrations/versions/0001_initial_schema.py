"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 19:53:35.445835
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("procore_company_id", sa.BigInteger(), nullable=False),
        sa.Column("procore_client_id", sa.String(length=200), nullable=False),
        sa.Column("procore_client_secret", sa.Text(), nullable=False),
        sa.Column("procore_access_token", sa.Text(), nullable=True),
        sa.Column("procore_refresh_token", sa.Text(), nullable=True),
        sa.Column("procore_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("procore_needs_reauth", sa.Text(), nullable=True),
        sa.Column("st_auth_kind", sa.String(length=20), nullable=True),
        sa.Column("st_username", sa.String(length=200), nullable=True),
        sa.Column("st_password", sa.Text(), nullable=True),
        sa.Column("st_client_id", sa.String(length=200), nullable=True),
        sa.Column("st_client_secret", sa.Text(), nullable=True),
        sa.Column("st_session_token", sa.Text(), nullable=True),
        sa.Column("st_vendor_company_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
        sa.UniqueConstraint("procore_company_id", name=op.f("uq_connections_procore_company_id")),
    )
    op.create_table(
        "project_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("procore_project_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("entry_mode", sa.Enum("hours", "start_stop", name="entry_mode"), nullable=False),
        sa.Column("timesheets_active", sa.Boolean(), nullable=False),
        sa.Column("lookback_days", sa.Integer(), nullable=False),
        sa.Column("split_mode", sa.Enum("midnight", "start_date", name="split_mode"), nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=True),
        sa.Column("st_company_id", sa.BigInteger(), nullable=True),
        sa.Column("st_location_id", sa.BigInteger(), nullable=True),
        sa.Column("st_job_id", sa.BigInteger(), nullable=True),
        sa.Column("st_job_number", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_project_links_connection_id_connections")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_links")),
        sa.UniqueConstraint(
            "connection_id", "procore_project_id", name=op.f("uq_project_links_connection_id")
        ),
    )
    op.create_table(
        "technicians",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("st_user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("employee_id", sa.String(length=100), nullable=True),
        sa.Column("procore_party_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("ok", "no_employee_id", "invalid_employee_id", "not_employee", name="technician_status"),
            nullable=False,
        ),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column(
            "refreshed_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_technicians_connection_id_connections")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_technicians")),
        sa.UniqueConstraint("connection_id", "st_user_id", name=op.f("uq_technicians_connection_id")),
    )
    op.create_table(
        "clock_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_link_id", sa.Integer(), nullable=False),
        sa.Column("st_event_id", sa.BigInteger(), nullable=False),
        sa.Column("st_user_id", sa.BigInteger(), nullable=False),
        sa.Column("user_name", sa.String(length=300), nullable=False),
        sa.Column("st_job_id", sa.BigInteger(), nullable=False),
        sa.Column("activity", sa.String(length=20), nullable=False),
        sa.Column("event_type", sa.String(length=20), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=True),
        sa.Column("st_updated", sa.BigInteger(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "first_seen_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False
        ),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["project_link_id"],
            ["project_links.id"],
            name=op.f("fk_clock_events_project_link_id_project_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clock_events")),
        sa.UniqueConstraint("project_link_id", "st_event_id", name=op.f("uq_clock_events_project_link_id")),
    )
    op.create_index(
        "ix_clock_events_link_time", "clock_events", ["project_link_id", "event_time"], unique=False
    )
    op.create_table(
        "cost_code_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_link_id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("activity", sa.String(length=20), nullable=True),
        sa.Column("st_user_id", sa.BigInteger(), nullable=True),
        sa.Column("weekdays", sa.String(length=40), nullable=True),
        sa.Column("start_window", sa.String(length=11), nullable=True),
        sa.Column("cost_code_id", sa.BigInteger(), nullable=False),
        sa.Column("line_item_type_id", sa.BigInteger(), nullable=False),
        sa.Column("timecard_time_type_id", sa.BigInteger(), nullable=True),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_link_id"],
            ["project_links.id"],
            name=op.f("fk_cost_code_rules_project_link_id_project_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_code_rules")),
        sa.UniqueConstraint("project_link_id", "priority", name=op.f("uq_cost_code_rules_project_link_id")),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_link_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Enum("nightly", "weekly", "payroll", name="schedule_kind"), nullable=False),
        sa.Column("local_time", sa.Time(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("payroll_kind", sa.String(length=20), nullable=True),
        sa.Column("anchor_date", sa.Date(), nullable=True),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_link_id"],
            ["project_links.id"],
            name=op.f("fk_schedules_project_link_id_project_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index(op.f("ix_schedules_next_run_at"), "schedules", ["next_run_at"], unique=False)
    op.create_index(op.f("ix_schedules_project_link_id"), "schedules", ["project_link_id"], unique=False)
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=200), nullable=False),
        sa.Column("project_link_id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column(
            "trigger",
            sa.Enum("schedule", "cli", "task", "manual", "retry", name="run_trigger"),
            nullable=False,
        ),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("window_end", sa.Date(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "succeeded", "failed", "deferred", name="run_status"),
            nullable=False,
        ),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_link_id"], ["project_links.id"], name=op.f("fk_sync_runs_project_link_id_project_links")
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_sync_runs_schedule_id_schedules"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
        sa.UniqueConstraint("run_key", name=op.f("uq_sync_runs_run_key")),
    )
    op.create_index(op.f("ix_sync_runs_next_attempt_at"), "sync_runs", ["next_attempt_at"], unique=False)
    op.create_index(op.f("ix_sync_runs_project_link_id"), "sync_runs", ["project_link_id"], unique=False)
    op.create_index(op.f("ix_sync_runs_status"), "sync_runs", ["status"], unique=False)
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("project_link_id", sa.Integer(), nullable=False),
        sa.Column("source_key", sa.String(length=100), nullable=False),
        sa.Column("clock_in_event_id", sa.BigInteger(), nullable=True),
        sa.Column("clock_out_event_id", sa.BigInteger(), nullable=True),
        sa.Column("st_user_id", sa.BigInteger(), nullable=True),
        sa.Column("technician_name", sa.String(length=300), nullable=True),
        sa.Column("activity", sa.String(length=20), nullable=True),
        sa.Column("work_date", sa.Date(), nullable=True),
        sa.Column("actual_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actual_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rounded_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rounded_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("piece_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("piece_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hours", sa.Numeric(precision=6, scale=2), nullable=True),
        sa.Column("cost_code_id", sa.BigInteger(), nullable=True),
        sa.Column("line_item_type_id", sa.BigInteger(), nullable=True),
        sa.Column("timecard_time_type_id", sa.BigInteger(), nullable=True),
        sa.Column("billable", sa.Boolean(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("party_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "posted",
                "unknown",
                "failed",
                "skipped",
                "deleted",
                "needs_review",
                name="ledger_status",
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("procore_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("approval_status", sa.String(length=20), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_ledger_entries_connection_id_connections")
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"],
            ["sync_runs.id"],
            name=op.f("fk_ledger_entries_last_run_id_sync_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_link_id"],
            ["project_links.id"],
            name=op.f("fk_ledger_entries_project_link_id_project_links"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("connection_id", "source_key", name=op.f("uq_ledger_entries_connection_id")),
    )
    op.create_index(
        "ix_ledger_entries_link_date", "ledger_entries", ["project_link_id", "work_date"], unique=False
    )
    op.create_index(
        "ix_ledger_entries_link_status", "ledger_entries", ["project_link_id", "status"], unique=False
    )
    op.create_index(
        "ix_ledger_entries_link_start", "ledger_entries", ["project_link_id", "actual_start"], unique=False
    )
    op.create_table(
        "ledger_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ledger_entry_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.ForeignKeyConstraint(
            ["ledger_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_ledger_history_ledger_entry_id_ledger_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_ledger_history_run_id_sync_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_history")),
    )
    op.create_index(
        op.f("ix_ledger_history_ledger_entry_id"), "ledger_history", ["ledger_entry_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_history_ledger_entry_id"), table_name="ledger_history")
    op.drop_table("ledger_history")
    op.drop_index("ix_ledger_entries_link_start", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_link_status", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_link_date", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index(op.f("ix_sync_runs_status"), table_name="sync_runs")
    op.drop_index(op.f("ix_sync_runs_project_link_id"), table_name="sync_runs")
    op.drop_index(op.f("ix_sync_runs_next_attempt_at"), table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_index(op.f("ix_schedules_project_link_id"), table_name="schedules")
    op.drop_index(op.f("ix_schedules_next_run_at"), table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("cost_code_rules")
    op.drop_index("ix_clock_events_link_time", table_name="clock_events")
    op.drop_table("clock_events")
    op.drop_table("technicians")
    op.drop_table("project_links")
    op.drop_table("connections")
    # PostgreSQL keeps enum types after their tables are gone; drop them so a re-upgrade starts clean.
    for enum_name in (
        "ledger_status",
        "run_status",
        "run_trigger",
        "schedule_kind",
        "technician_status",
        "split_mode",
        "entry_mode",
    ):
        sa.Enum(name=enum_name).drop(op.get_bind(), checkfirst=True)
