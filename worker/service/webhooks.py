"""Webhooks (DESIGN §10): the two receivers' use cases, what a delivery changes, registering the hooks, and what
a person sees of them.

Receiving stores the delivery (unique on the sender's id, so a replay does nothing twice), commits, queues
`tasks.webhooks.process` and answers at once. Processing a ServiceTrade delivery schedules a debounced sync of the
affected project dates: an ordinary run, with the usual look-back and the same ledger. Processing a Procore
delivery records in the ledger what a person did to an entry stsync made. Scheduled runs stay the backstop: a
delivery that never arrives changes nothing a run would not find.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.orm import Session

from worker.clients.errors import ApiError, NotFound
from worker.connections import procore_client, servicetrade_client
from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.inputs import InvalidArgument, positive_limit
from worker.logging import register_secret
from worker.models import Connection, LedgerEntry, ProjectLink, WebhookDelivery, WebhookOutcome
from worker.settings import get_settings
from worker.store import ledger as ledger_store
from worker.store import webhooks as store
from worker.store.connections import NoConnection, get_connection
from worker.sync.identity import matches, parse_origin
from worker.sync.posting import stored_differently

log = structlog.get_logger("stsync.webhooks")

SERVICETRADE = "servicetrade"
PROCORE = "procore"
TIMECARD_ENTRIES = "Timecard Entries"
PROCORE_EVENTS = ("create", "update", "delete")
ST_ACTIONS = ("created", "updated", "deleted")
# What our ServiceTrade hook subscribes to: punches, and jobs (a job's change may concern its punches' project).
ST_ENTITY_EVENTS: dict[str | int, list[str]] = {"clockevent": list(ST_ACTIONS), "job": list(ST_ACTIONS)}
ST_PATH = "/hooks/servicetrade/"
PROCORE_PATH = "/hooks/procore"
# A delivery's item timestamp is ServiceTrade's clock; the punch's `updated` is at or after it, give or take skew.
CLOCK_SKEW = timedelta(minutes=5)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Ledger rows a person's change in Procore is recorded on; others are still being sent (the run decides) or gone.
RECORDED_STATUSES = (LedgerStatus.posted, LedgerStatus.needs_review)


# ---------------------------------------------------------------------------- receiving


@dataclass(frozen=True)
class Receipt:
    """The answer a receiver gives the sender, and the stored delivery to process after the commit."""

    status: int
    body: dict[str, Any]
    delivery_id: int | None = None
    process: bool = False


NOT_FOUND = Receipt(404, {"error": "not_found"})
UNAUTHORIZED = Receipt(401, {"error": "unauthorized", "message": "the bearer secret is not one stsync registered"})


def receive_servicetrade(token: str, body: bytes, *, declared_length: int | None = None,
                         now: datetime | None = None) -> Receipt:
    """A ServiceTrade delivery to `/hooks/servicetrade/<token>`. A token that is not a connection's is a 404 and
    nothing is stored: ServiceTrade signs nothing, the token in the URL is the only proof."""
    token_hash = token_digest(token)
    with session_scope() as s:
        conn = store.connection_by_token_hash(s, token_hash)
        if conn is None or not hmac.compare_digest(conn.st_hook_token_hash or "", token_hash):
            return NOT_FOUND
        receipt = _store(s, SERVICETRADE, conn, body, declared_length, now or datetime.now(UTC))
    return _enqueued(receipt)


def receive_procore(authorization: str | None, body: bytes, *, declared_length: int | None = None,
                    now: datetime | None = None) -> Receipt:
    """A Procore delivery to `/hooks/procore`, with the `Authorization: Bearer <secret>` we registered as its
    destination header. Another bearer (or none) is a 401 and nothing is stored."""
    presented = _bearer(authorization)
    if presented is None:
        return UNAUTHORIZED
    with session_scope() as s:
        conn = next((c for c in store.connections_with_hook_secret(s)
                     if hmac.compare_digest((c.procore_hook_secret or "").encode(), presented.encode())), None)
        if conn is None:
            return UNAUTHORIZED
        receipt = _store(s, PROCORE, conn, body, declared_length, now or datetime.now(UTC))
    return _enqueued(receipt)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def enqueue_processing(delivery_id: int) -> None:
    """Queue the processing of a stored delivery (after its commit, so the worker finds it)."""
    from worker.app import app

    app.send_task("tasks.webhooks.process", kwargs={"delivery_id": delivery_id}, queue="sync")


def requeue_unprocessed(now: datetime, *, older_than: timedelta = timedelta(minutes=2)) -> list[int]:
    """Queue again the deliveries still waiting to be processed a while after they came: their message was lost
    (the broker was down when they came, or restarted). Processing claims each delivery, so a second message
    for one does nothing."""
    with session_scope() as s:
        ids = store.waiting_since(s, now - older_than)
    for delivery_id in ids:
        enqueue_processing(delivery_id)
    return ids


def _enqueued(receipt: Receipt) -> Receipt:
    if receipt.process and receipt.delivery_id is not None:
        try:
            enqueue_processing(receipt.delivery_id)
        except Exception:  # noqa: BLE001 - the delivery is stored and answered; the scheduled runs are the backstop
            log.exception("webhook.enqueue_failed", delivery_id=receipt.delivery_id)
    return receipt


@dataclass(frozen=True)
class _Refusal:
    status: int
    reason: str
    message: str


def _store(s: Session, source: str, conn: Connection, body: bytes, declared_length: int | None,
           now: datetime) -> Receipt:
    """Check the body, store the delivery (refused ones too, with their reason) and say what to answer."""
    payload, message_id, refusal = _read_body(source, body, declared_length)
    outcome, reason = WebhookOutcome.received, None
    if refusal is not None:
        outcome, reason = WebhookOutcome.refused, f"{refusal.reason}: {refusal.message}"
    elif source == PROCORE and _our_own_write(payload, conn):
        # Decided here, without a task: every entry stsync posts comes back as a delivery.
        outcome, reason = WebhookOutcome.ignored, "our own write: Procore names stsync's application as its source"
    delivery = store.record_delivery(s, source=source, message_id=message_id, connection_id=conn.id,
                                     payload=payload, outcome=outcome, reason=reason, at=now)
    if refusal is not None:
        return Receipt(refusal.status, {"error": refusal.reason, "message": refusal.message},
                       delivery.id if delivery else None)
    if delivery is None:
        log.info("webhook.replayed", source=source, message_id=message_id)
        return Receipt(200, {"ok": True, "duplicate": True})
    log.info("webhook.received", source=source, message_id=message_id, delivery_id=delivery.id,
             outcome=outcome.value)
    return Receipt(200, {"ok": True, "delivery_id": delivery.id}, delivery.id,
                   process=outcome == WebhookOutcome.received)


def _read_body(source: str, body: bytes, declared_length: int | None
               ) -> tuple[dict[str, Any] | None, str | None, _Refusal | None]:
    """(payload, the sender's message id, why it is refused). A body too large is kept only as its size."""
    limit = get_settings().webhook_max_body_bytes
    if len(body) > limit:
        size = declared_length if declared_length is not None else len(body)
        marker = {"refused_body": {"bytes": size, "limit": limit}}
        return marker, None, _Refusal(413, "too_large", f"the body has {size} bytes; at most {limit} are read")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raw = {"refused_body": {"bytes": len(body), "text": body.decode("utf-8", "replace")[:2000]}}
        return raw, None, _Refusal(400, "not_json", "the body is not JSON")
    if not isinstance(payload, dict):
        return {"refused_body": {"json": payload}}, None, _Refusal(400, "not_an_object", "the body is not a JSON object")
    check = _servicetrade_shape if source == SERVICETRADE else _procore_shape
    message_id, problem = check(payload)
    if problem is not None:
        return payload, message_id, _Refusal(400, "malformed", problem)
    return payload, message_id, None


def _servicetrade_shape(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    message_id = payload.get("messageId")
    if not isinstance(message_id, str) or not message_id or len(message_id) > 100:
        return None, "messageId is missing (a string of at most 100 characters)"
    items = payload.get("data")
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("entity"), dict) for i in items):
        return message_id, "data must be a list of {action, entity: {type, id}}"
    return message_id, None


def _procore_shape(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    ulid = payload.get("ulid")
    if not isinstance(ulid, str) or not ulid or len(ulid) > 100:
        return None, "ulid is missing (a string of at most 100 characters)"
    for name in ("resource_id", "project_id", "company_id"):
        if _int(payload.get(name)) is None:
            return ulid, f"{name} must be a number"
    if payload.get("event_type") not in PROCORE_EVENTS:
        return ulid, f"event_type must be one of {', '.join(PROCORE_EVENTS)}"
    return ulid, None


def _our_own_write(payload: Mapping[str, Any] | None, conn: Connection) -> bool:
    metadata = (payload or {}).get("metadata")
    source_app = metadata.get("source_application_id") if isinstance(metadata, dict) else None
    return source_app is not None and str(source_app) == conn.procore_client_id


def _bearer(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


# ---------------------------------------------------------------------------- processing


@dataclass
class Processed:
    """What one delivery changed."""

    delivery_id: int
    outcome: WebhookOutcome | None
    reason: str | None
    runs: list[int] = field(default_factory=list)
    new_runs: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"delivery_id": self.delivery_id, "outcome": self.outcome.value if self.outcome else None,
                "reason": self.reason, "runs": self.runs}


def process_delivery(delivery_id: int, *, now: datetime | None = None) -> Processed:
    """Act on a stored delivery once: a delivery already processed (or being processed by another worker) is
    left alone. An error is recorded on the delivery (outcome `failed`) and raised, so the task may retry it."""
    now = now or datetime.now(UTC)
    try:
        with session_scope() as s:
            delivery = store.claim_delivery(s, delivery_id)
            if delivery is None:
                return Processed(delivery_id, None, "already processed, or being processed by another worker")
            result = _process(s, delivery, now)
            store.finish_delivery(delivery, result.outcome or WebhookOutcome.ignored, result.reason, at=now)
    except Exception as exc:
        _record_failure(delivery_id, exc)
        raise
    debounce = get_settings().webhook_debounce_s
    for run_id in result.new_runs:
        _start_when_due(run_id, debounce)
    log.info("webhook.processed", delivery_id=delivery_id, outcome=str(result.outcome), reason=result.reason,
             runs=result.runs)
    return result


def _process(s: Session, delivery: WebhookDelivery, now: datetime) -> Processed:
    conn = s.get(Connection, delivery.connection_id) if delivery.connection_id is not None else None
    if conn is None:
        return Processed(delivery.id, WebhookOutcome.unmatched, "its connection no longer exists")
    if delivery.source == SERVICETRADE:
        return _servicetrade_delivery(s, delivery.id, conn, delivery.payload or {}, now)
    return _procore_delivery(s, delivery.id, conn, delivery.payload or {}, now)


def _record_failure(delivery_id: int, exc: Exception) -> None:
    with session_scope() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        if delivery is not None and delivery.outcome in (o.value for o in store.PROCESSABLE):
            store.finish_delivery(delivery, WebhookOutcome.failed, f"{type(exc).__name__}: {exc}",
                                  at=datetime.now(UTC))


def _start_when_due(run_id: int, debounce_s: int) -> None:
    """Have a worker start the debounced run when it is due; the dispatcher would too, a minute later at most.
    The runner's claim makes a second start a no-op."""
    from worker.app import app

    try:
        app.send_task("tasks.sync.run", kwargs={"run_id": run_id}, queue="sync", countdown=debounce_s)
    except Exception:  # noqa: BLE001 - the run is stored as deferred: the dispatcher starts it when it is due
        log.exception("webhook.run_enqueue_failed", run_id=run_id)


# -- ServiceTrade: changes become a debounced sync of the affected project dates


@dataclass
class _Affected:
    """Project dates a delivery touches, and what could not be matched to a linked project."""

    dates: dict[int, tuple[ProjectLink, set[date]]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)

    def add(self, link: ProjectLink, day: date) -> None:
        self.dates.setdefault(link.id, (link, set()))[1].add(day)


def _servicetrade_delivery(s: Session, delivery_id: int, conn: Connection, payload: Mapping[str, Any],
                           now: datetime) -> Processed:
    items = [i for i in payload.get("data") or [] if isinstance(i, dict) and isinstance(i.get("entity"), dict)]
    jobs = {j for i in items if _entity_type(i) == "job" and (j := _int(i["entity"].get("id"))) is not None}
    events = {e: i for i in items if _entity_type(i) == "clockevent" and (e := _int(i["entity"].get("id")))}
    if not jobs and not events:
        return Processed(delivery_id, WebhookOutcome.ignored, "no clock event or job in it")
    affected = _Affected()
    _affected_by_jobs(s, conn, jobs, now, affected)
    _affected_by_clock_events(s, conn, events, affected)
    return _schedule_syncs(s, delivery_id, affected, now)


def _affected_by_jobs(s: Session, conn: Connection, job_ids: set[int], now: datetime, affected: _Affected) -> None:
    """A changed job: its project's today (the run's look-back covers what came before)."""
    links = store.links_of_jobs(s, conn.id, sorted(job_ids))
    for job_id in sorted(job_ids):
        link = links.get(job_id)
        if link is None:
            affected.unmatched.append(f"ServiceTrade job {job_id} is not linked to a Procore project")
        else:
            affected.add(link, _local_date(now, link))


def _affected_by_clock_events(s: Session, conn: Connection, items: dict[int, dict[str, Any]],
                              affected: _Affected) -> None:
    """A punch's date as stsync last read it (a deleted punch has only that) and as ServiceTrade has it now
    (an edit may move it to another day, or another job)."""
    if not items:
        return
    known: set[int] = set()
    to_read = {e for e, i in items.items() if i.get("action") != "deleted"}
    for event_id, link, at in store.stored_clock_events(s, conn.id, sorted(items)):
        affected.add(link, _local_date(at, link))
        known.add(event_id)
        moved_to = _moved_to(items[event_id], at)
        if moved_to is not None:  # the changeset says where it is now: no need to ask ServiceTrade
            affected.add(link, _local_date(moved_to, link))
            to_read.discard(event_id)
    current = _current_events(conn, sorted(to_read), _earliest(items.values()))
    links = store.links_of_jobs(s, conn.id, sorted({job for job, _ in current.values()}))
    for event_id in sorted(items):
        if event_id in current:
            job_id, at = current[event_id]
            link = links.get(job_id)
            if link is not None:
                affected.add(link, _local_date(at, link))
                known.add(event_id)
            elif event_id not in known:
                affected.unmatched.append(f"clock event {event_id} is on ServiceTrade job {job_id}, which is not "
                                          "linked to a Procore project")
                known.add(event_id)
        if event_id not in known:
            affected.unmatched.append(f"clock event {event_id} ({items[event_id].get('action')}) is neither stored "
                                      "nor listed by ServiceTrade any more, so its project is unknown")


def _moved_to(item: Mapping[str, Any], stored_at: datetime) -> datetime | None:
    """Where an edit with a changeset left a stored punch on the same job: its new time, or the stored one when
    the time did not change. None when there is no changeset, or the punch moved to another job."""
    changes = item.get("changeset")
    if item.get("action") != "updated" or not isinstance(changes, list):
        return None
    fields = {c.get("field"): c.get("newValue") for c in changes if isinstance(c, dict)}
    if "jobId" in fields:
        return None
    if "eventTime" not in fields:
        return stored_at
    new_time = _int(fields["eventTime"])
    return datetime.fromtimestamp(new_time, UTC) if new_time is not None else None


def _current_events(conn: Connection, event_ids: list[int], since: datetime) -> dict[int, tuple[int, datetime]]:
    """(job id, event time) of punches as ServiceTrade lists them now. ServiceTrade has no read by id (ST-5): the
    punches changed since the delivery's earliest change are listed until every one asked for is found."""
    if not event_ids:
        return {}
    wanted, found = set(event_ids), {}
    for event in servicetrade_client(conn).clock_events(updated_after=since - CLOCK_SKEW):
        event_id, job_id = _int(event.get("id")), _int((event.get("job") or {}).get("id"))
        if event_id in wanted and job_id is not None and _int(event.get("eventTime")) is not None:
            found[event_id] = (job_id, datetime.fromtimestamp(int(event["eventTime"]), UTC))
            if len(found) == len(wanted):
                break
    return found


def _schedule_syncs(s: Session, delivery_id: int, affected: _Affected, now: datetime) -> Processed:
    settings = get_settings()
    due_at = now + timedelta(seconds=settings.webhook_debounce_s)
    result = Processed(delivery_id, WebhookOutcome.processed, None)
    said = []
    for link, dates in affected.dates.values():
        run, new = store.debounced_run(s, link, sorted(dates), now=now, due_at=due_at)
        result.runs.append(run.id)
        if new:
            result.new_runs.append(run.id)
        said.append(f"sync of {link.name} for {run.window_start}..{run.window_end} "
                    f"({'new' if new else 'widened'} run {run.id})")
    if not said:
        return Processed(delivery_id, WebhookOutcome.unmatched, "; ".join(affected.unmatched))
    result.reason = "; ".join(said + affected.unmatched)
    return result


def _entity_type(item: Mapping[str, Any]) -> str:
    kind = item["entity"].get("type")
    return {3: "job", "3": "job"}.get(kind, str(kind).lower())


def _earliest(items: Iterable[Mapping[str, Any]]) -> datetime:
    stamps = [t for i in items if (t := _int(i.get("timestamp"))) is not None]
    return datetime.fromtimestamp(min(stamps), UTC) if stamps else datetime.now(UTC) - timedelta(days=1)


def _local_date(at: datetime, link: ProjectLink) -> date:
    return at.astimezone(ZoneInfo(link.time_zone)).date()


# -- Procore: what a person did to an entry stsync made goes into the ledger


def _procore_delivery(s: Session, delivery_id: int, conn: Connection, payload: Mapping[str, Any],
                      now: datetime) -> Processed:
    def done(outcome: WebhookOutcome, reason: str) -> Processed:
        return Processed(delivery_id, outcome, reason)

    if payload.get("resource_name") != TIMECARD_ENTRIES:
        return done(WebhookOutcome.ignored, f"a change of {payload.get('resource_name')!r}, not of a timecard entry")
    if _int(payload.get("company_id")) != conn.procore_company_id:
        return done(WebhookOutcome.unmatched, f"Procore company {payload.get('company_id')} is not the connected one")
    project_id, entry_id = int(payload["project_id"]), int(payload["resource_id"])
    link = store.link_of_project(s, conn.id, project_id)
    if link is None:
        return done(WebhookOutcome.unmatched, f"Procore project {project_id} is not linked")
    who = f"Procore user {payload.get('user_id')}" if payload.get("user_id") else "someone in Procore"
    if payload.get("event_type") == "delete":
        return done(*_deleted_in_procore(s, conn, entry_id, who, now))
    try:
        entry = procore_client(conn).get_entry(project_id, entry_id)
    except NotFound:
        return done(WebhookOutcome.ignored, f"Procore entry {entry_id} no longer exists; its deletion is a "
                                            "delivery of its own")
    row = store.ledger_row_of_entry(s, conn.id, entry_id) or _row_by_identity(s, conn, entry)
    if row is None:
        return done(WebhookOutcome.ignored, f"Procore entry {entry_id} is not one stsync made")
    if row.procore_entry_id != entry_id or row.status not in RECORDED_STATUSES:
        return done(WebhookOutcome.ignored, f"ledger row {row.id} ({row.source_key}) is {row.status.value}: "
                                            "the next run decides about it")
    return done(*_changed_in_procore(s, row, entry, who, now))


def _deleted_in_procore(s: Session, conn: Connection, entry_id: int, who: str,
                        now: datetime) -> tuple[WebhookOutcome, str]:
    row = store.ledger_row_of_entry(s, conn.id, entry_id)
    if row is None:
        return WebhookOutcome.ignored, f"Procore entry {entry_id} is not one stsync made"
    if row.status in (LedgerStatus.deleted, LedgerStatus.deleted_in_procore):
        return WebhookOutcome.ignored, f"ledger row {row.id} ({row.source_key}) is {row.status.value} already"
    detail = (f"{who} deleted Procore entry {entry_id}; stsync does not post it again unless someone asks")
    ledger_store.set_status(s, row.id, LedgerStatus.deleted_in_procore, "deleted_in_procore", detail, run_id=None,
                            at=now)
    return WebhookOutcome.processed, f"ledger row {row.id} ({row.source_key}): {detail}"


def _changed_in_procore(s: Session, row: LedgerEntry, entry: Mapping[str, Any], who: str,
                        now: datetime) -> tuple[WebhookOutcome, str]:
    """A person's edit makes the row `needs_review` with what changed (stsync never overwrites it); an approval
    (or its withdrawal) is recorded as the row's approval status."""
    approval = entry.get("approval_status")
    approval = str(approval) if approval is not None else row.approval_status
    edited = stored_differently(row.payload or {}, dict(entry))
    detail = f"{who} edited Procore entry {row.procore_entry_id}: {edited}"
    if edited is not None and not (row.status == LedgerStatus.needs_review and row.detail == detail):
        # The entry no longer holds what stsync sent, so its hash goes (as for a row reopened for a retry): no
        # run may take the row as in step with its source, "resolve" it, and later PATCH over the person's edit.
        ledger_store.set_status(s, row.id, LedgerStatus.needs_review, "edited_in_procore", detail, run_id=None,
                                at=now, values={"approval_status": approval, "content_hash": None})
        return WebhookOutcome.processed, f"ledger row {row.id} ({row.source_key}) needs review: {detail}"
    if approval != row.approval_status:
        # The row keeps its status and what it says (an edit under review stays so); the history tells the change.
        change = f"Procore entry {row.procore_entry_id} is {approval} (was {row.approval_status or 'unknown'})"
        ledger_store.add_history(s, [(row.id, row.status, row.status, "approval_changed", change)], run_id=None,
                                 at=now)
        row.approval_status = approval
        return WebhookOutcome.processed, f"ledger row {row.id} ({row.source_key}): {change}"
    if edited is not None:
        return WebhookOutcome.ignored, f"ledger row {row.id} ({row.source_key}) already records this edit"
    return WebhookOutcome.ignored, f"nothing stsync records changed on Procore entry {row.procore_entry_id}"


def _row_by_identity(s: Session, conn: Connection, entry: Mapping[str, Any]) -> LedgerEntry | None:
    """The ledger row an entry was posted for, by the identity it carries (a row whose answer was lost)."""
    origin = parse_origin(entry)
    if origin is None or not matches(entry, conn.procore_company_id, origin.source_key):
        return None
    return store.ledger_row_of_key(s, conn.id, origin.source_key)


# ---------------------------------------------------------------------------- registering the hooks


@dataclass(frozen=True)
class Registration:
    """A hook as registered: where it delivers (ServiceTrade's token masked) and what it hears."""

    source: str
    hook_id: int
    url: str
    action: str  # created | updated
    events: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "hook_id": self.hook_id, "url": self.url, "action": self.action,
                "events": self.events}


def register_servicetrade(url: str, *, company_id: int | None = None) -> Registration:
    """Create (or update) the ServiceTrade webhook of the connection: clock events and jobs, created, updated and
    deleted, delivered to `<url>/hooks/servicetrade/<token>`. The token is new when the hook is; only its hash is
    kept. ServiceTrade can't change a hook's URL, so a hook of ours at another URL is replaced."""
    base = console_url(url)
    with session_scope() as s:
        conn = get_connection(s, company_id)
        conn_id, token_hash, old_id = conn.id, conn.st_hook_token_hash, conn.st_webhook_id
        st = servicetrade_client(conn)
    hooks = st.list_webhooks()
    current = next((h for h in hooks if _is_our_servicetrade_hook(h, base, token_hash)), None)
    if current is not None:
        hook = st.update_webhook(int(current["id"]), enabled=True, include_changesets=True,
                                 entity_events=ST_ENTITY_EVENTS)
        action = "updated"
    else:
        token = secrets.token_urlsafe(32)
        register_secret(token)
        # The hash is stored before the hook exists, so its very first delivery is accepted.
        _update_connection(conn_id, st_hook_token_hash=token_digest(token))
        hook = st.create_webhook(f"{base}{ST_PATH}{token}", ST_ENTITY_EVENTS, include_changesets=True)
        action = "created"
    hook_id = int(hook["id"])
    _update_connection(conn_id, st_webhook_id=hook_id)
    if old_id is not None and old_id != hook_id and any(int(h["id"]) == old_id for h in hooks):
        st.delete_webhook(old_id)  # our previous hook: every hook hears every message, so one must go
    return Registration(SERVICETRADE, hook_id, f"{base}{ST_PATH}…", action, _st_events(ST_ENTITY_EVENTS))


def register_procore(url: str, *, company_id: int | None = None) -> Registration:
    """Create (or update) the company's Procore hook delivering to `<url>/hooks/procore` with our bearer secret,
    and make its triggers exactly create, update and delete of "Timecard Entries"."""
    destination = console_url(url) + PROCORE_PATH
    with session_scope() as s:
        conn = get_connection(s, company_id)
        if conn.procore_hook_secret is None:
            # Stored before the hook exists, so its very first delivery is accepted.
            conn.procore_hook_secret = secrets.token_urlsafe(32)
        conn_id, secret, known_id = conn.id, conn.procore_hook_secret, conn.procore_hook_id
        procore = procore_client(conn)
    headers = {"Authorization": f"Bearer {secret}"}
    hooks = procore.list_hooks()
    existing = (next((h for h in hooks if _int(h.get("id")) == known_id), None)
                or next((h for h in hooks if h.get("destination_url") == destination), None))
    if existing is not None:
        hook = procore.update_hook(int(existing["id"]), destination_url=destination, destination_headers=headers)
        action = "updated"
    else:
        hook = procore.create_hook(destination, headers)
        action = "created"
    hook_id = int(hook["id"])
    _update_connection(conn_id, procore_hook_id=hook_id)
    kept: set[str] = set()
    for trigger in procore.list_triggers(hook_id):
        event = trigger.get("event_type")
        if trigger.get("resource_name") == TIMECARD_ENTRIES and event in PROCORE_EVENTS and event not in kept:
            kept.add(event)
        else:
            procore.delete_trigger(hook_id, int(trigger["id"]))
    for event in PROCORE_EVENTS:
        if event not in kept:
            procore.create_trigger(hook_id, event, TIMECARD_ENTRIES)
    return Registration(PROCORE, hook_id, destination, action,
                        [f"{TIMECARD_ENTRIES} {event}" for event in PROCORE_EVENTS])


def console_url(url: str) -> str:
    """The console's public base URL, as the senders reach it: https (plain http only to this machine, for
    development), no query."""
    parts = urlsplit((url or "").strip())
    loopback = parts.hostname in LOOPBACK_HOSTS
    if parts.scheme not in ("https", "http") or not parts.hostname or (parts.scheme == "http" and not loopback):
        raise InvalidArgument(f"url must be the console's public https address, like https://stsync.example.com; "
                              f"got {url!r}")
    if parts.query or parts.fragment:
        raise InvalidArgument(f"url must have no query or fragment; got {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_our_servicetrade_hook(hook: Mapping[str, Any], base: str, token_hash: str | None) -> bool:
    hook_url = str(hook.get("hookUrl") or "")
    prefix = f"{base}{ST_PATH}"
    return (token_hash is not None and hook_url.startswith(prefix)
            and hmac.compare_digest(token_digest(hook_url[len(prefix):]), token_hash))


def _update_connection(connection_id: int, **values: Any) -> None:
    with session_scope() as s:
        conn = s.get(Connection, connection_id)
        assert conn is not None
        for name, value in values.items():
            setattr(conn, name, value)


def _st_events(entity_events: Mapping[str | int, list[str]]) -> list[str]:
    return [f"{entity} {action}" for entity, actions in entity_events.items() for action in actions]


# ---------------------------------------------------------------------------- what a person sees


@dataclass(frozen=True)
class DeliveryView:
    id: int
    source: str
    message_id: str | None
    received_at: datetime
    processed_at: datetime | None
    outcome: str
    reason: str | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "message_id": self.message_id,
                "received_at": self.received_at.isoformat(),
                "processed_at": self.processed_at.isoformat() if self.processed_at else None,
                "outcome": self.outcome, "reason": self.reason, "summary": self.summary}


@dataclass(frozen=True)
class HookStatus:
    source: str
    registered: bool
    detail: str  # where it delivers and what it hears, or why it is not registered (or could not be read)
    last_received_at: datetime | None
    outcomes: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "registered": self.registered, "detail": self.detail,
                "last_received_at": self.last_received_at.isoformat() if self.last_received_at else None,
                "outcomes": self.outcomes}


def recent_deliveries(limit: int = 50, source: str | None = None) -> list[DeliveryView]:
    """The latest deliveries, newest first, with what became of each (the console's runs page)."""
    if source not in (None, SERVICETRADE, PROCORE):
        raise InvalidArgument(f"source must be {SERVICETRADE} or {PROCORE}, not {source!r}")
    with session_scope() as s:
        rows = store.recent_deliveries(s, source=source, limit=positive_limit(limit, "limit", most=1000))
        return [_view(d) for d in rows]


def status(company_id: int | None = None) -> list[HookStatus]:
    """Per source: whether our hook is registered (as the API shows it now), the last delivery received and the
    deliveries by outcome."""
    with session_scope() as s:
        conn = get_connection(s, company_id)
        st_id, procore_id = conn.st_webhook_id, conn.procore_hook_id
        seen = {source: (store.last_received(s, source), store.counts_by_outcome(s, source))
                for source in (SERVICETRADE, PROCORE)}
    described = {
        SERVICETRADE: _read_hook(lambda: _servicetrade_hook(servicetrade_client(conn).list_webhooks(), st_id)),
        PROCORE: _read_hook(lambda: _procore_hook(procore_client(conn), procore_id)),
    }
    statuses = []
    for source, (last, outcomes) in seen.items():
        registered, detail = described[source]
        statuses.append(HookStatus(source, registered, detail, last.received_at if last else None, outcomes))
    return statuses


def _read_hook(describe: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    try:
        return describe()
    except (ApiError, NoConnection) as exc:
        return False, f"could not be read: {exc}"


def _servicetrade_hook(hooks: list[dict[str, Any]], hook_id: int | None) -> tuple[bool, str]:
    hook = next((h for h in hooks if hook_id is not None and _int(h.get("id")) == hook_id), None)
    if hook is None:
        return False, "not registered: run `stsync webhooks register servicetrade --url https://...`"
    url = str(hook.get("hookUrl") or "")
    masked = url[: url.find(ST_PATH) + len(ST_PATH)] + "…" if ST_PATH in url else url
    state = "enabled" if hook.get("enabled") else "DISABLED"
    return True, f"hook {hook_id} → {masked} ({state}; {_describe_st_events(hook.get('entityEvents'))})"


def _procore_hook(procore: Any, hook_id: int | None) -> tuple[bool, str]:
    hook = next((h for h in procore.list_hooks() if hook_id is not None and _int(h.get("id")) == hook_id), None)
    if hook is None:
        return False, "not registered: run `stsync webhooks register procore --url https://...`"
    triggers = sorted(f"{t.get('resource_name')} {t.get('event_type')}" for t in procore.list_triggers(hook_id))
    return True, f"hook {hook_id} → {hook.get('destination_url')} ({', '.join(triggers) or 'no triggers'})"


def _describe_st_events(entity_events: Any) -> str:
    if not isinstance(entity_events, list):
        return "every change"
    return ", ".join(f"{e.get('entityType')} {'/'.join(e.get('events') or e.get('actions') or [])}"
                     for e in entity_events if isinstance(e, dict))


def _view(d: WebhookDelivery) -> DeliveryView:
    return DeliveryView(d.id, d.source, d.message_id, d.received_at, d.processed_at, d.outcome, d.reason,
                        _summary(d.source, d.payload))


def _summary(source: str, payload: Any) -> str:
    """What the delivery said, in a line."""
    if not isinstance(payload, dict) or "refused_body" in payload:
        return "unreadable body"
    if source == PROCORE:
        return (f"{payload.get('resource_name')} {payload.get('event_type')} {payload.get('resource_id')} "
                f"in project {payload.get('project_id')}")
    items = [i for i in payload.get("data") or [] if isinstance(i, dict) and isinstance(i.get("entity"), dict)]
    said = [f"{i['entity'].get('type')} {i['entity'].get('id')} {i.get('action')}" for i in items[:5]]
    return "; ".join(said) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
