"""Webhooks of both emulators (servicetrade.md ST-10, procore.md P-14): registration over the APIs, deliveries to a
tiny local receiver, retries, duplicates, the on/off switch, and that a slow receiver never stalls the API."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from emulators.testing import AdminError
from tests.helpers import WORLD, bulk_url, procore_session, st_job, st_login
from tests.helpers import emulator_entry as entry

HOOKS_PATH = "/rest/v1.0/webhooks/hooks"
FAST_RETRIES = {"webhook_backoff_scale": 0.001, "webhook_timeout_s": 1.0}


class Receiver:
    """An HTTP server on 127.0.0.1 (a free port) that records every POST and answers the queued statuses in
    turn (200 once they run out), after `delay_s`."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.statuses: deque[int] = deque()
        self.delay_s = 0.0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers),
                                              "json": json.loads(body)})
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                    receiver._cond.notify_all()
                time.sleep(receiver.delay_s)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def wait(self, count: int, timeout: float = 10.0) -> list[dict]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, timeout), self.received
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()




@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def payloads(deliveries: list[dict]) -> list[dict]:
    return [d["payload"] for d in sorted(deliveries, key=lambda d: d["id"])]


# ---------------------------------------------------------------------------------------------- ServiceTrade

def st_hook(emulator, s: requests.Session, url: str, **fields) -> dict:
    body = {"hookUrl": url, "enabled": True, "includeChangesets": True, **fields}
    r = s.post(f"{emulator.st_url}/webhook", json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_st_webhooks_are_managed_in_the_api_envelope(emulator, h, receiver):
    s = st_login(emulator, h)
    hook = st_hook(emulator, s, receiver.url(), entityEvents=[{"entityType": "clockevent", "events": ["created"]}])
    assert hook["confirmed"] is True and hook["enabled"] is True and hook["id"] > 10**15
    assert s.get(f"{emulator.st_url}/webhook").json()["data"] == {"totalPages": 1, "page": 1, "webhooks": [hook]}
    assert s.get(f"{emulator.st_url}/webhook/{hook['id']}").json()["data"] == hook

    changed = s.put(f"{emulator.st_url}/webhook/{hook['id']}", json={"enabled": False, "entityEvents": [
        {"entityType": 3, "actions": ["updated"]}]}).json()["data"]
    assert changed["enabled"] is False and changed["entityEvents"] == [{"entityType": 3, "events": ["updated"]}]
    moved = s.put(f"{emulator.st_url}/webhook/{hook['id']}", json={"hookUrl": receiver.url("/elsewhere")})
    assert moved.status_code == 400 and "hookUrl" in moved.json()["messages"]["validation"]
    bad = s.post(f"{emulator.st_url}/webhook", json={"hookUrl": "ftp://x", "entityEvents": [{"entityType": "thing"}]})
    assert set(bad.json()["messages"]["validation"]) == {"hookUrl", "entityEvents"}

    assert s.delete(f"{emulator.st_url}/webhook/{hook['id']}").status_code == 204
    assert s.get(f"{emulator.st_url}/webhook/{hook['id']}").status_code == 404
    assert requests.get(f"{emulator.st_url}/webhook").status_code == 401


def test_st_clock_event_changes_are_delivered_as_ids_with_changesets(emulator, h, receiver):
    s = st_login(emulator, h)
    st_hook(emulator, s, receiver.url(), entityEvents=[{"entityType": "clockevent",
                                                   "events": ["created", "updated", "deleted"]}])
    job = st_job(emulator, s, h)  # the project's plan arrives as created events: one message
    [plan_message] = receiver.wait(1)
    assert len(plan_message["json"]["data"]) > 50
    tech = h["technicians"][0]["st_user_id"]
    [event] = emulator.admin.add_clock_events([{"job_id": job["id"], "user_id": tech, "activity": "onsite",
                                           "eventType": "clockIn", "eventTime": 1772460000}])
    emulator.admin.edit_clock_event(event["id"], eventTime=1772460300)
    emulator.admin.delete_clock_event(event["id"])
    # Messages may arrive in any order (ServiceTrade says so too): take them by action.
    by_action = {m["json"]["data"][0]["action"]: m["json"] for m in receiver.wait(4)[1:]}
    created, updated, deleted = by_action["created"], by_action["updated"], by_action["deleted"]

    assert isinstance(created["timestamp"], str) and len(created["messageId"]) == 36
    assert created["data"] == [{"action": "created", "timestamp": created["data"][0]["timestamp"], "userId": tech,
                                "entity": {"type": "clockevent", "id": event["id"],
                                           "uri": f"https://api.servicetrade.com/api/clockevent/{event['id']}"}}]
    assert updated["data"][0]["action"] == "updated"
    assert updated["data"][0]["changeset"] == [{"field": "eventTime", "oldValue": 1772460000,
                                                "newValue": 1772460300}]
    assert updated["data"][0]["userId"] != tech  # the office edited it
    assert [(i["action"], i["entity"]["id"]) for i in deleted["data"]] == [("deleted", event["id"])]
    assert "changeset" not in deleted["data"][0]
    assert len({m["json"]["messageId"] for m in receiver.received}) == 4


def test_st_job_changes_reach_only_the_webhooks_that_asked_for_them(emulator, h, receiver):
    s = st_login(emulator, h)
    st_hook(emulator, s, receiver.url("/jobs"), includeChangesets=False,
            entityEvents=[{"entityType": 3, "actions": ["created", "updated"]}])
    st_hook(emulator, s, receiver.url("/off"), enabled=False)
    job = st_job(emulator, s, h)
    emulator.admin.patch_job(job["id"], status="completed")
    messages = receiver.wait(2)
    time.sleep(0.2)
    assert [m["path"] for m in receiver.received] == ["/jobs", "/jobs"]
    created, updated = sorted((m["json"]["data"] for m in messages), key=lambda items: items[0]["action"])
    assert [(i["action"], i["entity"]["type"], i["entity"]["id"]) for i in created + updated] == [
        ("created", "job", job["id"]), ("updated", "job", job["id"])]
    assert "changeset" not in updated[0]  # includeChangesets is false


def test_st_delivery_tries_three_times_then_drops_and_a_4xx_counts_as_delivered(emulator, h, receiver):
    emulator.admin.config(**FAST_RETRIES)
    s = st_login(emulator, h)
    job = st_job(emulator, s, h)
    st_hook(emulator, s, receiver.url(), entityEvents=[{"entityType": "job", "events": ["updated"]}])
    receiver.statuses.extend([500, 502, 503, 404])
    emulator.admin.patch_job(job["id"], status="completed")
    [dropped] = emulator.admin.wait_for_deliveries(1, outcome="dropped")
    assert [a["status"] for a in dropped["attempts"]] == [500, 502, 503]
    emulator.admin.patch_job(job["id"], status="closed")
    [delivered] = emulator.admin.wait_for_deliveries(1, outcome="delivered")
    assert [a["status"] for a in delivered["attempts"]] == [404]


# ---------------------------------------------------------------------------------------------- Procore

def procore_hook(emulator, s: requests.Session, h, url: str, events=("create", "update", "delete"),
                 project_id: int | None = None) -> dict:
    scope = {"project_id": project_id} if project_id else {"company_id": h["procore_company_id"]}
    r = s.post(f"{emulator.procore_url}{HOOKS_PATH}", json={**scope, "hook": {
        "api_version": "v2", "namespace": "stsync", "destination_url": url,
        "destination_headers": {"Authorization": "Bearer hook-secret"}}})
    assert r.status_code == 201, r.text
    hook = r.json()
    for event_type in events:
        t = s.post(f"{emulator.procore_url}{HOOKS_PATH}/{hook['id']}/triggers", json={
            **scope, "api_version": "v2", "trigger": {"resource_name": "Timecard Entries", "event_type": event_type}})
        assert t.status_code == 201, t.text
    return hook


def test_procore_hooks_and_triggers_are_managed_per_company_or_project(emulator, h, receiver):
    s = procore_session(emulator, h)
    company = {"company_id": h["procore_company_id"]}
    hook = procore_hook(emulator, s, h, receiver.url(), events=("create",))
    assert hook["destination_headers"] == {"Authorization": "Bearer hook-secret"}
    assert (hook["company_id"], hook["project_id"], hook["namespace"]) == (h["procore_company_id"], None, "stsync")
    url = f"{emulator.procore_url}{HOOKS_PATH}"
    assert [x["id"] for x in s.get(url, params=company).json()] == [hook["id"]]
    assert s.get(url, params={"project_id": h["project_ids"][0]}).json() == []
    assert s.get(url).status_code == 400  # neither company_id nor project_id
    assert s.get(f"{url}/{hook['id']}", params={"company_id": 1}).status_code == 404

    patched = s.patch(f"{url}/{hook['id']}", json={**company, "hook": {
        "destination_headers": {"Authorization": "Bearer new-secret"}}}).json()
    assert patched["destination_headers"] == {"Authorization": "Bearer new-secret"}
    assert patched["destination_url"] == receiver.url()

    triggers_url = f"{url}/{hook['id']}/triggers"
    [trigger] = s.get(triggers_url, params=company).json()
    assert (trigger["resource_name"], trigger["event_type"]) == ("Timecard Entries", "create")
    again = s.post(triggers_url, json={**company, "trigger": {"resource_name": "Timecard Entries",
                                                              "event_type": "create"}})
    assert again.status_code == 422
    other = s.post(triggers_url, json={**company, "trigger": {"resource_name": "Projects", "event_type": "create"}})
    assert other.status_code == 422 and "resource_name" in other.json()["errors"]
    assert s.delete(f"{triggers_url}/{trigger['id']}", params=company).status_code == 204
    assert s.get(triggers_url, params=company).json() == []

    bad = s.post(url, json={**company, "hook": {"destination_url": "nowhere", "payload_version": "v4.0"}})
    assert bad.status_code == 422 and set(bad.json()["errors"]) == {"destination_url", "payload_version"}
    assert s.delete(f"{url}/{hook['id']}", params=company).status_code == 204
    assert s.get(f"{url}/{hook['id']}", params=company).status_code == 404


def test_procore_entry_changes_deliver_v2_payloads_from_our_application(emulator, h, receiver):
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url())
    created = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h), entry(h, tech=4)]}).json()
    pid = h["project_ids"][0]
    entry_url = f"{emulator.procore_url}/rest/v1.0/projects/{pid}/timecard_entries/{created[0]['id']}"
    assert s.patch(entry_url, json={"timecard_entry": {"hours": "6"}}).status_code == 200
    assert s.delete(entry_url).status_code == 200
    received = receiver.wait(4)

    assert all(r["headers"]["Authorization"] == "Bearer hook-secret" for r in received)
    by_event = sorted((r["json"]["event_type"], r["json"]["resource_id"]) for r in received)
    assert by_event == sorted([("create", created[0]["id"]), ("create", created[1]["id"]),
                               ("update", created[0]["id"]), ("delete", created[0]["id"])])
    payload = received[0]["json"]
    assert set(payload) == {"id", "ulid", "timestamp", "metadata", "user_id", "company_id", "project_id",
                            "api_version", "event_type", "resource_name", "resource_id"}
    assert (payload["resource_name"], payload["api_version"], payload["project_id"], payload["company_id"]) == (
        "Timecard Entries", "v2.0", pid, h["procore_company_id"])
    assert len(payload["ulid"]) == 26 and payload["timestamp"].endswith("Z")
    assert {r["json"]["metadata"]["source_application_id"] for r in received} == {h["procore_client_id"]}
    assert len({r["json"]["ulid"] for r in received}) == 4
    assert {d["outcome"] for d in emulator.admin.wait_for_deliveries(4, outcome="delivered")} == {"delivered"}


def test_changes_made_by_a_person_carry_another_application(emulator, h, receiver):
    s = procore_session(emulator, h)
    [first, second] = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h), entry(h, tech=4)]}).json()
    procore_hook(emulator, s, h, receiver.url(), events=("update", "delete"))
    emulator.admin.approve_entry(first["id"])
    emulator.admin.edit_entry(first["id"], hours="5.5", as_user_id=77)
    emulator.admin.delete_entry(second["id"], as_application_id="payroll-app")
    received = sorted((r["json"] for r in receiver.wait(3)), key=lambda p: p["id"])
    assert [(p["event_type"], p["resource_id"], p["metadata"]["source_application_id"],
             p["metadata"]["source_user_id"]) for p in received] == [
        ("update", first["id"], "procore-web", 1_000_001), ("update", first["id"], "procore-web", 77),
        ("delete", second["id"], "payroll-app", 1_000_001)]
    entries = {e["id"]: e for e in emulator.admin.procore_entries()}
    assert entries[first["id"]]["hours"] == "5.5" and entries[first["id"]]["approval_status"] == "approved"
    assert entries[second["id"]]["deleted_at"] is not None


def test_a_project_hook_hears_only_its_project(emulator, h, receiver):
    s = procore_session(emulator, h)
    total_hours = [p for p in h["project_ids"] if p not in h["start_stop_project_ids"]]
    procore_hook(emulator, s, h, receiver.url("/third"), events=("create",), project_id=total_hours[1])
    r = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, project_index=0), entry(h, project_index=2)]})
    assert r.status_code == 200, r.text
    [only] = receiver.wait(1)
    time.sleep(0.2)
    assert len(receiver.received) == 1
    assert (only["path"], only["json"]["project_id"]) == ("/third", total_hours[1])


def test_procore_retries_non_2xx_and_timeouts_with_backoff_until_delivered(emulator, h, receiver):
    emulator.admin.config(webhook_backoff_scale=0.001, webhook_timeout_s=0.3)
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url(), events=("create",))
    receiver.statuses.extend([500, 404, 429])
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    [delivered] = emulator.admin.wait_for_deliveries(1, outcome="delivered")
    assert [a["status"] for a in delivered["attempts"]] == [500, 404, 429, 200]
    assert len({r["json"]["ulid"] for r in receiver.received}) == 1  # the same event each time

    receiver.delay_s = 0.6  # longer than the timeout: no answer counts
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, tech=4)]})
    time.sleep(1.0)
    receiver.delay_s = 0
    [_, retried] = emulator.admin.wait_for_deliveries(2, outcome="delivered")
    timeouts = [a for a in retried["attempts"] if a["status"] is None]
    assert timeouts and all("timed out" in a["error"] for a in timeouts)
    assert retried["attempts"][-1]["status"] == 200


def test_procore_discards_a_message_after_the_retry_window(emulator, h, receiver):
    emulator.admin.config(webhook_backoff_scale=0.00002)  # 12 hours become under a second
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url(), events=("create",))
    receiver.statuses.extend([500] * 1000)
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    [discarded] = emulator.admin.wait_for_deliveries(1, outcome="discarded")
    assert len(discarded["attempts"]) > 5 and {a["status"] for a in discarded["attempts"]} == {500}


def test_the_duplicates_switch_sends_every_message_twice(emulator, h, receiver):
    emulator.admin.config(webhook_duplicates=True)
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url(), events=("create",))
    st = st_login(emulator, h)
    st_hook(emulator, st, receiver.url("/st"), entityEvents=[{"entityType": "job", "events": ["created"]}])
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    st_job(emulator, st, h)
    received = receiver.wait(4)
    time.sleep(0.2)
    assert len(receiver.received) == 4
    procore = [r["json"] for r in received if r["path"] == "/hook"]
    st_messages = [r["json"] for r in received if r["path"] == "/st"]
    assert len(procore) == 2 and procore[0] == procore[1]
    assert len(st_messages) == 2 and st_messages[0]["messageId"] == st_messages[1]["messageId"]
    assert sorted(d["duplicate"] for d in emulator.admin.webhook_deliveries()) == [False, False, True, True]


def test_webhooks_enabled_false_sends_nothing(emulator, h, receiver):
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url(), events=("create",))
    emulator.admin.config(webhooks_enabled=False)
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    time.sleep(0.3)
    assert receiver.received == [] and emulator.admin.webhook_deliveries() == []
    emulator.admin.config(webhooks_enabled=True)
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, tech=4)]})
    assert len(receiver.wait(1)) == 1


def test_switching_webhooks_off_stops_the_retries_of_queued_messages(emulator, h, receiver):
    emulator.admin.config(webhook_backoff_scale=0.5)  # the retry comes half a second after the first failure
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url(), events=("create",))
    receiver.statuses.append(500)
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    emulator.admin.wait_for_deliveries(1, outcome="retrying")
    emulator.admin.config(webhooks_enabled=False)
    [stopped] = emulator.admin.wait_for_deliveries(1, outcome="disabled")
    assert [a["status"] for a in stopped["attempts"]] == [500] and len(receiver.received) == 1


@pytest.mark.parametrize("values", [{"webhook_timeout_s": 0}, {"webhook_backoff_scale": -1},
                                    {"webhooks_enabled": "yes"}, {"webhook_duplicates": 1}])
def test_webhook_config_is_checked(emulator, h, values):
    with pytest.raises(AdminError, match=next(iter(values))):
        emulator.admin.config(**values)


def test_a_slow_receiver_never_holds_up_the_api(emulator, h, receiver):
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url(), events=("create",))
    receiver.delay_s = 2.0
    started = time.monotonic()
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    receiver.wait(1)  # the delivery is now waiting on the receiver
    project = s.get(f"{emulator.procore_url}/rest/v1.0/projects/{h['project_ids'][0]}")
    assert project.status_code == 200 and emulator.admin.webhook_deliveries()[0]["outcome"] == "pending"
    assert time.monotonic() - started < 1.5


def test_reset_forgets_hooks_and_deliveries(emulator, h, receiver):
    s = procore_session(emulator, h)
    procore_hook(emulator, s, h, receiver.url(), events=("create",))
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    emulator.admin.wait_for_deliveries(1, outcome="delivered")
    emulator.admin.reset(WORLD)
    assert emulator.admin.webhook_deliveries() == []
    s = procore_session(emulator, h)
    assert s.get(f"{emulator.procore_url}{HOOKS_PATH}", params={"company_id": h["procore_company_id"]}).json() == []
