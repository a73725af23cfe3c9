"""Syncing, for every front door: a window of a project, its payroll period, chosen clock events (the manual flow),
a preview, a retry, and a queued run by id. Each one becomes a `sync_runs` row first and then runs through the
runner, so a sync started from the CLI, a task, the console or a webhook behaves the same."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from schedules.periods import Period, last_closed_period, period_containing
from worker.db import session_scope
from worker.enums import LedgerStatus, PayrollKind, RunTrigger, ScheduleKind
from worker.inputs import InvalidArgument, id_list, parse_day, parse_window, positive_id
from worker.models import ProjectLink
from worker.service.connections import clients_of, procore_of
from worker.service.rules import ProcoreNames, check_labor
from worker.settings import get_settings
from worker.store import ledger as ledger_store
from worker.store import schedules as schedule_store
from worker.store import sync_runs as run_store
from worker.store import technicians as technician_store
from worker.store.links import find_link
from worker.sync.identity import parse_origin
from worker.sync.pipeline import Progress, Selection, run_sync
from worker.sync.posting import id_of
from worker.sync.rebuild import RebuildResult, rebuild_window
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
    """The manual flow: post the chosen clock events with one cost code and one cost type. Refused before
    anything is claimed: a cost code that is not a budgeted Labor code of the project or a cost type that is not
    Labor (the valid choices named), and events already in Procore (an entry is never silently moved to another
    cost code: that is changed in Procore)."""
    selection = Selection(
        frozenset(id_list(clock_event_ids, "clock_event_ids", most=get_settings().max_event_ids)),
        positive_id(cost_code_id, "cost_code_id"),
        positive_id(line_item_type_id, "line_item_type_id"),
    )
    start, end = parse_day(start, "start"), parse_day(end, "end")
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        _conn, procore = procore_of(s)
        check_labor(ProcoreNames.read(procore, link.procore_project_id), selection.cost_code_id,
                    selection.line_item_type_id)
        taken = ledger_store.in_procore_for_events(s, link.id, sorted(selection.clock_event_ids))
    if taken:
        listed = "; ".join(f"{r.technician_name} on {r.work_date} (clock event {r.clock_in_event_id}, "
                           f"{r.status.value.replace('_', ' ')})" for r in taken[:10])
        raise InvalidArgument(f"{len(taken)} of the chosen events are in Procore already: {listed}. Nothing was "
                              "sent; to move an entry to another cost code, change it in Procore")
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


def retry_failed(project_id: int, ledger_ids: Sequence[int] | None = None, *,
                 now: datetime | None = None) -> RunOutcome | None:
    """Send the failed entries of a project (or only the ledger rows given) again, after someone fixed what
    Procore refused, and look up the unknown ones. None when there is nothing to retry."""
    now = now or datetime.now(UTC)
    ids = id_list(ledger_ids, "ledger_ids", most=get_settings().max_event_ids) if ledger_ids is not None else None
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        dates = ledger_store.reopen_for_retry(s, link.id, at=now, ids=ids)
    if not dates:
        return None
    window = Period(min(dates), max(dates))
    return _run(project_id, lambda _link, _today: window, trigger=RunTrigger.retry, now=now)


def rebuild_ledger(
    project_id: int, start: date | str | None = None, end: date | str | None = None, *, now: datetime | None = None,
) -> RebuildResult:
    """Rebuild a window's ledger rows from Procore and ServiceTrade alone (after a lost or restored database):
    how many entries were adopted, how many Procore holds differently, how many Procore entries match no clock
    event, and how many clock events have no entry yet. Nothing is sent to Procore."""
    start, end = parse_day(start, "start"), parse_day(end, "end")
    now = now or datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        _conn, procore, st = clients_of(s)
        window, link_id = _window(start, end, local_today(link, now)), link.id
    return rebuild_window(link_id, window, st=st, procore=procore, now=now)


def run_by_id(run_id: int, *, task_id: str | None = None) -> RunOutcome:
    """Run a queued (or deferred) run; a run already taken or finished is left alone."""
    return execute_run(positive_id(run_id, "run_id"), task_id=task_id)


@dataclass(frozen=True)
class EventRow:
    """One entry of the clock events table: what a person ticks in the manual flow."""

    number: int  # stable for the window: rows in technician, date and time order
    clock_event_id: int | None  # the clock-in event: what sync_selected takes
    source_key: str | None
    technician: str | None
    technician_ok: bool
    technician_problem: str | None
    date: date | None
    activity: str | None
    actual_in: str | None  # local HH:MM
    actual_out: str | None
    rounded_in: str | None
    rounded_out: str | None
    hours: Decimal | None
    status: str  # in words: not synced / posted, awaiting approval / approved / skipped: why / failed: Procore's words
    ledger_status: LedgerStatus | None
    cost_code: str | None  # the code it was posted with, or the one its rule maps it to
    selectable: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ledger_status": self.ledger_status.value if self.ledger_status else None}


@dataclass(frozen=True)
class HandEntry:
    """An entry in Procore without stsync's identity (typed in by a person) for a technician and day shown."""

    technician: str
    date: date
    hours: Decimal | None


@dataclass(frozen=True)
class Choice:
    id: int
    label: str


@dataclass(frozen=True)
class ClockEventsView:
    """The manual flow's page: what the ServiceTrade app inside Procore shows, with what stsync did with each."""

    project_id: int
    project_name: str
    window: Period
    rounding: str
    approval: str
    rows: list[EventRow]
    lookback_rechecked: int
    lookback_days: int
    cost_codes: list[Choice]
    cost_types: list[Choice]
    hand_entries: list[HandEntry]
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "project_name": self.project_name,
                "window": [self.window.start.isoformat(), self.window.end.isoformat()], "rounding": self.rounding,
                "approval": self.approval, "rows": [r.to_dict() for r in self.rows],
                "lookback_rechecked": self.lookback_rechecked, "lookback_days": self.lookback_days,
                "cost_codes": [asdict(c) for c in self.cost_codes],
                "cost_types": [asdict(c) for c in self.cost_types],
                "hand_entries": [asdict(h) for h in self.hand_entries], "problems": self.problems}


def clock_events(
    project_id: int, start: date | str | None = None, end: date | str | None = None, *, now: datetime | None = None,
) -> ClockEventsView:
    """The clock events of a window with what stsync did or would do with each, the rounding rule in words, the
    budgeted Labor cost codes and cost types to choose from, and entries people typed into Procore for the same
    technicians and days. Reads only: no run is recorded and nothing is written."""
    start, end = parse_day(start, "start"), parse_day(end, "end")
    now = now or datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        _conn, procore, st = clients_of(s)
        today = local_today(link, now)
        if start is None and end is None:
            window = _current_period(s, link.id, today)
        else:
            window = _window(start, end, today)
        link_id = link.id
        parties = {t.procore_party_id: t.name for t in technician_store.list_technicians(s, link.connection_id)
                   if t.procore_party_id}
    report = run_sync(link_id, window, st=st, procore=procore, now=now, dry_run=True)
    inside = [p for p in report.preview if p.get("date") and window.start <= date.fromisoformat(p["date"]) <= window.end]
    inside.sort(key=lambda p: (p.get("technician") or "", p["date"], p.get("rounded_start") or p.get("actual_start") or ""))
    rows = [_event_row(n, p, report.awaiting_approval) for n, p in enumerate(inside, start=1)]
    return ClockEventsView(
        project_id=report.project_id, project_name=report.project_name, window=window, rounding=report.rounding,
        approval=report.budget_note, rows=rows, lookback_rechecked=len(report.preview) - len(inside),
        lookback_days=report.lookback_days,
        cost_codes=[Choice(i, label) for i, label in report.labor_cost_codes],
        cost_types=[Choice(i, label) for i, label in report.labor_cost_types],
        hand_entries=_hand_entries(procore, report.project_id, window, parties), problems=report.problem_lines(),
    )


# Why a row is skipped, in words.
SKIP_WORDS = {
    "no_employee_id": "no Procore Employee ID",
    "invalid_employee_id": "Employee ID matches no Procore employee",
    "unmapped": "no cost code rule matches",
    "open_interval": "still clocked in (or the clock-out is missing)",
    "invalid_interval": "the punches don't make an interval",
    "zero_after_rounding": "0 hours after rounding",
    "excluded_activity": "a break: never posted",
}
# Rows the manual flow may post: not in Procore, and made of a whole interval.
_PICKABLE_SKIPS = {None, "unmapped"}


def _event_row(number: int, p: dict[str, Any], awaiting_approval: bool) -> EventRow:
    status = LedgerStatus(p["ledger_status"]) if p.get("ledger_status") else None
    reason = p.get("reason") if p.get("action") == "skip" or status == LedgerStatus.skipped else None
    technician_ok = bool(p.get("technician_ok", True))
    pickable = technician_ok and reason in _PICKABLE_SKIPS and status in (
        None, LedgerStatus.skipped, LedgerStatus.failed, LedgerStatus.deleted)
    return EventRow(
        number=number, clock_event_id=p.get("clock_in_event_id"), source_key=p.get("source_key"),
        technician=p.get("technician"), technician_ok=technician_ok,
        technician_problem=None if technician_ok else p.get("warning"),
        date=date.fromisoformat(p["date"]), activity=p.get("activity"), actual_in=_hm(p.get("actual_start")),
        actual_out=_hm(p.get("actual_end")), rounded_in=_hm(p.get("rounded_start")),
        rounded_out=_hm(p.get("rounded_end")), hours=Decimal(p["hours"]) if p.get("hours") else None,
        status=_status_words(p, status, reason, awaiting_approval), ledger_status=status, cost_code=p.get("cost_code"),
        selectable=pickable,
    )


def _status_words(p: dict[str, Any], status: LedgerStatus | None, reason: str | None, awaiting: bool) -> str:
    detail = p.get("ledger_detail") or p.get("warning")
    if status == LedgerStatus.posted:
        if p.get("approval_status") in ("approved", "completed"):
            return f"{p['approval_status']} in Procore"
        return "posted, awaiting approval" if awaiting else "posted: counts toward the budget"
    if reason:
        return f"skipped: {SKIP_WORDS.get(reason, reason)}"
    words = {
        LedgerStatus.failed: f"failed: {detail}",
        LedgerStatus.needs_review: f"needs review: {detail}",
        LedgerStatus.unknown: "sent; stsync is checking Procore for it",
        LedgerStatus.pending: "being sent",
        LedgerStatus.deleted: "removed: its clock events changed or vanished",
        LedgerStatus.deleted_in_procore: "deleted in Procore by a person",
    }
    return words.get(status, "not synced") if status is not None else "not synced"


def _hm(local: str | None) -> str | None:
    return local[-5:] if local else None


def _hand_entries(procore: Any, project_id: int, window: Period, names: dict[int, str]) -> list[HandEntry]:
    """Entries of the project for the window's days that carry no stsync identity: typed in by a person."""
    found: list[tuple[int, date, Decimal | None]] = []
    for entry in procore.list_entries(window.start, window.end):
        party_id = id_of(entry, "party")
        if (entry.get("deleted_at") or parse_origin(entry) is not None or id_of(entry, "project") != project_id
                or party_id is None):
            continue
        hours = entry.get("hours")
        found.append((party_id, date.fromisoformat(str(entry["date"])),
                      Decimal(str(hours)).quantize(Decimal("0.01")) if hours else None))
    if any(party not in names for party, _, _ in found):  # a person stsync has not stored yet: ask Procore
        names = {**{int(p["id"]): f"{p.get('first_name', '')} {p.get('last_name', '')}".strip()
                    for p in procore.people(employees_only=False)}, **names}
    return sorted((HandEntry(names.get(party, f"Procore person {party}"), day, hours) for party, day, hours in found),
                  key=lambda h: (h.technician, h.date))


def _current_period(s: Any, link_id: int, today: date) -> Period:
    """The payroll period that holds today (up to today), or the last 7 days without a payroll schedule."""
    schedule = schedule_store.schedule_of_kind(s, link_id, ScheduleKind.payroll)
    if schedule is not None and schedule.payroll_kind:
        period = period_containing(today, PayrollKind(schedule.payroll_kind), schedule.anchor_date)
        return Period(period.start, today)
    return Period(today - timedelta(days=6), today)


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
