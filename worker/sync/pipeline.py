"""One sync of one project window (DESIGN §3 steps 1–12).

The order of writes is what makes it exactly-once: new rows are claimed as `pending` and committed before any POST;
each POST carries the ledger id as `origin_id`; whatever did not come back with an answer is `unknown` and is looked
up in Procore (P-6) before it is ever sent again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, NamedTuple

import structlog
from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Text,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from schedules.nextrun import local_to_utc
from schedules.periods import Period
from worker.clients.errors import (
    BulkValidationFailed,
    EntryLocked,
    NotFound,
    OutcomeUnknown,
    ValidationFailed,
)
from worker.clients.procore import ProcoreClient
from worker.clients.servicetrade import ServiceTradeClient
from worker.db import (
    dialect_insert,
    get_engine,
    insert_many,
    one_of,
    project_lock,
    session_scope,
    staged,
    update_rows,
)
from worker.enums import LedgerStatus
from worker.models import (
    ClockEvent,
    CostCodeRule,
    LedgerEntry,
    LedgerHistory,
    ProjectLink,
    UtcDateTime,
)
from worker.settings import get_settings
from worker.store.technicians import store_technicians
from worker.sync.context import ResolvedTechnician, fetch_technicians, load_project_context
from worker.sync.diff import Action, ActionKind, Desired, LedgerView, diff
from worker.sync.events import EventProblem, punch_from_event
from worker.sync.plan import PlannedRow, ProjectContext, plan_rows
from worker.sync.rules import parse_weekdays, parse_window
from worker.sync.types import CostRule, Punch

log = structlog.get_logger("stsync.sync")

BULK_CHUNK = 100
RECONCILE_ROUNDS = 3
OPEN_STATUSES = (LedgerStatus.pending, LedgerStatus.unknown)
EVENT_BATCH = 2000  # clock events per upsert while reading
ID_LOOKUP_SLICE = 1000  # ids or keys per lookup (SQLite caps the bound parameters of one statement)
# What ServiceTrade says of a punch; a stored event is rewritten only when one of these changed.
EVENT_FIELDS = ("st_user_id", "user_name", "st_job_id", "activity", "event_type", "event_time", "source", "st_updated")
# The ledger columns a run decides with: the diff, claims, reconciliation, updates, deletes, the preview, and
# the comparison of a skipped row with what it would be now. Not the payload (re-read where it is sent again).
LEDGER_ROW = tuple(c for c in LedgerEntry.__table__.c if c.name not in (
    "payload", "description", "connection_id", "project_link_id", "created_at", "updated_at", "claimed_at",
    "posted_at"))
_ABSENT = object()
# The ledger columns a POST, its outcome and a reconciliation need (rows of these, not ORM objects).
SENDABLE = (LedgerEntry.id, LedgerEntry.source_key, LedgerEntry.content_hash, LedgerEntry.payload,
            LedgerEntry.hours, LedgerEntry.status, LedgerEntry.work_date, LedgerEntry.party_id)


class LedgerRow(SimpleNamespace):
    """A ledger row as the run read it under the project lock, as plain attributes: a look-back holds thousands,
    far cheaper to load this way than as ORM objects, and every write is a statement anyway. It carries the
    LEDGER_ROW columns."""


class Sendable(NamedTuple):
    """What a POST, its outcome and a reconciliation need of a ledger row, as committed."""

    id: int
    source_key: str
    content_hash: str | None
    payload: dict[str, Any] | None
    hours: Decimal | None
    status: LedgerStatus
    work_date: date | None
    party_id: int | None



@dataclass(frozen=True)
class Selection:
    """The manual flow of the seed: chosen clock events, one cost code and one cost type."""

    clock_event_ids: frozenset[int]
    cost_code_id: int
    line_item_type_id: int


@dataclass
class RunReport:
    project_id: int
    project_name: str
    window_start: date
    window_end: date
    dry_run: bool
    awaiting_approval: bool = False
    posted: int = 0
    hours: Decimal = Decimal("0.00")
    unchanged: int = 0
    updated: int = 0
    deleted: int = 0
    needs_review: int = 0
    failed: int = 0
    unknown: int = 0
    later: int = 0
    retired: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    malformed_events: list[str] = field(default_factory=list)
    procore_writes: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)

    @property
    def budget_note(self) -> str:
        if self.awaiting_approval:
            return "entries wait on the project's Timesheets for review and approval before they count"
        return "the Timesheets tool is off on this project: entries count toward the Labor budget at once"

    def counts(self) -> dict[str, Any]:
        return {
            "posted": self.posted,
            "hours": str(self.hours),
            "unchanged": self.unchanged,
            "updated": self.updated,
            "deleted": self.deleted,
            "needs_review": self.needs_review,
            "failed": self.failed,
            "unknown": self.unknown,
            "later": self.later,
            "retired": self.retired,
            "skipped": dict(sorted(self.skipped.items())),
            "malformed_events": len(self.malformed_events),
            "procore_writes": self.procore_writes,
            "awaiting_approval": self.awaiting_approval,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "project_name": self.project_name,
            "window": [self.window_start.isoformat(), self.window_end.isoformat()],
            "dry_run": self.dry_run,
            **self.counts(),
            "budget": self.budget_note,
            "malformed": self.malformed_events,
            **({"preview": self.preview} if self.preview else {}),
        }


Progress = Callable[[str, int, int], None]


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


class SyncPipeline:
    """Runs DESIGN §3 for one project link. Construct per run; not thread-safe."""

    def __init__(
        self,
        link_id: int,
        *,
        st: ServiceTradeClient,
        procore: ProcoreClient,
        now: datetime,
        database_url: str | None = None,
        run_id: int | None = None,
        progress: Progress | None = None,
        chunk_size: int = BULK_CHUNK,
    ) -> None:
        self.link_id = link_id
        self.st = st
        self.procore = procore
        self.now = now.astimezone(UTC)
        self.database_url = database_url
        self.run_id = run_id
        self.progress = progress or _no_progress
        self.chunk_size = chunk_size
        self.log = log.bind(link_id=link_id, run_id=run_id)
        self.connection_id = self.project_id = 0  # read from the link when the run starts

    # ------------------------------------------------------------------ entry point

    def run(
        self, window: Period, *, dry_run: bool = False, selection: Selection | None = None, wait: bool = False
    ) -> RunReport:
        engine = get_engine(self.database_url)
        with project_lock(engine, self.link_id, wait=wait):
            return self._run_locked(window, dry_run=dry_run, selection=selection)

    def _run_locked(self, window: Period, *, dry_run: bool, selection: Selection | None) -> RunReport:
        with session_scope(self.database_url) as s:
            link = s.get(ProjectLink, self.link_id)
            if link is None:
                raise LookupError(f"project link {self.link_id} does not exist")
            rules = [rule_from_model(r) for r in link.rules]
            job_id, job_number, lookback = link.st_job_id, link.st_job_number, link.lookback_days
            split_mode, project_id = link.split_mode.value, link.procore_project_id
            self.connection_id, self.project_id = link.connection_id, project_id

        # Step 2: refresh what the run needs, once.
        ctx, project, _codes = load_project_context(
            self.procore, project_id, split_mode=split_mode, job_number=job_number,
            company_max_age_s=get_settings().procore_company_cache_s,
        )
        technicians = fetch_technicians(self.st, self.procore)
        report = RunReport(
            project_id=project_id,
            project_name=str(project.get("name") or project_id),
            window_start=window.start,
            window_end=window.end,
            dry_run=dry_run,
            awaiting_approval=ctx.timesheets_active,
        )
        if not dry_run:
            self._store_context(ctx, project, technicians)

        # Step 3: the window, widened by the look-back and by a day on each side for pairing.
        scope_start = local_to_utc(window.start - timedelta(days=lookback), time(0), ctx.tz)
        window_end_utc = local_to_utc(window.end + timedelta(days=1), time(0), ctx.tz)
        read_start, read_end = scope_start - timedelta(hours=24), window_end_utc + timedelta(hours=24)
        punches = self._read_events(job_id, read_start, read_end, report, persist=not dry_run)

        # Steps 4–8.
        explicit = None
        if selection is not None:
            explicit = CostRule(
                id=0, priority=0, activity=None, st_user_id=None, weekdays=None, start_window=None,
                cost_code_id=selection.cost_code_id, line_item_type_id=selection.line_item_type_id,
                timecard_time_type_id=None, billable=False, description=None,
            )
        views = {t.st_user_id: t.view() for t in technicians}
        planned = plan_rows(punches, ctx, rules, views, explicit=explicit)
        if selection is not None:
            planned = _selected(planned, selection, punches)
        else:
            planned = [p for p in planned if scope_start <= p.first_punch_at < window_end_utc]
        by_key = {p.source_key: p for p in planned}

        # Step 9.
        with session_scope(self.database_url) as s:
            rows = self._ledger_rows(s, planned, scope_start, window_end_utc, selection is not None)
        actions = self._decide(by_key, rows, manual=selection is not None)

        if dry_run:
            report.preview = [preview_row(by_key.get(a.source_key), rows.get(a.source_key), a.kind.value, a.reason, ctx)
                              for a in actions]
            self._count_dry(report, actions, by_key, window)
            return report

        # Steps 10–11.
        self._apply(actions, by_key, rows, ctx, window, report, manual=selection is not None)
        report.unknown = self._count_status(LedgerStatus.unknown)
        return report

    # ------------------------------------------------------------------ step 2 / 3 persistence

    def _store_context(
        self, ctx: ProjectContext, project: dict[str, Any], techs: Sequence[ResolvedTechnician]
    ) -> None:
        with session_scope(self.database_url) as s:
            link = s.get(ProjectLink, self.link_id)
            assert link is not None
            link.time_zone = ctx.tz.key
            link.entry_mode = "start_stop" if ctx.start_stop else "hours"
            link.timesheets_active = ctx.timesheets_active
            link.name = str(project.get("name") or link.name)
            store_technicians(s, self.connection_id, techs, self.now)

    def _read_events(
        self, job_id: int | None, start: datetime, end: datetime, report: RunReport, *, persist: bool
    ) -> list[Punch]:
        if job_id is None:
            raise LookupError(
                f"project link {self.link_id} has no ServiceTrade job; run `stsync project link` first"
            )
        punches: list[Punch] = []
        seen: set[int] = set()
        batch: list[dict[str, Any]] = []
        stored = self._stored_events(start, end) if persist else {}
        events = self.st.clock_events(job_id=job_id, start_time=int(start.timestamp()), end_time=int(end.timestamp()))
        for n, raw in enumerate(events, start=1):
            try:
                punch = punch_from_event(raw)
            except EventProblem as problem:
                report.malformed_events.append(str(problem))
                self.log.warning("sync.malformed_event", problem=str(problem))
                if problem.event_id is not None:
                    seen.add(problem.event_id)
                continue
            if punch.id in seen:
                continue  # a repeated page: the same event twice is still one punch
            seen.add(punch.id)
            punches.append(punch)
            if persist:
                values = _event_values(punch, raw)
                if stored.get(punch.id) != values:  # new, changed or back
                    batch.append({"project_link_id": self.link_id, "st_event_id": punch.id,
                                  **dict(zip(EVENT_FIELDS, values, strict=True)),
                                  "first_seen_at": self.now, "changed_at": self.now})
                if len(batch) >= EVENT_BATCH:
                    self._upsert_events(batch)
                    batch = []
            if n % 1000 == 0:
                self.progress("read", n, 0)
        if persist:
            if batch:
                self._upsert_events(batch)
            self._mark_vanished([event_id for event_id in stored if event_id not in seen])
        return punches

    def _stored_events(self, start: datetime, end: datetime) -> dict[int, tuple[Any, ...]]:
        """The listed events stored for the read range, by ServiceTrade id: what a re-read is compared with."""
        with session_scope(self.database_url) as s:
            rows = s.execute(
                select(ClockEvent.st_event_id, *(getattr(ClockEvent, k) for k in EVENT_FIELDS)).where(
                    ClockEvent.project_link_id == self.link_id,
                    ClockEvent.event_time >= start,
                    ClockEvent.event_time <= end,
                    ClockEvent.deleted_at.is_(None),
                )
            )
            return {row[0]: tuple(row[1:]) for row in rows}

    def _upsert_events(self, batch: list[dict[str, Any]]) -> None:
        """New and changed events, in one INSERT ... ON CONFLICT DO UPDATE, which rewrites a stored row only when
        a value differs or it had vanished (an event that moved in time from outside the range read is stored
        already). A look-back re-reads weeks of unchanged punches on every run: those were compared in memory and
        never reach this."""
        table = ClockEvent.__table__
        with session_scope(self.database_url) as s:
            stmt = dialect_insert(s, table)
            source = staged(s, table, batch)
            if source is not None:
                stmt = stmt.from_select([c.name for c in source.selected_columns], source)
            changed = [table.c[k].is_distinct_from(stmt.excluded[k]) for k in EVENT_FIELDS]
            upsert = stmt.on_conflict_do_update(
                index_elements=["project_link_id", "st_event_id"],
                set_={**{k: stmt.excluded[k] for k in EVENT_FIELDS}, "changed_at": stmt.excluded.changed_at,
                      "deleted_at": None},
                where=or_(*changed, table.c.deleted_at.is_not(None)),
            )
            if source is not None:
                s.execute(upsert)
            else:
                s.execute(upsert, batch)

    def _mark_vanished(self, gone: list[int]) -> None:
        """Stored events in the read range that ServiceTrade no longer lists."""
        if not gone:
            return
        with session_scope(self.database_url) as s:
            for part in slices(gone, ID_LOOKUP_SLICE):
                s.execute(update(ClockEvent).where(
                    ClockEvent.project_link_id == self.link_id, one_of(s, ClockEvent.st_event_id, part),
                ).values(deleted_at=self.now))

    # ------------------------------------------------------------------ step 9

    def _ledger_rows(
        self, s: Session, planned: Sequence[PlannedRow], scope_start: datetime, scope_end: datetime, manual: bool
    ) -> dict[str, LedgerRow]:
        base = select(*LEDGER_ROW).where(LedgerEntry.project_link_id == self.link_id)
        if manual:
            keys = [p.source_key for p in planned]
            query = base.where(one_of(s, LedgerEntry.source_key, keys)) if keys else None
        else:
            query = base.where(
                or_(
                    (LedgerEntry.actual_start >= scope_start) & (LedgerEntry.actual_start < scope_end),
                    LedgerEntry.status.in_(OPEN_STATUSES),
                )
            )
        if query is None:
            return {}
        return {row.source_key: LedgerRow(**row._asdict()) for row in s.execute(query)}

    def _decide(self, planned: dict[str, PlannedRow], rows: dict[str, LedgerRow], *, manual: bool) -> list[Action]:
        desired = {
            key: Desired(
                source_key=key,
                content_hash=p.content_hash,
                skip_reason=p.skip_reason,
                source_derived=p.source_derived,
            )
            for key, p in planned.items()
        }
        ledger = {key: ledger_view(row, manual_override=manual) for key, row in rows.items()}
        return diff(desired, ledger)

    # ------------------------------------------------------------------ steps 10–11

    def _apply(
        self,
        actions: list[Action],
        planned: dict[str, PlannedRow],
        rows: dict[str, LedgerRow],
        ctx: ProjectContext,
        window: Period,
        report: RunReport,
        *,
        manual: bool,
    ) -> None:
        by_kind: dict[ActionKind, list[Action]] = {}
        for action in actions:
            by_kind.setdefault(action.kind, []).append(action)

        # Rows whose earlier POST has no known outcome are looked up before anything else is decided for them.
        reconcile = [rows[a.source_key] for a in by_kind.pop(ActionKind.reconcile, [])]
        if reconcile:
            found = self._reconcile(reconcile)
            again = {r.source_key: r for r in reconcile}
            for row in again.values():
                row.status, row.procore_entry_id, row.approval_status = found.get(
                    row.id, (LedgerStatus.deleted, None, None)
                )
            second = diff(
                self._desired_for(planned, again),
                {k: ledger_view(v, manual_override=manual) for k, v in again.items()},
            )
            for action in second:
                by_kind.setdefault(action.kind, []).append(action)
            # Absent from Procore and no longer planned in this scope: send the payload that was claimed.
            stale = [row for key, row in again.items() if key not in planned and row.status == LedgerStatus.deleted]
            if stale:
                self._post_all(self._sendable([r.id for r in stale]), report)

        report.unchanged += len(by_kind.get(ActionKind.unchanged, []))
        self._record_unchanged(by_kind.get(ActionKind.unchanged, []), rows)
        self._record_skips(by_kind.get(ActionKind.skip, []), planned, rows, report)
        self._retire(by_kind.get(ActionKind.retire, []), rows, report)

        changes = by_kind.get(ActionKind.update, []) + by_kind.get(ActionKind.delete, [])
        approved = self._approved_now([rows[a.source_key] for a in changes]) if changes else set()
        reviews = list(by_kind.get(ActionKind.needs_review, []))
        updates, deletes = [], []
        for action in changes:
            row = rows[action.source_key]
            if row.procore_entry_id in approved:
                reviews.append(Action(ActionKind.needs_review, action.source_key, "approved in Procore"))
            elif action.kind == ActionKind.update:
                updates.append(action)
            else:
                deletes.append(action)
        self._needs_review(reviews, planned, rows, report)
        self._update(updates, planned, rows, report)
        self._delete(deletes, rows, report)

        creates = []
        for action in by_kind.get(ActionKind.create, []):
            p = planned[action.source_key]
            if p.work_date is not None and p.work_date > window.end and not manual:
                report.later += 1  # its day is after the window: a later run posts it
                continue
            creates.append(p)
        self._create(creates, rows, report, manual=manual)

    def _desired_for(self, planned: dict[str, PlannedRow], rows: dict[str, LedgerRow]) -> dict[str, Desired]:
        return {
            k: Desired(k, planned[k].content_hash, planned[k].skip_reason, planned[k].source_derived)
            for k in rows
            if k in planned
        }

    def _create(self, creates: list[PlannedRow], rows: dict[str, LedgerRow], report: RunReport, *, manual: bool) -> None:
        if not creates:
            return
        claimed = self._claim(creates, rows, manual=manual)
        self._post_all(claimed, report)

    def _claim(self, creates: list[PlannedRow], rows: dict[str, LedgerRow], *, manual: bool) -> list[Sendable]:
        """Step 10: write the rows as `pending` and commit before anything is sent. New rows are inserted in bulk
        and their ids (the origin_id Procore will store) read back; rows claimed again are updated by id. What
        comes back is what was committed, so the POST sends exactly that."""
        claim = {"status": LedgerStatus.pending, "reason": None, "detail": None, "claimed_at": self.now,
                 "last_run_id": self.run_id}
        fresh, again, previous = [], [], {}
        for p in creates:
            existing = rows.get(p.source_key)
            values = {**_planned_values(p), **claim}
            if existing is None:
                fresh.append({**values, **self._new_row(p.source_key), "attempts": 1, "manual": manual})
            else:
                previous[p.source_key] = existing.status
                again.append({**values, "id": existing.id, "attempts": (existing.attempts or 0) + 1,
                              "manual": manual or existing.manual})
        with session_scope(self.database_url) as s:
            ids = {key: rows[key].id for key in previous}
            ids.update(self._insert_rows(s, fresh))
            if again:
                s.execute(update(LedgerEntry), again)
            self._copy_history(s, [(ids[p.source_key], previous.get(p.source_key)) for p in creates],
                               LedgerStatus.pending, None, "claimed for posting")
        claimed = [Sendable(ids[p.source_key], p.source_key, p.content_hash, p.payload, p.hours, LedgerStatus.pending,
                            p.work_date, p.party_id) for p in creates]
        self.progress("claimed", len(claimed), len(claimed))
        return claimed

    def _new_row(self, source_key: str) -> dict[str, Any]:
        return {"connection_id": self.connection_id, "project_link_id": self.link_id, "source_key": source_key}

    def _insert_rows(self, s: Session, values: list[dict[str, Any]]) -> dict[str, int]:
        """Insert new ledger rows; their ids by source key. A bulk insert and a SELECT of the ids by the unique
        (connection, source key) are several times cheaper than INSERT ... RETURNING, whose one huge multi-row
        statement the driver spends most of its time parsing."""
        if not values:
            return {}
        insert_many(s, LedgerEntry.__table__, values)
        ids: dict[str, int] = {}
        for part in slices([v["source_key"] for v in values], ID_LOOKUP_SLICE):
            ids.update(s.execute(select(LedgerEntry.source_key, LedgerEntry.id).where(
                LedgerEntry.connection_id == self.connection_id, one_of(s, LedgerEntry.source_key, part))).tuples().all())
        return ids

    def _post_all(self, rows: list[Sendable], report: RunReport) -> None:
        pending_unknown: list[int] = []
        for start in range(0, len(rows), self.chunk_size):
            pending_unknown.extend(self._post_chunk(rows[start : start + self.chunk_size], report))
            self.progress("posted", min(start + self.chunk_size, len(rows)), len(rows))
        for _ in range(RECONCILE_ROUNDS):
            if not pending_unknown:
                return
            unknown_rows = self._sendable(pending_unknown)
            found = self._reconcile(unknown_rows)
            resend = [r for r in unknown_rows if r.id not in found]
            pending_unknown = []
            for chunk in slices(resend, self.chunk_size):
                pending_unknown.extend(self._post_chunk(list(chunk), report))

    def _post_chunk(self, rows: list[Sendable], report: RunReport) -> list[int]:
        """POST one bulk chunk of rows as they were committed. Returns the ids whose outcome is unknown."""
        entries = [_entry_for_post(r) for r in rows]
        report.procore_writes += 1
        try:
            created = self.procore.bulk_create_entries(entries)
        except BulkValidationFailed as exc:
            return self._handle_rejection(rows, exc, report)
        except ValidationFailed as exc:
            return self._handle_rejection(rows, exc, report)
        except OutcomeUnknown as exc:
            self._mark(rows, LedgerStatus.unknown, "outcome_unknown", str(exc))
            self.log.warning("sync.post_outcome_unknown", entries=len(rows), error=str(exc))
            return [r.id for r in rows]
        if len(created) != len(rows):
            self._mark(rows, LedgerStatus.unknown, "outcome_unknown",
                       f"Procore answered {len(created)} entries for {len(rows)} sent")
            return [r.id for r in rows]
        self._mark_posted(list(zip(rows, created, strict=True)), report)
        return []

    def _sendable(self, ids: list[int]) -> list[Sendable]:
        """The columns a POST, its outcome and a reconciliation need, in id order."""
        with session_scope(self.database_url) as s:
            return [Sendable(*row) for row in
                    s.execute(select(*SENDABLE).where(one_of(s, LedgerEntry.id, ids)).order_by(LedgerEntry.id))]

    def _handle_rejection(self, rows: list[Sendable], exc: ValidationFailed, report: RunReport) -> list[int]:
        index_errors = getattr(exc, "index_errors", None) or {}
        index_errors = {i: e for i, e in index_errors.items() if 0 <= i < len(rows)}
        if len(rows) == 1:
            message = _first_message(index_errors[0]) if 0 in index_errors else (exc.message or str(exc))
            self._mark(rows, LedgerStatus.failed, "procore_rejected", message)
            report.failed += 1
            return []
        if index_errors:
            bad = [rows[i] for i in sorted(index_errors)]
            for i, row in zip(sorted(index_errors), bad, strict=True):
                self._mark([row], LedgerStatus.failed, "procore_rejected", _first_message(index_errors[i]))
            report.failed += len(bad)
            rest = [r for i, r in enumerate(rows) if i not in index_errors]
            return self._post_chunk(rest, report) if rest else []
        # No usable per-index detail: halve the chunk until the bad entries stand alone.
        mid = len(rows) // 2
        return self._post_chunk(rows[:mid], report) + self._post_chunk(rows[mid:], report)

    def _reconcile(self, rows: Sequence[Sendable | LedgerRow]) -> dict[int, tuple[LedgerStatus, int, str | None]]:
        """Step 11: look the rows up in Procore by party and date and match `origin_id`. Never post blind."""
        candidates = [r for r in rows if r.work_date is not None and r.party_id is not None]
        if not candidates:
            return {}
        found: dict[int, tuple[LedgerStatus, int, str | None]] = {}
        wanted = {r.id: r for r in candidates}
        start = min(r.work_date for r in candidates)
        end = max(r.work_date for r in candidates)
        parties = sorted({r.party_id for r in candidates})
        for entry in self.procore.list_entries(start, end, party_ids=parties):
            origin = _origin_id(entry)
            if origin in wanted and origin not in found:
                found[origin] = (LedgerStatus.posted, int(entry["id"]), entry.get("approval_status"))
        if found:
            with session_scope(self.database_url) as s:
                for row in s.scalars(select(LedgerEntry).where(LedgerEntry.id.in_(list(found)))):
                    status, entry_id, approval = found[row.id]
                    s.add(self._history(row.id, row.status, status, "reconciled", f"found in Procore as {entry_id}"))
                    row.status, row.procore_entry_id, row.approval_status = status, entry_id, approval
                    row.posted_at = row.posted_at or self.now
                    row.reason = row.detail = None
        self.log.info("sync.reconciled", looked_up=len(candidates), found=len(found))
        return found

    def _approved_now(self, rows: list[LedgerRow]) -> set[int]:
        """Which of these Procore entries are approved right now (read back, P-6)."""
        with_ids = [r for r in rows if r.procore_entry_id and r.work_date and r.party_id]
        if not with_ids:
            return set()
        ids = {r.procore_entry_id for r in with_ids}
        approved = set()
        for entry in self.procore.list_entries(
            min(r.work_date for r in with_ids),
            max(r.work_date for r in with_ids),
            party_ids=sorted({r.party_id for r in with_ids}),
        ):
            if int(entry["id"]) in ids and entry.get("approval_status") in ("approved", "completed"):
                approved.add(int(entry["id"]))
        return approved

    def _update(
        self, actions: list[Action], planned: dict[str, PlannedRow], rows: dict[str, LedgerRow], report: RunReport
    ) -> None:
        for action in actions:
            row, p = rows[action.source_key], planned[action.source_key]
            fields = dict(p.payload or {})
            fields.pop("project_id", None)
            fields["origin_data"] = f"{p.source_key}|{p.content_hash}"
            report.procore_writes += 1
            try:
                entry = self.procore.update_entry(p.payload["project_id"], row.procore_entry_id, fields)
            except (EntryLocked, NotFound) as exc:
                self._set(row.id, LedgerStatus.needs_review, "approved" if isinstance(exc, EntryLocked) else
                          "missing_in_procore", str(exc), fill=None)
                report.needs_review += 1
                continue
            self._set(row.id, LedgerStatus.posted, None, "updated from the changed clock events", fill=p,
                      approval=entry.get("approval_status"))
            report.updated += 1

    def _delete(self, actions: list[Action], rows: dict[str, LedgerRow], report: RunReport) -> None:
        for action in actions:
            row = rows[action.source_key]
            report.procore_writes += 1
            try:
                self.procore.delete_entry(self.project_id, row.procore_entry_id)
            except EntryLocked as exc:
                self._set(row.id, LedgerStatus.needs_review, "approved", str(exc), fill=None)
                report.needs_review += 1
                continue
            except NotFound:
                pass  # already gone in Procore: the goal of the delete holds
            self._set(row.id, LedgerStatus.deleted, "source_deleted",
                      action.reason or "its clock events changed or vanished in ServiceTrade", fill=None)
            report.deleted += 1

    def _needs_review(
        self, actions: list[Action], planned: dict[str, PlannedRow], rows: dict[str, LedgerRow], report: RunReport
    ) -> None:
        for action in actions:
            row = rows[action.source_key]
            if row.status == LedgerStatus.needs_review:
                report.needs_review += 1
                continue
            p = planned.get(action.source_key)
            detail = (
                "the clock events changed after Procore approved the entry; Procore was left untouched"
                if p is not None
                else "the clock events vanished after Procore approved the entry; Procore was left untouched"
            )
            self._set(row.id, LedgerStatus.needs_review, "changed_after_approval", detail, fill=None)
            report.needs_review += 1

    def _record_unchanged(self, actions: list[Action], rows: dict[str, LedgerRow]) -> None:
        resolved = [a for a in actions if a.reason == "resolved" and rows.get(a.source_key) is not None]
        for action in resolved:
            self._set(rows[action.source_key].id, LedgerStatus.posted, None, "source matches Procore again", fill=None)

    def _record_skips(
        self, actions: list[Action], planned: dict[str, PlannedRow], rows: dict[str, LedgerRow], report: RunReport
    ) -> None:
        """Skipped rows are re-evaluated every run, but written only when new or when something about them
        changed; a status change gets a history row."""
        fresh: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        history: list[tuple[str, LedgerStatus | None, str, str | None]] = []
        for action in actions:
            p = planned[action.source_key]
            reason = p.skip_reason.value if p.skip_reason else "skipped"
            report.skipped[reason] += 1
            values = {**_planned_values(p), "status": LedgerStatus.skipped, "reason": reason, "detail": p.detail}
            if action.source_key not in rows:
                fresh.append({**values, **self._new_row(p.source_key), "attempts": 0, "manual": False,
                              "last_run_id": self.run_id})
                history.append((p.source_key, None, reason, p.detail))
                continue
            existing = rows[action.source_key]
            if all(getattr(existing, k, _ABSENT) == v for k, v in values.items()):
                continue
            moved = existing.status != LedgerStatus.skipped or existing.reason != reason or existing.detail != p.detail
            if moved:
                history.append((p.source_key, existing.status, reason, p.detail))
            changed.append({**values, "id": existing.id,
                            "last_run_id": self.run_id if moved else existing.last_run_id})
        if not (fresh or changed):
            return
        with session_scope(self.database_url) as s:
            ids = {key: row.id for key, row in rows.items()}
            ids.update(self._insert_rows(s, fresh))
            if changed:
                s.execute(update(LedgerEntry), changed)
            self._add_history(s, [(ids[key], old, LedgerStatus.skipped, reason, detail)
                                  for key, old, reason, detail in history])

    def _retire(self, actions: list[Action], rows: dict[str, LedgerRow], report: RunReport) -> None:
        for action in actions:
            self._set(rows[action.source_key].id, LedgerStatus.deleted, "source_deleted",
                      "its clock events no longer exist in ServiceTrade; nothing was in Procore", fill=None)
            report.retired += 1

    # ------------------------------------------------------------------ small writers

    def _mark_posted(self, pairs: list[tuple[Sendable, dict[str, Any]]], report: RunReport) -> None:
        table = LedgerEntry.__table__
        with session_scope(self.database_url) as s:
            update_rows(
                s, table,
                [{"id": sent.id, "procore_entry_id": int(entry["id"]), "approval_status": entry.get("approval_status")}
                 for sent, entry in pairs],
                status=LedgerStatus.posted, posted_at=self.now, reason=None, detail=None,
                updated_at=func.current_timestamp(),
            )
            self._copy_history(s, [(sent.id, sent.status) for sent, _ in pairs], LedgerStatus.posted, None,
                               literal("Procore entry ") + cast(LedgerEntry.procore_entry_id, String))
        report.posted += len(pairs)
        report.hours += sum((sent.hours or Decimal("0") for sent, _ in pairs), Decimal("0"))

    def _mark(self, rows: Sequence[Sendable], status: LedgerStatus, reason: str, detail: str) -> None:
        with session_scope(self.database_url) as s:
            s.execute(update(LedgerEntry).where(one_of(s, LedgerEntry.id, [r.id for r in rows]))
                      .values(status=status, reason=reason, detail=detail[:2000]))
            self._add_history(s, [(r.id, r.status, status, reason, detail) for r in rows])

    def _set(
        self, row_id: int, status: LedgerStatus, reason: str | None, detail: str | None, *,
        fill: PlannedRow | None, approval: str | None = None,
    ) -> None:
        with session_scope(self.database_url) as s:
            row = s.get(LedgerEntry, row_id)
            assert row is not None
            s.add(self._history(row.id, row.status, status, reason, detail))
            if fill is not None:
                _fill(row, fill)
            row.status, row.reason, row.detail, row.last_run_id = status, reason, detail, self.run_id
            if approval is not None:
                row.approval_status = approval

    def _history(
        self, row_id: int, old: LedgerStatus | str | None, new: LedgerStatus, reason: str | None, detail: str | None
    ) -> LedgerHistory:
        return LedgerHistory(**self._history_values(row_id, old, new, reason, detail))

    def _history_values(
        self, row_id: int, old: LedgerStatus | str | None, new: LedgerStatus, reason: str | None, detail: str | None
    ) -> dict[str, Any]:
        return {"ledger_entry_id": row_id, "run_id": self.run_id, "from_status": str(old) if old is not None else None,
                "to_status": str(new), "reason": reason, "detail": detail, "at": self.now}

    def _copy_history(
        self, s: Session, changes: Sequence[tuple[int, LedgerStatus | None]], new: LedgerStatus, reason: str | None,
        detail: str | ColumnElement[str],
    ) -> None:
        """History rows of many ledger rows (id, status they leave) that all move to `new`, written by the
        database itself: one INSERT ... SELECT from the ledger rows per old status (`detail` may be an
        expression of their columns)."""
        by_status: dict[LedgerStatus | None, list[int]] = {}
        for row_id, old in changes:
            by_status.setdefault(old, []).append(row_id)
        columns = ["ledger_entry_id", "run_id", "from_status", "to_status", "reason", "detail", "at"]
        detail_value = literal(detail, Text) if isinstance(detail, str) else detail
        for old, ids in by_status.items():
            for part in slices(ids, ID_LOOKUP_SLICE):
                rows = select(
                    LedgerEntry.id, literal(self.run_id, Integer), literal(str(old) if old else None, String),
                    literal(str(new), String), literal(reason, String), detail_value, literal(self.now, UtcDateTime),
                ).where(one_of(s, LedgerEntry.id, part))
                s.execute(insert(LedgerHistory).from_select(columns, rows))

    def _add_history(self, s: Session, changes: list[tuple[int, LedgerStatus | str | None, LedgerStatus,
                                                          str | None, str | None]]) -> None:
        """History rows of many status changes, in one INSERT."""
        insert_many(s, LedgerHistory.__table__, [self._history_values(*change) for change in changes])

    def _count_status(self, status: LedgerStatus) -> int:
        with session_scope(self.database_url) as s:
            return s.scalar(select(func.count()).select_from(LedgerEntry).where(
                LedgerEntry.project_link_id == self.link_id, LedgerEntry.status == status)) or 0

    # ------------------------------------------------------------------ dry run

    def _count_dry(self, report: RunReport, actions: list[Action], planned: dict[str, PlannedRow], window: Period) -> None:
        for action in actions:
            p = planned.get(action.source_key)
            if action.kind == ActionKind.create and p is not None:
                if p.work_date is not None and p.work_date > window.end:
                    report.later += 1
                else:
                    report.posted += 1
                    report.hours += p.hours or Decimal("0")
            elif action.kind == ActionKind.skip and p is not None:
                report.skipped[p.skip_reason.value if p.skip_reason else "skipped"] += 1
            elif action.kind == ActionKind.update:
                report.updated += 1
            elif action.kind == ActionKind.delete:
                report.deleted += 1
            elif action.kind == ActionKind.needs_review:
                report.needs_review += 1
            elif action.kind == ActionKind.retire:
                report.retired += 1
            elif action.kind == ActionKind.unchanged:
                report.unchanged += 1


# ---------------------------------------------------------------------- helpers used by the CLI too


def preview_row(
    p: PlannedRow | None, row: LedgerRow | None, action: str, reason: str | None, ctx: ProjectContext
) -> dict[str, Any]:
    tz = ctx.tz

    def hm(at: datetime | None) -> str | None:
        return at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if at else None

    src = p if p is not None else row
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
        "cost_code_id": p.rule.cost_code_id if p is not None and p.rule else None,
        "rule": (f"#{p.rule.priority}" if p.rule.id else "chosen") if p is not None and p.rule else None,
        "action": action,
        "reason": (p.skip_reason.value if p is not None and p.skip_reason else None) or reason,
        "warning": p.detail if p is not None and p.skip_reason else None,
        "ledger_status": row.status.value if row is not None else None,
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


def ledger_view(row: LedgerRow, *, manual_override: bool = False) -> LedgerView:
    return LedgerView(
        source_key=row.source_key,
        status=row.status.value if isinstance(row.status, LedgerStatus) else str(row.status),
        content_hash=row.content_hash,
        procore_entry_id=row.procore_entry_id,
        approved=row.approval_status in ("approved", "completed"),
        manual=False if manual_override else row.manual,
        reason=row.reason,
    )


def slices(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """`items` cut into consecutive pieces of at most `size`."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def _selected(planned: list[PlannedRow], selection: Selection, punches: Sequence[Punch]) -> list[PlannedRow]:
    known = {p.id for p in punches}
    missing = sorted(selection.clock_event_ids - known)
    if missing:
        raise LookupError(
            "clock event(s) " + ", ".join(map(str, missing)) + " were not found on the project's ServiceTrade job "
            "in the window read; check the ids or widen --start/--end"
        )
    return [
        p for p in planned
        if p.clock_in_event_id in selection.clock_event_ids or p.clock_out_event_id in selection.clock_event_ids
    ]


def _fill(row: LedgerEntry, p: PlannedRow) -> None:
    for column, value in _planned_values(p).items():
        setattr(row, column, value)


def _planned_values(p: PlannedRow) -> dict[str, Any]:
    """The ledger columns a planned row sets. Without a rule or a payload (a skipped row), the row keeps what
    it had: the cost code and payload of an entry that was posted stay on record."""
    values: dict[str, Any] = {
        "clock_in_event_id": p.clock_in_event_id,
        "clock_out_event_id": p.clock_out_event_id,
        "st_user_id": p.st_user_id,
        "technician_name": p.technician_name,
        "activity": p.activity,
        "work_date": p.work_date,
        "actual_start": p.actual_start or p.first_punch_at,
        "actual_end": p.actual_end,
        "rounded_start": p.rounded_start,
        "rounded_end": p.rounded_end,
        "piece_start": p.piece_start,
        "piece_end": p.piece_end,
        "hours": p.hours,
        "party_id": p.party_id,
    }
    if p.rule is not None:
        values.update(cost_code_id=p.rule.cost_code_id, line_item_type_id=p.rule.line_item_type_id,
                      timecard_time_type_id=p.rule.timecard_time_type_id, billable=p.rule.billable,
                      rule_id=p.rule.id or None)
    if p.payload is not None:
        values.update(payload=p.payload, description=p.payload.get("description"), content_hash=p.content_hash)
    return values


def _entry_for_post(row: Sendable) -> dict[str, Any]:
    entry = dict(row.payload or {})
    entry["origin_id"] = row.id
    entry["origin_data"] = f"{row.source_key}|{row.content_hash}"
    return entry


def _origin_id(entry: dict[str, Any]) -> int | None:
    try:
        return int(entry.get("origin_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _first_message(errors: Any) -> str:
    if not errors:
        return "rejected by Procore"
    if isinstance(errors, dict):
        return "; ".join(f"{field}: {', '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
                         for field, msgs in errors.items())
    return str(errors)


def _event_values(punch: Punch, raw: dict[str, Any]) -> tuple[Any, ...]:
    """What ServiceTrade says of a punch, as stored: the EVENT_FIELDS in their order."""
    source, updated = raw.get("source"), raw.get("updated")
    return (punch.user_id, punch.user_name[:300], punch.job_id, punch.activity, punch.event_type, punch.at,
            str(source)[:20] if source is not None else None, updated if isinstance(updated, int) else None)

