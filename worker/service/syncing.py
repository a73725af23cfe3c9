"""Syncing, for every front door: a window of a project, its payroll period, chosen clock events (the manual flow),
a preview, a retry, and a queued run by id. Each one becomes a `sync_runs` row first and then runs through the
runner, so a sync started from the CLI, a task, the console or a webhook behaves the same."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from schedules.periods import Period, last_closed_period, period_containing
from worker.db import session_scope
from worker.enums import PayrollKind, RunTrigger, ScheduleKind
from worker.inputs import InvalidArgument, id_list, parse_day, parse_window, positive_id
from worker.models import ProjectLink
from worker.settings import get_settings
from worker.store import ledger as ledger_store
from worker.store import schedules as schedule_store
from worker.store import sync_runs as run_store
from worker.store.links import find_link
from worker.sync.pipeline import Progress, Selection
from worker.sync.runner import RunOutcome, execute_run

WindowOf = Callable[[ProjectLink, date], Period]


def local_today(link: ProjectLink, now: datetime) -> date:
    return now.astimezone(ZoneInfo(link.time_zone)).date()


def sync_window(
    project_id: int, start: date | str | None = None, end: date | str | None = None, *, dry_run: bool = False,
    trigger: RunTrigger = RunTrigger.cli, progress: Progress | None = None, task_id: str | None = None,
    now: datetime | None = None,
) -> RunOutcome:
    """Sync a window of local dates (both included; default: today in the project's zone) plus the look-back."""
    start, end = parse_day(start, "start"), parse_day(end, "end")  # checked before anything else happens
    return _run(project_id, lambda _link, today: _window(start, end, today), trigger=trigger, dry_run=dry_run,
                progress=progress, task_id=task_id, now=now)


def enqueue_sync(
    project_id: int, start: date | str | None = None, end: date | str | None = None, *, dry_run: bool = False,
    trigger: RunTrigger = RunTrigger.cli, now: datetime | None = None,
) -> int:
    """Queue a run of the window for the workers; returns its id. The message goes out after the commit, so a
    worker never receives a run it can't see yet."""
    from worker.app import app

    now = now or datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        window = _window(start, end, local_today(link, now))
        run_id = run_store.create_run(s, link, trigger=trigger, window=window, dry_run=dry_run, now=now,
                                      enqueued=True)
    app.send_task("tasks.sync.run", kwargs={"run_id": run_id}, queue="sync")
    return run_id


def preview_events(
    project_id: int, start: date | str | None = None, end: date | str | None = None, *, now: datetime | None = None,
) -> RunOutcome:
    """What a sync of the window would do, changing nothing: actual and rounded times, rule, warnings and ledger
    status of each entry of the window's dates."""
    outcome = sync_window(project_id, start, end, dry_run=True, now=now)
    report = outcome.report
    if report is not None:
        report.preview = [p for p in report.preview
                          if p.get("date") and report.window_start <= date.fromisoformat(p["date"]) <= report.window_end]
    return outcome


def sync_selected(
    project_id: int, clock_event_ids: Sequence[int], cost_code_id: int, line_item_type_id: int,
    start: date | str | None = None, end: date | str | None = None, *, trigger: RunTrigger = RunTrigger.manual,
    task_id: str | None = None, now: datetime | None = None,
) -> RunOutcome:
    """The manual flow: post the chosen clock events with one cost code and one cost type."""
    selection = Selection(
        frozenset(id_list(clock_event_ids, "clock_event_ids", most=get_settings().max_event_ids)),
        positive_id(cost_code_id, "cost_code_id"),
        positive_id(line_item_type_id, "line_item_type_id"),
    )
    start, end = parse_day(start, "start"), parse_day(end, "end")
    return _run(project_id, lambda _link, today: _window(start, end, today), trigger=trigger, selection=selection,
                task_id=task_id, now=now)


def sync_payroll_period(
    project_id: int, period_start: date | str | None = None, *, trigger: RunTrigger = RunTrigger.task,
    task_id: str | None = None, now: datetime | None = None,
) -> RunOutcome:
    """The payroll period of the project's payroll schedule that starts on `period_start`, or the last closed one."""
    start_day = parse_day(period_start, "period_start")
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        schedule = schedule_store.schedule_of_kind(s, link.id, ScheduleKind.payroll)
        kind, anchor = (schedule.payroll_kind, schedule.anchor_date) if schedule is not None else (None, None)

    def payroll_window(link: ProjectLink, today: date) -> Period:
        if kind is None:
            raise InvalidArgument(
                f"project {link.procore_project_id} has no payroll schedule, so its periods are unknown; set one "
                f"with `stsync schedule set {link.procore_project_id} --payroll weekly|biweekly|semimonthly|monthly "
                "--at HH:MM`"
            )
        payroll = PayrollKind(kind)
        if start_day is None:
            return last_closed_period(today, payroll, anchor)
        period = period_containing(start_day, payroll, anchor)
        if period.start != start_day:
            raise InvalidArgument(
                f"period_start {start_day} is not the first day of a {payroll.value} payroll period "
                f"(that day lies in {period.start}..{period.end})"
            )
        return period

    return _run(project_id, payroll_window, trigger=trigger, task_id=task_id, now=now)


def retry_failed(project_id: int, *, now: datetime | None = None) -> RunOutcome | None:
    """Send the failed entries of a project again (after someone fixed what Procore refused) and look up the
    unknown ones. None when there is nothing to retry."""
    now = now or datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        dates = ledger_store.reopen_for_retry(s, link.id, at=now)
    if not dates:
        return None
    window = Period(min(dates), max(dates))
    return _run(project_id, lambda _link, _today: window, trigger=RunTrigger.retry, now=now)


def run_by_id(run_id: int, *, task_id: str | None = None) -> RunOutcome:
    """Run a queued (or deferred) run; a run already taken or finished is left alone."""
    return execute_run(positive_id(run_id, "run_id"), task_id=task_id)


def _window(start: date | str | None, end: date | str | None, today: date) -> Period:
    return parse_window(start, end, today=today, max_days=get_settings().max_window_days)


def _run(
    project_id: int, window_of: WindowOf, *, trigger: RunTrigger, dry_run: bool = False,
    selection: Selection | None = None, progress: Progress | None = None, task_id: str | None = None,
    now: datetime | None = None,
) -> RunOutcome:
    """Create the run (or, for a task message delivered again, find the one it made), then run it here."""
    project_id = positive_id(project_id, "project_id")
    now = now or datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        window = window_of(link, local_today(link, now))
        run_key = f"task:{task_id}" if task_id else None
        run_id = run_store.create_run(s, link, trigger=trigger, window=window, dry_run=dry_run, selection=selection,
                                      run_key=run_key, now=now)
    return execute_run(run_id, now=now, progress=progress, task_id=task_id)
