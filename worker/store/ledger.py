"""Ledger rows and their history (DESIGN §2): every write of a row's status goes with a history row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker.db import insert_many, one_of
from worker.enums import LedgerStatus
from worker.models import LedgerEntry, LedgerHistory

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
