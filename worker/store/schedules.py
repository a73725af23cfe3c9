"""Schedules of projects: at most one of each kind per project, with the next run in UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from worker.enums import ScheduleKind
from worker.models import ProjectLink, Schedule


def schedule_of_kind(s: Session, link_id: int, kind: ScheduleKind) -> Schedule | None:
    return s.scalars(select(Schedule).where(Schedule.project_link_id == link_id,
                                            Schedule.kind == kind)).one_or_none()


def save_schedule(s: Session, link_id: int, kind: ScheduleKind, *, next_run_at: datetime, **fields: Any) -> Schedule:
    """Set (replace) the project's schedule of that kind, enabled."""
    sched = schedule_of_kind(s, link_id, kind)
    if sched is None:
        sched = Schedule(project_link_id=link_id, kind=kind, next_run_at=next_run_at)
        s.add(sched)
    for name, value in fields.items():
        setattr(sched, name, value)
    sched.next_run_at, sched.enabled = next_run_at, True
    s.flush()
    return sched


def list_schedules(s: Session, link_id: int | None = None) -> list[tuple[Schedule, ProjectLink]]:
    """Schedules with their project's link, the next to run first."""
    query = select(Schedule, ProjectLink).join(ProjectLink)
    if link_id is not None:
        query = query.where(Schedule.project_link_id == link_id)
    return [(sched, link) for sched, link in s.execute(query.order_by(Schedule.next_run_at, Schedule.id))]


def remove_schedule(s: Session, link_id: int, kind: ScheduleKind) -> bool:
    """False when the project has no schedule of that kind."""
    result = s.execute(delete(Schedule).where(Schedule.project_link_id == link_id, Schedule.kind == kind))
    return result.rowcount == 1
