"""Turning a request (a task, a CLI call) into a sync_run: its window, and a run key that makes a redelivered
message find its first run instead of making a second one."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules.periods import Period, last_closed_period, period_containing
from worker.enums import PayrollKind, RunTrigger, ScheduleKind
from worker.models import ProjectLink, Schedule, SyncRun
from worker.sync.pipeline import Selection
from worker.sync.runner import create_run


def local_today(link: ProjectLink, now: datetime) -> date:
    return now.astimezone(ZoneInfo(link.time_zone)).date()


def request_window(link: ProjectLink, start: date | None, end: date | None, now: datetime) -> Period:
    """Defaults: the window ends today in the project's zone and starts where it ends (the look-back adds more)."""
    end = end or local_today(link, now)
    start = start or end
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    return Period(start, end)


def payroll_window(s: Session, link: ProjectLink, period_start: date | None, now: datetime) -> Period:
    """The payroll period of the project's payroll schedule: the one starting at `period_start`, or the last closed."""
    sched = s.scalars(
        select(Schedule).where(Schedule.project_link_id == link.id, Schedule.kind == ScheduleKind.payroll)
    ).first()
    if sched is None or sched.payroll_kind is None:
        raise ValueError(
            f"project {link.procore_project_id} has no payroll schedule, so its periods are unknown; set one with "
            f"`stsync schedule set {link.procore_project_id} --payroll weekly|biweekly|semimonthly|monthly --at HH:MM`"
        )
    kind = PayrollKind(sched.payroll_kind)
    if period_start is None:
        return last_closed_period(local_today(link, now), kind, sched.anchor_date)
    period = period_containing(period_start, kind, sched.anchor_date)
    if period.start != period_start:
        raise ValueError(
            f"period_start {period_start} is not the first day of a {kind.value} payroll period "
            f"(that day lies in {period.start}..{period.end})"
        )
    return period


def start_run(
    s: Session,
    link: ProjectLink,
    task_id: str | None,
    trigger: RunTrigger,
    window: Period,
    *,
    dry_run: bool = False,
    selection: Selection | None = None,
    now: datetime,
) -> int:
    """Create the run of one task message, or find it when the message is delivered again."""
    key = f"task:{task_id}" if task_id else None
    if key is not None:
        existing = s.scalars(select(SyncRun).where(SyncRun.run_key == key)).one_or_none()
        if existing is not None:
            return existing.id
    run = create_run(
        s, link, trigger=trigger, window=window, run_key=key, dry_run=dry_run, selection=selection, now=now
    )
    if run is None:  # lost the insert race to a concurrent delivery of the same message
        return s.scalars(select(SyncRun.id).where(SyncRun.run_key == key)).one()
    s.flush()
    return run.id
