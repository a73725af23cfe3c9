"""The dispatcher behind `tasks.schedule.dispatch_due` (DESIGN §5): due schedules become runs with a unique run key,
deferred runs whose time has come are queued again, and runs stranded by a dead worker are recovered."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schedules.nextrun import ScheduleSpec, next_run
from worker.db import session_scope
from worker.enums import PayrollKind, RunStatus, RunTrigger
from worker.models import ProjectLink, Schedule, SyncRun
from worker.settings import get_settings
from worker.store.sync_runs import new_run

log = structlog.get_logger("stsync.dispatch")

# A queued run that no worker took within this long lost its message (broker restart); enqueue it again.
REQUEUE_AFTER = timedelta(minutes=10)


def spec_of(sched: Schedule) -> ScheduleSpec:
    return ScheduleSpec(
        kind=sched.kind.value,
        at=sched.local_time,
        weekday=sched.weekday,
        payroll_kind=PayrollKind(sched.payroll_kind) if sched.payroll_kind else None,
        anchor=sched.anchor_date,
        grace_days=sched.grace_days,
    )


def dispatch_due(now: datetime, database_url: str | None = None) -> list[int]:
    """Returns the run ids to enqueue; everything is committed before it returns."""
    with session_scope(database_url) as s:
        run_ids = _due_schedules(s, now)
        run_ids += _due_deferred(s, now)
        run_ids += _stranded(s, now)
    if run_ids:
        log.info("dispatch.enqueue", run_ids=run_ids)
    return run_ids


def _due_schedules(s: Session, now: datetime) -> list[int]:
    # SKIP LOCKED: a second beat (or a slow previous dispatch) passes over schedules another one is handling.
    due = s.scalars(
        select(Schedule)
        .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
        .order_by(Schedule.next_run_at)
        .with_for_update(skip_locked=True)
    ).all()
    run_ids = []
    for sched in due:
        link = s.get(ProjectLink, sched.project_link_id)
        assert link is not None
        tz = ZoneInfo(link.time_zone)
        spec = spec_of(sched)
        occurrence = next_run(spec, tz, sched.next_run_at - timedelta(seconds=1))
        window = occurrence.window
        run = new_run(
            s, link, trigger=RunTrigger.schedule, window=window, schedule_id=sched.id, now=now,
            run_key=f"schedule:{sched.id}:{window.start}:{window.end}",
        )
        if run is not None:
            run.enqueued_at = now
            run_ids.append(run.id)
        sched.last_run_at = sched.next_run_at
        sched.next_run_at = next_run(spec, tz, max(now, sched.next_run_at)).at_utc
    return run_ids


def _due_deferred(s: Session, now: datetime) -> list[int]:
    runs = s.scalars(
        select(SyncRun)
        .where(SyncRun.status == RunStatus.deferred, SyncRun.next_attempt_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    for run in runs:
        run.status = RunStatus.queued
        run.next_attempt_at = None
    return _enqueued(list(runs), now)


def _stranded(s: Session, now: datetime) -> list[int]:
    limit = timedelta(seconds=get_settings().sync_hard_time_limit_s + 60)
    runs = s.scalars(
        select(SyncRun)
        .where(
            ((SyncRun.status == RunStatus.running) & (SyncRun.started_at < now - limit))
            | (
                (SyncRun.status == RunStatus.queued)
                & (func.coalesce(SyncRun.enqueued_at, SyncRun.created_at) < now - REQUEUE_AFTER)
            )
        )
        .with_for_update(skip_locked=True)
    ).all()
    for run in runs:
        if run.status == RunStatus.running:
            run.status = RunStatus.queued
            run.error = "recovered: the worker running it stopped before it finished"
    return _enqueued(runs, now)


def _enqueued(runs: list[SyncRun], now: datetime) -> list[int]:
    for run in runs:
        run.enqueued_at = now
    return [r.id for r in runs]
