"""Webhook deliveries, the hook secrets of a connection, and the one pending webhook run of a project."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schedules.periods import Period
from worker.db import is_unique_violation, one_of
from worker.enums import RunStatus, RunTrigger
from worker.models import (
    ClockEvent,
    Connection,
    LedgerEntry,
    ProjectLink,
    SyncRun,
    WebhookDelivery,
    WebhookOutcome,
)
from worker.store.sync_runs import new_run

# A delivery in one of these may be processed (again): a task delivered twice, or retried after an error.
PROCESSABLE = (WebhookOutcome.received, WebhookOutcome.failed)


def record_delivery(
    s: Session, *, source: str, message_id: str | None, connection_id: int | None, payload: Any,
    outcome: WebhookOutcome, reason: str | None, at: datetime,
) -> WebhookDelivery | None:
    """Store a delivery; None when the sender's message id is stored already (a replay or a duplicate)."""
    delivery = WebhookDelivery(
        source=source, message_id=message_id, connection_id=connection_id, payload=payload, received_at=at,
        outcome=outcome.value, reason=reason,
        processed_at=at if outcome not in PROCESSABLE else None,
    )
    try:
        with s.begin_nested():
            s.add(delivery)
            s.flush()
    except IntegrityError as exc:
        if is_unique_violation(exc):
            return None
        raise
    return delivery


def claim_delivery(s: Session, delivery_id: int) -> WebhookDelivery | None:
    """The delivery, locked, when it still waits to be processed; None when another worker has it or had it."""
    return s.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.outcome.in_([o.value for o in PROCESSABLE]))
        .with_for_update(skip_locked=True)
    ).one_or_none()


def finish_delivery(
    delivery: WebhookDelivery, outcome: WebhookOutcome, reason: str | None, *, at: datetime,
) -> None:
    delivery.outcome = outcome.value
    delivery.reason = reason[:2000] if reason else None
    delivery.processed_at = at


def waiting_since(s: Session, before: datetime, *, limit: int = 1000) -> list[int]:
    """Deliveries received before `before` and still waiting to be processed (not failed ones: their task
    retries them), oldest first."""
    return list(s.scalars(select(WebhookDelivery.id)
                          .where(WebhookDelivery.outcome == WebhookOutcome.received.value,
                                 WebhookDelivery.received_at < before)
                          .order_by(WebhookDelivery.id).limit(limit)))


def recent_deliveries(s: Session, *, source: str | None = None, limit: int = 50) -> list[WebhookDelivery]:
    """Deliveries, newest first."""
    query = select(WebhookDelivery)
    if source is not None:
        query = query.where(WebhookDelivery.source == source)
    return list(s.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def last_received(s: Session, source: str) -> WebhookDelivery | None:
    return s.scalars(select(WebhookDelivery).where(WebhookDelivery.source == source)
                     .order_by(WebhookDelivery.id.desc()).limit(1)).first()


def counts_by_outcome(s: Session, source: str) -> dict[str, int]:
    rows = s.execute(select(WebhookDelivery.outcome, func.count()).where(WebhookDelivery.source == source)
                     .group_by(WebhookDelivery.outcome))
    return {outcome: n for outcome, n in rows}


# ---------------------------------------------------------------------------- who a delivery is for


def connection_by_token_hash(s: Session, token_hash: str) -> Connection | None:
    return s.scalars(select(Connection).where(Connection.st_hook_token_hash == token_hash)).one_or_none()


def connections_with_hook_secret(s: Session) -> list[Connection]:
    return list(s.scalars(select(Connection).where(Connection.procore_hook_secret.is_not(None))))


def links_of_jobs(s: Session, connection_id: int, job_ids: Sequence[int]) -> dict[int, ProjectLink]:
    """Linked projects by their ServiceTrade job id."""
    if not job_ids:
        return {}
    links = s.scalars(select(ProjectLink).where(ProjectLink.connection_id == connection_id,
                                                one_of(s, ProjectLink.st_job_id, list(job_ids))))
    return {link.st_job_id: link for link in links if link.st_job_id is not None}


def stored_clock_events(
    s: Session, connection_id: int, event_ids: Sequence[int],
) -> list[tuple[int, ProjectLink, datetime]]:
    """(event id, its linked project, its time as last read) of the punches stsync has read already."""
    if not event_ids:
        return []
    rows = s.execute(
        select(ClockEvent.st_event_id, ProjectLink, ClockEvent.event_time)
        .join(ProjectLink, ProjectLink.id == ClockEvent.project_link_id)
        .where(ProjectLink.connection_id == connection_id, one_of(s, ClockEvent.st_event_id, list(event_ids)))
    )
    return [(event_id, link, at) for event_id, link, at in rows]


def link_of_project(s: Session, connection_id: int, project_id: int) -> ProjectLink | None:
    return s.scalars(select(ProjectLink).where(ProjectLink.connection_id == connection_id,
                                               ProjectLink.procore_project_id == project_id)).one_or_none()


def ledger_row_of_entry(s: Session, connection_id: int, entry_id: int) -> LedgerEntry | None:
    """The ledger row of a Procore entry, locked against a concurrent delivery about the same entry."""
    return s.scalars(select(LedgerEntry).where(LedgerEntry.connection_id == connection_id,
                                               LedgerEntry.procore_entry_id == entry_id)
                     .with_for_update()).first()


def ledger_row_of_key(s: Session, connection_id: int, source_key: str) -> LedgerEntry | None:
    return s.scalars(select(LedgerEntry).where(LedgerEntry.connection_id == connection_id,
                                               LedgerEntry.source_key == source_key)
                     .with_for_update()).one_or_none()


# ---------------------------------------------------------------------------- the debounced run of a project


def debounced_run(
    s: Session, link: ProjectLink, dates: Sequence[date], *, now: datetime, due_at: datetime,
) -> tuple[SyncRun, bool]:
    """The project's webhook run that has not started yet, widened to cover `dates` (least start, greatest end),
    or a new deferred one due at `due_at`. True when it is new. The project row is locked first, so two
    deliveries about one project never make two pending runs."""
    s.execute(select(ProjectLink.id).where(ProjectLink.id == link.id).with_for_update())
    pending = s.scalars(
        select(SyncRun)
        .where(SyncRun.project_link_id == link.id, SyncRun.trigger == RunTrigger.webhook,
               SyncRun.status == RunStatus.deferred, SyncRun.dry_run.is_(False))
        .order_by(SyncRun.id).limit(1).with_for_update()
    ).first()
    start, end = min(dates), max(dates)
    if pending is not None:
        pending.window_start = min(pending.window_start, start)
        pending.window_end = max(pending.window_end, end)
        return pending, False
    run = new_run(s, link, trigger=RunTrigger.webhook, window=Period(start, end), now=now)
    assert run is not None  # the generated run key carries the instant: it is new
    run.status = RunStatus.deferred
    run.next_attempt_at = due_at
    return run, True
