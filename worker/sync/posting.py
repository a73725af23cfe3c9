"""DESIGN §3 steps 10–11 on the Procore side: bulk POSTs of claimed rows, the 422 split, reconciliation by
`origin_id` before anything is sent again, PATCH of changed entries and DELETE of vanished ones. Each outcome is
written to the ledger as soon as it is known, in its own transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from worker.clients.errors import (
    ApiError,
    BulkRouteRefused,
    BulkValidationFailed,
    CredentialsRejected,
    EntryLocked,
    EntryRefused,
    NeedsReauthorization,
    NotFound,
    ValidationFailed,
)
from worker.clients.procore import ProcoreClient
from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.store import ledger as ledger_store
from worker.store.ledger import LedgerRow, Sendable, slices
from worker.sync.identity import matches, origin_data, origin_id, parse_origin
from worker.sync.plan import PlannedRow
from worker.sync.report import RunReport

log = structlog.get_logger("stsync.posting")

BULK_CHUNK = 100  # P-5
RECONCILE_ROUNDS = 3

Progress = Callable[[str, int, int], None]


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


# A company whose bulk route was refused posts through the single route for this long before trying bulk again.
BULK_REFUSED_FOR_S = 3600.0
_bulk_refused: dict[tuple[str, int], float] = {}
_bulk_refused_guard = threading.Lock()


@dataclass
class Poster:
    """Sends one run's rows to Procore and records each outcome. `guard` is called before every write to Procore:
    it raises when the run may no longer write for the project (DESIGN §3 step 1).

    Exactly once: a chunk is sent again only after Procore was asked which of its entries exist (by identity,
    origin_id / origin_data) and only the ones proven absent are sent; any answer but a clean success counts as
    possibly partly committed (P-12)."""

    procore: ProcoreClient
    project_id: int
    run_id: int | None
    now: datetime
    report: RunReport
    database_url: str | None = None
    chunk_size: int = BULK_CHUNK
    progress: Progress = _no_progress
    guard: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.monotonic
    concurrency: int = 1  # chunks in flight at once; each was claimed and committed before it is sent
    _report_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _tally(self, **increments: Any) -> None:
        """Add to the report's counts; chunks are posted from several threads."""
        with self._report_lock:
            for name, value in increments.items():
                setattr(self.report, name, getattr(self.report, name) + value)

    def _note_failure(self, line: str) -> None:
        with self._report_lock:
            self.report.failures.append(line)

    @property
    def company_id(self) -> int:
        return self.procore.company_id

    # ------------------------------------------------------------------ creating

    def post_all(self, rows: list[Sendable]) -> None:
        """POST claimed rows in chunks; whatever has no known outcome is looked up and, only if absent, sent again."""
        unknown: list[int] = []
        chunks = [list(chunk) for chunk in slices(rows, self.chunk_size)]
        # Chunks go out side by side, inside the shared rate budget: the waits on Procore overlap. Each one is
        # claimed already; a lost lock stops every chunk not yet sent (the guard fails for all of them).
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(chunks))),
                                thread_name_prefix="post") as pool:
            for done, result in enumerate(pool.map(self._post_chunk, chunks), start=1):
                unknown.extend(result)
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
        """POST one chunk of rows as they were committed. Returns the ids whose outcome is still unknown."""
        if self._bulk_refused():
            return self._post_singly(rows)
        self.guard()
        self._tally(procore_writes=1)
        try:
            created = self.procore.bulk_create_entries([self.entry_for_post(r) for r in rows])
        except BulkRouteRefused as exc:
            self._remember_bulk_refused(exc)
            return self._post_singly(rows)
        except (BulkValidationFailed, ValidationFailed) as exc:
            return self._after_rejection(rows, exc)
        except (CredentialsRejected, NeedsReauthorization):
            raise  # refused at the door: nothing was created, and no further call will be let in either
        except ApiError as exc:  # 5xx, a lost answer, anything else: Procore may have committed part of it
            self._mark(rows, LedgerStatus.unknown, "outcome_unknown", str(exc))
            log.warning("sync.post_outcome_unknown", entries=len(rows), error=str(exc))
            return [r.id for r in rows]
        if len(created) != len(rows):
            self._mark(rows, LedgerStatus.unknown, "outcome_unknown",
                       f"Procore answered {len(created)} entries for {len(rows)} sent")
            return [r.id for r in rows]
        self._record_created(list(zip(rows, created, strict=True)))
        return []

    def _after_rejection(self, rows: list[Sendable], exc: ValidationFailed) -> list[int]:
        """A 422: under P-5 nothing was created, but Procore's own record promises no all-or-nothing (P-12). So the
        chunk is looked up first; what exists is adopted, and only what is absent is refused or sent again."""
        self._mark(rows, LedgerStatus.unknown, "outcome_unknown", f"Procore refused part of a bulk call: {exc}")
        found = self.reconcile([r._replace(status=LedgerStatus.unknown) for r in rows])
        index_errors = {i: e for i, e in (getattr(exc, "index_errors", None) or {}).items() if 0 <= i < len(rows)}
        absent = [(i, r._replace(status=LedgerStatus.unknown)) for i, r in enumerate(rows) if r.id not in found]
        if not absent:
            return []
        if len(rows) == 1 or (len(absent) == 1 and not index_errors):
            (i, row), = absent
            message = first_message(index_errors[i]) if i in index_errors else (exc.message or str(exc))
            self._refused([row], message)
            return []
        if index_errors:
            self._refused_each([(row, first_message(index_errors[i])) for i, row in absent if i in index_errors])
            rest = [row for i, row in absent if i not in index_errors]
            return self._post_chunk(rest) if rest else []
        # No usable per-index detail: halve what is absent until the bad entries stand alone.
        left = [row for _, row in absent]
        mid = len(left) // 2
        return self._post_chunk(left[:mid]) + self._post_chunk(left[mid:])

    def _post_singly(self, rows: list[Sendable]) -> list[int]:
        """The single company form, one entry a call, inside the same rate budget (P-5)."""
        self.report.route = "single"
        unknown: list[int] = []
        for row in rows:
            self.guard()
            self._tally(procore_writes=1)
            try:
                created = self.procore.create_entry(self.entry_for_post(row))
            except ValidationFailed as exc:  # a single create that is refused creates nothing
                self._refused([row], exc.message or str(exc))
            except (CredentialsRejected, NeedsReauthorization):
                raise
            except ApiError as exc:
                self._mark([row], LedgerStatus.unknown, "outcome_unknown", str(exc))
                unknown.append(row.id)
            else:
                self._record_created([(row, created)])
        return unknown

    def _record_created(self, pairs: list[tuple[Sendable, dict[str, Any]]]) -> None:
        """Entries Procore answered with: `posted` when Procore stored what was sent, `failed` with both values
        when it changed something (decimal hours truncated, another day, another cost code). An answer without
        `approval_status` is read back so the report states the approval state truthfully."""
        if any("approval_status" not in entry for _, entry in pairs):
            pairs = self._read_back(pairs)
        good, changed = [], []
        for sent, entry in pairs:
            difference = stored_differently(sent.payload or {}, entry)
            (changed if difference else good).append((sent, entry, difference))
        if good:
            with session_scope(self.database_url) as s:
                ledger_store.mark_posted(
                    s,
                    [{"id": sent.id, "procore_entry_id": int(entry["id"]),
                      "approval_status": entry.get("approval_status")} for sent, entry, _ in good],
                    [(sent.id, sent.status) for sent, _, _ in good], run_id=self.run_id, at=self.now,
                )
            earlier = [sent for sent, _, _ in good if sent.work_date and sent.work_date < self.report.window_start]
            self._tally(posted=len(good), hours=sum((sent.hours or Decimal("0") for sent, _, _ in good), Decimal("0")),
                        posted_before_window=len(earlier),
                        hours_before_window=sum((sent.hours or Decimal("0") for sent in earlier), Decimal("0")))
        for sent, entry, difference in changed:
            self._set(sent.id, LedgerStatus.failed, "procore_changed_entry",
                      f"Procore stored entry {entry.get('id')} differently from what was sent: {difference}",
                      values={"procore_entry_id": int(entry["id"]), "approval_status": entry.get("approval_status")})
            self._tally(failed=1)
            self._note_failure(f"{sent.source_key}: Procore changed the entry ({difference})")

    def _read_back(self, pairs: list[tuple[Sendable, dict[str, Any]]]) -> list[tuple[Sendable, dict[str, Any]]]:
        stored = {int(e["id"]): e for e in self._entries_of([sent for sent, _ in pairs])}
        return [(sent, {**entry, **{k: v for k, v in stored.get(int(entry["id"]), {}).items()
                                    if k == "approval_status"}}) for sent, entry in pairs]

    def _refused(self, rows: Sequence[Sendable], message: str) -> None:
        self._refused_each([(row, message) for row in rows])

    def _refused_each(self, refusals: Sequence[tuple[Sendable, str]]) -> None:
        for row, message in refusals:
            self._mark([row], LedgerStatus.failed, "procore_rejected", message)
            self._note_failure(f"{row.source_key}: {message}")
        self._tally(failed=len(refusals))

    def _bulk_refused(self) -> bool:
        with _bulk_refused_guard:
            until = _bulk_refused.get((self.procore.api.base_url, self.company_id))
        return until is not None and self.clock() < until

    def _remember_bulk_refused(self, exc: Exception) -> None:
        log.warning("sync.bulk_route_refused", error=str(exc), company_id=self.company_id)
        with _bulk_refused_guard:
            _bulk_refused[(self.procore.api.base_url, self.company_id)] = self.clock() + BULK_REFUSED_FOR_S

    # ------------------------------------------------------------------ looking up

    def reconcile(self, rows: Sequence[Sendable | LedgerRow]) -> dict[int, tuple[int, str | None]]:
        """Step 11: look the rows up in Procore by party and date and match their identity; those found become
        `posted`. Never post blind. Returns row id → (Procore entry id, approval state) of those found."""
        by_key = {r.source_key: r for r in rows}
        found = {by_key[key].id: (int(entry["id"]), entry.get("approval_status"))
                 for key, entry in self.find_existing(rows).items()}
        if found:
            with session_scope(self.database_url) as s:
                ledger_store.adopt(s, found, reason="reconciled", run_id=self.run_id, at=self.now)
        log.info("sync.reconciled", looked_up=len(rows), found=len(found))
        return found

    def find_existing(self, rows: Iterable[Sendable | LedgerRow | PlannedRow]) -> dict[str, dict[str, Any]]:
        """Procore's live entries that carry the identity of these rows, by source key."""
        wanted = {r.source_key for r in rows}
        found: dict[str, dict[str, Any]] = {}
        for entry in self._entries_of(rows):
            origin = parse_origin(entry)
            if (origin is not None and origin.source_key in wanted and origin.source_key not in found
                    and not entry.get("deleted_at") and matches(entry, self.company_id, origin.source_key)):
                found[origin.source_key] = entry
        return found

    def approved_now(self, rows: list[LedgerRow]) -> set[int]:
        """Which of these Procore entries are approved right now (read back, P-6)."""
        ids = {r.procore_entry_id for r in rows if r.procore_entry_id}
        return {int(entry["id"]) for entry in self._entries_of([r for r in rows if r.procore_entry_id])
                if int(entry["id"]) in ids and entry.get("approval_status") in LOCKED_APPROVALS}

    def _entries_of(self, rows: Iterable[Any]) -> Iterator[dict[str, Any]]:
        """Procore's entries of these rows' people and days (P-6), one list call per thousand; none without any."""
        dated = [r for r in rows if r.work_date is not None and r.party_id is not None]
        if not dated:
            return iter(())
        return self.procore.list_entries(min(r.work_date for r in dated), max(r.work_date for r in dated),
                                         party_ids=sorted({r.party_id for r in dated}))

    # ------------------------------------------------------------------ changing and removing

    def update(self, row: LedgerRow, p: PlannedRow) -> None:
        """PATCH a posted entry whose clock events changed; an approved one is left for a person."""
        fields = dict(p.payload or {})
        fields.pop("project_id", None)
        fields["origin_data"] = origin_data(p.source_key, p.content_hash)
        self.guard()
        self._tally(procore_writes=1)
        try:
            entry = self.procore.update_entry(self.project_id, row.procore_entry_id, fields)
        except NotFound as exc:
            self._set(row.id, LedgerStatus.needs_review, "missing_in_procore", str(exc))
            self._tally(needs_review=1)
            return
        except EntryRefused as exc:
            self._refused_change(row, exc, "change")
            return
        self._set(row.id, LedgerStatus.posted, None, "updated from the changed clock events",
                  values={**planned_values(p), "approval_status": entry.get("approval_status", row.approval_status)})
        self._tally(updated=1)

    def delete(self, row: LedgerRow, why: str | None) -> None:
        """DELETE a posted entry whose clock events vanished; an approved one is left for a person."""
        self.guard()
        self._tally(procore_writes=1)
        try:
            self.procore.delete_entry(self.project_id, row.procore_entry_id)
        except EntryRefused as exc:
            self._refused_change(row, exc, "delete")
            return
        except NotFound:
            pass  # already gone in Procore: the goal of the delete holds
        self._set(row.id, LedgerStatus.deleted, "source_deleted",
                  why or "its clock events changed or vanished in ServiceTrade")
        self._tally(deleted=1)

    def _refused_change(self, row: LedgerRow, exc: EntryRefused, what: str) -> None:
        """A 403 or 422 on a PATCH or DELETE: the entry is read back. Approved or completed means locked, whatever
        the code and wording (P-12): a person decides. Anything else is a named failure of this row; the run goes
        on."""
        try:
            approval = self.procore.get_entry(self.project_id, row.procore_entry_id).get("approval_status")
        except ApiError:
            approval = None
        if isinstance(exc, EntryLocked) or approval in LOCKED_APPROVALS:
            self._set(row.id, LedgerStatus.needs_review, "approved",
                      f"Procore keeps the entry as {approval or 'approved'} and refused to {what} it: {exc.message}",
                      values={"approval_status": approval} if approval else None)
            self._tally(needs_review=1)
            return
        self._set(row.id, LedgerStatus.failed, f"procore_refused_{what}",
                  f"Procore refused to {what} entry {row.procore_entry_id} ({exc.status}): {exc.message}")
        self._tally(failed=1)
        self._note_failure(f"{row.source_key}: Procore refused to {what} it: {exc.message}")

    # ------------------------------------------------------------------ ledger writes

    def entry_for_post(self, row: Sendable) -> dict[str, Any]:
        entry = dict(row.payload or {})
        entry["origin_id"] = origin_id(self.company_id, row.source_key)
        entry["origin_data"] = origin_data(row.source_key, row.content_hash)
        return entry

    def _mark(self, rows: Sequence[Sendable], status: LedgerStatus, reason: str, detail: str) -> None:
        with session_scope(self.database_url) as s:
            ledger_store.mark(s, rows, status, reason, detail, run_id=self.run_id, at=self.now)

    def _set(self, row_id: int, status: LedgerStatus, reason: str | None, detail: str | None, *,
             values: dict[str, Any] | None = None) -> None:
        with session_scope(self.database_url) as s:
            ledger_store.set_status(s, row_id, status, reason, detail, run_id=self.run_id, at=self.now,
                                    values=values)


LOCKED_APPROVALS = ("approved", "completed")


def forget_bulk_refusals() -> None:
    """Forget which companies refused the bulk route (tests, where each world is a new company under one id)."""
    with _bulk_refused_guard:
        _bulk_refused.clear()


def stored_differently(sent: dict[str, Any], stored: dict[str, Any]) -> str | None:
    """What Procore stored differently from what was sent (date, person, cost code, cost type, hours or times),
    as `field: sent X, stored Y`; None when it stored what was sent. A field missing from the answer is not
    compared: Procore's answers name some fields differently (P-12)."""
    differences = []
    for field_name, sent_value, stored_value in (
        ("date", sent.get("date"), stored.get("date")),
        ("party", sent.get("party_id"), id_of(stored, "party")),
        ("cost code", sent.get("cost_code_id"), id_of(stored, "cost_code")),
        ("cost type", sent.get("line_item_type_id"), id_of(stored, "line_item_type")),
        ("hours", _decimal(sent.get("hours")), _decimal(stored.get("hours"))),
    ):
        if sent_value is None or stored_value is None:
            continue
        if str(sent_value) != str(stored_value):
            differences.append(f"{field_name}: sent {sent_value}, stored {stored_value}")
    return "; ".join(differences) or None


def id_of(entry: dict[str, Any], name: str) -> int | None:
    """`name_id`, or the id of the nested `name` object; None when the answer has neither as a number."""
    value = entry.get(f"{name}_id")
    if value is None and isinstance(entry.get(name), dict):
        value = entry[name].get("id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01")) if value is not None else None
    except ArithmeticError:
        return None


# ---------------------------------------------------------------------- what goes over the wire


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
