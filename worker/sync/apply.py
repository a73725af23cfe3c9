"""DESIGN §3 steps 9–11 carried out: each action of the diff written to the ledger, and to Procore through the
Poster. New entries are claimed as `pending` and committed before any POST: that order is the exactly-once
guarantee."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from schedules.periods import Period
from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.store import ledger as ledger_store
from worker.store.ledger import LedgerRow, Sendable
from worker.sync.diff import Action, ActionKind, Desired, LedgerView, diff
from worker.sync.identity import parse_origin
from worker.sync.plan import PlannedRow
from worker.sync.posting import Poster, planned_values, stored_differently
from worker.sync.report import RunReport


@dataclass
class Decisions:
    """The diff's actions by kind; entries whose day is after the window wait for a later run."""

    by_kind: dict[ActionKind, list[Action]] = field(default_factory=dict)

    @classmethod
    def of(cls, actions: list[Action]) -> Decisions:
        decisions = cls()
        for action in actions:
            decisions.add(action)
        return decisions

    def add(self, action: Action) -> None:
        self.by_kind.setdefault(action.kind, []).append(action)

    def take(self, kind: ActionKind) -> list[Action]:
        return self.by_kind.pop(kind, [])

    def get(self, kind: ActionKind) -> list[Action]:
        return self.by_kind.get(kind, [])


log = structlog.get_logger("stsync.sync")

# Rows whose entry a run would create (again): before it does, Procore is asked whether it exists already.
ADOPTABLE = (LedgerStatus.skipped, LedgerStatus.deleted, LedgerStatus.failed)


def ledger_view(row: LedgerRow, *, manual_override: bool = False) -> LedgerView:
    return LedgerView(
        source_key=row.source_key,
        status=row.status,
        content_hash=row.content_hash,
        procore_entry_id=row.procore_entry_id,
        approved=row.approval_status in ("approved", "completed"),
        manual=False if manual_override else row.manual,
        reason=row.reason,
    )


def decide(planned: dict[str, PlannedRow], rows: dict[str, LedgerRow], *, manual: bool) -> list[Action]:
    """Step 9: one action per source key, planned or in the ledger."""
    desired = {key: Desired(key, p.content_hash, p.skip_reason, p.source_derived) for key, p in planned.items()}
    return diff(desired, {key: ledger_view(row, manual_override=manual) for key, row in rows.items()})


def is_later(p: PlannedRow, window: Period, *, manual: bool) -> bool:
    """An entry whose day is after the window: a later run posts it (the manual flow posts what it was given)."""
    return not manual and p.work_date is not None and p.work_date > window.end


def count_decisions(report: RunReport, decisions: Decisions, planned: dict[str, PlannedRow], window: Period, *,
                    manual: bool, intended: bool) -> None:
    """The counts a run knows from its decisions alone: unchanged, skipped by reason, retired and later; with
    `intended` (a dry run) also what it would post, update, delete or hold for review. A real run counts those
    from what Procore answered."""
    report.unchanged += len(decisions.get(ActionKind.unchanged))
    report.retired += len(decisions.get(ActionKind.retire))
    for action in decisions.get(ActionKind.skip):
        p = planned[action.source_key]
        report.skipped[p.skip_reason.value if p.skip_reason else "skipped"] += 1
    for action in decisions.get(ActionKind.create):
        p = planned[action.source_key]
        if is_later(p, window, manual=manual):
            report.later += 1
        elif intended:
            report.posted += 1
            report.hours += p.hours or 0
            if p.work_date is not None and p.work_date < window.start:
                report.posted_before_window += 1
                report.hours_before_window += p.hours or 0
    if intended:
        report.updated += len(decisions.get(ActionKind.update))
        report.deleted += len(decisions.get(ActionKind.delete))
        report.needs_review += len(decisions.get(ActionKind.needs_review))


@dataclass
class Applier:
    """Carries out one run's decisions for one project link."""

    poster: Poster
    link_id: int
    connection_id: int
    run_id: int | None
    now: datetime
    database_url: str | None = None

    @property
    def report(self) -> RunReport:
        return self.poster.report

    def apply(self, actions: list[Action], planned: dict[str, PlannedRow], rows: dict[str, LedgerRow],
              window: Period, *, manual: bool) -> None:
        decisions = Decisions.of(actions)
        self._reconcile_first(decisions, planned, rows, manual=manual)
        count_decisions(self.report, decisions, planned, window, manual=manual, intended=False)

        self._record_resolved(decisions.get(ActionKind.unchanged), rows)
        self._record_skips(decisions.get(ActionKind.skip), planned, rows)
        self._retire(decisions.get(ActionKind.retire), rows)

        changes = decisions.get(ActionKind.update) + decisions.get(ActionKind.delete)
        approved = self.poster.approved_now([rows[a.source_key] for a in changes]) if changes else set()
        reviews = list(decisions.get(ActionKind.needs_review))
        for action in changes:
            row = rows[action.source_key]
            if row.procore_entry_id in approved:
                reviews.append(Action(ActionKind.needs_review, action.source_key, "approved in Procore"))
            elif action.kind == ActionKind.update:
                self.poster.update(row, planned[action.source_key])
            else:
                self.poster.delete(row, action.reason)
        self._needs_review(reviews, planned, rows)

        creates = [planned[a.source_key] for a in decisions.get(ActionKind.create)]
        creates = [p for p in creates if not is_later(p, window, manual=manual)]
        if creates:
            self.poster.post_all(self._claim(creates, rows, manual=manual))

    def adopt_existing(self, planned: dict[str, PlannedRow], rows: dict[str, LedgerRow], window: Period, *,
                       manual: bool) -> int:
        """Look before creating (DESIGN §3 step 10): every entry this run would create is first looked for in
        Procore by its identity; one that exists (posted by a database since restored or lost, or by another
        installation) is adopted into the ledger with Procore's id, and nothing is sent for it. Returns how many
        were adopted; the caller reads the ledger rows again."""
        candidates = {
            key: p for key, p in planned.items()
            if p.payload is not None and p.work_date is not None and p.party_id is not None
            and not is_later(p, window, manual=manual)
            and (key not in rows or rows[key].status in ADOPTABLE)
        }
        if not candidates:
            return 0
        found = self.poster.find_existing(candidates.values())
        log.info("sync.looked_before_creating", looked_for=len(candidates), found=len(found))
        if not found:
            return 0
        fresh, again, history = [], [], []
        for key, entry in found.items():
            p, origin = candidates[key], parse_origin(entry)
            # What Procore holds is adopted as posted only if it is what this entry says; otherwise it is a
            # failure with both values, never sent again (it exists) and never called posted.
            difference = stored_differently(p.payload or {}, entry)
            status, reason = (LedgerStatus.failed, "procore_changed_entry") if difference else (
                LedgerStatus.posted, "adopted")
            detail = (f"Procore holds entry {entry['id']} differently from what stsync would send: {difference}"
                      if difference else f"found in Procore as {entry['id']}; nothing was sent")
            values = {**planned_values(p), "status": status, "reason": reason if difference else None,
                      "detail": detail if difference else None, "procore_entry_id": int(entry["id"]),
                      "approval_status": entry.get("approval_status"),
                      "content_hash": origin.content_hash if origin else None, "posted_at": self.now,
                      "last_run_id": self.run_id}
            if key in rows:
                if rows[key].status == status and rows[key].reason == values["reason"]:
                    continue  # known already: a changed entry stays failed, said by the report
                again.append({**values, "id": rows[key].id})
                history.append((key, rows[key].status, status, reason, detail))
            else:
                fresh.append({**values, **self._new_row(key), "attempts": 0, "manual": manual})
                history.append((key, None, status, reason, detail))
            if difference:
                self.report.failed += 1
                self.report.failures.append(f"{key}: {detail}")
            else:
                self.report.adopted += 1
        if not (fresh or again):
            return 0
        with session_scope(self.database_url) as s:
            ids = {key: row.id for key, row in rows.items()}
            ids.update(ledger_store.insert_rows(s, self.connection_id, fresh))
            ledger_store.update_by_id(s, again)
            ledger_store.add_history(s, [(ids[key], old, new, reason, detail)
                                         for key, old, new, reason, detail in history], run_id=self.run_id,
                                     at=self.now)
        return len(fresh) + len(again)

    def _reconcile_first(self, decisions: Decisions, planned: dict[str, PlannedRow], rows: dict[str, LedgerRow],
                         *, manual: bool) -> None:
        """Rows whose earlier POST has no known outcome are looked up before anything else is decided for them."""
        again = {a.source_key: rows[a.source_key] for a in decisions.take(ActionKind.reconcile)}
        if not again:
            return
        found = self.poster.reconcile(list(again.values()))
        for row in again.values():
            row.stored_status = row.status  # what the ledger holds: the claim compares against it
            entry_id, approval = found.get(row.id, (None, None))
            row.status = LedgerStatus.posted if row.id in found else LedgerStatus.deleted
            row.procore_entry_id, row.approval_status = entry_id, approval
        for action in decide({k: planned[k] for k in again if k in planned}, again, manual=manual):
            decisions.add(action)
        # Absent from Procore and no longer planned in this scope: send the payload that was claimed, once this
        # run holds the rows.
        stale = [row for key, row in again.items() if key not in planned and row.status == LedgerStatus.deleted]
        if stale:
            with session_scope(self.database_url) as s:
                held = ledger_store.claim_rows(
                    s, [{"id": r.id, "status": LedgerStatus.pending, "claimed_at": self.now, "last_run_id": self.run_id}
                        for r in stale],
                    {r.id: (r.stored_status, r.last_run_id) for r in stale})
                resend = ledger_store.sendable(s, sorted(held))
            self.poster.post_all(resend)

    def _claim(self, creates: list[PlannedRow], rows: dict[str, LedgerRow], *, manual: bool) -> list[Sendable]:
        """Step 10: write the rows as `pending` and commit before anything is sent. New rows are inserted in bulk
        and their ids read back; rows claimed again are compare-and-set on the status and run they were read
        with, so a row another run changed meanwhile is left out. What comes back is what was committed, so the
        POST sends exactly that."""
        claim = {"status": LedgerStatus.pending, "reason": None, "detail": None, "claimed_at": self.now,
                 "last_run_id": self.run_id}
        fresh, again, expected = [], [], {}
        for p in creates:
            existing = rows.get(p.source_key)
            values = {**planned_values(p), **claim}
            if existing is None:
                fresh.append({**values, **self._new_row(p.source_key), "attempts": 1, "manual": manual})
            else:
                expected[existing.id] = (getattr(existing, "stored_status", existing.status), existing.last_run_id)
                again.append({**values, "id": existing.id, "attempts": (existing.attempts or 0) + 1,
                              "manual": manual or existing.manual})
        with session_scope(self.database_url) as s:
            ids = ledger_store.insert_rows(s, self.connection_id, fresh)
            reclaimed = ledger_store.claim_rows(s, again, expected)
            ids.update({p.source_key: rows[p.source_key].id for p in creates
                        if p.source_key in rows and rows[p.source_key].id in reclaimed})
            ledger_store.copy_history(
                s, [(ids[p.source_key], rows[p.source_key].status if p.source_key in rows else None)
                    for p in creates if p.source_key in ids],
                LedgerStatus.pending, None, "claimed for posting", run_id=self.run_id, at=self.now)
        claimed = [Sendable(ids[p.source_key], p.source_key, p.content_hash, p.payload, p.hours, LedgerStatus.pending,
                            p.work_date, p.party_id, self.run_id) for p in creates if p.source_key in ids]
        if len(claimed) < len(creates):  # another run changed them since they were read: left for the next run
            log.warning("sync.claims_lost", lost=len(creates) - len(claimed))
        self.poster.progress("claimed", len(claimed), len(claimed))
        return claimed

    def _new_row(self, source_key: str) -> dict[str, Any]:
        return {"connection_id": self.connection_id, "project_link_id": self.link_id, "source_key": source_key}

    def _set(self, row_id: int, status: LedgerStatus, reason: str | None, detail: str | None) -> None:
        with session_scope(self.database_url) as s:
            ledger_store.set_status(s, row_id, status, reason, detail, run_id=self.run_id, at=self.now)

    def _record_resolved(self, actions: list[Action], rows: dict[str, LedgerRow]) -> None:
        for action in actions:
            if action.reason == "resolved" and action.source_key in rows:
                self._set(rows[action.source_key].id, LedgerStatus.posted, None, "source matches Procore again")

    def _retire(self, actions: list[Action], rows: dict[str, LedgerRow]) -> None:
        for action in actions:
            self._set(rows[action.source_key].id, LedgerStatus.deleted, "source_deleted",
                      "its clock events no longer exist in ServiceTrade; nothing was in Procore")

    def _needs_review(self, actions: list[Action], planned: dict[str, PlannedRow], rows: dict[str, LedgerRow]) -> None:
        for action in actions:
            row = rows[action.source_key]
            self.report.needs_review += 1
            if row.status == LedgerStatus.needs_review:
                continue
            detail = (
                "the clock events changed after Procore approved the entry; Procore was left untouched"
                if action.source_key in planned
                else "the clock events vanished after Procore approved the entry; Procore was left untouched"
            )
            self._set(row.id, LedgerStatus.needs_review, "changed_after_approval", detail)

    def _record_skips(self, actions: list[Action], planned: dict[str, PlannedRow], rows: dict[str, LedgerRow]) -> None:
        """Skipped rows are re-evaluated every run, but written only when new or when something about them
        changed; a status change gets a history row."""
        fresh: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        history: list[tuple[str, LedgerStatus | None, str, str | None]] = []
        for action in actions:
            p = planned[action.source_key]
            reason = p.skip_reason.value if p.skip_reason else "skipped"
            values = {**planned_values(p), "status": LedgerStatus.skipped, "reason": reason, "detail": p.detail}
            existing = rows.get(action.source_key)
            if existing is None:
                fresh.append({**values, **self._new_row(p.source_key), "attempts": 0, "manual": False,
                              "last_run_id": self.run_id})
                history.append((p.source_key, None, reason, p.detail))
                continue
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
            ids.update(ledger_store.insert_rows(s, self.connection_id, fresh))
            ledger_store.update_by_id(s, changed)
            ledger_store.add_history(s, [(ids[key], old, LedgerStatus.skipped, reason, detail)
                                         for key, old, reason, detail in history], run_id=self.run_id, at=self.now)


_ABSENT = object()
