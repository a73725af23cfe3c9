"""Sync runs (DESIGN §2): created with a unique run key, claimed atomically, finished with their counts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schedules.periods import Period
from worker.db import is_unique_violation
from worker.enums import RunStatus, RunTrigger
from worker.models import ProjectLink, SyncRun


def create_run(
    s: Session, link: ProjectLink, *, trigger: RunTrigger, window: Period, now: datetime, run_key: str | None = None,
    dry_run: bool = False, selection: Any = None, schedule_id: int | None = None, enqueued: bool = False,
) -> int:
    """Insert a queued run and return its id. A run key that exists already (a second beat, a message delivered
    again) returns the run it names instead of making a second one."""
    if run_key is not None:
        existing = s.scalars(select(SyncRun.id).where(SyncRun.run_key == run_key)).one_or_none()
        if existing is not None:
            return existing
    run = new_run(s, link, trigger=trigger, window=window, now=now, run_key=run_key, dry_run=dry_run,
                  selection=selection, schedule_id=schedule_id)
    if run is None:  # lost the insert race to a concurrent delivery of the same message
        return s.scalars(select(SyncRun.id).where(SyncRun.run_key == run_key)).one()
    if enqueued:
        run.enqueued_at = now
    return run.id


def new_run(
    s: Session, link: ProjectLink, *, trigger: RunTrigger, window: Period, now: datetime, run_key: str | None = None,
    dry_run: bool = False, selection: Any = None, schedule_id: int | None = None,
) -> SyncRun | None:
    """Insert a queued run. None when a run with the same key exists (a second beat, a redelivery)."""
    key = run_key or f"{trigger.value}:{link.id}:{window.start}:{window.end}:{now.timestamp():.6f}"
    run = SyncRun(
        run_key=key, project_link_id=link.id, schedule_id=schedule_id, trigger=trigger, window_start=window.start,
        window_end=window.end, dry_run=dry_run, status=RunStatus.queued, attempts=0, created_at=now,
        selection=(
            {"clock_event_ids": sorted(selection.clock_event_ids), "cost_code_id": selection.cost_code_id,
             "line_item_type_id": selection.line_item_type_id}
            if selection else None
        ),
    )
    try:
        with s.begin_nested():
            s.add(run)
            s.flush()
    except IntegrityError as exc:
        if is_unique_violation(exc):
            return None
        raise
    return run


def claim_run(s: Session, run_id: int, now: datetime, *, lease: timedelta) -> bool:
    """Atomically move a run to `running`, with a fresh lease. False when another worker has it or it already
    finished. A `running` run whose lease ran out (no heartbeat for `lease`) belongs to a worker that died and may
    be taken."""
    result = s.execute(
        update(SyncRun)
        .where(
            SyncRun.id == run_id,
            or_(
                SyncRun.status.in_([RunStatus.queued, RunStatus.deferred]),
                (SyncRun.status == RunStatus.running)
                & (func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at) < now - lease),
            ),
        )
        .values(status=RunStatus.running, started_at=now, heartbeat_at=now, attempts=SyncRun.attempts + 1,
                error=None)
    )
    return result.rowcount == 1


def renew_lease(s: Session, run_id: int, now: datetime) -> bool:
    """The running run's heartbeat; False once the run is no longer running (taken over, or finished)."""
    result = s.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == RunStatus.running)
                       .values(heartbeat_at=now))
    return result.rowcount == 1


def live_runs(s: Session, run_ids: set[int], now: datetime, *, lease: timedelta) -> set[int]:
    """Which of these runs may still be working: running, with a lease that has not run out."""
    if not run_ids:
        return set()
    return set(s.scalars(select(SyncRun.id).where(
        SyncRun.id.in_(sorted(run_ids)), SyncRun.status == RunStatus.running,
        func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at) >= now - lease)))


def finish_run(
    s: Session, run_id: int, status: RunStatus, message: str | None, *, at: datetime,
    counts: dict[str, Any] | None = None, next_attempt_at: datetime | None = None,
) -> None:
    run = s.get(SyncRun, run_id)
    if run is None:
        raise LookupError(f"sync run {run_id} does not exist")
    run.status = status
    run.finished_at = at
    run.error = message if status != RunStatus.succeeded else None
    run.next_attempt_at = next_attempt_at
    if counts is not None:
        run.counts = counts


def recent_runs(s: Session, *, link_id: int | None = None, limit: int = 50) -> list[tuple[SyncRun, ProjectLink]]:
    """Runs with their project link, newest first."""
    query = select(SyncRun, ProjectLink).join(ProjectLink)
    if link_id is not None:
        query = query.where(SyncRun.project_link_id == link_id)
    return [(run, link) for run, link in s.execute(query.order_by(SyncRun.id.desc()).limit(limit))]


def run_with_link(s: Session, run_id: int) -> tuple[SyncRun, ProjectLink] | None:
    row = s.execute(select(SyncRun, ProjectLink).join(ProjectLink).where(SyncRun.id == run_id)).first()
    return (row[0], row[1]) if row is not None else None
