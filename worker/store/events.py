"""Clock events as last read from ServiceTrade (DESIGN §2: the audit of raw punches; edits and deletions show)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from worker.db import dialect_insert, one_of, staged
from worker.models import ClockEvent
from worker.sync.types import Punch
from worker.text import clean_text

# What ServiceTrade says of a punch; a stored event is rewritten only when one of these changed.
EVENT_FIELDS = ("st_user_id", "user_name", "st_job_id", "activity", "event_type", "event_time", "source", "st_updated")
ID_LOOKUP_SLICE = 1000  # ids per statement (SQLite caps the bound parameters of one statement)


def event_values(punch: Punch, raw: dict[str, Any]) -> tuple[Any, ...]:
    """What ServiceTrade says of a punch, as stored: the EVENT_FIELDS in their order, text cleaned and cut to its
    column."""
    source, updated = raw.get("source"), raw.get("updated")
    return (punch.user_id, clean_text(punch.user_name, 300, "technician name"), punch.job_id, punch.activity,
            punch.event_type, punch.at, clean_text(source, 20, "event source") if source is not None else None,
            updated if isinstance(updated, int) else None)


def stored_events(s: Session, link_id: int, start: datetime, end: datetime) -> dict[int, tuple[Any, ...]]:
    """The listed events stored for a read range, by ServiceTrade id: what a re-read is compared with."""
    rows = s.execute(
        select(ClockEvent.st_event_id, *(getattr(ClockEvent, k) for k in EVENT_FIELDS)).where(
            ClockEvent.project_link_id == link_id,
            ClockEvent.event_time >= start,
            ClockEvent.event_time <= end,
            ClockEvent.deleted_at.is_(None),
        )
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def upsert_events(s: Session, batch: list[dict[str, Any]]) -> None:
    """New and changed events, in one INSERT ... ON CONFLICT DO UPDATE, which rewrites a stored row only when a
    value differs or it had vanished (an event that moved in time from outside the range read is stored already).
    A look-back re-reads weeks of unchanged punches on every run: those were compared in memory and never reach
    this."""
    table = ClockEvent.__table__
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


def mark_vanished(s: Session, link_id: int, gone: Sequence[int], at: datetime) -> None:
    """Stored events of a read range that ServiceTrade no longer lists."""
    for start in range(0, len(gone), ID_LOOKUP_SLICE):
        part = list(gone[start : start + ID_LOOKUP_SLICE])
        s.execute(update(ClockEvent).where(
            ClockEvent.project_link_id == link_id, one_of(s, ClockEvent.st_event_id, part),
        ).values(deleted_at=at))
