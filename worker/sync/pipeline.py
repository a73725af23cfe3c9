"""One sync of one project window: DESIGN §3's steps, in order, in `run_sync`.

The order of writes is what makes it exactly-once: new rows are claimed as `pending` and committed before any
POST (apply.py); each POST carries the entry's identity as `origin_id`; whatever did not come back with an answer is
`unknown` and is looked up in Procore (P-6) before it is ever sent again (posting.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from schedules.nextrun import local_to_utc
from schedules.periods import Period
from worker.clients.procore import ProcoreClient
from worker.clients.servicetrade import ServiceTradeClient
from worker.db import HeldLock, ProjectBusy, get_engine, project_lock, session_scope
from worker.enums import UNRESOLVED_STATUSES, LedgerStatus, SkipReason
from worker.models import CostCodeRule, ProjectLink
from worker.projects import cost_code_label
from worker.settings import get_settings
from worker.store import ledger as ledger_store
from worker.store import sync_runs as run_store
from worker.store.ledger import LedgerRow
from worker.store.technicians import store_technicians
from worker.sync.apply import Applier, Decisions, count_decisions, decide
from worker.sync.context import fetch_technicians, load_project_context, side_by_side
from worker.sync.plan import PlannedRow, ProjectContext, plan_rows
from worker.sync.posting import BULK_CHUNK, Poster
from worker.sync.reading import read_events
from worker.sync.report import RunReport
from worker.sync.rounding import describe_rule
from worker.sync.rules import parse_weekdays, parse_window
from worker.sync.types import CostRule, Punch
from worker.text import clean_text

Progress = Callable[[str, int, int], None]
# Skips that come from the technician, not the punches: the row can't be picked in the manual flow.
PERSON_SKIPS = frozenset({SkipReason.no_employee_id, SkipReason.invalid_employee_id})


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


@dataclass(frozen=True)
class Selection:
    """The manual flow of the seed: chosen clock events, one cost code and one cost type."""

    clock_event_ids: frozenset[int]
    cost_code_id: int
    line_item_type_id: int

    def as_rule(self) -> CostRule:
        return CostRule(id=0, priority=0, activity=None, st_user_id=None, weekdays=None, start_window=None,
                        cost_code_id=self.cost_code_id, line_item_type_id=self.line_item_type_id,
                        timecard_time_type_id=None, billable=False, description=None)


@dataclass(frozen=True)
class LinkSnapshot:
    """What a run needs of its project link, read once."""

    link_id: int
    connection_id: int
    project_id: int
    job_id: int | None
    job_number: int | None
    lookback_days: int
    split_mode: str
    rules: tuple[CostRule, ...]


def run_sync(
    link_id: int, window: Period, *, st: ServiceTradeClient, procore: ProcoreClient, now: datetime,
    run_id: int | None = None, database_url: str | None = None, dry_run: bool = False,
    selection: Selection | None = None, progress: Progress | None = None, chunk_size: int = BULK_CHUNK,
    wait: bool = False,
) -> RunReport:
    """DESIGN §3 for one project link and window. Every commit is in a `session_scope` here or in the functions
    named for their step."""
    progress = progress or _no_progress
    manual = selection is not None
    # Step 1: the per-project lock, checked again before every write to Procore.
    # A preview writes nothing, so it needs no lock and never waits for a running sync.
    locking = nullcontext(HeldLock(link_id)) if dry_run else project_lock(get_engine(database_url), link_id, wait=wait)
    with locking as lock:
        with session_scope(database_url) as s:
            link = snapshot(s, link_id)

        # Step 2: what the run needs from Procore and ServiceTrade, read once.
        (ctx, project, codes), technicians = side_by_side(
            lambda: load_project_context(procore, link.project_id, split_mode=link.split_mode,
                                         job_number=link.job_number,
                                         company_max_age_s=get_settings().procore_company_cache_s),
            lambda: fetch_technicians(st, procore),
        )
        labels = {cid: cost_code_label(c) for cid, c in codes.usable.items()}
        labels.update({cid: cost_code_label(c) for cid, (c, _why) in codes.unusable.items()})
        report = RunReport(project_id=link.project_id, project_name=str(project.get("name") or link.project_id),
                           window_start=window.start, window_end=window.end, dry_run=dry_run,
                           awaiting_approval=ctx.timesheets_active, lookback_days=link.lookback_days)
        if not dry_run:
            with session_scope(database_url) as s:  # commit: the project's settings and technicians as just read
                record_context(s, link_id, ctx, project)
                store_technicians(s, link.connection_id, technicians, now)

        # Step 3: the window, widened by the look-back and by a day on each side for pairing.
        scope_start = local_to_utc(window.start - timedelta(days=link.lookback_days), time(0), ctx.tz)
        scope_end = local_to_utc(window.end + timedelta(days=1), time(0), ctx.tz)
        if link.job_id is None:
            raise LookupError(f"project {link.project_id} has no ServiceTrade job; run `stsync project link` first")
        punches = read_events(st, link_id, link.job_id, scope_start - timedelta(hours=24),
                              scope_end + timedelta(hours=24), report, now=now, persist=not dry_run,
                              database_url=database_url, progress=progress)

        # Steps 4–8: pair, round, split, map to cost codes, resolve people.
        explicit = selection.as_rule() if selection is not None else None
        planned = plan_rows(punches, ctx, list(link.rules), {t.st_user_id: t.view() for t in technicians},
                            explicit=explicit)
        if selection is not None:
            planned = selected(planned, selection, punches)
        else:
            planned = [p for p in planned if scope_start <= p.first_punch_at < scope_end]
        by_key = {p.source_key: p for p in planned}

        # Step 9: diff against the ledger.
        def ledger_rows() -> dict[str, LedgerRow]:
            with session_scope(database_url) as s:
                return ledger_store.window_rows(s, link_id, scope_start=scope_start, scope_end=scope_end,
                                                keys=list(by_key) if manual else None)

        rows = ledger_rows()
        if not dry_run:
            refuse_rows_held_elsewhere(rows, run_id, now, database_url)
            engine = get_engine(database_url)
            poster = Poster(procore, link.project_id, run_id, now, report, database_url=database_url,
                            chunk_size=chunk_size, progress=progress, guard=lock.check,
                            concurrency=get_settings().procore_post_concurrency
                            if engine.dialect.name == "postgresql" else 1)  # the SQLite demo writes one at a time
            applier = Applier(poster, link_id, link.connection_id, run_id, now, database_url)
            # Step 10 begins by looking: what Procore has already (a restored or lost database) is adopted.
            if applier.adopt_existing(by_key, rows, window, manual=manual):
                rows = ledger_rows()
        actions = decide(by_key, rows, manual=manual)

        if dry_run:
            report.rounding = describe_rule(ctx.rounding)
            report.labor_cost_codes = sorted(((cid, labels[cid]) for cid in codes.usable), key=lambda c: c[1])
            report.labor_cost_types = sorted((tid, str(t.get("name"))) for tid, t in codes.labor_line_item_types.items())
            report.preview = [preview_row(by_key.get(a.source_key), rows.get(a.source_key), a.kind.value, a.reason,
                                          ctx, labels) for a in actions]
            count_decisions(report, Decisions.of(actions), by_key, window, manual=manual, intended=True)
            with session_scope(database_url) as s:
                report.problems = ledger_store.problems(s, link_id, window.start, window.end)
            return report

        # Steps 10–11: claim and commit, then POST; reconcile before anything is sent again.
        applier.apply(actions, by_key, rows, window, manual=manual)

        # Step 12: what is still wrong in this window, said every time until it is fixed.
        with session_scope(database_url) as s:
            report.unknown = ledger_store.count_status(s, link_id, LedgerStatus.unknown)
            report.problems = ledger_store.problems(s, link_id, window.start, window.end)
            if manual:
                report.entries = [entry_outcome(r, labels) for r in ledger_store.entries_of(s, link_id, list(by_key))]
        return report


def entry_outcome(row: Any, cost_codes: dict[int, str]) -> dict[str, Any]:
    """One entry of a manual sync as the person who chose it reads it."""
    return {"technician": row.technician_name, "date": row.work_date.isoformat() if row.work_date else None,
            "hours": str(row.hours) if row.hours is not None else None, "cost_code_id": row.cost_code_id,
            "cost_code": cost_codes.get(row.cost_code_id) if row.cost_code_id else None,
            "status": row.status.value, "message": row.detail if row.status != LedgerStatus.posted else None,
            "clock_event_id": row.clock_in_event_id}


def refuse_rows_held_elsewhere(rows: dict[str, LedgerRow], run_id: int | None, now: datetime,
                               database_url: str | None) -> None:
    """Fencing (DESIGN §3 step 1): a row claimed by another run that may still be sending it (its lease has not
    run out) is never looked up or sent by this one; the run waits for that run to end instead."""
    others = {r.last_run_id for r in rows.values()
              if r.status in UNRESOLVED_STATUSES and r.last_run_id is not None and r.last_run_id != run_id}
    if not others:
        return
    with session_scope(database_url) as s:
        live = run_store.live_runs(s, others, now, lease=timedelta(seconds=get_settings().lease_ttl_s))
    if live:
        held = sum(1 for r in rows.values() if r.last_run_id in live and r.status in UNRESOLVED_STATUSES)
        raise ProjectBusy(f"{held} entries are claimed by run {', '.join(map(str, sorted(live)))}, which may still "
                          "be sending them; this run waits until that one ends")


def snapshot(s: Any, link_id: int) -> LinkSnapshot:
    link = s.get(ProjectLink, link_id)
    if link is None:
        raise LookupError(f"project link {link_id} does not exist")
    return LinkSnapshot(link.id, link.connection_id, link.procore_project_id, link.st_job_id, link.st_job_number,
                        link.lookback_days, link.split_mode.value, tuple(rule_from_model(r) for r in link.rules))


def record_context(s: Any, link_id: int, ctx: ProjectContext, project: dict[str, Any]) -> None:
    """The project's zone, entry mode, Timesheets state and name as Procore says them now."""
    link = s.get(ProjectLink, link_id)
    link.time_zone = ctx.tz.key
    link.entry_mode = "start_stop" if ctx.start_stop else "hours"
    link.timesheets_active = ctx.timesheets_active
    link.name = clean_text(project.get("name") or link.name, 300, "project name")


def selected(planned: list[PlannedRow], selection: Selection, punches: Sequence[Punch]) -> list[PlannedRow]:
    """The planned rows of the chosen clock events; an id not on the job in the window read is a named error."""
    known = {p.id for p in punches}
    missing = sorted(selection.clock_event_ids - known)
    if missing:
        raise LookupError(
            "clock event(s) " + ", ".join(map(str, missing)) + " were not found on the project's ServiceTrade job "
            "in the window read; check the ids or widen the window (start and end)"
        )
    return [
        p for p in planned
        if p.clock_in_event_id in selection.clock_event_ids or p.clock_out_event_id in selection.clock_event_ids
    ]


def preview_row(
    p: PlannedRow | None, row: LedgerRow | None, action: str, reason: str | None, ctx: ProjectContext,
    cost_codes: dict[int, str] | None = None,
) -> dict[str, Any]:
    tz = ctx.tz

    def hm(at: datetime | None) -> str | None:
        return at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if at else None

    src = p if p is not None else row
    cost_code_id = (p.rule.cost_code_id if p is not None and p.rule else None) or (
        row.cost_code_id if row is not None else None)
    return {
        "source_key": src.source_key if src is not None else None,
        "technician": src.technician_name if src is not None else None,
        "activity": src.activity if src is not None else None,
        "date": src.work_date.isoformat() if src is not None and src.work_date else None,
        "actual_start": hm(src.actual_start) if src is not None else None,
        "actual_end": hm(src.actual_end) if src is not None else None,
        "rounded_start": hm(p.piece_start or p.rounded_start) if p is not None else None,
        "rounded_end": hm(p.piece_end or p.rounded_end) if p is not None else None,
        "hours": str(p.hours) if p is not None and p.hours is not None else None,
        "cost_code_id": cost_code_id,
        "cost_code": (cost_codes or {}).get(cost_code_id, f"cost code {cost_code_id}") if cost_code_id else None,
        "clock_in_event_id": src.clock_in_event_id if src is not None else None,
        "st_user_id": src.st_user_id if src is not None else None,
        "technician_ok": not (p is not None and p.skip_reason in PERSON_SKIPS),
        "rule": (f"#{p.rule.priority}" if p.rule.id else "chosen") if p is not None and p.rule else None,
        "action": action,
        "reason": (p.skip_reason.value if p is not None and p.skip_reason else None) or reason,
        "warning": p.detail if p is not None and p.skip_reason else None,
        "ledger_status": row.status.value if row is not None else None,
        "ledger_detail": row.detail if row is not None else None,
        "approval_status": row.approval_status if row is not None else None,
    }


def rule_from_model(rule: CostCodeRule) -> CostRule:
    return CostRule(
        id=rule.id,
        priority=rule.priority,
        activity=rule.activity,
        st_user_id=rule.st_user_id,
        weekdays=parse_weekdays(rule.weekdays) if rule.weekdays else None,
        start_window=parse_window(rule.start_window) if rule.start_window else None,
        cost_code_id=rule.cost_code_id,
        line_item_type_id=rule.line_item_type_id,
        timecard_time_type_id=rule.timecard_time_type_id,
        billable=rule.billable,
        description=rule.description,
    )
