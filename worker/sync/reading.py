"""DESIGN §3 step 3: a project job's clock events for the read range, page by page, turned into punches; the
stored copy (clock_events) follows what ServiceTrade lists, and only what changed is written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from worker.clients.servicetrade import ServiceTradeClient
from worker.db import session_scope
from worker.store import events as event_store
from worker.sync.events import EventProblem, punch_from_event
from worker.sync.report import RunReport
from worker.sync.types import Punch

log = structlog.get_logger("stsync.sync")

EVENT_BATCH = 2000  # clock events per upsert while reading


def read_events(
    st: ServiceTradeClient, link_id: int, job_id: int, start: datetime, end: datetime, report: RunReport, *,
    now: datetime, persist: bool, database_url: str | None = None,
    progress: Callable[[str, int, int], None] = lambda *_: None,
) -> list[Punch]:
    """The punches of the job between `start` and `end`; a malformed event is reported by name and left out. With
    `persist`, new and changed events are stored and those no longer listed are marked deleted."""
    punches: list[Punch] = []
    seen: set[int] = set()
    batch: list[dict[str, Any]] = []
    stored: dict[int, tuple[Any, ...]] = {}
    if persist:
        with session_scope(database_url) as s:
            stored = event_store.stored_events(s, link_id, start, end)

    def flush() -> None:
        with session_scope(database_url) as s:
            event_store.upsert_events(s, batch)
        batch.clear()

    events = st.clock_events(job_id=job_id, start_time=int(start.timestamp()), end_time=int(end.timestamp()))
    for n, raw in enumerate(events, start=1):
        try:
            punch = punch_from_event(raw)
        except EventProblem as problem:
            report.malformed_events.append(str(problem))
            log.warning("sync.malformed_event", problem=str(problem))
            if problem.event_id is not None:
                seen.add(problem.event_id)
            continue
        if punch.id in seen:
            continue  # a repeated page: the same event twice is still one punch
        seen.add(punch.id)
        punches.append(punch)
        if persist:
            values = event_store.event_values(punch, raw)
            if stored.get(punch.id) != values:  # new, changed or back
                batch.append({"project_link_id": link_id, "st_event_id": punch.id,
                              **dict(zip(event_store.EVENT_FIELDS, values, strict=True)),
                              "first_seen_at": now, "changed_at": now})
            if len(batch) >= EVENT_BATCH:
                flush()
        if n % 1000 == 0:
            progress("read", n, 0)
    if persist:
        if batch:
            flush()
        gone = [event_id for event_id in stored if event_id not in seen]
        if gone:
            with session_scope(database_url) as s:
                event_store.mark_vanished(s, link_id, gone, now)
    return punches
