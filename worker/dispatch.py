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
    """Runs whose worker died (their lease ran out: no heartbeat for LEASE_TTL_S) go back to the queue, up to
    MAX_RUN_ATTEMPTS, then end `failed` saying so; queued runs whose message was lost are sent again. The next
    attempt reconciles whatever the dead run had claimed before anything is sent again."""
    settings = get_settings()
    lease = timedelta(seconds=settings.lease_ttl_s)
    runs = s.scalars(
        select(SyncRun)
        .where(
            ((SyncRun.status == RunStatus.running)
             & (func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at) < now - lease))
            | (
                (SyncRun.status == RunStatus.queued)
                & (func.coalesce(SyncRun.enqueued_at, SyncRun.created_at) < now - REQUEUE_AFTER)
            )
        )
        .with_for_update(skip_locked=True)
    ).all()
    again = []
    for run in runs:
        if run.status == RunStatus.running:
            if run.attempts >= settings.max_run_attempts:
                run.status, run.finished_at = RunStatus.failed, now
                run.error = (f"gave up after {run.attempts} attempts: each time the worker running it stopped "
                             "before it finished (its lease ran out); see the worker's log")
                log.error("dispatch.run_abandoned", run_id=run.id, attempts=run.attempts)
                continue
            run.status = RunStatus.queued
            run.error = "recovered: the worker running it stopped before it finished (its lease ran out)"
            log.warning("dispatch.run_recovered", run_id=run.id, attempts=run.attempts)
        again.append(run)
    return _enqueued(again, now)


def _enqueued(runs: list[SyncRun], now: datetime) -> list[int]:
    for run in runs:
        run.enqueued_at = now
    return [r.id for r in runs]
