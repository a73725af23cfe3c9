"""Ledger rows and their history (DESIGN §2): every write of a row's status goes with a history row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Integer, String, Text, cast, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from worker.db import insert_many, one_of, update_rows
from worker.enums import PROBLEM_STATUSES, UNRESOLVED_STATUSES, LedgerStatus, SkipReason
from worker.models import LedgerEntry, LedgerHistory, UtcDateTime

# Rows `stsync retry` sends again (failed) or looks up first (unknown, pending); manual rows are left alone.
RETRYABLE = (LedgerStatus.failed, LedgerStatus.unknown, LedgerStatus.pending)

StatusChange = tuple[int, LedgerStatus | str | None, LedgerStatus, str | None, str | None]


def history_values(
    row_id: int, old: LedgerStatus | str | None, new: LedgerStatus, reason: str | None, detail: str | None, *,
    run_id: int | None, at: datetime,
) -> dict[str, Any]:
    return {"ledger_entry_id": row_id, "run_id": run_id, "from_status": str(old) if old is not None else None,
            "to_status": str(new), "reason": reason, "detail": detail, "at": at}


def add_history(s: Session, changes: Sequence[StatusChange], *, run_id: int | None, at: datetime) -> None:
    """History rows of many status changes (id, old status, new status, reason, detail), in one INSERT."""
    insert_many(s, LedgerHistory.__table__, [history_values(*c, run_id=run_id, at=at) for c in changes])


def list_rows(
    s: Session, link_id: int, *, status: LedgerStatus | None = None, technician: str | None = None,
    start: date | None = None, end: date | None = None, limit: int = 500,
) -> list[LedgerEntry]:
    """A project's ledger rows, by date, technician and source, optionally filtered."""
    query = select(LedgerEntry).where(LedgerEntry.project_link_id == link_id)
    if status is not None:
        query = query.where(LedgerEntry.status == status)
    if technician:
        query = query.where(LedgerEntry.technician_name.ilike(f"%{technician}%"))
    if start is not None:
        query = query.where(LedgerEntry.work_date >= start)
    if end is not None:
        query = query.where(LedgerEntry.work_date <= end)
    order = (LedgerEntry.work_date, LedgerEntry.technician_name, LedgerEntry.source_key)
    return list(s.scalars(query.order_by(*order).limit(limit)))


def counts_by_status(s: Session, link_id: int) -> dict[LedgerStatus, int]:
    rows = s.execute(select(LedgerEntry.status, func.count()).where(LedgerEntry.project_link_id == link_id)
                     .group_by(LedgerEntry.status))
    return {LedgerStatus(status): n for status, n in rows}


def reopen_for_retry(s: Session, link_id: int, *, at: datetime, ids: Sequence[int] | None = None) -> list[date]:
    """Make the failed rows of a project (or the given ones) sendable again: a refused entry is forgotten (its
    content hash cleared, with a history row saying so) so the next run's diff sends it again; unknown and pending
    rows are looked up in Procore by that run anyway. Returns the work dates of every retryable row."""
    query = select(LedgerEntry.id, LedgerEntry.status, LedgerEntry.work_date).where(
        LedgerEntry.project_link_id == link_id, LedgerEntry.status.in_(RETRYABLE), LedgerEntry.manual.is_(False))
    if ids is not None:
        query = query.where(one_of(s, LedgerEntry.id, list(ids)))
    rows = s.execute(query).all()
    failed = [row_id for row_id, status, _ in rows if status == LedgerStatus.failed]
    if failed:
        s.execute(update(LedgerEntry).where(one_of(s, LedgerEntry.id, failed)).values(content_hash=None))
        add_history(s, [(row_id, LedgerStatus.failed, LedgerStatus.failed, "retry_requested",
                         "a person asked to send it again") for row_id in failed], run_id=None, at=at)
    return [work_date for _, _, work_date in rows if work_date is not None]


# ---------------------------------------------------------------------------- what a run reads and writes

# The ledger columns a run decides with: the diff, claims, reconciliation, updates, deletes, the preview, and the
# comparison of a skipped row with what it would be now. Not the payload (read where it is sent again).
LEDGER_ROW = tuple(c for c in LedgerEntry.__table__.c if c.name not in (
    "payload", "description", "connection_id", "project_link_id", "created_at", "updated_at", "claimed_at",
    "posted_at"))
# The ledger columns a POST, its outcome and a reconciliation need.
SENDABLE = (LedgerEntry.id, LedgerEntry.source_key, LedgerEntry.content_hash, LedgerEntry.payload,
            LedgerEntry.hours, LedgerEntry.status, LedgerEntry.work_date, LedgerEntry.party_id,
            LedgerEntry.last_run_id)
ID_LOOKUP_SLICE = 1000  # ids or keys per statement (SQLite caps the bound parameters of one statement)


class LedgerRow(SimpleNamespace):
    """A ledger row as the run read it under the project lock, as plain attributes (the LEDGER_ROW columns): a
    look-back holds thousands, far cheaper to load this way than as ORM objects, and every write is a statement
    anyway."""


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
    last_run_id: int | None


def slices(items: Sequence[Any], size: int = ID_LOOKUP_SLICE) -> list[Sequence[Any]]:
    """`items` cut into consecutive pieces of at most `size`."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def window_rows(
    s: Session, link_id: int, *, scope_start: datetime, scope_end: datetime, keys: Sequence[str] | None = None,
) -> dict[str, LedgerRow]:
    """The rows a run decides about, by source key: those whose interval starts in the scope and every row whose
    outcome is unresolved; or, for the manual flow, exactly the rows of `keys`."""
    base = select(*LEDGER_ROW).where(LedgerEntry.project_link_id == link_id)
    if keys is not None:
        if not keys:
            return {}
        query = base.where(one_of(s, LedgerEntry.source_key, list(keys)))
    else:
        query = base.where(or_(
            (LedgerEntry.actual_start >= scope_start) & (LedgerEntry.actual_start < scope_end),
            LedgerEntry.status.in_(UNRESOLVED_STATUSES),
        ))
    return {row.source_key: LedgerRow(**row._asdict()) for row in s.execute(query)}


def insert_rows(s: Session, connection_id: int, values: list[dict[str, Any]]) -> dict[str, int]:
    """Insert new ledger rows; their ids by source key. A bulk insert and a SELECT of the ids by the unique
    (connection, source key) are several times cheaper than INSERT ... RETURNING, whose one huge multi-row
    statement the driver spends most of its time parsing."""
    if not values:
        return {}
    insert_many(s, LedgerEntry.__table__, values)
    ids: dict[str, int] = {}
    for part in slices([v["source_key"] for v in values]):
        ids.update(s.execute(select(LedgerEntry.source_key, LedgerEntry.id).where(
            LedgerEntry.connection_id == connection_id, one_of(s, LedgerEntry.source_key, part))).tuples().all())
    return ids


def update_by_id(s: Session, rows: list[dict[str, Any]]) -> None:
    """Rows given as column values with their `id`, each updated as given."""
    if rows:
        s.execute(update(LedgerEntry), rows)


def claim_rows(s: Session, rows: list[dict[str, Any]], expected: dict[int, tuple[LedgerStatus, int | None]]) -> set[int]:
    """Claim existing rows for this run: compare-and-set on the status and the run that last held each row (the
    fencing token), so a row another run changed since it was read is never claimed. Returns the ids claimed."""
    claimed: set[int] = set()
    for row in rows:
        status, last_run = expected[row["id"]]
        held_by = (LedgerEntry.last_run_id.is_(None) if last_run is None else LedgerEntry.last_run_id == last_run)
        result = s.execute(update(LedgerEntry).where(LedgerEntry.id == row["id"], LedgerEntry.status == status,
                                                     held_by).values(**{k: v for k, v in row.items() if k != "id"}))
        if result.rowcount == 1:
            claimed.add(row["id"])
    return claimed


def copy_history(
    s: Session, changes: Sequence[tuple[int, LedgerStatus | None]], new: LedgerStatus, reason: str | None,
    detail: str | ColumnElement[str], *, run_id: int | None, at: datetime,
) -> None:
    """History rows of many ledger rows (id, status they leave) that all move to `new`, written by the database
    itself: one INSERT ... SELECT from the ledger rows per old status (`detail` may be an expression of their
    columns)."""
    by_status: dict[LedgerStatus | None, list[int]] = {}
    for row_id, old in changes:
        by_status.setdefault(old, []).append(row_id)
    columns = ["ledger_entry_id", "run_id", "from_status", "to_status", "reason", "detail", "at"]
    detail_value = literal(detail, Text) if isinstance(detail, str) else detail
    for old, ids in by_status.items():
        for part in slices(ids):
            rows = select(
                LedgerEntry.id, literal(run_id, Integer), literal(str(old) if old else None, String),
                literal(str(new), String), literal(reason, String), detail_value, literal(at, UtcDateTime),
            ).where(one_of(s, LedgerEntry.id, part))
            s.execute(insert(LedgerHistory).from_select(columns, rows))


def mark_posted(
    s: Session, posted: list[dict[str, Any]], previous: Sequence[tuple[int, LedgerStatus]], *, run_id: int | None,
    at: datetime,
) -> None:
    """Rows Procore created: `posted` with Procore's id and approval state (`posted` holds id, procore_entry_id,
    approval_status per row), with history. Only rows this run still holds are marked."""
    update_rows(s, LedgerEntry.__table__, posted, status=LedgerStatus.posted, posted_at=at, reason=None,
                detail=None, updated_at=func.current_timestamp())
    copy_history(s, previous, LedgerStatus.posted, None,
                 literal("Procore entry ") + cast(LedgerEntry.procore_entry_id, String), run_id=run_id, at=at)


def mark(
    s: Session, rows: Sequence[Sendable], status: LedgerStatus, reason: str, detail: str, *, run_id: int | None,
    at: datetime,
) -> None:
    """Many rows to one status, each with a history row."""
    s.execute(update(LedgerEntry).where(one_of(s, LedgerEntry.id, [r.id for r in rows]))
              .values(status=status, reason=reason, detail=detail[:2000]))
    add_history(s, [(r.id, r.status, status, reason, detail) for r in rows], run_id=run_id, at=at)


def set_status(
    s: Session, row_id: int, status: LedgerStatus, reason: str | None, detail: str | None, *, run_id: int | None,
    at: datetime, values: dict[str, Any] | None = None,
) -> None:
    """One row to a status, with a history row; `values` are further columns to write with it."""
    row = s.get(LedgerEntry, row_id)
    if row is None:
        raise LookupError(f"ledger row {row_id} does not exist")
    add_history(s, [(row.id, row.status, status, reason, detail)], run_id=run_id, at=at)
    for column, value in (values or {}).items():
        setattr(row, column, value)
    row.status, row.reason, row.detail, row.last_run_id = status, reason, detail, run_id


def adopt(
    s: Session, found: dict[int, tuple[int, str | None]], *, reason: str, run_id: int | None, at: datetime,
) -> None:
    """Rows found in Procore (row id → Procore entry id, approval state): `posted` with that entry."""
    for row in s.scalars(select(LedgerEntry).where(one_of(s, LedgerEntry.id, list(found)))):
        entry_id, approval = found[row.id]
        add_history(s, [(row.id, row.status, LedgerStatus.posted, reason, f"found in Procore as {entry_id}")],
                    run_id=run_id, at=at)
        row.status, row.procore_entry_id, row.approval_status = LedgerStatus.posted, entry_id, approval
        row.posted_at = row.posted_at or at
        row.reason = row.detail = None
        row.last_run_id = run_id


def sendable(s: Session, ids: Sequence[int]) -> list[Sendable]:
    """The columns a POST, its outcome and a reconciliation need, in id order."""
    rows: list[Sendable] = []
    for part in slices(sorted(ids)):
        rows.extend(Sendable(*row) for row in s.execute(
            select(*SENDABLE).where(one_of(s, LedgerEntry.id, part)).order_by(LedgerEntry.id)))
    return rows


def count_status(s: Session, link_id: int, status: LedgerStatus) -> int:
    return s.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.project_link_id == link_id, LedgerEntry.status == status)) or 0


def problems(s: Session, link_id: int, start: date, end: date, *, examples: int = 5) -> list[dict[str, Any]]:
    """What is still wrong in a window's dates: rows failed, unknown, pending, needing review, or skipped as
    unmapped, grouped by status and reason, with a few named examples in Procore's (or stsync's) words."""
    wrong = or_(LedgerEntry.status.in_(PROBLEM_STATUSES | UNRESOLVED_STATUSES),
                (LedgerEntry.status == LedgerStatus.skipped) & (LedgerEntry.reason == SkipReason.unmapped.value))
    rows = s.execute(
        select(LedgerEntry.status, LedgerEntry.reason, LedgerEntry.technician_name, LedgerEntry.work_date,
               LedgerEntry.hours, LedgerEntry.detail)
        .where(LedgerEntry.project_link_id == link_id, LedgerEntry.work_date >= start, LedgerEntry.work_date <= end,
               wrong)
        .order_by(LedgerEntry.status, LedgerEntry.reason, LedgerEntry.work_date, LedgerEntry.technician_name)
    )
    groups: dict[tuple[str, str | None], dict[str, Any]] = {}
    for status, reason, technician, work_date, hours, detail in rows:
        group = groups.setdefault((str(status), reason), {"status": str(status), "reason": reason, "count": 0,
                                                          "examples": []})
        group["count"] += 1
        if len(group["examples"]) < examples:
            group["examples"].append({"technician": technician, "date": work_date.isoformat() if work_date else None,
                                      "hours": str(hours) if hours is not None else None, "detail": detail})
    return list(groups.values())


def in_procore_for_events(s: Session, link_id: int, clock_event_ids: Sequence[int]) -> list[LedgerEntry]:
    """Rows of these clock events whose entry is in Procore (or may be: sent, outcome unknown)."""
    in_procore = (LedgerStatus.posted, LedgerStatus.pending, LedgerStatus.unknown, LedgerStatus.needs_review)
    return list(s.scalars(select(LedgerEntry).where(
        LedgerEntry.project_link_id == link_id, LedgerEntry.status.in_(in_procore),
        or_(one_of(s, LedgerEntry.clock_in_event_id, list(clock_event_ids)),
            one_of(s, LedgerEntry.clock_out_event_id, list(clock_event_ids))),
    ).order_by(LedgerEntry.work_date, LedgerEntry.technician_name)))


def entries_of(s: Session, link_id: int, keys: Sequence[str]) -> list[LedgerEntry]:
    """The rows of these source keys, by technician and date."""
    if not keys:
        return []
    return list(s.scalars(select(LedgerEntry).where(
        LedgerEntry.project_link_id == link_id, one_of(s, LedgerEntry.source_key, list(keys)))
        .order_by(LedgerEntry.technician_name, LedgerEntry.work_date)))
