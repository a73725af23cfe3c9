"""When a project syncs by itself (DESIGN §5): nightly, weekly or after each payroll period, in its local time.
Each schedule is checked as a whole when it is set, and its next run is computed then and on every resume."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from schedules.nextrun import ScheduleSpec, next_run
from schedules.periods import Period
from worker.db import session_scope
from worker.dispatch import spec_of
from worker.enums import WEEKDAYS, PayrollKind, ScheduleKind
from worker.inputs import InvalidArgument, parse_day, positive_id
from worker.models import ProjectLink, Schedule
from worker.store import schedules as schedule_store
from worker.store.links import find_link


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as a person reads it: its project by name, when it runs, and its next run in the project's zone.
    `window` is the window the next run covers, given when the schedule was just set."""

    id: int
    project_id: int
    project_name: str
    kind: ScheduleKind
    detail: str  # `fri@18:00`, `biweekly at 06:00, anchor 2026-03-02, +1 day(s) grace`
    next_run_at: datetime
    next_run_local: str
    enabled: bool
    window: Period | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "project_id": self.project_id, "project_name": self.project_name,
                "kind": self.kind.value, "detail": self.detail, "next_run_at": self.next_run_at,
                "next_run_local": self.next_run_local, "enabled": self.enabled}
        if self.window is not None:
            data["window"] = [str(self.window.start), str(self.window.end)]
        return data


def set_schedule(
    project_id: int, kind: ScheduleKind | str, at: time | str, *, weekday: int | str | None = None,
    payroll_kind: PayrollKind | str | None = None, anchor: date | str | None = None, grace_days: int = 0,
    now: datetime | None = None,
) -> ScheduleView:
    """Set (replace) the project's schedule of this kind, enabled, with its next run computed from `now`."""
    project_id = positive_id(project_id, "project_id")
    spec = _spec(kind, at, weekday, payroll_kind, anchor, grace_days)
    now = now or datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, project_id)
        occurrence = next_run(spec, ZoneInfo(link.time_zone), now)
        sched = schedule_store.save_schedule(
            s, link.id, spec.kind, next_run_at=occurrence.at_utc, local_time=spec.at, weekday=spec.weekday,
            payroll_kind=spec.payroll_kind.value if spec.payroll_kind else None, anchor_date=spec.anchor,
            grace_days=spec.grace_days)
        return schedule_view(sched, link, window=occurrence.window)


def list_schedules(project_id: int | None = None) -> list[ScheduleView]:
    """Every schedule (or those of one project), the next to run first."""
    with session_scope() as s:
        link_id = find_link(s, positive_id(project_id, "project_id")).id if project_id is not None else None
        return [schedule_view(sched, link) for sched, link in schedule_store.list_schedules(s, link_id)]


def remove_schedule(project_id: int, kind: ScheduleKind | str) -> None:
    kind = _kind(kind)
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        if not schedule_store.remove_schedule(s, link.id, kind):
            raise LookupError(f"project {project_id} has no {kind.value} schedule")


def pause_schedule(project_id: int, kind: ScheduleKind | str) -> ScheduleView:
    """Stop the schedule from running until it is resumed; it is kept as it is."""
    with session_scope() as s:
        sched, link = _stored(s, project_id, kind)
        sched.enabled = False
        return schedule_view(sched, link)


def resume_schedule(project_id: int, kind: ScheduleKind | str, *, now: datetime | None = None) -> ScheduleView:
    """Run the schedule again from its next occurrence after `now`: the runs missed while paused are not made up
    (a sync of a longer window does that)."""
    now = now or datetime.now(UTC)
    with session_scope() as s:
        sched, link = _stored(s, project_id, kind)
        occurrence = next_run(spec_of(sched), ZoneInfo(link.time_zone), now)
        sched.enabled, sched.next_run_at = True, occurrence.at_utc
        return schedule_view(sched, link, window=occurrence.window)


def schedule_view(sched: Schedule, link: ProjectLink, *, window: Period | None = None) -> ScheduleView:
    detail = sched.local_time.strftime("%H:%M")
    if sched.kind is ScheduleKind.weekly and sched.weekday is not None:
        detail = f"{WEEKDAYS[sched.weekday]}@{detail}"
    if sched.kind is ScheduleKind.payroll:
        detail = (f"{sched.payroll_kind} at {detail}" + (f", anchor {sched.anchor_date}" if sched.anchor_date else "")
                  + (f", +{sched.grace_days} day(s) grace" if sched.grace_days else ""))
    return ScheduleView(
        id=sched.id, project_id=link.procore_project_id, project_name=link.name, kind=sched.kind, detail=detail,
        next_run_at=sched.next_run_at,
        next_run_local=sched.next_run_at.astimezone(ZoneInfo(link.time_zone)).strftime("%Y-%m-%d %H:%M %Z"),
        enabled=sched.enabled, window=window,
    )


def _stored(s: Session, project_id: int, kind: ScheduleKind | str) -> tuple[Schedule, ProjectLink]:
    kind = _kind(kind)
    link = find_link(s, positive_id(project_id, "project_id"))
    sched = schedule_store.schedule_of_kind(s, link.id, kind)
    if sched is None:
        raise LookupError(f"project {project_id} has no {kind.value} schedule")
    return sched, link


def _spec(
    kind: ScheduleKind | str, at: time | str, weekday: int | str | None, payroll_kind: PayrollKind | str | None,
    anchor: date | str | None, grace_days: int,
) -> ScheduleSpec:
    kind = _kind(kind)
    try:
        return ScheduleSpec(
            kind=kind, at=_local_time(at), weekday=_weekday(weekday), grace_days=grace_days,
            payroll_kind=PayrollKind(payroll_kind) if payroll_kind else None,
            anchor=parse_day(anchor, "anchor") if kind is ScheduleKind.payroll else None,
        )
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _kind(kind: ScheduleKind | str) -> ScheduleKind:
    try:
        return ScheduleKind(kind)
    except ValueError:
        raise InvalidArgument(f"schedule kind must be one of {', '.join(ScheduleKind)}, got {kind!r}") from None


def _local_time(value: time | str) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"the time of a schedule must be a local time as HH:MM, got {value!r}") from None


def _weekday(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    day = value.strip().lower()[:3]
    if day not in WEEKDAYS:
        raise InvalidArgument(f"the weekday of a schedule must be one of {', '.join(WEEKDAYS)}, got {value!r}")
    return WEEKDAYS.index(day)
