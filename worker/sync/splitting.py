"""Cutting an interval into one piece per local work date (DESIGN §3 step 6).

Cuts are instants, and pieces keep the interval's own instants, so a 23- or 25-hour day keeps its real length
and the pieces always add up to the whole.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

from schedules.nextrun import local_to_utc
from worker.sync.types import Piece

SplitMode = Literal["midnight", "start_date"]


def split_interval(
    start: datetime, end: datetime, tz: tzinfo, *, mode: SplitMode = "midnight"
) -> list[Piece]:
    """Pieces of [start, end) by local date of `tz`, as UTC datetimes.

    midnight: cut at each local midnight, the first instant whose local date is the next day (a midnight that
    doesn't exist is the end of its gap). start_date: the whole interval on its local start date.
    An empty interval has no pieces.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("split_interval needs timezone-aware datetimes")
    if end < start:
        raise ValueError(f"interval ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if mode not in ("midnight", "start_date"):
        raise ValueError(f"split mode {mode!r} is not midnight or start_date")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end == start:
        return []
    if mode == "start_date":
        return [Piece(start.astimezone(tz).date(), start, end)]
    pieces = []
    cursor = start
    while cursor < end:
        work_date = cursor.astimezone(tz).date()
        cut = min(end, _day_end(cursor, work_date, tz))
        pieces.append(Piece(work_date, cursor, cut))
        cursor = cut
    return pieces


def _day_end(cursor: datetime, work_date: date, tz: tzinfo) -> datetime:
    """The first midnight after `cursor` that starts the day after `work_date`."""
    midnight = local_to_utc(work_date + timedelta(days=1), time(0), tz)
    if midnight > cursor:
        return midnight
    # The clocks went back across midnight (St. John's until 2010: 00:01 back to 23:01) and `cursor` lies in the
    # repeated part of `work_date`: that day ends when midnight comes round the second time.
    return datetime.combine(work_date + timedelta(days=1), time(0, fold=1), tzinfo=tz).astimezone(UTC)
