"""DESIGN §3 steps 10–11 on the Procore side: bulk POSTs of claimed rows, the 422 split, reconciliation by
`origin_id` before anything is sent again, PATCH of changed entries and DELETE of vanished ones. Each outcome is
written to the ledger as soon as it is known, in its own transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from worker.clients.errors import (
    BulkValidationFailed,
    EntryLocked,
    NotFound,
    OutcomeUnknown,
    ValidationFailed,
)
from worker.clients.procore import ProcoreClient
from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.store import ledger as ledger_store
from worker.store.ledger import LedgerRow, Sendable, slices
from worker.sync.plan import PlannedRow
from worker.sync.report import RunReport

log = structlog.get_logger("stsync.posting")

BULK_CHUNK = 100  # P-5
RECONCILE_ROUNDS = 3

Progress = Callable[[str, int, int], None]


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


@dataclass
class Poster:
    """Sends one run's rows to Procore and records each outcome. `guard` is called before every write to Procore:
    it raises when the run may no longer write for the project (DESIGN §3 step 1)."""

    procore: ProcoreClient
    project_id: int
    run_id: int | None
    now: datetime
    report: RunReport
    database_url: str | None = None
    chunk_size: int = BULK_CHUNK
    progress: Progress = _no_progress
    guard: Callable[[], None] = lambda: None

    # ------------------------------------------------------------------ creating

    def post_all(self, rows: list[Sendable]) -> None:
        """POST claimed rows in chunks; whatever has no known outcome is looked up and, only if absent, sent again."""
        unknown: list[int] = []
        for done, chunk in enumerate(slices(rows, self.chunk_size), start=1):
            unknown.extend(self._post_chunk(list(chunk)))
            self.progress("posted", min(done * self.chunk_size, len(rows)), len(rows))
        for _ in range(RECONCILE_ROUNDS):
            if not unknown:
                return
            with session_scope(self.database_url) as s:
                unknown_rows = ledger_store.sendable(s, unknown)
            found = self.reconcile(unknown_rows)
            unknown = []
            for chunk in slices([r for r in unknown_rows if r.id not in found], self.chunk_size):
                unknown.extend(self._post_chunk(list(chunk)))

    def _post_chunk(self, rows: list[Sendable]) -> list[int]:
        """POST one bulk chunk of rows as they were committed. Returns the ids whose outcome is unknown."""
        self.guard()
        entries = [entry_for_post(r) for r in rows]
        self.report.procore_writes += 1
        try:
            created = self.procore.bulk_create_entries(entries)
        except (BulkValidationFailed, ValidationFailed) as exc:
            return self._rejected(rows, exc)
        except OutcomeUnknown as exc:
            self._mark(rows, LedgerStatus.unknown, "outcome_unknown", str(exc))
            log.warning("sync.post_outcome_unknown", entries=len(rows), error=str(exc))
            return [r.id for r in rows]
        if len(created) != len(rows):
            self._mark(rows, LedgerStatus.unknown, "outcome_unknown",
                       f"Procore answered {len(created)} entries for {len(rows)} sent")
            return [r.id for r in rows]
        self._posted(list(zip(rows, created, strict=True)))
        return []

    def _rejected(self, rows: list[Sendable], exc: ValidationFailed) -> list[int]:
        index_errors = getattr(exc, "index_errors", None) or {}
        index_errors = {i: e for i, e in index_errors.items() if 0 <= i < len(rows)}
        if len(rows) == 1:
            message = first_message(index_errors[0]) if 0 in index_errors else (exc.message or str(exc))
            self._mark(rows, LedgerStatus.failed, "procore_rejected", message)
            self.report.failed += 1
            return []
        if index_errors:
            for i in sorted(index_errors):
                self._mark([rows[i]], LedgerStatus.failed, "procore_rejected", first_message(index_errors[i]))
            self.report.failed += len(index_errors)
            rest = [r for i, r in enumerate(rows) if i not in index_errors]
            return self._post_chunk(rest) if rest else []
        # No usable per-index detail: halve the chunk until the bad entries stand alone.
        mid = len(rows) // 2
        return self._post_chunk(rows[:mid]) + self._post_chunk(rows[mid:])

    def _posted(self, pairs: list[tuple[Sendable, dict[str, Any]]]) -> None:
        with session_scope(self.database_url) as s:
            ledger_store.mark_posted(
                s,
                [{"id": sent.id, "procore_entry_id": int(entry["id"]), "approval_status": entry.get("approval_status")}
                 for sent, entry in pairs],
                [(sent.id, sent.status) for sent, _ in pairs], run_id=self.run_id, at=self.now,
            )
        self.report.posted += len(pairs)
        self.report.hours += sum((sent.hours or Decimal("0") for sent, _ in pairs), Decimal("0"))

    # ------------------------------------------------------------------ looking up

    def reconcile(self, rows: Sequence[Sendable | LedgerRow]) -> dict[int, tuple[int, str | None]]:
        """Step 11: look the rows up in Procore by party and date and match `origin_id`; those found become
        `posted`. Never post blind. Returns row id → (Procore entry id, approval state) of those found."""
        candidates = [r for r in rows if r.work_date is not None and r.party_id is not None]
        if not candidates:
            return {}
        wanted = {r.id for r in candidates}
        found: dict[int, tuple[int, str | None]] = {}
        for entry in self.procore.list_entries(min(r.work_date for r in candidates),
                                               max(r.work_date for r in candidates),
                                               party_ids=sorted({r.party_id for r in candidates})):
            origin = origin_id_of(entry)
            if origin in wanted and origin not in found:
                found[origin] = (int(entry["id"]), entry.get("approval_status"))
        if found:
            with session_scope(self.database_url) as s:
                ledger_store.adopt(s, found, reason="reconciled", run_id=self.run_id, at=self.now)
        log.info("sync.reconciled", looked_up=len(candidates), found=len(found))
        return found

    def approved_now(self, rows: list[LedgerRow]) -> set[int]:
        """Which of these Procore entries are approved right now (read back, P-6)."""
        with_ids = [r for r in rows if r.procore_entry_id and r.work_date and r.party_id]
        if not with_ids:
            return set()
        ids = {r.procore_entry_id for r in with_ids}
        return {
            int(entry["id"])
            for entry in self.procore.list_entries(min(r.work_date for r in with_ids),
                                                   max(r.work_date for r in with_ids),
                                                   party_ids=sorted({r.party_id for r in with_ids}))
            if int(entry["id"]) in ids and entry.get("approval_status") in ("approved", "completed")
        }

    # ------------------------------------------------------------------ changing and removing

    def update(self, row: LedgerRow, p: PlannedRow) -> None:
        """PATCH a posted entry whose clock events changed; an approved one is left for a person."""
        fields = dict(p.payload or {})
        fields.pop("project_id", None)
        fields["origin_data"] = origin_data(p.source_key, p.content_hash)
        self.guard()
        self.report.procore_writes += 1
        try:
            entry = self.procore.update_entry(self.project_id, row.procore_entry_id, fields)
        except (EntryLocked, NotFound) as exc:
            reason = "approved" if isinstance(exc, EntryLocked) else "missing_in_procore"
            self._set(row.id, LedgerStatus.needs_review, reason, str(exc))
            self.report.needs_review += 1
            return
        self._set(row.id, LedgerStatus.posted, None, "updated from the changed clock events",
                  values={**planned_values(p), "approval_status": entry.get("approval_status", row.approval_status)})
        self.report.updated += 1

    def delete(self, row: LedgerRow, why: str | None) -> None:
        """DELETE a posted entry whose clock events vanished; an approved one is left for a person."""
        self.guard()
        self.report.procore_writes += 1
        try:
            self.procore.delete_entry(self.project_id, row.procore_entry_id)
        except EntryLocked as exc:
            self._set(row.id, LedgerStatus.needs_review, "approved", str(exc))
            self.report.needs_review += 1
            return
        except NotFound:
            pass  # already gone in Procore: the goal of the delete holds
        self._set(row.id, LedgerStatus.deleted, "source_deleted",
                  why or "its clock events changed or vanished in ServiceTrade")
        self.report.deleted += 1

    # ------------------------------------------------------------------ ledger writes

    def _mark(self, rows: Sequence[Sendable], status: LedgerStatus, reason: str, detail: str) -> None:
        with session_scope(self.database_url) as s:
            ledger_store.mark(s, rows, status, reason, detail, run_id=self.run_id, at=self.now)

    def _set(self, row_id: int, status: LedgerStatus, reason: str | None, detail: str | None, *,
             values: dict[str, Any] | None = None) -> None:
        with session_scope(self.database_url) as s:
            ledger_store.set_status(s, row_id, status, reason, detail, run_id=self.run_id, at=self.now,
                                    values=values)


# ---------------------------------------------------------------------- what goes over the wire


def origin_data(source_key: str, content_hash: str | None) -> str:
    return f"{source_key}|{content_hash}"


def entry_for_post(row: Sendable) -> dict[str, Any]:
    entry = dict(row.payload or {})
    entry["origin_id"] = row.id
    entry["origin_data"] = origin_data(row.source_key, row.content_hash)
    return entry


def origin_id_of(entry: dict[str, Any]) -> int | None:
    try:
        return int(entry.get("origin_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def first_message(errors: Any) -> str:
    if not errors:
        return "rejected by Procore"
    if isinstance(errors, dict):
        return "; ".join(f"{field}: {', '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
                         for field, msgs in errors.items())
    return str(errors)


def planned_values(p: PlannedRow) -> dict[str, Any]:
    """The ledger columns a planned row sets. Without a rule or a payload (a skipped row), the row keeps what it
    had: the cost code and payload of an entry that was posted stay on record."""
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
