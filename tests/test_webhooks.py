"""Webhooks in process: the two receivers through Flask's test client (good, forged, replayed, too large,
malformed), registration and status against the emulators, a ServiceTrade change becoming a debounced webhook run
(a burst of 1,000 deliveries makes at most 2 runs), and a person's approval, edit and deletion in Procore landing in
the ledger while our own writes are ignored. Real PostgreSQL and the emulators over HTTP; the queue is recorded."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from worker.connections import servicetrade_client
from worker.db import session_scope
from worker.dispatch import dispatch_due
from worker.enums import LedgerStatus, RunStatus, RunTrigger
from worker.models import Connection, LedgerEntry, LedgerHistory, ProjectLink, SyncRun, WebhookDelivery
from worker.service import syncing, webhooks
from worker.settings import get_settings
from worker.store import sync_runs as run_store
from worker.web.app import create_app

from .helpers import END, START, first_project, ledger, live_entries
from .stsync_env import Stsync

CONSOLE = "http://127.0.0.1:9"  # nothing listens there: the emulator's own deliveries fail, ours are posted by hand


@pytest.fixture
def hooked(stsync: Stsync, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A linked project synced for two weeks, both hooks registered, the emulators' own sending off, and what the
    service would queue recorded instead of sent."""
    emulator.admin.config(webhooks_enabled=False)
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    webhooks.register_servicetrade(CONSOLE)
    webhooks.register_procore(CONSOLE)
    queued: list[int] = []
    started: list[int] = []
    monkeypatch.setattr(webhooks, "enqueue_processing", queued.append)
    monkeypatch.setattr(webhooks, "_start_when_due", lambda run_id, _debounce: started.append(run_id))
    with session_scope() as s:
        conn = s.scalars(select(Connection)).one()
        link = s.scalars(select(ProjectLink).where(ProjectLink.procore_project_id == pid)).one()
        token = servicetrade_client(conn).list_webhooks()[0]["hookUrl"].rsplit("/", 1)[1]
        info = {"pid": pid, "job_id": link.st_job_id, "zone": link.time_zone, "link_id": link.id,
                "secret": conn.procore_hook_secret, "client_id": conn.procore_client_id,
                "company_id": conn.procore_company_id}
    yield {**info, "token": token, "queued": queued, "started": started, "client": create_app().test_client(),
           "stsync": stsync}


def st_message(*items: tuple[str, str, int], at: int | None = None) -> dict[str, Any]:
    """A ServiceTrade delivery as ST-10 describes it: (entity type, action, id) items."""
    stamp = at or int(time.time())
    return {"messageId": str(uuid.uuid4()), "timestamp": str(stamp),
            "data": [{"action": action, "timestamp": stamp, "userId": None,
                      "entity": {"type": kind, "id": ident, "uri": f"https://api.servicetrade.com/api/{kind}/{ident}"}}
                     for kind, action, ident in items]}


def procore_message(h: dict[str, Any], entry_id: int, event_type: str, *, application: str = "procore-web"
                    ) -> dict[str, Any]:
    """A Procore v2 delivery (procore.md §16) about one timecard entry."""
    return {"id": int(time.time() * 1000), "ulid": uuid.uuid4().hex.upper(), "timestamp": "2026-03-20T10:00:00Z",
            "metadata": {"source_user_id": 1000001, "source_project_id": h["pid"], "source_operation_id": None,
                         "source_company_id": h["company_id"], "source_application_id": application},
            "user_id": 1000001, "company_id": h["company_id"], "project_id": h["pid"], "api_version": "v2.0",
            "event_type": event_type, "resource_name": "Timecard Entries", "resource_id": entry_id}


def post_st(h: dict[str, Any], body: Any, token: str | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return h["client"].post(f"/hooks/servicetrade/{token or h['token']}", data=data,
                            content_type="application/json")


def post_procore(h: dict[str, Any], body: Any, headers: dict[str, str] | None = None) -> Any:
    """POST to the Procore receiver, with our bearer secret unless other `headers` are given."""
    data = body if isinstance(body, bytes) else json.dumps(body)
    headers = {"Authorization": f"Bearer {h['secret']}"} if headers is None else headers
    return h["client"].post("/hooks/procore", data=data, content_type="application/json", headers=headers)


def deliveries() -> list[WebhookDelivery]:
    with session_scope() as s:
        rows = list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        s.expunge_all()
    return rows


def webhook_runs() -> list[SyncRun]:
    with session_scope() as s:
        rows = list(s.scalars(select(SyncRun).where(SyncRun.trigger == RunTrigger.webhook).order_by(SyncRun.id)))
        s.expunge_all()
    return rows


def receive_and_process(h: dict[str, Any], message: dict[str, Any]) -> webhooks.Processed:
    answer = post_st(h, message) if "messageId" in message else post_procore(h, message)
    assert answer.status_code == 200, answer.get_json()
    return webhooks.process_delivery(answer.get_json()["delivery_id"])


def local_instant(h: dict[str, Any], day: date, hour: int, minute: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(h["zone"])).timestamp())


def ok_technician(stsync: Stsync) -> int:
    return next(t["st_user_id"] for t in stsync.h["technicians"] if t["expect"] == "ok")


# ---------------------------------------------------------------------------- receivers


def test_a_servicetrade_delivery_is_stored_queued_and_a_replay_does_nothing_twice(hooked: dict[str, Any]) -> None:
    message = st_message(("job", "updated", hooked["job_id"]))
    first = post_st(hooked, message)
    again = post_st(hooked, message)
    assert first.status_code == 200 and first.get_json()["delivery_id"]
    assert again.status_code == 200 and again.get_json() == {"ok": True, "duplicate": True}
    stored = deliveries()
    assert [(d.source, d.message_id, d.outcome) for d in stored] == [("servicetrade", message["messageId"],
                                                                       "received")]
    assert stored[0].payload == message
    assert hooked["queued"] == [stored[0].id]


def test_a_forged_servicetrade_token_is_a_404_and_stores_nothing(hooked: dict[str, Any]) -> None:
    for token in ("not-the-token", hooked["token"][:-1], hooked["token"] + "x"):
        assert post_st(hooked, st_message(("job", "updated", hooked["job_id"])), token=token).status_code == 404
    assert deliveries() == [] and hooked["queued"] == []


def test_a_wrong_or_missing_procore_bearer_is_a_401_and_stores_nothing(hooked: dict[str, Any]) -> None:
    message = procore_message(hooked, 1, "update")
    for headers in ({"Authorization": "Bearer wrong-secret"}, {}, {"Authorization": f"Basic {hooked['secret']}"},
                    {"Authorization": f"Bearer {hooked['secret']}x"}):
        assert post_procore(hooked, message, headers).status_code == 401
    assert deliveries() == [] and hooked["queued"] == []


def test_a_body_over_the_limit_is_refused_and_recorded_by_its_size_only(
        hooked: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "webhook_max_body_bytes", 2000)
    message = st_message(*[("clockevent", "updated", n) for n in range(1, 200)])
    answer = post_st(hooked, message)
    assert answer.status_code == 413 and answer.get_json()["error"] == "too_large"
    answer = post_procore(hooked, b"{" + b" " * 5000 + b"}")
    assert answer.status_code == 413
    stored = deliveries()
    assert [(d.source, d.outcome) for d in stored] == [("servicetrade", "refused"), ("procore", "refused")]
    assert stored[0].reason.startswith("too_large") and stored[0].message_id is None
    assert stored[0].payload == {"refused_body": {"bytes": len(json.dumps(message)), "limit": 2000}}
    assert hooked["queued"] == []


def test_malformed_bodies_are_refused_with_a_named_reason_and_recorded(hooked: dict[str, Any]) -> None:
    no_data = st_message(("job", "updated", 1))
    del no_data["data"]
    no_ulid = procore_message(hooked, 1, "update")
    del no_ulid["ulid"]
    bad_event = procore_message(hooked, 1, "approve")
    answers = [post_st(hooked, b"{not json"), post_st(hooked, [1, 2]), post_st(hooked, {"data": []}),
               post_st(hooked, no_data), post_procore(hooked, no_ulid), post_procore(hooked, bad_event)]
    assert [a.status_code for a in answers] == [400] * 6
    assert [a.get_json()["error"] for a in answers] == ["not_json", "not_an_object", "malformed", "malformed",
                                                         "malformed", "malformed"]
    stored = deliveries()
    assert {d.outcome for d in stored} == {"refused"} and len(stored) == 6
    assert "messageId is missing" in stored[2].reason and "data must be a list" in stored[3].reason
    assert "ulid is missing" in stored[4].reason and "event_type must be one of" in stored[5].reason
    assert stored[3].message_id == no_data["messageId"]  # a malformed replay is not stored twice
    assert post_st(hooked, no_data).status_code == 400 and len(deliveries()) == 6
    assert hooked["queued"] == []


def test_a_procore_delivery_of_our_own_write_is_stored_ignored_and_never_queued(hooked: dict[str, Any]) -> None:
    answer = post_procore(hooked, procore_message(hooked, 1, "create", application=hooked["client_id"]))
    assert answer.status_code == 200
    (stored,) = deliveries()
    assert (stored.outcome, stored.processed_at is not None) == ("ignored", True)
    assert "our own write" in stored.reason
    assert hooked["queued"] == []


def test_the_hook_secrets_are_not_stored_in_plaintext(hooked: dict[str, Any]) -> None:
    with session_scope() as s:
        raw = s.execute(text("SELECT st_hook_token_hash, procore_hook_secret FROM connections")).one()
    assert raw.st_hook_token_hash == webhooks.token_digest(hooked["token"])
    assert hooked["secret"] not in raw.procore_hook_secret and hooked["token"] not in str(tuple(raw))


def test_deliveries_whose_message_was_lost_are_queued_again(hooked: dict[str, Any]) -> None:
    waiting = post_st(hooked, st_message(("job", "updated", hooked["job_id"]))).get_json()["delivery_id"]
    done = post_st(hooked, st_message(("job", "updated", hooked["job_id"]))).get_json()["delivery_id"]
    webhooks.process_delivery(done)
    hooked["queued"].clear()
    now = datetime.now(UTC)
    assert webhooks.requeue_unprocessed(now) == []  # just received: its message is on its way
    assert webhooks.requeue_unprocessed(now + timedelta(minutes=3)) == [waiting] == hooked["queued"]


# ---------------------------------------------------------------------------- registration and status


def test_registering_again_updates_the_hooks_and_keeps_one_of_each(hooked: dict[str, Any], emulator: Any) -> None:
    st_again = webhooks.register_servicetrade(CONSOLE)
    procore_again = webhooks.register_procore(CONSOLE + "/")
    assert (st_again.action, procore_again.action) == ("updated", "updated")
    with session_scope() as s:
        conn = s.scalars(select(Connection)).one()
        st_hooks = servicetrade_client(conn).list_webhooks()
    assert [h["id"] for h in st_hooks] == [st_again.hook_id]
    assert st_hooks[0]["hookUrl"].endswith(hooked["token"])  # the same token: deliveries in flight still count
    assert "…" in st_again.url and hooked["token"] not in st_again.url
    statuses = {s.source: s for s in webhooks.status()}
    assert statuses["servicetrade"].registered and statuses["procore"].registered
    assert "Timecard Entries create, Timecard Entries delete, Timecard Entries update" in statuses["procore"].detail
    assert hooked["token"] not in statuses["servicetrade"].detail
    assert statuses["procore"].detail.count("/hooks/procore") == 1


def test_a_servicetrade_hook_moved_to_another_url_gets_a_new_token_and_the_old_hook_goes(
        hooked: dict[str, Any]) -> None:
    moved = webhooks.register_servicetrade("http://localhost:10")
    assert moved.action == "created"
    with session_scope() as s:
        hooks = servicetrade_client(s.scalars(select(Connection)).one()).list_webhooks()
    assert [h["id"] for h in hooks] == [moved.hook_id]
    assert post_st(hooked, st_message(("job", "updated", hooked["job_id"]))).status_code == 404  # the old token
    new_token = hooks[0]["hookUrl"].rsplit("/", 1)[1]
    assert post_st(hooked, st_message(("job", "updated", hooked["job_id"])), token=new_token).status_code == 200


def test_status_shows_the_last_delivery_received_and_the_outcomes(hooked: dict[str, Any]) -> None:
    assert {s.source: s.last_received_at for s in webhooks.status()} == {"servicetrade": None, "procore": None}
    post_st(hooked, st_message(("job", "updated", hooked["job_id"])))
    post_st(hooked, b"[]")
    statuses = {s.source: s for s in webhooks.status()}
    assert statuses["servicetrade"].last_received_at is not None
    assert statuses["servicetrade"].outcomes == {"received": 1, "refused": 1}
    recent = webhooks.recent_deliveries(10)
    assert [(d.source, d.outcome) for d in recent] == [("servicetrade", "refused"), ("servicetrade", "received")]
    assert recent[1].summary == f"job {hooked['job_id']} updated"


@pytest.mark.parametrize("url", ["ftp://example.com", "http://example.com", "https://", "https://x.example/?a=1"])
def test_registering_refuses_a_url_senders_should_not_use(url: str) -> None:
    with pytest.raises(ValueError, match="url must"):
        webhooks.console_url(url)


# ---------------------------------------------------------------------------- ServiceTrade → a sync soon


def test_a_new_clock_out_makes_one_deferred_webhook_run_of_its_date_that_posts_it(
        hooked: dict[str, Any], emulator: Any) -> None:
    day = END + timedelta(days=1)
    tech = ok_technician(hooked["stsync"])
    punches = emulator.admin.add_clock_events([
        {"job_id": hooked["job_id"], "user_id": tech, "activity": "onsite", "eventType": kind,
         "eventTime": local_instant(hooked, day, hour)} for kind, hour in (("clockIn", 7), ("clockOut", 11))])
    before = time.time()
    processed = receive_and_process(hooked, st_message(*[("clockevent", "created", p["id"]) for p in punches]))
    (run,) = webhook_runs()
    assert processed.outcome == "processed" and processed.runs == [run.id] and hooked["started"] == [run.id]
    assert (run.status, run.window_start, run.window_end) == (RunStatus.deferred, day, day)
    due_in = run.next_attempt_at.timestamp() - before
    assert 15 <= due_in <= 25  # WEBHOOK_DEBOUNCE_S defaults to 20
    assert f"for {day}..{day}" in deliveries()[0].reason

    outcome = syncing.run_by_id(run.id)
    assert outcome.status == RunStatus.succeeded and outcome.report.posted == 1
    (entry,) = [e for e in live_entries(emulator, hooked["pid"]) if e["date"] == day.isoformat()]
    assert float(entry["hours"]) == 4.0


def test_a_deleted_clock_event_is_dated_by_the_stored_punch(hooked: dict[str, Any], emulator: Any) -> None:
    with session_scope() as s:
        row = s.scalars(select(LedgerEntry).where(LedgerEntry.status == LedgerStatus.posted)
                        .order_by(LedgerEntry.work_date.desc())).first()
        event_id, work_date = row.clock_in_event_id, row.work_date
    emulator.admin.delete_clock_event(event_id)
    receive_and_process(hooked, st_message(("clockevent", "deleted", event_id)))
    (run,) = webhook_runs()
    assert (run.window_start, run.window_end) == (work_date, work_date)


def test_an_edit_with_a_changeset_is_dated_without_asking_servicetrade(hooked: dict[str, Any],
                                                                       emulator: Any) -> None:
    with session_scope() as s:
        row = s.scalars(select(LedgerEntry).where(LedgerEntry.status == LedgerStatus.posted)
                        .order_by(LedgerEntry.work_date)).first()
        event_id, work_date = row.clock_in_event_id, row.work_date
    later = work_date + timedelta(days=3)
    new_time = local_instant(hooked, later, 6)
    emulator.admin.edit_clock_event(event_id, eventTime=new_time)
    emulator.admin.reset_requests()
    message = st_message(("clockevent", "updated", event_id))
    message["data"][0]["changeset"] = [{"field": "eventTime", "oldValue": 1, "newValue": new_time}]
    receive_and_process(hooked, message)
    (run,) = webhook_runs()
    assert (run.window_start, run.window_end) == (work_date, later)  # where it was, and where it is now
    assert emulator.admin.requests()["total"] == 0


def test_changes_of_unlinked_jobs_and_unknown_punches_are_kept_as_unmatched(hooked: dict[str, Any]) -> None:
    processed = receive_and_process(hooked, st_message(("job", "updated", 99), ("clockevent", "deleted", 98)))
    assert processed.outcome == "unmatched" and webhook_runs() == []
    (stored,) = deliveries()
    assert stored.outcome == "unmatched"
    assert "ServiceTrade job 99 is not linked" in stored.reason and "clock event 98" in stored.reason
    other = receive_and_process(hooked, st_message(("appointment", "updated", 5)))
    assert other.outcome == "ignored"


def test_a_burst_of_1000_deliveries_for_one_project_makes_at_most_two_runs(hooked: dict[str, Any]) -> None:
    zone = ZoneInfo(hooked["zone"])
    with session_scope() as s:
        events = sorted({(event_id, at.astimezone(zone).date()) for event_id, at in s.execute(
            select(LedgerEntry.clock_in_event_id, LedgerEntry.actual_start)
            .where(LedgerEntry.clock_in_event_id.is_not(None)))})
    today = datetime.now(UTC).astimezone(zone).date()
    # Odd deliveries name a stored punch as deleted (dated by its stored time), even ones the project's job.
    messages = [st_message(("clockevent", "deleted", events[n % len(events)][0])) if n % 2
                else st_message(("job", "updated", hooked["job_id"])) for n in range(1000)]
    first_half_dates = [events[n % len(events)][1] for n in range(1, 500, 2)]
    answers = [post_st(hooked, m) for m in messages]
    assert {a.status_code for a in answers} == {200} and len(hooked["queued"]) == 1000
    for delivery_id in hooked["queued"][:500]:
        webhooks.process_delivery(delivery_id)
    (first,) = webhook_runs()
    with session_scope() as s:  # a worker takes the run: later deliveries need a run of their own
        assert run_store.claim_run(s, first.id, datetime.now(UTC), lease=timedelta(hours=1))
    for delivery_id in hooked["queued"][500:]:
        webhooks.process_delivery(delivery_id)
    for delivery_id in hooked["queued"][:10]:  # a task delivered twice processes nothing twice
        assert webhooks.process_delivery(delivery_id).outcome is None
    runs = webhook_runs()
    assert len(runs) == 2 and hooked["started"] == [r.id for r in runs]
    assert (runs[0].window_start, runs[0].window_end) == (min(first_half_dates), today)  # widened by each
    assert runs[1].status == RunStatus.deferred
    due = runs[1].next_attempt_at
    assert dispatch_due(due - timedelta(seconds=1)) == []  # the dispatcher leaves it alone until it is due
    assert dispatch_due(due) == [runs[1].id]  # and starts it then, should its own message be lost
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)
                        .where(WebhookDelivery.outcome == "processed")) == 1000


# ---------------------------------------------------------------------------- Procore → the ledger


def posted_entry(h: dict[str, Any], emulator: Any) -> tuple[LedgerEntry, dict[str, Any]]:
    row = next(r for r in ledger(LedgerStatus.posted) if r.work_date == START)
    entry = next(e for e in live_entries(emulator, h["pid"]) if int(e["id"]) == row.procore_entry_id)
    return row, entry


def history_of(row_id: int) -> list[tuple[str | None, str, str | None]]:
    with session_scope() as s:
        return [(h.from_status, h.to_status, h.reason) for h in s.scalars(
            select(LedgerHistory).where(LedgerHistory.ledger_entry_id == row_id).order_by(LedgerHistory.id))]


def test_an_entry_approved_in_procore_is_recorded_approved_with_history(hooked: dict[str, Any],
                                                                        emulator: Any) -> None:
    row, entry = posted_entry(hooked, emulator)
    emulator.admin.approve_entry(entry["id"])
    processed = receive_and_process(hooked, procore_message(hooked, entry["id"], "update"))
    assert processed.outcome == "processed"
    (after,) = [r for r in ledger() if r.id == row.id]
    assert (after.status, after.approval_status) == (LedgerStatus.posted, "approved")
    assert history_of(row.id)[-1] == ("posted", "posted", "approval_changed")
    recorded = history_of(row.id)
    again = receive_and_process(hooked, procore_message(hooked, entry["id"], "update"))
    assert again.outcome == "ignored" and history_of(row.id) == recorded  # nothing new: no second history row


def test_an_entry_edited_by_a_person_needs_review_and_the_next_run_never_overwrites_the_edit(
        hooked: dict[str, Any], emulator: Any) -> None:
    row, entry = posted_entry(hooked, emulator)
    emulator.admin.edit_entry(entry["id"], hours="1.25")
    processed = receive_and_process(hooked, procore_message(hooked, entry["id"], "update"))
    assert processed.outcome == "processed"
    (after,) = [r for r in ledger() if r.id == row.id]
    assert after.status == LedgerStatus.needs_review and after.reason == "edited_in_procore"
    assert f"hours: sent {row.hours}, stored 1.25" in after.detail
    emulator.admin.approve_entry(entry["id"])  # approved after the edit: recorded, still under review
    assert receive_and_process(hooked, procore_message(hooked, entry["id"], "update")).outcome == "processed"
    (approved,) = [r for r in ledger() if r.id == row.id]
    assert (approved.status, approved.approval_status, approved.detail) == (LedgerStatus.needs_review, "approved",
                                                                           after.detail)
    hooked["stsync"].sync(hooked["pid"], START, END, ok=False)
    emulator.admin.edit_clock_event(row.clock_out_event_id, eventTime=int(row.actual_end.timestamp()) - 600)
    hooked["stsync"].sync(hooked["pid"], START, END, ok=False)  # even a later change of its punches
    kept = next(e for e in live_entries(emulator, hooked["pid"]) if e["id"] == entry["id"])
    assert float(kept["hours"]) == 1.25
    assert [r.status for r in ledger() if r.id == row.id] == [LedgerStatus.needs_review]


def test_an_entry_deleted_in_procore_is_recorded_and_not_posted_again(hooked: dict[str, Any],
                                                                      emulator: Any) -> None:
    row, entry = posted_entry(hooked, emulator)
    emulator.admin.delete_entry(entry["id"])
    processed = receive_and_process(hooked, procore_message(hooked, entry["id"], "delete"))
    assert processed.outcome == "processed"
    (after,) = [r for r in ledger() if r.id == row.id]
    assert after.status == LedgerStatus.deleted_in_procore
    assert history_of(row.id)[-1] == ("posted", "deleted_in_procore", "deleted_in_procore")
    hooked["stsync"].sync(hooked["pid"], START, END)
    assert [e for e in live_entries(emulator, hooked["pid"]) if e.get("origin_data") == entry["origin_data"]] == []
    assert receive_and_process(hooked, procore_message(hooked, entry["id"], "delete")).outcome == "ignored"


def test_entries_stsync_did_not_make_and_unlinked_projects_change_nothing(hooked: dict[str, Any],
                                                                          emulator: Any) -> None:
    before = [(r.id, r.status, r.approval_status) for r in ledger()]
    made_by_person = procore_message(hooked, 123456789, "delete")
    other_project = {**procore_message(hooked, 1, "update"), "project_id": hooked["stsync"].h["project_ids"][1]}
    assert receive_and_process(hooked, made_by_person).outcome == "ignored"
    unmatched = receive_and_process(hooked, other_project)
    assert unmatched.outcome == "unmatched" and "is not linked" in unmatched.reason
    assert [(r.id, r.status, r.approval_status) for r in ledger()] == before


def test_the_receivers_need_no_sign_in_and_no_csrf_token(hooked: dict[str, Any]) -> None:
    client: FlaskClient = hooked["client"]
    assert client.get("/").status_code in (302, 303)  # the console itself asks for sign-in
    answer = client.post(f"/hooks/servicetrade/{hooked['token']}", json=st_message(("job", "updated", 1)))
    assert answer.status_code == 200
