"""Read-only SQL for the signals (DESIGN §11): what /metrics exports and what the daily digest tells a payroll
admin. Nothing here writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import String, and_, cast, func, inspect, or_, select
from sqlalchemy.orm import Session

from worker.enums import LedgerStatus, RunStatus, SkipReason
from worker.models import (
    Connection,
    LedgerEntry,
    LedgerHistory,
    ProjectLink,
    Schedule,
    SyncRun,
    Technician,
    WebhookDelivery,
)

# A sync that ran to its end counts as a success for "when did this project last sync": one that left a failed
# row behind still read and posted everything else, and the failed row has an alert of its own.
SYNCED_RUN_STATUSES = (RunStatus.succeeded, RunStatus.completed_with_problems)
# Technicians whose hours cannot be posted until a person fixes their Employee ID.
EMPLOYEE_ID_SKIPS = (SkipReason.no_employee_id, SkipReason.invalid_employee_id)
DEFAULT_DIGEST_TIME = time(7, 0)


@dataclass(frozen=True)
class ProjectSync:
    """A linked project and when it last synced to its end (None: never)."""

    link_id: int
    connection_id: int
    project_id: int
    name: str
    time_zone: str
    active: bool  # has an enabled schedule
    last_success: datetime | None
    scheduled_since: datetime | None  # when its oldest enabled schedule was made
    linked_at: datetime

    @property
    def counted_from(self) -> datetime:
        """Its last sync to the end; for a project that never had one, when it was scheduled (or linked), so a
        new project gets a full day before anyone is told it has not synced."""
        return self.last_success or self.scheduled_since or self.linked_at


@dataclass(frozen=True)
class SkippedTechnician:
    """A technician whose entries are skipped for a missing or invalid Employee ID, with the hours waiting."""

    st_user_id: int | None
    name: str
    reason: SkipReason
    entries: int
    hours: Decimal
    first_day: date | None
    last_day: date | None
    projects: tuple[str, ...]
    what_to_fix: str


@dataclass(frozen=True)
class ProblemEntry:
    """A failed or needs-review ledger row, as a person reads it."""

    project: str
    technician: str
    work_date: date | None
    hours: Decimal | None
    cost_code_id: int | None
    message: str


@dataclass(frozen=True)
class PostedHours:
    """Hours posted to one project and cost code."""

    project: str
    project_id: int
    cost_code_id: int | None
    entries: int
    hours: Decimal


# ---------------------------------------------------------------------------- metrics


def project_syncs(s: Session, connection_id: int | None = None) -> list[ProjectSync]:
    """Every linked project (of one connection, or all), with its last sync that ran to its end; by name."""
    last_success = (
        select(SyncRun.project_link_id, func.max(SyncRun.finished_at).label("at"))
        .where(SyncRun.status.in_(SYNCED_RUN_STATUSES), SyncRun.dry_run.is_(False))
        .group_by(SyncRun.project_link_id).subquery()
    )
    scheduled = (
        select(Schedule.project_link_id, func.min(Schedule.created_at).label("since"))
        .where(Schedule.enabled.is_(True)).group_by(Schedule.project_link_id).subquery()
    )
    query = (
        select(ProjectLink, last_success.c.at, scheduled.c.since)
        .outerjoin(last_success, last_success.c.project_link_id == ProjectLink.id)
        .outerjoin(scheduled, scheduled.c.project_link_id == ProjectLink.id)
        .order_by(ProjectLink.name, ProjectLink.procore_project_id)
    )
    if connection_id is not None:
        query = query.where(ProjectLink.connection_id == connection_id)
    return [
        ProjectSync(link.id, link.connection_id, link.procore_project_id, link.name, link.time_zone,
                    since is not None, at, since, link.created_at)
        for link, at, since in s.execute(query)
    ]


def ledger_row_counts(s: Session) -> list[tuple[LedgerStatus, str | None, int]]:
    """Ledger rows by status and reason."""
    rows = s.execute(select(LedgerEntry.status, LedgerEntry.reason, func.count())
                     .group_by(LedgerEntry.status, LedgerEntry.reason))
    return [(LedgerStatus(status), reason, n) for status, reason, n in rows]


def oldest_in_status(s: Session, statuses: Iterable[LedgerStatus]) -> dict[LedgerStatus, datetime]:
    """When the oldest row of each status entered it: its latest history row moving it into that status (a
    retry request leaves a failed row failed and does not count), or its creation when it has none."""
    entered = (
        select(func.max(LedgerHistory.at))
        .where(LedgerHistory.ledger_entry_id == LedgerEntry.id,
               LedgerHistory.to_status == cast(LedgerEntry.status, String),
               or_(LedgerHistory.from_status.is_(None), LedgerHistory.from_status != LedgerHistory.to_status))
        .scalar_subquery()
    )
    rows = s.execute(
        select(LedgerEntry.status, func.min(func.coalesce(entered, LedgerEntry.created_at)))
        .where(LedgerEntry.status.in_(list(statuses))).group_by(LedgerEntry.status)
    )
    return {LedgerStatus(status): at for status, at in rows if at is not None}


def runs_created_since(s: Session, since: datetime) -> dict[RunStatus, int]:
    rows = s.execute(select(SyncRun.status, func.count()).where(SyncRun.created_at >= since)
                     .group_by(SyncRun.status))
    return {RunStatus(status): n for status, n in rows}


def connected_company_ids(s: Session) -> list[int]:
    return list(s.scalars(select(Connection.procore_company_id).order_by(Connection.procore_company_id)))


def webhook_delivery_counts(s: Session) -> list[tuple[str, str, int]]:
    """Stored webhook deliveries by source and outcome; none on a database not yet migrated to have them (a web
    process may start before the one-shot migration has run)."""
    if not inspect(s.connection()).has_table(WebhookDelivery.__tablename__):
        return []
    rows = s.execute(select(WebhookDelivery.source, WebhookDelivery.outcome, func.count())
                     .group_by(WebhookDelivery.source, WebhookDelivery.outcome)
                     .order_by(WebhookDelivery.source, WebhookDelivery.outcome))
    return [(source, outcome, n) for source, outcome, n in rows]


# ---------------------------------------------------------------------------- the digest


def digest_connections(s: Session, connection_id: int | None = None) -> list[Connection]:
    """The connections a digest is made for (one, or all), by company id."""
    query = select(Connection).order_by(Connection.procore_company_id)
    if connection_id is not None:
        query = query.where(Connection.id == connection_id)
    return list(s.scalars(query))


def company_name(conn: Connection) -> str:
    """The company's name: `connections.procore_company_name` once the migration that adds it lands, else its
    Procore id in words."""
    return conn.procore_company_name or f"Procore company {conn.procore_company_id}"


def digest_recipients(conn: Connection) -> list[str]:
    """Who receives the company's digest: `connections.digest_recipients`, comma-separated addresses."""
    stored = conn.digest_recipients or ""
    return [address.strip() for address in stored.split(",") if address.strip()]


def digest_local_time(conn: Connection) -> time:
    """When the company's digest goes out, in its digest zone: `connections.digest_local_time` once the migration
    that adds it lands, 07:00 when unset."""
    return conn.digest_local_time or DEFAULT_DIGEST_TIME


def digest_time_zone(conn: Connection, projects: Iterable[ProjectSync]) -> str:
    """The zone the company's days are counted in: `connections.digest_time_zone` once the migration that adds it
    lands; when unset, the zone most of its projects are in, or UTC for a company without projects."""
    stored = conn.digest_time_zone
    if stored:
        return stored
    zones = [p.time_zone for p in projects]
    return max(sorted(set(zones)), key=zones.count) if zones else "UTC"


def skipped_technicians(s: Session, connection_id: int) -> list[SkippedTechnician]:
    """Technicians with entries skipped for a missing or invalid Employee ID, by name, with the hours waiting on
    them and what to fix (the skipped rows' own words, which say it; else the technician's stored problem)."""
    rows = s.execute(
        select(LedgerEntry.st_user_id, LedgerEntry.technician_name, LedgerEntry.reason, ProjectLink.name,
               func.count(), func.coalesce(func.sum(LedgerEntry.hours), 0), func.min(LedgerEntry.work_date),
               func.max(LedgerEntry.work_date), func.max(LedgerEntry.detail), func.max(Technician.problem))
        .join(ProjectLink, ProjectLink.id == LedgerEntry.project_link_id)
        .outerjoin(Technician, and_(Technician.connection_id == LedgerEntry.connection_id,
                                    Technician.st_user_id == LedgerEntry.st_user_id))
        .where(LedgerEntry.connection_id == connection_id, LedgerEntry.status == LedgerStatus.skipped,
               LedgerEntry.reason.in_([r.value for r in EMPLOYEE_ID_SKIPS]))
        .group_by(LedgerEntry.st_user_id, LedgerEntry.technician_name, LedgerEntry.reason, ProjectLink.name)
    )
    found: dict[tuple[int | None, str | None, str], SkippedTechnician] = {}
    for user_id, name, reason, project, n, hours, first, last, detail, problem in rows:
        key = (user_id, name, reason)
        seen = found.get(key)
        if seen is None:
            found[key] = SkippedTechnician(user_id, name or f"ServiceTrade user {user_id}", SkipReason(reason), n,
                                           Decimal(hours), first, last, (project,), detail or problem or "")
            continue
        found[key] = replace(
            seen, entries=seen.entries + n, hours=seen.hours + Decimal(hours),
            first_day=_known(min, seen.first_day, first), last_day=_known(max, seen.last_day, last),
            projects=tuple(sorted({*seen.projects, project})))
    return sorted(found.values(), key=lambda t: (t.name.lower(), t.st_user_id or 0, t.reason))


def _known(pick: Callable[[Iterable[date]], date], *days: date | None) -> date | None:
    known = [d for d in days if d is not None]
    return pick(known) if known else None


def problem_entries(s: Session, connection_id: int, status: LedgerStatus) -> list[ProblemEntry]:
    """The company's rows in `status` (failed, needs_review) by project, date and technician, with the message
    kept on them (for a failed row, Procore's)."""
    rows = s.execute(
        select(ProjectLink.name, LedgerEntry.technician_name, LedgerEntry.st_user_id, LedgerEntry.work_date,
               LedgerEntry.hours, LedgerEntry.cost_code_id, LedgerEntry.detail, LedgerEntry.reason)
        .join(ProjectLink, ProjectLink.id == LedgerEntry.project_link_id)
        .where(LedgerEntry.connection_id == connection_id, LedgerEntry.status == status)
        .order_by(ProjectLink.name, LedgerEntry.work_date, LedgerEntry.technician_name, LedgerEntry.source_key)
    )
    return [
        ProblemEntry(project, name or f"ServiceTrade user {user_id}", work_date, hours, cost_code_id,
                     detail or reason or "no message was kept")
        for project, name, user_id, work_date, hours, cost_code_id, detail, reason in rows
    ]


def posted_hours(s: Session, connection_id: int, start: datetime, end: datetime) -> list[PostedHours]:
    """Hours of the entries posted in [start, end) that are still posted, per project and cost code."""
    rows = s.execute(
        select(ProjectLink.name, ProjectLink.procore_project_id, LedgerEntry.cost_code_id, func.count(),
               func.coalesce(func.sum(LedgerEntry.hours), 0))
        .join(ProjectLink, ProjectLink.id == LedgerEntry.project_link_id)
        .where(LedgerEntry.connection_id == connection_id, LedgerEntry.status == LedgerStatus.posted,
               LedgerEntry.posted_at >= start, LedgerEntry.posted_at < end)
        .group_by(ProjectLink.name, ProjectLink.procore_project_id, LedgerEntry.cost_code_id)
        .order_by(ProjectLink.name, ProjectLink.procore_project_id, LedgerEntry.cost_code_id)
    )
    return [PostedHours(project, project_id, cost_code_id, n, Decimal(hours))
            for project, project_id, cost_code_id, n, hours in rows]
