"""The Procore client against the emulator over HTTP: one or more tests for each item of procore.md Part A
(P-1..P-11), and the shared Redis rate budget keeping two clients under Procore's limit."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.helpers import DAY, Recorder, Sleeps, SpyBudget, counted
from tests.helpers import procore_client as client
from tests.helpers import procore_entry as entry
from worker.clients.errors import (
    BulkValidationFailed,
    CredentialsRejected,
    DeferRun,
    EntryLocked,
    MalformedResponse,
    NeedsReauthorization,
    NotFound,
    OutcomeUnknown,
    TransientError,
    ValidationFailed,
)
from worker.clients.procore import MemoryTokenStore, ProcoreClient, TokenSet
from worker.clients.ratelimit import LocalRateBudget, RedisRateBudget

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BULK = r"^/rest/v1\.0/companies/\d+/timesheets$"


def user_store(h: dict) -> MemoryTokenStore:
    """A connection a Procore user authorised: only a refresh token so far."""
    return MemoryTokenStore(TokenSet("", h["procore_refresh_token"], EPOCH))


def token_calls(emulator: Any) -> int:
    return counted(emulator, route="/oauth/token")


def live_entries(emulator: Any) -> list[dict]:
    return [e for e in emulator.admin.procore_entries() if e["deleted_at"] is None]


# ------------------------------------------------------------------------------------------------ P-1


def test_p1_the_login_host_and_the_api_host_are_configured_separately(world: dict, emulator: Any) -> None:
    port = urlsplit(emulator.procore_url).port
    rec = Recorder()
    pc = client(emulator, world["handles"], api_url=f"http://127.0.0.1:{port}/",
                login_url=f"http://localhost:{port}", session=rec)
    assert pc.company_configuration()
    assert [(urlsplit(r.url).hostname, urlsplit(r.url).path) for r in rec.sent] == [
        ("localhost", "/oauth/token"), ("127.0.0.1", "/rest/v1.0/company_configuration")]


# ------------------------------------------------------------------------------------------------ P-2


def test_p2_client_credentials_are_the_default_grant_fetched_once_and_stored(world: dict, emulator: Any) -> None:
    rec, store = Recorder(), MemoryTokenStore()
    pc = client(emulator, world["handles"], store=store, session=rec)
    pc.company_configuration()
    pc.get_project(world["handles"]["project_ids"][0])
    assert token_calls(emulator) == 1
    form = rec.form("/oauth/token")[0]
    assert form["grant_type"] == ["client_credentials"] and form["client_id"] == [world["handles"]["procore_client_id"]]
    assert rec.sent[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert store.tokens is not None and store.tokens.refresh_token is None
    assert timedelta(minutes=85) < store.tokens.expires_at - datetime.now(UTC) <= timedelta(seconds=5400)


def test_p2_tokens_are_renewed_five_minutes_before_they_expire(world: dict, emulator: Any) -> None:
    ahead = [0.0]
    pc = client(emulator, world["handles"], clock=lambda: time.time() + ahead[0])
    pc.company_configuration()
    ahead[0] = 5400 - 310
    pc.company_configuration()
    assert token_calls(emulator) == 1
    ahead[0] = 5400 - 290
    pc.company_configuration()
    assert token_calls(emulator) == 2


def test_p2_a_401_refreshes_once_and_repeats_the_call(world: dict, emulator: Any) -> None:
    pc = client(emulator, world["handles"])
    pc.company_configuration()
    emulator.admin.expire_tokens()
    emulator.admin.reset_requests()
    assert pc.company_configuration()["projects_timecard_in_out_enabled"]
    assert token_calls(emulator) == 1 and counted(emulator, route="/rest", status=401) == 1


def test_p2_a_token_refused_again_right_after_a_refresh_is_not_refreshed_in_a_loop(
        world: dict, emulator: Any) -> None:
    pc = client(emulator, world["handles"])
    pc.company_configuration()
    emulator.admin.reset_requests()
    emulator.admin.add_faults({"service": "procore", "path": "company_configuration", "kind": "expire_auth",
                               "count": 2})
    with pytest.raises(CredentialsRejected, match="The access token is invalid"):
        pc.company_configuration()
    assert token_calls(emulator) == 1


def test_p2_new_tokens_are_saved_before_they_are_used(world: dict, emulator: Any) -> None:
    journal: list[tuple[str, str]] = []

    class JournalStore(MemoryTokenStore):
        def save(self, tokens: TokenSet) -> None:
            journal.append(("save", tokens.access_token))
            super().save(tokens)

    class JournalSession(requests.Session):
        def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                journal.append(("use", auth.removeprefix("Bearer ")))
            return super().send(request, **kw)

    h = world["handles"]
    pc = client(emulator, h, store=JournalStore(TokenSet("", h["procore_refresh_token"], EPOCH)),
                session=JournalSession())
    pc.company_configuration()
    emulator.admin.expire_tokens()
    pc.company_configuration()
    saved = [token for kind, token in journal if kind == "save"]
    assert len(saved) == 2
    for token in saved:
        assert journal.index(("save", token)) < journal.index(("use", token))


def test_p2_refresh_tokens_rotate_and_a_client_still_holding_the_old_one_needs_reauthorisation(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    first = user_store(h)
    client(emulator, h, store=first).company_configuration()
    assert first.tokens is not None and first.tokens.refresh_token not in (None, h["procore_refresh_token"])
    emulator.admin.reset_requests()
    with pytest.raises(NeedsReauthorization) as info:
        client(emulator, h, store=user_store(h)).company_configuration()
    text = str(info.value)
    assert "invalid_grant" in text and "stsync connect procore" in text and "--refresh-token NEW" in text
    assert h["procore_refresh_token"] not in text and h["procore_client_secret"] not in text
    assert token_calls(emulator) == 1 and counted(emulator, route="/rest") == 0


def test_p2_workers_meeting_the_same_401_refresh_once_and_share_the_new_tokens(world: dict, emulator: Any) -> None:
    h = world["handles"]
    store = user_store(h)
    workers = [client(emulator, h, store=store) for _ in range(2)]
    for pc in workers:
        pc.company_configuration()
    assert token_calls(emulator) == 1  # the second worker took the first one's token from the store
    emulator.admin.expire_tokens()
    emulator.admin.reset_requests()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(pc: ProcoreClient) -> None:
        barrier.wait()
        try:
            pc.company_configuration()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(pc,)) for pc in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert token_calls(emulator) == 1  # a second refresh would have used the rotated-away refresh token


def test_p2_a_lost_answer_to_a_refresh_needs_reauthorisation_without_looping(world: dict, emulator: Any) -> None:
    h = world["handles"]
    emulator.admin.add_faults({"service": "procore", "path": "^/oauth/token$", "kind": "lost_response", "count": 1})
    with pytest.raises(NeedsReauthorization) as info:
        client(emulator, h, store=user_store(h)).company_configuration()
    assert "lost" in str(info.value) and "stsync connect procore" in str(info.value)
    assert token_calls(emulator) == 2  # the lost one, and one look to learn the old refresh token is dead


def test_p2_a_refresh_that_never_reached_procore_is_asked_again(world: dict, emulator: Any) -> None:
    h = world["handles"]
    store = user_store(h)
    emulator.admin.add_faults({"service": "procore", "path": "^/oauth/token$", "kind": "timeout",
                               "latency_ms": 600, "count": 1})
    assert client(emulator, h, store=store, timeout=0.3).company_configuration()
    assert store.tokens is not None and store.tokens.refresh_token != h["procore_refresh_token"]


def test_p2_a_wrong_client_secret_is_credentials_rejected(world: dict, emulator: Any) -> None:
    with pytest.raises(CredentialsRejected, match="invalid_client") as info:
        client(emulator, world["handles"], client_secret="not-the-client-secret").company_configuration()
    assert "not-the-client-secret" not in str(info.value)


# ------------------------------------------------------------------------------------------------ P-3


def test_p3_every_rest_call_sends_the_token_and_the_company_header(world: dict, emulator: Any) -> None:
    h = world["handles"]
    rec = Recorder()
    pc = client(emulator, h, session=rec)
    pc.company_configuration()
    list(pc.cost_codes(h["project_ids"][0]))
    pc.bulk_create_entries([entry(h)])
    rest = [r for r in rec.sent if "/rest/" in r.url]
    assert len(rest) == 3
    assert all(r.headers["Procore-Company-Id"] == str(h["procore_company_id"])
               and r.headers["Authorization"].startswith("Bearer ") for r in rest)
    token = next(r for r in rec.sent if r.url.endswith("/oauth/token"))
    assert "Procore-Company-Id" not in token.headers


def test_p3_without_the_company_header_the_client_reports_procores_400(world: dict, emulator: Any) -> None:
    h = world["handles"]

    class WithoutCompanyHeader(requests.Session):
        def request(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
            kw["headers"] = {k: v for k, v in (kw.get("headers") or {}).items() if k != "Procore-Company-Id"}
            return super().request(method, url, **kw)

    store = MemoryTokenStore()
    with pytest.raises(ValidationFailed) as info:
        client(emulator, h, store=store, session=WithoutCompanyHeader()).company_configuration()
    assert info.value.status == 400 and info.value.message == "Missing Procore-Company-Id header!"
    assert "procore GET /rest/v1.0/company_configuration answered 400" in str(info.value)
    assert store.tokens is not None
    raw = requests.get(f"{emulator.procore_url}/rest/v1.0/company_configuration",
                       params={"company_id": h["procore_company_id"]},
                       headers={"Authorization": f"Bearer {store.tokens.access_token}"}, timeout=10)
    assert raw.status_code == 400 and raw.json() == {"errors": "Missing Procore-Company-Id header!"}


# ------------------------------------------------------------------------------------------------ P-4, P-8


def test_p4_every_read_the_sync_needs(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    pid = h["project_ids"][0]
    project = pc.get_project(pid)
    assert project["id"] == pid and project["tz_name"] == "America/New_York"
    assert {"name", "address", "city", "state_code", "zip", "time_zone", "active", "company"} <= set(project)
    assert sorted(pc.company_configuration()["projects_timecard_in_out_enabled"]) == sorted(
        h["start_stop_project_ids"])
    tools = pc.project_tools(pid)
    assert [t["is_active"] for t in tools if t["title"] == "Timesheets"] == [True]
    codes = {c["id"]: c for c in pc.cost_codes(pid)}
    for code in h["labor_cost_codes"][str(pid)]:
        c = codes[code["cost_code_id"]]
        assert c["budgeted"] and any(t["base_type"] == "labor" for t in c["line_item_types"])
    for code in h["unbudgeted_cost_codes"][str(pid)]:
        assert codes[code["cost_code_id"]]["budgeted"] is False
    types = {t["id"]: t for t in pc.line_item_types()}
    assert types[h["labor_line_item_type_id"]]["base_type"] == "labor"
    employees = list(pc.people())
    assert employees and all(p["is_employee"] for p in employees)
    assert h["non_employee_person_id"] in {p["id"] for p in pc.people(employees_only=False)}
    assert {"id", "first_name", "last_name", "employee_id", "user_id"} <= set(employees[0])
    assert {"REG", "OT"} <= {t["abbreviated_time_type"] for t in pc.time_types()}
    assert pc.time_types(project_id=pid)


def test_p8_the_rounding_rule_is_read_and_none_when_the_company_has_none(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    assert {k: v for k, v in pc.rounding_configuration().items() if k in ("rule", "time_increment")} == {
        "rule": "nearest", "time_increment": 15}
    emulator.admin.patch_company(h["procore_company_id"], rounding_configuration={"rule": "favor_employee",
                                                                                 "time_increment": 6})
    assert pc.rounding_configuration()["rule"] == "favor_employee"
    emulator.admin.patch_company(h["procore_company_id"], rounding_configuration=None)
    assert pc.rounding_configuration() is None


# ------------------------------------------------------------------------------------------------ P-5


def test_p5_a_bulk_create_answers_the_entries_in_request_order(world: dict, emulator: Any) -> None:
    h = world["handles"]
    sent = [entry(h, n) for n in (3, 0, 4, 1)]
    created = client(emulator, h).bulk_create_entries(sent)
    assert [c["origin_id"] for c in created] == [5003, 5000, 5004, 5001]
    assert [c["origin_data"] for c in created] == [e["origin_data"] for e in sent]
    assert [c["date"] for c in created] == [e["date"] for e in sent]
    assert all(c["approval_status"] == "pending" and isinstance(c["id"], int) for c in created)


def test_p5_more_than_100_entries_or_none_are_refused_before_sending(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    with pytest.raises(ValueError, match="at most 100"):
        pc.bulk_create_entries([entry(h, n) for n in range(101)])
    with pytest.raises(ValueError, match="got 0"):
        pc.bulk_create_entries([])
    assert counted(emulator, route="/rest") == 0
    assert len(pc.bulk_create_entries([entry(h, n) for n in range(100)])) == 100


def test_p5_one_invalid_entry_refuses_the_call_with_errors_by_index(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pid = str(h["project_ids"][0])
    bad_code = entry(h, 1, cost_code_id=h["non_labor_cost_codes"][pid][0]["cost_code_id"])
    bad_party = entry(h, 3, party_id=h["non_employee_person_id"])
    with pytest.raises(BulkValidationFailed) as info:
        client(emulator, h).bulk_create_entries([entry(h, 0), bad_code, entry(h, 2), bad_party])
    assert sorted(info.value.index_errors) == [1, 3]
    assert "cost_code_id" in info.value.index_errors[1] and "party_id" in info.value.index_errors[3]
    assert info.value.status == 422 and "entry 1: cost_code_id" in str(info.value)
    assert emulator.admin.procore_entries() == []


def test_p5_a_lost_answer_to_a_bulk_create_is_outcome_unknown_not_a_refusal(world: dict, emulator: Any) -> None:
    h = world["handles"]
    sleeps = Sleeps()
    pc = client(emulator, h, sleeps=sleeps)
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": BULK, "kind": "lost_response",
                               "count": 1})
    with pytest.raises(OutcomeUnknown) as info:
        pc.bulk_create_entries([entry(h, 0), entry(h, 1)])
    assert not isinstance(info.value, ValidationFailed) and info.value.status is None
    assert "POST /rest/v1.0/companies/{cid}/timesheets" in str(info.value)
    assert [e["origin_id"] for e in emulator.admin.procore_entries()] == [5000, 5001]  # created: look it up
    assert counted(emulator, route="/rest/v1.0/companies/{cid}/timesheets") == 1 and sleeps == []


@pytest.mark.parametrize("kind", ["500", "502", "504", "html_502", "empty_body"])
def test_p5_a_bulk_create_without_a_usable_answer_is_outcome_unknown_and_not_resent(
        world: dict, emulator: Any, kind: str) -> None:
    h = world["handles"]
    sleeps = Sleeps()
    pc = client(emulator, h, sleeps=sleeps)
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": BULK, "kind": kind, "count": 1})
    with pytest.raises(OutcomeUnknown, match="may or may not"):
        pc.bulk_create_entries([entry(h)])
    assert counted(emulator, route="/rest/v1.0/companies/{cid}/timesheets") == 1 and sleeps == []


def test_p5_a_bulk_create_timing_out_after_sending_is_outcome_unknown(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h, timeout=0.3)
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": BULK, "kind": "timeout",
                               "latency_ms": 700, "count": 1})
    with pytest.raises(OutcomeUnknown, match="read timeout"):
        pc.bulk_create_entries([entry(h)])


@pytest.mark.parametrize("fault", [{"kind": "429"}, {"kind": "429", "retry_after": 2},
                                   {"kind": "503", "retry_after": 1}])
def test_p5_a_bulk_create_refused_unprocessed_is_sent_again_and_created_once(
        world: dict, emulator: Any, fault: dict) -> None:
    h = world["handles"]
    sleeps = Sleeps()
    pc = client(emulator, h, sleeps=sleeps)
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": BULK, "count": 1, **fault})
    assert len(pc.bulk_create_entries([entry(h)])) == 1
    assert len(emulator.admin.procore_entries()) == 1 and len(sleeps) == 1
    assert sleeps[0] >= fault.get("retry_after", 0)


def test_p5_start_stop_projects_take_times_and_the_single_create_answers_201(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pid = h["start_stop_project_ids"][0]
    code = h["labor_cost_codes"][str(pid)][0]
    body = entry(h, 0, project_id=pid, cost_code_id=code["cost_code_id"])
    del body["hours"]
    body |= {"time_in": "2026-03-02T07:00:00-06:00", "time_out": "2026-03-02T15:45:00-06:00", "lunch_time": 30}
    pc = client(emulator, h)
    created = pc.create_entry(body)
    assert created["time_in"] == "2026-03-02T13:00:00Z" and created["hours"] == "8.25"
    assert created["project"]["id"] == pid and created["origin_id"] == 5000
    with pytest.raises(BulkValidationFailed) as info:  # hours on a start/stop project: the wrong kind
        pc.bulk_create_entries([entry(h, 1, project_id=pid, cost_code_id=code["cost_code_id"])])
    assert "hours" in info.value.index_errors[0]


def test_p5_a_single_create_refused_or_lost(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    with pytest.raises(ValidationFailed) as info:
        pc.create_entry(entry(h, 0, hours="25"))
    assert info.value.status == 422 and "hours: must be less than or equal to 24" in str(info.value)
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": "timecard_entries$",
                               "kind": "lost_response", "count": 1})
    with pytest.raises(OutcomeUnknown):
        pc.create_entry(entry(h, 1))
    assert len(emulator.admin.procore_entries()) == 1


# ------------------------------------------------------------------------------------------------ P-6, P-10


def test_p6_p10_entries_are_listed_by_date_and_parties_across_pages_the_server_chose(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    parties = [t["party_id"] for t in h["technicians"] if t["expect"] == "ok"][:2]
    rec = Recorder()
    pc = client(emulator, h, session=rec)
    pc.bulk_create_entries([entry(h, n, party_id=parties[n % 2]) for n in range(10)]
                           + [entry(h, 20, party_id=parties[0], date="2026-03-20")])
    emulator.admin.config(procore_max_per_page=3)
    emulator.admin.reset_requests()
    got = list(pc.list_entries(DAY, DAY + timedelta(days=4), party_ids=parties))
    assert sorted(e["origin_id"] for e in got) == list(range(5000, 5010))
    assert counted(emulator, route="/rest/v1.0/companies/{cid}/timecard_entries") == 4
    sent = parse_qs(urlsplit(rec.sent[-4].url).query)
    assert sent["filters[party_id][]"] == [str(p) for p in parties] and sent["per_page"] == ["1000"]
    assert sent["start_date"] == ["2026-03-02"] and sent["end_date"] == ["2026-03-06"]
    assert {e["party"]["id"] for e in pc.list_entries(DAY, DAY, party_ids=parties[:1])} == {parties[0]}
    assert list(pc.list_entries("2026-03-21", "2026-03-31")) == []
    first = got[0]
    assert {"id", "project", "party", "date", "hours", "cost_code", "line_item_type_id", "approval_status",
            "origin_id", "origin_data", "updated_at", "deleted_at"} <= set(first)


def test_p10_lists_are_generators_following_the_next_link(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    pc.company_configuration()
    emulator.admin.config(procore_max_per_page=2)
    emulator.admin.reset_requests()
    people = pc.people(employees_only=False)
    assert counted(emulator, route="/rest") == 0
    [next(people) for _ in range(2)]
    assert counted(emulator, route="/rest") == 1
    rest = list(people)
    total = 2 + len(rest)
    assert counted(emulator, route="/rest") == -(-total // 2)
    assert total == len(world["procore"]["companies"][0]["people"])


# ------------------------------------------------------------------------------------------------ P-7


def test_p7_entries_are_patched_and_deleted_until_approved_then_locked(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pid = h["project_ids"][0]
    pc = client(emulator, h)
    a, b, c, d = pc.bulk_create_entries([entry(h, n) for n in range(4)])
    assert pc.update_entry(pid, a["id"], {"hours": "6.5"})["hours"] == "6.5"
    assert pc.get_entry(pid, a["id"])["hours"] == "6.5"
    pc.delete_entry(pid, b["id"])
    with pytest.raises(NotFound):
        pc.get_entry(pid, b["id"])
    emulator.admin.approve_entry(c["id"])
    emulator.admin.approve_entry(d["id"], "completed")
    for locked in (c, d):
        with pytest.raises(EntryLocked, match="Approved timecard entries cannot be modified"):
            pc.update_entry(pid, locked["id"], {"hours": "1.0"})
        with pytest.raises(EntryLocked):
            pc.delete_entry(pid, locked["id"])
    assert {e["id"] for e in live_entries(emulator)} == {a["id"], c["id"], d["id"]}


def test_p7_a_delete_whose_answer_was_lost_is_done_when_the_retry_finds_nothing(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pid = h["project_ids"][0]
    pc = client(emulator, h)
    (created,) = pc.bulk_create_entries([entry(h)])
    emulator.admin.add_faults({"service": "procore", "method": "DELETE", "kind": "lost_response", "count": 1},
                              {"service": "procore", "method": "PATCH", "kind": "lost_response", "count": 1})
    assert pc.update_entry(pid, created["id"], {"hours": "5.0"})["hours"] == "5.0"
    pc.delete_entry(pid, created["id"])
    assert live_entries(emulator) == []
    assert counted(emulator, method="DELETE", status=404) == 1


# ------------------------------------------------------------------------------------------------ P-9


def test_p9_rate_limit_headers_are_exposed_and_reported_around_every_call(world: dict, emulator: Any) -> None:
    spy = SpyBudget()
    pc = client(emulator, world["handles"], rate_budget=spy)
    pc.company_configuration()
    first = pc.last_rate_limit
    assert first is not None and first.limit > first.remaining > 0 and first.reset > time.time() - 1
    emulator.admin.add_faults({"service": "procore", "path": "company_configuration", "kind": "429", "count": 1})
    pc.company_configuration()
    assert pc.last_rate_limit is not None and pc.last_rate_limit.remaining < first.remaining
    kinds = [e[0] for e in spy.events]
    assert kinds == ["acquire", "observe", "response"] * 3  # no budget for the token call; the 429 is observed too
    assert spy.events[4][2] == 0
    company = world["handles"]["procore_company_id"]
    assert [e[1:] for e in spy.events if e[0] == "response"] == [(company, 200), (company, 429), (company, 200)]


def test_p9_a_429_without_retry_after_waits_until_the_rate_limit_reset(world: dict, emulator: Any) -> None:
    emulator.admin.config(procore_rate_limit={"spike": 3, "spike_window_s": 1})
    spy, slept = SpyBudget(), []

    def sleep(seconds: float) -> None:
        slept.append((time.time(), seconds))
        time.sleep(seconds)

    pc = client(emulator, world["handles"], rate_budget=spy, sleep=sleep)
    for _ in range(4):
        pc.company_configuration()
    assert len(slept) == 1 and counted(emulator, route="/rest", status=429) == 1
    reset = [e[3] for e in spy.events if e[0] == "observe" and e[2] == 0][-1]  # X-Rate-Limit-Reset of the 429
    started, seconds = slept[0]
    assert started + seconds >= reset - 0.01


def test_p9_a_429_with_retry_after_and_a_503_under_load_are_honoured(world: dict, emulator: Any) -> None:
    sleeps = Sleeps()
    pc = client(emulator, world["handles"], sleeps=sleeps)
    pc.company_configuration()
    emulator.admin.add_faults(
        {"service": "procore", "path": "company_configuration", "kind": "429", "retry_after": 7, "count": 1},
        {"service": "procore", "path": "company_configuration", "kind": "503", "retry_after": 4, "count": 1})
    assert pc.company_configuration()
    assert len(sleeps) == 2 and sleeps[0] >= 7 and sleeps[1] >= 4


def test_p9_a_spent_hourly_window_defers_the_run_instead_of_waiting(world: dict, emulator: Any) -> None:
    emulator.admin.config(procore_rate_limit={"hourly": 2, "spike": 100})
    sleeps = Sleeps()
    pc = client(emulator, world["handles"], sleeps=sleeps)
    pc.company_configuration()
    pc.company_configuration()
    with pytest.raises(DeferRun) as info:
        pc.company_configuration()
    assert 3000 < info.value.wait_s <= 3601 and sleeps == []
    assert "You have surpassed the max number of requests" in str(info.value)


def test_p9_a_budget_that_knows_the_window_is_spent_defers_before_asking(world: dict, emulator: Any) -> None:
    emulator.admin.config(procore_rate_limit={"hourly": 3, "spike": 100})
    pc = client(emulator, world["handles"], rate_budget=LocalRateBudget())
    pc.company_configuration()
    pc.company_configuration()
    with pytest.raises(DeferRun, match=r"procore GET /rest/v1.0/company_configuration: .*rate budget"):
        pc.company_configuration()
    assert counted(emulator, route="/rest") == 2 and counted(emulator, route="/rest", status=429) == 0


def test_p9_two_clients_sharing_a_redis_budget_stay_under_the_limit(
        world: dict, emulator: Any, redis_url: str) -> None:
    emulator.admin.config(procore_rate_limit={"spike": 8, "spike_window_s": 1})
    h = world["handles"]
    workers = [client(emulator, h, rate_budget=RedisRateBudget(redis_url, f"stsync:procore:{h['procore_company_id']}"))
               for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(pc: ProcoreClient) -> None:
        barrier.wait()
        try:
            for _ in range(6):
                pc.company_configuration()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(pc,)) for pc in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert counted(emulator, route="/rest", status=200) == 12 and counted(emulator, route="/rest", status=429) == 0


def test_p9_an_empty_read_is_malformed_and_a_proxys_html_502_transient_both_naming_the_endpoint(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    sleeps = Sleeps()
    pc = client(emulator, h, sleeps=sleeps)
    emulator.admin.add_faults({"service": "procore", "path": "/cost_codes$", "kind": "empty_body", "count": 1})
    with pytest.raises(MalformedResponse, match=r"procore GET /rest/v1.0/cost_codes answered 200: the body was "
                                                r"empty"):
        list(pc.cost_codes(h["project_ids"][0]))
    emulator.admin.add_faults({"service": "procore", "path": "/cost_codes$", "kind": "html_502"})
    with pytest.raises(TransientError, match=r"GET /rest/v1.0/cost_codes answered 502: an HTML page titled "
                                             r"'502 Bad Gateway'"):
        list(pc.cost_codes(h["project_ids"][0]))
    assert len(sleeps) == 4  # retried like any 502 on a read, then given up


# ------------------------------------------------------------------------------------------------ P-11


def test_p11_what_the_token_cannot_see_is_not_found(world: dict, emulator: Any) -> None:
    h = world["handles"]
    with pytest.raises(NotFound, match=r"GET /rest/v1.0/projects/\{id\} answered 404: Project not found"):
        client(emulator, h).get_project(999)
    with pytest.raises(NotFound, match="Company not found"):
        client(emulator, h, company_id=12345).company_configuration()


def test_p11_entries_post_whether_or_not_the_timesheets_tool_is_active(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pid = h["project_ids"][0]
    emulator.admin.patch_project(pid, timesheets_active=False)
    pc = client(emulator, h)
    assert [t["is_active"] for t in pc.project_tools(pid) if t["title"] == "Timesheets"] == [False]
    assert pc.bulk_create_entries([entry(h)])[0]["approval_status"] == "pending"
