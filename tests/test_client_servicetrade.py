"""The ServiceTrade client against the emulator over HTTP: one or more tests for each item of servicetrade.md Part A
(ST-1..ST-8)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from structlog.testing import capture_logs

from tests.helpers import Recorder, Sleeps
from worker.clients.errors import (
    CredentialsRejected,
    DeferRun,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    TransientError,
    ValidationFailed,
)
from worker.clients.servicetrade import PAGE_READERS, ServiceTradeClient

ADDRESS = {"street": "1 Harbor Way", "city": "Boston", "state": "MA", "postalCode": "02110"}


def client(emulator: Any, h: dict, *, oauth: bool = False, sleeps: Sleeps | None = None,
           **kw: Any) -> ServiceTradeClient:
    kw.setdefault("sleep", sleeps if sleeps is not None else Sleeps())
    if oauth:
        return ServiceTradeClient(kw.pop("base_url", emulator.st_url), client_id=h["st_client_id"],
                                  client_secret=h["st_client_secret"], **kw)
    return ServiceTradeClient(kw.pop("base_url", emulator.st_url), username=h["st_username"],
                              password=h["st_password"], **kw)


def calls(emulator: Any, method: str, route: str, status: int | None = None) -> int:
    return sum(r["count"] for r in emulator.admin.requests()["by_route"]
               if r["service"] == "servicetrade" and r["method"] == method and r["route"] == route
               and (status is None or r["status"] == status))


def query(request: requests.PreparedRequest) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


def link_first_project(st: ServiceTradeClient, h: dict) -> dict:
    """Customer, location and job of the first Procore project (ST-7); its technicians' punches attach to the job."""
    pid = str(h["project_ids"][0])
    company = st.create_company({"name": "Harbor Tower", "customer": True, "address": ADDRESS,
                                 "externalIds": {"procore": pid}})
    location = st.create_location({"name": "Harbor Tower", "companyId": company["id"], "address": ADDRESS,
                                   "externalIds": {"procore": pid}})
    return st.create_job({"locationId": location["id"], "vendorId": h["st_vendor_company_id"],
                          "customerId": company["id"], "type": "construction", "name": "Harbor Tower",
                          "externalIds": {"procore": pid}})


@pytest.fixture
def job(world: dict, emulator: Any) -> dict:
    return link_first_project(client(emulator, world["handles"]), world["handles"])


# ------------------------------------------------------------------------------------------------ ST-1


def test_st1_every_path_is_relative_to_the_configured_base_url(world: dict, emulator: Any) -> None:
    rec = Recorder()
    st = client(emulator, world["handles"], base_url=emulator.st_url + "/", session=rec)
    list(st.technicians())
    st.get_job(next(j["id"] for j in emulator.admin.st_state()["jobs"]))
    assert [urlsplit(r.url).path for r in rec.sent][:2] == ["/api/auth", "/api/user"]
    assert all(r.url.startswith(emulator.st_url + "/") and "//" not in urlsplit(r.url).path for r in rec.sent)


# ------------------------------------------------------------------------------------------------ ST-2


def test_st2_session_login_sends_the_cookie_and_knows_the_vendor_company(world: dict, emulator: Any) -> None:
    h = world["handles"]
    rec, seen = Recorder(), []
    st = client(emulator, h, session=rec, on_session=seen.append)
    data = st.login()
    assert len(data["authToken"]) == 26 and seen == [data["authToken"]]
    list(st.technicians())
    assert rec.sent[-1].headers["Cookie"] == f"PHPSESSID={data['authToken']}"
    assert "Authorization" not in rec.sent[-1].headers
    me = st.whoami()
    assert me["company_id"] == h["st_vendor_company_id"] and me["user_id"] and me["name"]


def test_st2_wrong_credentials_are_refused_in_servicetrades_words(world: dict, emulator: Any) -> None:
    h = dict(world["handles"], st_password="not-the-password-9")
    with pytest.raises(CredentialsRejected) as info:
        client(emulator, h).login()
    assert info.value.status == 403 and "Invalid credentials provided" in str(info.value)
    assert "POST /auth" in str(info.value) and "not-the-password-9" not in str(info.value)


def test_st2_an_expired_session_logs_in_again_once_and_repeats_the_call(world: dict, emulator: Any) -> None:
    seen: list = []
    st = client(emulator, world["handles"], on_session=seen.append)
    st.login()
    emulator.admin.expire_sessions()
    emulator.admin.reset_requests()
    assert len(list(st.technicians())) == len(world["handles"]["technicians"])
    assert calls(emulator, "GET", "/api/user", 401) == 1 and calls(emulator, "GET", "/api/user", 200) == 1
    assert calls(emulator, "POST", "/api/auth") == 1
    assert len(seen) == 2 and seen[0] != seen[1]  # the caller hears the new session to store it


def test_st2_a_session_refused_right_after_logging_in_again_is_not_retried_in_a_loop(
        world: dict, emulator: Any) -> None:
    st = client(emulator, world["handles"])
    st.login()
    emulator.admin.reset_requests()
    emulator.admin.add_faults({"service": "servicetrade", "path": "^/api/user$", "kind": "expire_auth", "count": 2})
    with pytest.raises(CredentialsRejected, match="GET /user answered 401"):
        list(st.technicians())
    assert calls(emulator, "POST", "/api/auth") == 1 and calls(emulator, "GET", "/api/user", 401) == 2


def test_st2_a_stored_session_is_used_without_logging_in_and_a_dead_one_is_replaced(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    first = client(emulator, h)
    first.login()
    emulator.admin.reset_requests()
    assert list(client(emulator, h, session_token=first.session_token).technicians())
    assert calls(emulator, "POST", "/api/auth") == 0
    emulator.admin.expire_sessions()
    seen: list = []
    stale = client(emulator, h, session_token=first.session_token, on_session=seen.append)
    assert stale.whoami()["company_id"] == h["st_vendor_company_id"]  # GET /auth 404 → a new session
    assert list(stale.technicians())
    assert calls(emulator, "POST", "/api/auth") == 1 and seen == [stale.session_token]


def test_st2_logout_ends_the_session(world: dict, emulator: Any) -> None:
    seen: list = []
    st = client(emulator, world["handles"], on_session=seen.append)
    token = st.login()["authToken"]
    st.logout()
    assert seen == [token, None] and calls(emulator, "DELETE", "/api/auth", 204) == 1
    raw = requests.get(f"{emulator.st_url}/user", cookies={"PHPSESSID": token}, timeout=10)
    assert raw.status_code == 401 and raw.content == b""


def test_st2_oauth_client_credentials_are_form_encoded_and_the_token_is_a_bearer(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    rec, seen = Recorder(), []
    st = client(emulator, h, oauth=True, session=rec, on_session=seen.append)
    me = st.whoami()
    assert set(me) == {"user_id", "name", "company_id", "company_name"}
    assert me["company_id"] == h["st_vendor_company_id"] and me["user_id"] and me["company_name"]
    token_request = rec.sent[0]
    assert urlsplit(token_request.url).path == "/api/oauth2/token"
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert rec.form("/oauth2/token")[0]["grant_type"] == ["client_credentials"]
    assert urlsplit(rec.sent[1].url).path == "/api/oauth2/userinfo"
    assert rec.sent[1].headers["Authorization"] == f"Bearer {seen[0]}" and "Cookie" not in rec.sent[1].headers


def test_st2_oauth_gets_a_new_token_once_on_a_401_with_its_refresh_token(world: dict, emulator: Any) -> None:
    rec, seen = Recorder(), []
    st = client(emulator, world["handles"], oauth=True, session=rec, on_session=seen.append)
    assert list(st.technicians())
    emulator.admin.expire_sessions()
    emulator.admin.reset_requests()
    assert list(st.technicians())
    assert calls(emulator, "POST", "/api/oauth2/token") == 1 and calls(emulator, "GET", "/api/user", 401) == 1
    assert [f["grant_type"] for f in rec.form("/oauth2/token")] == [["client_credentials"], ["refresh_token"]]
    assert len(seen) == 2 and seen[0] != seen[1]


def test_st2_oauth_falls_back_to_client_credentials_when_its_refresh_token_is_dead(
        world: dict, emulator: Any) -> None:
    rec = Recorder()
    st = client(emulator, world["handles"], oauth=True, session=rec)
    list(st.technicians())
    refresh_token = rec.answers[0].json()["refresh_token"]
    requests.post(f"{emulator.st_url}/oauth2/revoke", data={"token": refresh_token}, timeout=10).raise_for_status()
    emulator.admin.expire_sessions()
    assert list(st.technicians())
    assert [f["grant_type"] for f in rec.form("/oauth2/token")] == [
        ["client_credentials"], ["refresh_token"], ["client_credentials"]]


def test_st2_oauth_with_a_wrong_secret_is_refused(world: dict, emulator: Any) -> None:
    h = dict(world["handles"], st_client_secret="wrong-client-secret")
    with pytest.raises(CredentialsRejected, match="invalid_client") as info:
        client(emulator, h, oauth=True).whoami()
    assert "wrong-client-secret" not in str(info.value)


# ------------------------------------------------------------------------------------------------ ST-3


def test_st3_pages_are_read_until_total_pages_whatever_size_the_server_chose(
        world: dict, emulator: Any, job: dict) -> None:
    expected = [e["id"] for e in emulator.admin.st_state()["clock_events"] if e["job"]["id"] == job["id"]]
    assert len(expected) > 20
    emulator.admin.config(st_max_page_size=7)
    rec = Recorder()
    st = client(emulator, world["handles"], session=rec)
    st.login()
    emulator.admin.reset_requests()
    assert [e["id"] for e in st.clock_events(job_id=job["id"])] == expected
    assert calls(emulator, "GET", "/api/clock") == -(-len(expected) // 7)
    assert query(rec.sent[-1])["limit"] == ["1000"]  # asked for 1000, got 7 a page, read them all
    emulator.admin.config(st_max_page_size=None)
    assert [e["id"] for e in st.clock_events(job_id=job["id"], limit=5)] == expected
    assert query(rec.sent[-1])["limit"] == ["5"]


def test_st3_lists_are_generators_that_read_at_most_a_few_pages_ahead(
        world: dict, emulator: Any, job: dict) -> None:
    emulator.admin.config(st_max_page_size=3)
    st = client(emulator, world["handles"])
    st.login()
    emulator.admin.reset_requests()
    events = st.clock_events(job_id=job["id"])
    assert calls(emulator, "GET", "/api/clock") == 0
    first_three = [next(events) for _ in range(3)]
    assert len(first_three) == 3 and calls(emulator, "GET", "/api/clock") == 1
    next(events)
    assert 2 <= calls(emulator, "GET", "/api/clock") <= 1 + PAGE_READERS
    events.close()


class InFlight(requests.Session):
    """A session that counts the requests it has in flight at once (each held a moment, so that they meet)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.pages: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.pages += query(request).get("page", [])
        try:
            time.sleep(0.05)
            return super().send(request, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def test_st3_the_pages_of_a_list_are_read_side_by_side_a_few_at_a_time_and_given_out_in_order(
        world: dict, emulator: Any, job: dict) -> None:
    expected = [e["id"] for e in emulator.admin.st_state()["clock_events"] if e["job"]["id"] == job["id"]]
    emulator.admin.config(st_max_page_size=2)
    session = InFlight()
    st = client(emulator, world["handles"], session=session)
    st.login()
    assert [e["id"] for e in st.clock_events(job_id=job["id"])] == expected
    pages = -(-len(expected) // 2)
    assert pages > 2 * PAGE_READERS
    assert sorted(map(int, session.pages)) == list(range(1, pages + 1)), "every page read once"
    assert 1 < session.peak <= PAGE_READERS


def test_st9_without_total_pages_a_server_capping_pages_below_the_limit_is_read_to_the_end(
        world: dict, emulator: Any) -> None:
    expected = sorted(u["id"] for u in emulator.admin.st_state()["users"] if u["isTech"])
    assert len(expected) > 3
    emulator.admin.set_variants(servicetrade=["paging_loose"])
    emulator.admin.config(st_max_page_size=3)
    st = client(emulator, world["handles"])
    st.login()
    emulator.admin.reset_requests()
    assert sorted(int(u["id"]) for u in st.technicians()) == expected
    # one page of 3 after another, then the empty page that ends a list without totalPages
    assert calls(emulator, "GET", "/api/user") == -(-len(expected) // 3) + 1
    emulator.admin.set_variants(servicetrade=[])


def test_st3_an_empty_list_is_one_page(world: dict, emulator: Any, job: dict) -> None:
    st = client(emulator, world["handles"])
    st.login()
    emulator.admin.reset_requests()
    assert list(st.clock_events(job_id=job["id"], start_time=0, end_time=1)) == []
    assert calls(emulator, "GET", "/api/clock") == 1


def test_st3_validation_errors_carry_the_field_messages(world: dict, emulator: Any) -> None:
    st = client(emulator, world["handles"])
    with pytest.raises(ValidationFailed) as info:
        st.create_location({"name": "No address", "companyId": world["handles"]["st_vendor_company_id"]})
    assert info.value.status == 400 and "address" in info.value.details
    assert "Address is incomplete" in str(info.value) and "POST /location" in str(info.value)


def test_st3_an_unknown_id_is_not_found(world: dict, emulator: Any) -> None:
    with pytest.raises(NotFound, match=r"GET /job/\{id\} answered 404: Not found"):
        client(emulator, world["handles"]).get_job(4_000_000_000_000_001)


def test_st3_an_empty_or_html_body_is_malformed_or_transient_naming_the_endpoint(
        world: dict, emulator: Any) -> None:
    st = client(emulator, world["handles"])
    st.login()
    emulator.admin.add_faults({"service": "servicetrade", "path": "^/api/clock$", "kind": "empty_body", "count": 1})
    with pytest.raises(MalformedResponse, match=r"GET /clock answered 200: the response envelope was empty"):
        list(st.clock_events())
    emulator.admin.add_faults({"service": "servicetrade", "path": "^/api/clock$", "kind": "html_502"})
    with pytest.raises(TransientError, match=r"GET /clock answered 502: an HTML page titled '502 Bad Gateway'"):
        list(st.clock_events())


# ------------------------------------------------------------------------------------------------ ST-4, ST-5


def test_st4_times_are_epoch_seconds_ids_are_int64_and_time_filters_are_inclusive(
        world: dict, emulator: Any, job: dict) -> None:
    st = client(emulator, world["handles"])
    events = list(st.clock_events(job_id=job["id"]))
    first = events[0]
    assert all(isinstance(e[k], int) for e in events for k in ("id", "eventTime", "created", "updated"))
    assert len(str(first["id"])) == 16 and first["id"] < 2**53
    at = first["eventTime"]
    exact = [e["id"] for e in st.clock_events(job_id=job["id"], start_time=at, end_time=at)]
    assert first["id"] in exact
    aware = datetime.fromtimestamp(at, UTC)
    assert [e["id"] for e in st.clock_events(job_id=job["id"], start_time=aware, end_time=aware)] == exact
    with pytest.raises(ValueError, match="naive"):
        list(st.clock_events(job_id=job["id"], start_time=datetime(2026, 3, 2, 8, 0)))


def test_st5_clock_events_have_the_documented_shape_and_order(world: dict, emulator: Any, job: dict) -> None:
    events = list(client(emulator, world["handles"]).clock_events(job_id=job["id"]))
    assert events == sorted(events, key=lambda e: (e["eventTime"], e["id"]))
    for e in events:
        assert e["eventType"] in ("clockIn", "clockOut") and e["activity"] in ("onsite", "enroute", "offsite",
                                                                             "onbreak")
        assert e["source"] in ("mobile", "ivr", "web") and e["job"]["id"] == job["id"]
        assert isinstance(e["user"]["id"], int) and "appointment" in e


def test_st5_every_filter_is_sent_and_honoured(world: dict, emulator: Any, job: dict) -> None:
    rec = Recorder()
    st = client(emulator, world["handles"], session=rec)
    events = list(st.clock_events(job_id=job["id"]))
    users = sorted({e["user"]["id"] for e in events})
    one = [e for e in st.clock_events(job_id=job["id"], user_id=users[0])]
    assert one and {e["user"]["id"] for e in one} == {users[0]}
    two = list(st.clock_events(job_id=job["id"], user_ids=users[:2]))
    assert {e["user"]["id"] for e in two} == set(users[:2])
    assert query(rec.sent[-1])["userIds"] == [f"{users[0]},{users[1]}"]
    breaks = list(st.clock_events(job_id=job["id"], activity="onbreak"))
    assert breaks and {e["activity"] for e in breaks} == {"onbreak"}
    start, end = events[10]["eventTime"], events[20]["eventTime"]
    window = list(st.clock_events(job_id=job["id"], start_time=start, end_time=end))
    assert [e["id"] for e in window] == [e["id"] for e in events if start <= e["eventTime"] <= end]
    sent = query(rec.sent[-1])
    assert sent["jobId"] == [str(job["id"])] and sent["startTime"] == [str(start)] and sent["endTime"] == [str(end)]
    edited = emulator.admin.edit_clock_event(events[3]["id"], eventTime=events[3]["eventTime"] + 60)
    changed = list(st.clock_events(job_id=job["id"], updated_after=edited["updated"]))
    assert [e["id"] for e in changed] == [events[3]["id"]]
    emulator.admin.delete_clock_event(events[4]["id"])
    assert events[4]["id"] not in {e["id"] for e in st.clock_events(job_id=job["id"])}


def test_st5_the_job_clock_summary_pairs_punches(world: dict, emulator: Any, job: dict) -> None:
    summary = client(emulator, world["handles"]).job_clock_summary(job["id"])
    assert summary["activityTime"]["onsite"] > 0
    pair = next(p for p in summary["pairedEvents"] if p["end"] is not None)
    assert pair["elapsedTime"] == pair["end"]["eventTime"] - pair["start"]["eventTime"]


# ------------------------------------------------------------------------------------------------ ST-6, ST-7


def test_st6_technicians_carry_their_procore_employee_id(world: dict, emulator: Any) -> None:
    rec = Recorder()
    techs = {u["id"]: u for u in client(emulator, world["handles"], session=rec).technicians()}
    assert query(rec.sent[-1])["isTech"] == ["true"]
    expected = world["handles"]["technicians"]
    assert set(techs) == {t["st_user_id"] for t in expected}
    for t in expected:
        assert ((techs[t["st_user_id"]]["externalIds"] or {}).get("procore") or None) == t["employee_id"]
        assert {"firstName", "lastName", "name", "email", "status", "timezone"} <= set(techs[t["st_user_id"]])


def test_st7_the_customer_side_is_created_and_found_again_by_external_id(
        world: dict, emulator: Any, job: dict) -> None:
    h = world["handles"]
    st = client(emulator, h)
    pid = str(h["project_ids"][0])
    assert isinstance(job["id"], int) and isinstance(job["number"], int)
    companies = [c for c in st.list_companies(name="Harbor") if c["externalIds"].get("procore") == pid]
    assert len(companies) == 1
    locations = [loc for loc in st.list_locations(company_id=companies[0]["id"])
                 if loc["externalIds"].get("procore") == pid]
    jobs = [j for j in st.list_jobs(location_id=locations[0]["id"]) if j["externalIds"].get("procore") == pid]
    assert [j["id"] for j in jobs] == [job["id"]]  # status "new": found only because the client asks for all
    assert st.get_job(job["id"])["number"] == job["number"]


def test_st7_a_second_job_with_the_same_external_id_and_a_bad_type_are_refused(
        world: dict, emulator: Any, job: dict) -> None:
    h = world["handles"]
    st = client(emulator, h)
    body = {"locationId": job["location"]["id"], "vendorId": h["st_vendor_company_id"], "type": "construction",
            "externalIds": {"procore": str(h["project_ids"][0])}}
    with pytest.raises(ValidationFailed) as info:
        st.create_job(body)
    assert "externalIds" in info.value.details
    with pytest.raises(ValidationFailed) as info:
        st.create_job({**body, "type": "party", "externalIds": {}})
    assert "type" in info.value.details


# ------------------------------------------------------------------------------------------------ ST-8


@pytest.mark.parametrize("fault", [{"kind": "429"}, {"kind": "429", "retry_after": 3}, {"kind": "500"},
                                   {"kind": "502"}, {"kind": "503", "retry_after": 2}, {"kind": "504"}])
def test_st8_transient_answers_to_reads_are_retried_and_retry_after_honoured(
        world: dict, emulator: Any, fault: dict) -> None:
    sleeps = Sleeps()
    st = client(emulator, world["handles"], sleeps=sleeps)
    st.login()
    emulator.admin.add_faults({"service": "servicetrade", "path": "^/api/user$", "count": 2, **fault})
    assert len(list(st.technicians())) == len(world["handles"]["technicians"])
    assert len(sleeps) == 2
    assert all(s >= fault.get("retry_after", 0) for s in sleeps)


def test_st8_a_retry_after_of_a_minute_or_more_defers_the_run(world: dict, emulator: Any) -> None:
    sleeps = Sleeps()
    st = client(emulator, world["handles"], sleeps=sleeps)
    st.login()
    emulator.admin.add_faults({"service": "servicetrade", "path": "^/api/user$", "kind": "429", "retry_after": 90})
    with pytest.raises(DeferRun) as info:
        list(st.technicians())
    assert info.value.wait_s >= 90 and sleeps == [] and "servicetrade GET /user" in str(info.value)


def test_st8_a_create_whose_answer_is_lost_is_outcome_unknown_and_found_by_listing(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    st = client(emulator, h)
    pid = str(h["project_ids"][1])
    emulator.admin.add_faults({"service": "servicetrade", "method": "POST", "path": "^/api/company$",
                               "kind": "lost_response", "count": 1})
    with pytest.raises(OutcomeUnknown, match="POST /company"):
        st.create_company({"name": "Lost Answer Inc", "customer": True, "address": ADDRESS,
                           "externalIds": {"procore": pid}})
    found = [c for c in st.list_companies(name="Lost Answer") if c["externalIds"].get("procore") == pid]
    assert len(found) == 1 and calls(emulator, "POST", "/api/company") == 1


@pytest.mark.parametrize("kind", ["500", "502", "504"])
def test_st8_a_create_meeting_a_server_error_is_not_sent_again(world: dict, emulator: Any, kind: str) -> None:
    sleeps = Sleeps()
    st = client(emulator, world["handles"], sleeps=sleeps)
    emulator.admin.add_faults({"service": "servicetrade", "method": "POST", "path": "^/api/company$", "kind": kind,
                               "count": 1})
    with pytest.raises(OutcomeUnknown):
        st.create_company({"name": "Once Only", "customer": True, "address": ADDRESS})
    assert sleeps == [] and calls(emulator, "POST", "/api/company") == 1


def test_st8_a_create_refused_with_429_or_503_retry_after_is_sent_again(world: dict, emulator: Any) -> None:
    st = client(emulator, world["handles"])
    emulator.admin.add_faults(
        {"service": "servicetrade", "method": "POST", "path": "^/api/company$", "kind": "429", "count": 1},
        {"service": "servicetrade", "method": "POST", "path": "^/api/company$", "kind": "503", "retry_after": 1,
         "count": 1})
    created = st.create_company({"name": "Third Time", "customer": True, "address": ADDRESS})
    assert calls(emulator, "POST", "/api/company") == 3
    assert [c["id"] for c in emulator.admin.st_state()["companies"] if c["name"] == "Third Time"] == [created["id"]]


def test_st8_the_request_id_is_in_errors_and_in_the_call_log(world: dict, emulator: Any) -> None:
    st = client(emulator, world["handles"])
    with capture_logs() as logs, pytest.raises(NotFound) as info:
        st.get_job(4_000_000_000_000_003)
    assert info.value.request_id and f"(request id {info.value.request_id})" in str(info.value)
    logged = [e for e in logs if e["event"] == "http.call" and e["path"] == "/job/{id}"]
    assert [(e["method"], e["status"], e["request_id"]) for e in logged] == [("GET", 404, info.value.request_id)]
    assert all(world["handles"]["st_password"] not in str(e) and "PHPSESSID" not in str(e) for e in logs)
