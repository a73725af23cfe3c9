"""SQLAlchemy 2.0 typed models: every table of DESIGN §2.

The unique constraints are what make the ledger idempotent: one ledger row per connection and source key, one
project link per connection and Procore project, one sync run per run key.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from worker.crypto import EncryptedText
from worker.enums import (  # noqa: F401 - the stored enums, importable with the models
    EntryMode,
    LedgerStatus,
    RunStatus,
    RunTrigger,
    ScheduleKind,
    SplitMode,
    TechnicianStatus,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out, on PostgreSQL and on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: stsync stores instants in UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UtcDateTime}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as the value strings, checked by a constraint on SQLite and a native type on PostgreSQL.
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e], validate_strings=True)


class Connection(Base):
    """One Procore company and one ServiceTrade account, with their credentials (encrypted at rest)."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    procore_company_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    procore_client_id: Mapped[str] = mapped_column(String(200))
    procore_client_secret: Mapped[str] = mapped_column(EncryptedText)
    procore_access_token: Mapped[str | None] = mapped_column(EncryptedText)
    procore_refresh_token: Mapped[str | None] = mapped_column(EncryptedText)
    procore_token_expires_at: Mapped[datetime | None]
    procore_needs_reauth: Mapped[str | None] = mapped_column(Text, doc="why the connection must be re-authorised")

    st_auth_kind: Mapped[str | None] = mapped_column(String(20), doc="session | oauth")
    st_username: Mapped[str | None] = mapped_column(String(200))
    st_password: Mapped[str | None] = mapped_column(EncryptedText)
    st_client_id: Mapped[str | None] = mapped_column(String(200))
    st_client_secret: Mapped[str | None] = mapped_column(EncryptedText)
    st_session_token: Mapped[str | None] = mapped_column(EncryptedText)
    st_vendor_company_id: Mapped[int | None] = mapped_column(BigInteger)
    st_hook_token_hash: Mapped[str | None] = mapped_column(
        String(64), unique=True, doc="sha256 of the token in our ServiceTrade webhook URL (the token is not kept)")
    st_webhook_id: Mapped[int | None] = mapped_column(BigInteger)
    procore_hook_secret: Mapped[str | None] = mapped_column(EncryptedText, doc="the bearer our Procore hook sends")
    procore_hook_id: Mapped[int | None] = mapped_column(BigInteger)
    procore_company_name: Mapped[str | None] = mapped_column(String(300), doc="the company's name in Procore")
    digest_recipients: Mapped[str | None] = mapped_column(Text, doc="comma-separated addresses of the daily digest")
    digest_local_time: Mapped[time | None] = mapped_column(Time, doc="when the digest goes out (07:00 when unset)")
    digest_time_zone: Mapped[str | None] = mapped_column(
        String(64), doc="IANA zone of the digest; unset: the zone most of the company's projects use")

    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp(), onupdate=func.current_timestamp())

    links: Mapped[list[ProjectLink]] = relationship(back_populates="connection")


class ProjectLink(Base):
    """A Procore project linked to a ServiceTrade customer, location and job."""

    __tablename__ = "project_links"
    __table_args__ = (UniqueConstraint("connection_id", "procore_project_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    procore_project_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(300))
    time_zone: Mapped[str] = mapped_column(String(64), doc="IANA zone of the project")
    entry_mode: Mapped[EntryMode] = mapped_column(_enum(EntryMode, "entry_mode"))
    timesheets_active: Mapped[bool] = mapped_column(Boolean)
    lookback_days: Mapped[int] = mapped_column(Integer, default=14)
    split_mode: Mapped[SplitMode] = mapped_column(_enum(SplitMode, "split_mode"), default=SplitMode.midnight)
    job_type: Mapped[str | None] = mapped_column(String(64))
    st_company_id: Mapped[int | None] = mapped_column(BigInteger)
    st_location_id: Mapped[int | None] = mapped_column(BigInteger)
    st_job_id: Mapped[int | None] = mapped_column(BigInteger)
    st_job_number: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp(), onupdate=func.current_timestamp())

    connection: Mapped[Connection] = relationship(back_populates="links")
    rules: Mapped[list[CostCodeRule]] = relationship(
        back_populates="link", order_by="CostCodeRule.priority", cascade="all, delete-orphan"
    )


class Technician(Base):
    """A ServiceTrade technician and the Procore person their Employee ID resolves to, or why it doesn't."""

    __tablename__ = "technicians"
    __table_args__ = (UniqueConstraint("connection_id", "st_user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    st_user_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(300))
    employee_id: Mapped[str | None] = mapped_column(String(100))
    procore_party_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[TechnicianStatus] = mapped_column(_enum(TechnicianStatus, "technician_status"))
    problem: Mapped[str | None] = mapped_column(Text)
    refreshed_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())


class CostCodeRule(Base):
    """One ordered rule of a project: conditions → cost code, cost type, time type, billable, description."""

    __tablename__ = "cost_code_rules"
    __table_args__ = (UniqueConstraint("project_link_id", "priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_link_id: Mapped[int] = mapped_column(ForeignKey("project_links.id", ondelete="CASCADE"))
    priority: Mapped[int] = mapped_column(Integer)
    activity: Mapped[str | None] = mapped_column(String(20))
    st_user_id: Mapped[int | None] = mapped_column(BigInteger)
    weekdays: Mapped[str | None] = mapped_column(String(40), doc="mon,tue,... or NULL for every day")
    start_window: Mapped[str | None] = mapped_column(String(11), doc="HH:MM-HH:MM local, may wrap midnight")
    cost_code_id: Mapped[int] = mapped_column(BigInteger)
    line_item_type_id: Mapped[int] = mapped_column(BigInteger)
    timecard_time_type_id: Mapped[int | None] = mapped_column(BigInteger)
    billable: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())

    link: Mapped[ProjectLink] = relationship(back_populates="rules")


class Schedule(Base):
    """A nightly, weekly or payroll-period schedule of a project, in its local time, with the next run in UTC."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_link_id: Mapped[int] = mapped_column(ForeignKey("project_links.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ScheduleKind] = mapped_column(_enum(ScheduleKind, "schedule_kind"))
    local_time: Mapped[time] = mapped_column(Time)
    weekday: Mapped[int | None] = mapped_column(Integer, doc="0 = Monday, for weekly schedules")
    payroll_kind: Mapped[str | None] = mapped_column(String(20))
    anchor_date: Mapped[date | None] = mapped_column(Date)
    grace_days: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime] = mapped_column(index=True)
    last_run_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())


class SyncRun(Base):
    """One run of one project window: trigger, window, status, counts by outcome, timings, error."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_key: Mapped[str] = mapped_column(String(200), unique=True)
    project_link_id: Mapped[int] = mapped_column(ForeignKey("project_links.id"), index=True)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    trigger: Mapped[RunTrigger] = mapped_column(_enum(RunTrigger, "run_trigger"))
    window_start: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    selection: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="manual flow: clock event ids, cost code, line item type"
    )
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "run_status"), index=True)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None] = mapped_column(doc="the running run's lease: renewed while it works")
    finished_at: Mapped[datetime | None]

    link: Mapped[ProjectLink] = relationship()


class ClockEvent(Base):
    """A raw punch as last read from ServiceTrade (audit: edits and deletions stay visible)."""

    __tablename__ = "clock_events"
    __table_args__ = (
        UniqueConstraint("project_link_id", "st_event_id"),
        Index("ix_clock_events_link_time", "project_link_id", "event_time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_link_id: Mapped[int] = mapped_column(ForeignKey("project_links.id", ondelete="CASCADE"))
    st_event_id: Mapped[int] = mapped_column(BigInteger)
    st_user_id: Mapped[int] = mapped_column(BigInteger)
    user_name: Mapped[str] = mapped_column(String(300))
    st_job_id: Mapped[int] = mapped_column(BigInteger)
    activity: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(20))
    event_time: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(String(20))
    st_updated: Mapped[int | None] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime | None] = mapped_column(doc="when it stopped being listed")
    first_seen_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    changed_at: Mapped[datetime] = mapped_column(
        server_default=func.current_timestamp(), doc="when ServiceTrade last changed it, as stsync read it"
    )


class LedgerEntry(Base):
    """One Procore timecard entry stsync is responsible for, or the skipped row that says why there is none."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("connection_id", "source_key"),
        Index("ix_ledger_entries_link_date", "project_link_id", "work_date"),
        Index("ix_ledger_entries_link_start", "project_link_id", "actual_start"),
        Index("ix_ledger_entries_link_status", "project_link_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    project_link_id: Mapped[int] = mapped_column(ForeignKey("project_links.id"))
    source_key: Mapped[str] = mapped_column(String(100), doc="<clock-in event id>:<local date>")
    clock_in_event_id: Mapped[int | None] = mapped_column(BigInteger)
    clock_out_event_id: Mapped[int | None] = mapped_column(BigInteger)
    st_user_id: Mapped[int | None] = mapped_column(BigInteger)
    technician_name: Mapped[str | None] = mapped_column(String(300))
    activity: Mapped[str | None] = mapped_column(String(20))
    work_date: Mapped[date | None] = mapped_column(Date)
    actual_start: Mapped[datetime | None] = mapped_column(doc="the punched clock-in of the whole interval")
    actual_end: Mapped[datetime | None]
    rounded_start: Mapped[datetime | None]
    rounded_end: Mapped[datetime | None]
    piece_start: Mapped[datetime | None] = mapped_column(doc="rounded start of this day's piece")
    piece_end: Mapped[datetime | None]
    hours: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    cost_code_id: Mapped[int | None] = mapped_column(BigInteger)
    line_item_type_id: Mapped[int | None] = mapped_column(BigInteger)
    timecard_time_type_id: Mapped[int | None] = mapped_column(BigInteger)
    billable: Mapped[bool | None] = mapped_column(Boolean)
    description: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[int | None] = mapped_column(Integer)
    party_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="what was (or will be) sent to Procore")
    content_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[LedgerStatus] = mapped_column(_enum(LedgerStatus, "ledger_status"))
    reason: Mapped[str | None] = mapped_column(String(40), doc="skip reason code, or why it failed")
    detail: Mapped[str | None] = mapped_column(Text)
    procore_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    approval_status: Mapped[str | None] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    claimed_at: Mapped[datetime | None]
    posted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp(), onupdate=func.current_timestamp())


class LedgerHistory(Base):
    """Every status change of a ledger entry, append-only."""

    __tablename__ = "ledger_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    ledger_entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())


class User(Base):
    """A person who signs in to the web console: `admin` (everything) or `payroll` (projects, clock events, runs
    and the ledger). The password is kept only as a werkzeug scrypt hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, doc="lower-cased, so sign-in ignores case")
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), doc="admin | payroll (worker.service.users.Role)")
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    last_sign_in_at: Mapped[datetime | None]


class WebhookOutcome(enum.StrEnum):
    """What became of one webhook delivery (the metrics count deliveries by it)."""

    received = "received"  # stored and queued, not processed yet
    processed = "processed"  # a sync was scheduled, or the ledger updated
    ignored = "ignored"  # nothing to do: our own write, an entry stsync did not make, nothing changed
    unmatched = "unmatched"  # no linked project: kept with the reason
    refused = "refused"  # too large or malformed: kept with the reason, never processed
    failed = "failed"  # processing stopped on an error (kept with it); a retry may still process it


class WebhookDelivery(Base):
    """One message a webhook delivered, kept whatever became of it; the sender's id makes a replay a no-op."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("source", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20), doc="servicetrade | procore")
    message_id: Mapped[str | None] = mapped_column(
        String(100), doc="ServiceTrade messageId, Procore ulid; none for a body that could not be read")
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="the body as sent, or a marker when refused")
    received_at: Mapped[datetime] = mapped_column(index=True)
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(20), index=True, doc="a WebhookOutcome")
    reason: Mapped[str | None] = mapped_column(Text)
