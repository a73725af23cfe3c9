"""The shared HTTP layer (worker/clients/http.py) and the rate budgets (worker/clients/ratelimit.py), against a tiny
scripted HTTP server for what the emulator can't express (an answer per attempt, HTTP-date Retry-After, wrong types)
and against the real Redis for the shared budget."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import redis
import requests
from structlog.testing import capture_logs

from tests import helpers
from tests.helpers import Sleeps, Stub
from worker.clients.errors import (
    ApiError,
    CredentialsRejected,
    DeferRun,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    TransientError,
    ValidationFailed,
)
from worker.clients.http import ApiSession, Auth, expect, remote_message
from worker.clients.ratelimit import LocalRateBudget, RedisRateBudget
from worker.clients.servicetrade import ServiceTradeClient

stub = helpers.stub  # the scripted server, as a fixture

NOW = 1_780_000_000.0


def api(stub: Stub, sleeps: Sleeps | None = None, **kw: Any) -> ApiSession:
    kw.setdefault("max_attempts", 4)
    kw.setdefault("clock", lambda: NOW)
    return ApiSession("stubsvc", stub.url, sleep=sleeps if sleeps is not None else Sleeps(), timeout=2, **kw)


def get(session: ApiSession, path: str = "/things", **kw: Any) -> requests.Response:
    return session.request(session.call("GET", path), path, **kw)


def post(session: ApiSession, path: str = "/things", **kw: Any) -> requests.Response:
    return session.request(session.call("POST", path), path, json={"name": "x"}, **kw)


# ------------------------------------------------------------------------------------------------ reads


def test_reads_are_retried_through_each_transient_status_with_growing_jittered_waits(stub: Stub) -> None:
    for status in (500, 502, 503, 504):
        stub.answer(status, {"errors": "busy"})
    stub.answer(200, {"ok": True})
    sleeps = Sleeps()
    response = get(api(stub, sleeps, max_attempts=5))
    assert response.json() == {"ok": True} and len(stub.received) == 5
    assert len(sleeps) == 4
    for n, wait in enumerate(sleeps):
        assert 0.5 * 0.5 * 2**n <= wait <= 1.5 * 0.5 * 2**n


def test_a_read_that_keeps_failing_names_service_method_endpoint_status_message_and_request_id(stub: Stub) -> None:
    for _ in range(4):
        stub.answer(502, {"errors": "Upstream is sulking"})
    with pytest.raises(TransientError) as info:
        get(api(stub), "/things/42", params={"token_hint": "abc"})
    text = str(info.value)
    for part in ("stubsvc", "GET", "/things/42", "502", "Upstream is sulking", "req-4"):
        assert part in text
    assert "token_hint" not in text and len(stub.received) == 4


def test_a_read_whose_answer_is_lost_or_late_is_simply_asked_again(stub: Stub) -> None:
    stub.drop().drop(after_s=2.5).answer(200, {"ok": 1})
    session = api(stub)
    session.timeout = (1.0, 0.5)
    assert get(session).json() == {"ok": 1}
    assert len(stub.received) == 3


def test_patch_and_delete_are_idempotent_and_retried(stub: Stub) -> None:
    stub.answer(500).answer(200, {"patched": True}).drop().answer(200)
    session = api(stub)
    assert session.request(session.call("PATCH", "/x/{id}"), "/x/1", json={"a": 1}).json() == {"patched": True}
    assert session.request(session.call("DELETE", "/x/{id}"), "/x/1").status_code == 200
    assert [r["method"] for r in stub.received] == ["PATCH", "PATCH", "DELETE", "DELETE"]


def test_a_delete_answering_404_after_a_lost_answer_is_done_but_a_first_404_is_not_found(stub: Stub) -> None:
    stub.drop().answer(404, {"errors": "Timecard entry not found"})
    session = api(stub)
    assert session.request(session.call("DELETE", "/x/{id}"), "/x/1").status_code == 404
    stub.answer(404, {"errors": "Timecard entry not found"})
    with pytest.raises(NotFound, match="Timecard entry not found"):
        session.request(session.call("DELETE", "/x/{id}"), "/x/2")


# ------------------------------------------------------------------------------------------------ waits


def test_429_without_any_header_backs_off_exponentially(stub: Stub) -> None:
    stub.answer(429, raw=b"Too many").answer(429, raw=b"Too many").answer(200, {})
    sleeps = Sleeps()
    get(api(stub, sleeps))
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.75 and 0.5 <= sleeps[1] <= 1.5


@pytest.mark.parametrize(("headers", "at_least"), [
    ({"Retry-After": "7"}, 7.0),
    ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 12, UTC), usegmt=True)}, 12.0),
    ({"X-Rate-Limit-Reset": str(int(NOW) + 9), "X-Rate-Limit-Remaining": "0"}, 9.0),
    ({"Retry-After": "3", "X-Rate-Limit-Reset": str(int(NOW) + 20)}, 20.0),
])
def test_429_honours_retry_after_in_seconds_or_as_a_date_and_the_rate_limit_reset(
        stub: Stub, headers: dict[str, str], at_least: float) -> None:
    stub.answer(429, raw=b"You have surpassed the max number of requests", headers=headers).answer(200, {})
    sleeps = Sleeps()
    get(api(stub, sleeps))
    assert len(sleeps) == 1 and at_least <= sleeps[0] < at_least + 1


def test_503_honours_retry_after(stub: Stub) -> None:
    stub.answer(503, {"errors": "load"}, headers={"Retry-After": "4"}).answer(200, {})
    sleeps = Sleeps()
    get(api(stub, sleeps))
    assert sleeps and sleeps[0] >= 4


@pytest.mark.parametrize(("status", "headers"), [
    (429, {"Retry-After": "60"}),
    (429, {"X-Rate-Limit-Reset": str(int(NOW) + 3000)}),
    (503, {"Retry-After": "120"}),
    (429, {"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 900, UTC), usegmt=True)}),
])
def test_a_wait_of_a_minute_or_more_defers_the_run_instead_of_sleeping(
        stub: Stub, status: int, headers: dict[str, str]) -> None:
    stub.answer(status, raw=b"wait", headers=headers)
    sleeps = Sleeps()
    with pytest.raises(DeferRun) as info:
        get(api(stub, sleeps), "/things/{id}")
    assert info.value.wait_s >= 60 and sleeps == [] and len(stub.received) == 1
    assert "stubsvc GET /things/{id}" in str(info.value)


def test_a_429_that_outlasts_every_attempt_defers_the_run(stub: Stub) -> None:
    for _ in range(4):
        stub.answer(429, raw=b"slow down", headers={"Retry-After": "2"})
    with pytest.raises(DeferRun) as info:
        get(api(stub))
    assert info.value.wait_s >= 60 and len(stub.received) == 4


# ------------------------------------------------------------------------------------------------ writes


@pytest.mark.parametrize("first", [
    {"status": 429, "raw": b"Too many"},
    {"status": 429, "raw": b"Too many", "headers": {"Retry-After": "1"}},
    {"status": 503, "body": {"errors": "load"}, "headers": {"Retry-After": "2"}},
])
def test_a_post_is_retried_when_the_answer_proves_nothing_was_created(stub: Stub, first: dict) -> None:
    stub.answer(**first).answer(201, {"id": 1})
    assert post(api(stub)).json() == {"id": 1}
    assert len(stub.received) == 2


@pytest.mark.parametrize("status", [500, 502, 504, 503])
def test_a_post_meeting_a_server_error_is_outcome_unknown_and_not_sent_again(stub: Stub, status: int) -> None:
    stub.answer(status, {"errors": "oops"})  # a 503 without Retry-After proves nothing either
    sleeps = Sleeps()
    with pytest.raises(OutcomeUnknown) as info:
        post(api(stub, sleeps))
    assert len(stub.received) == 1 and sleeps == []
    assert str(status) in str(info.value) and "may or may not" in str(info.value)


def test_a_post_whose_answer_is_lost_is_outcome_unknown(stub: Stub) -> None:
    stub.drop()
    with pytest.raises(OutcomeUnknown, match="closed the connection without answering") as info:
        post(api(stub), "/timesheets")
    assert info.value.status is None and len(stub.received) == 1


def test_a_post_timing_out_after_sending_is_outcome_unknown(stub: Stub) -> None:
    stub.drop(after_s=1.0)
    session = api(stub)
    session.timeout = (1.0, 0.3)
    with pytest.raises(OutcomeUnknown, match="read timeout"):
        post(session)
    assert len(stub.received) == 1


def test_a_post_that_never_connected_is_retried_then_transient() -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    session = ApiSession("stubsvc", f"http://127.0.0.1:{port}", sleep=sleeps, max_attempts=3, timeout=2)
    with pytest.raises(TransientError, match="could not connect"):
        post(session)
    assert len(sleeps) == 2


def test_a_post_declared_repeatable_is_retried_after_a_lost_answer(stub: Stub) -> None:
    stub.drop().answer(200, {"access_token": "t"})
    assert post(api(stub), "/oauth/token", repeatable=True).json() == {"access_token": "t"}


# ------------------------------------------------------------------------------------------------ 401 renewal


def test_a_401_renews_the_credentials_once_and_repeats_the_call(stub: Stub) -> None:
    tokens = iter(["first-token", "second-token"])
    current = {"token": next(tokens)}
    renewed: list[dict] = []

    def renew(rejected: Any) -> None:
        renewed.append(dict(rejected))
        current["token"] = next(tokens)

    auth = Auth(lambda: {"Authorization": f"Bearer {current['token']}"}, renew)
    stub.answer(401).answer(200, {"ok": True})
    assert get(api(stub), auth=auth).json() == {"ok": True}
    assert renewed == [{"Authorization": "Bearer first-token"}]
    assert [r["headers"]["Authorization"] for r in stub.received] == ["Bearer first-token", "Bearer second-token"]

    stub.answer(401).answer(401)
    with pytest.raises(CredentialsRejected):
        get(api(stub), auth=Auth(lambda: {"Authorization": "Bearer x"}, lambda _r: None))


def test_a_401_without_renewable_credentials_is_credentials_rejected(stub: Stub) -> None:
    stub.answer(401, {"error": "invalid_client", "error_description": "Client authentication failed."})
    with pytest.raises(CredentialsRejected, match="invalid_client: Client authentication failed"):
        post(api(stub), "/oauth/token")


# ------------------------------------------------------------------------------------------------ bodies


def test_an_empty_body_is_malformed_and_says_so(stub: Stub) -> None:
    stub.answer(200)
    session = api(stub)
    call = session.call("GET", "/clock")
    with pytest.raises(MalformedResponse, match=r"GET /clock answered 200: the body was empty"):
        session.json(session.request(call, "/clock"), call)


def test_an_html_page_is_malformed_and_named_by_its_title(stub: Stub) -> None:
    stub.answer(200, raw=b"<html><head><title>Captive &amp; portal</title></head></html>",
                headers={"Content-Type": "text/html"})
    session = api(stub)
    call = session.call("GET", "/user")
    with pytest.raises(MalformedResponse, match="an HTML page titled 'Captive & portal'"):
        session.json(session.request(call, "/user"), call)


def test_a_502_html_page_from_a_proxy_is_transient_and_names_the_endpoint(stub: Stub) -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    for _ in range(4):
        stub.answer(502, raw=page, headers={"Content-Type": "text/html"})
    with pytest.raises(TransientError) as info:
        get(api(stub), "/rest/v1.0/cost_codes")
    assert "/rest/v1.0/cost_codes" in str(info.value) and "HTML page titled '502 Bad Gateway'" in str(info.value)


def test_wrong_types_are_malformed_not_a_key_error(stub: Stub) -> None:
    session = api(stub)
    call = session.call("GET", "/clock")
    with pytest.raises(MalformedResponse, match="data.totalPages should be an integer, got a string"):
        expect("3", int, "data.totalPages", call)
    with pytest.raises(MalformedResponse, match="should be an integer, got true/false"):
        expect(True, int, "data.totalPages", call)
    stub.answer(200, [1, 2])
    with pytest.raises(MalformedResponse, match="the body should be an object, got a list"):
        session.json(session.request(call, "/clock"), call, dict)


@pytest.mark.parametrize(("body", "words"), [
    ({"errors": "Missing Procore-Company-Id header!"}, "Missing Procore-Company-Id header!"),
    ({"errors": {"cost_code_id": ["is not a cost code of this project"]}},
     "cost_code_id: is not a cost code of this project"),
    ({"errors": [{"index": 1, "errors": {"party_id": ["is not an employee"]}}]}, "entry 1: party_id: is not an employee"),
    ({"messages": {"error": ["Invalid credentials provided"]}}, "Invalid credentials provided"),
    ({"messages": {"error": [], "validation": {"type": "Type is required"}}, "data": None}, "type: Type is required"),
    ({"error": "invalid_grant", "error_description": "The refresh token is invalid"},
     "invalid_grant: The refresh token is invalid"),
    ({"message": "Forbidden", "error": "permission"}, "Forbidden"),
    ("Approved timecard entries cannot be modified", "Approved timecard entries cannot be modified"),
    (["one", "two"], "one; two"),
])
def test_the_remote_message_is_found_whatever_the_shape_of_the_json(stub: Stub, body: Any, words: str) -> None:
    stub.answer(422, body)
    with pytest.raises(ValidationFailed) as info:
        post(api(stub))
    assert info.value.message == words


def test_plain_text_and_html_error_bodies_keep_the_servers_words(stub: Stub) -> None:
    stub.answer(403, raw=b"You do not have access to this tool.", headers={"Content-Type": "text/plain"})
    with pytest.raises(ApiError, match="answered 403: You do not have access to this tool."):
        get(api(stub))
    response = requests.Response()
    response.status_code, response._content = 502, b"<html><title>Bad Gateway</title></html>"
    assert remote_message(response) == "an HTML page titled 'Bad Gateway' (probably from a proxy)"


def test_secrets_echoed_by_the_server_are_scrubbed_from_messages(stub: Stub) -> None:
    stub.answer(400, {"errors": "password hunter2-hunter2 is wrong for api@example.com"})
    session = api(stub)
    session.add_secrets("hunter2-hunter2")
    with pytest.raises(ValidationFailed) as info:
        post(session, "/auth")
    assert "hunter2-hunter2" not in str(info.value) and "[REDACTED]" in str(info.value)


# ------------------------------------------------------------------------------------------------ logging


def test_every_call_is_logged_with_method_path_status_duration_and_request_id_and_no_secret(stub: Stub) -> None:
    stub.answer(503, {"errors": "load"}, headers={"Retry-After": "1"}).answer(200, {"ok": True})
    session = api(stub)
    with capture_logs() as logs:
        session.request(session.call("POST", "/things/{id}"), "/things/7", params={"page": 2},
                        json={"password": "pw-secret-value"},
                        headers={"Cookie": "PHPSESSID=cookie-secret-value", "Authorization": "Bearer tok-secret"})
    calls = [e for e in logs if e["event"] == "http.call"]
    assert [(c["method"], c["path"], c["status"], c["request_id"]) for c in calls] == [
        ("POST", "/things/{id}", 503, "req-1"), ("POST", "/things/{id}", 200, "req-2")]
    assert all(isinstance(c["duration_ms"], float) and c["service"] == "stubsvc" for c in calls)
    assert any(e["event"] == "http.retry" and e["status"] == 503 for e in logs)
    dumped = json.dumps(logs, default=str)
    for secret in ("pw-secret-value", "cookie-secret-value", "tok-secret", "page=2"):
        assert secret not in dumped


def test_timeouts_are_a_connect_and_a_read_timeout() -> None:
    assert ApiSession("s", "http://h").timeout == (10.0, 30.0)
    assert ApiSession("s", "http://h", timeout=4).timeout == (4.0, 4.0)
    assert ApiSession("s", "http://h/api/").url("/auth") == "http://h/api/auth"


# ------------------------------------------------------------------------------------------------ ServiceTrade shapes


def test_servicetrade_lists_with_a_wrong_shape_are_malformed_naming_endpoint_and_field(stub: Stub) -> None:
    stub.answer(200, {"data": {"authenticated": True, "authToken": "a" * 26,
                               "user": {"id": 1, "name": "API", "company": {"id": 9, "name": "Vendor"}}}})
    stub.answer(200, {"data": {"page": 1, "totalPages": "many", "events": []}})
    stub.answer(200, {"data": {"page": 1, "totalPages": 1, "events": {"id": 1}}})
    stub.answer(200, {"data": {"page": 1, "totalPages": 1, "events": [7]}})
    stub.answer(200, {"messages": {"success": ["ok"]}})
    st = ServiceTradeClient(stub.url, username="u", password="p", sleep=Sleeps())
    with pytest.raises(MalformedResponse, match=r"GET /clock answered 200: data.totalPages should be an integer"):
        list(st.clock_events())
    with pytest.raises(MalformedResponse, match="data.events should be a list, got an object"):
        list(st.clock_events())
    with pytest.raises(MalformedResponse, match="an item of data.events should be an object"):
        list(st.clock_events())
    with pytest.raises(MalformedResponse, match="the response envelope has no 'data'"):
        list(st.technicians())


# ------------------------------------------------------------------------------------------------ rate budgets


class FakeTime:
    """A clock that the budget's sleep moves forward."""

    def __init__(self) -> None:
        self.now = NOW
        self.naps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


def budgets(redis_url: str, t: FakeTime, spread: bool = False) -> list:
    redis.Redis.from_url(redis_url).delete("stsync:test-budget")
    return [LocalRateBudget(sleep=t.sleep, clock=t.clock, spread=spread),
            RedisRateBudget(redis_url, "stsync:test-budget", sleep=t.sleep, clock=t.clock, spread=spread)]


@pytest.mark.parametrize("kind", [0, 1], ids=["local", "redis"])
def test_a_budget_spends_the_window_keeps_one_in_reserve_then_waits_for_the_reset(redis_url: str, kind: int) -> None:
    t = FakeTime()
    budget = budgets(redis_url, t)[kind]
    budget.acquire()  # nothing known yet: go, and learn from the answer
    budget.observe(10, 5, int(NOW) + 10)
    for _ in range(4):
        budget.acquire()
    assert t.naps == []
    budget.acquire()  # 1 left = the reserve: wait for the window to reset, in short naps
    assert t.naps and t.now >= NOW + 11 and max(t.naps) < 1.1


@pytest.mark.parametrize("kind", [0, 1], ids=["local", "redis"])
def test_within_one_window_a_budget_keeps_the_smaller_count(redis_url: str, kind: int) -> None:
    t = FakeTime()
    budget = budgets(redis_url, t)[kind]
    reset = int(NOW) + 30
    budget.observe(10, 4, reset)
    budget.observe(10, 8, reset)  # a slower answer from earlier in the same window: ours is smaller
    for _ in range(3):
        budget.acquire()
    assert t.naps == []
    budget.acquire()
    assert t.naps and t.now >= reset + 1


@pytest.mark.parametrize("kind", [0, 1], ids=["local", "redis"])
def test_a_later_reset_is_a_new_window_with_the_servers_count(redis_url: str, kind: int) -> None:
    t = FakeTime()
    budget = budgets(redis_url, t)[kind]
    budget.observe(10, 2, int(NOW) + 30)
    budget.acquire()
    budget.observe(10, 9, int(NOW) + 3600)
    for _ in range(8):
        budget.acquire()
    assert t.naps == []
    with pytest.raises(DeferRun):
        budget.acquire()


@pytest.mark.parametrize("kind", [0, 1], ids=["local", "redis"])
def test_a_budget_spent_for_a_minute_or_more_defers_the_run(redis_url: str, kind: int) -> None:
    t = FakeTime()
    budget = budgets(redis_url, t)[kind]
    budget.observe(3600, 1, int(NOW) + 1800)
    with pytest.raises(DeferRun) as info:
        budget.acquire()
    assert info.value.wait_s >= 1800 and t.naps == []


def test_two_workers_share_one_redis_budget_and_never_take_the_same_call(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)

    class Blocked(Exception):
        pass

    def refuse_to_wait(_seconds: float) -> None:
        raise Blocked

    client.delete("stsync:shared")
    workers = [RedisRateBudget(client, "stsync:shared", reserve=1, sleep=refuse_to_wait) for _ in range(2)]
    workers[0].observe(2001, 2001, int(time.time()) + 50)
    taken = [0, 0]
    barrier = threading.Barrier(2)

    def spend(i: int) -> None:
        barrier.wait()
        try:
            while True:
                workers[i].acquire()
                taken[i] += 1
        except Blocked:
            pass

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert sum(taken) == 2000  # one call kept in reserve, every other one taken exactly once
    assert all(n > 0 for n in taken)
    assert int(client.hget("stsync:shared", "remaining")) == 1


@pytest.mark.parametrize("kind", [0, 1], ids=["local", "redis"])
def test_a_spreading_budget_paces_the_windows_calls_evenly_up_to_its_reset(redis_url: str, kind: int) -> None:
    t = FakeTime()
    budget = budgets(redis_url, t, spread=True)[kind]
    reset = int(NOW) + 20
    budget.observe(21, 21, reset)  # 20 calls to spend (one in reserve) over 21 s: one every 1.05 s
    sent = []
    for _ in range(20):
        budget.acquire()
        sent.append(t.now)
    assert sent[-1] < reset + 1, "the window's calls all went inside it"
    assert sent[0] == NOW and sent[1] == NOW, "a burst of calls goes ahead of the pace"
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert max(gaps) < 2.2 and sent[10] - NOW > 7, "the rest follow the pace, not all at once"
    budget.acquire()  # the reserve: the next call waits for the new window
    assert t.now >= reset + 1


@pytest.mark.parametrize("kind", [0, 1], ids=["local", "redis"])
def test_a_budget_by_default_spends_the_window_at_once(redis_url: str, kind: int) -> None:
    t = FakeTime()
    budget = budgets(redis_url, t)[kind]
    budget.observe(21, 21, int(NOW) + 20)
    for _ in range(20):
        budget.acquire()
    assert t.naps == []


@pytest.mark.parametrize("kind", [0, 1], ids=["local", "redis"])
def test_a_pace_slower_than_the_cap_never_defers_the_run(redis_url: str, kind: int) -> None:
    t = FakeTime()
    budget = budgets(redis_url, t, spread=True)[kind]
    budget.observe(3600, 9, int(NOW) + 3000)  # 8 calls over 50 minutes: the pace would be 6 minutes a call
    for _ in range(8):
        budget.acquire()
    assert max(t.naps) <= 1.1 and t.now - NOW <= 8 * 10.0
    with pytest.raises(DeferRun):
        budget.acquire()  # the reserve: the window is spent until its reset


def test_two_workers_sharing_a_spreading_redis_budget_keep_one_pace(redis_url: str) -> None:
    t = FakeTime()
    client = redis.Redis.from_url(redis_url)
    client.delete("stsync:paced")
    workers = [RedisRateBudget(client, "stsync:paced", sleep=t.sleep, clock=t.clock, spread=True) for _ in range(2)]
    workers[0].observe(11, 11, int(NOW) + 10)  # 10 calls over 11 s
    sent = []
    for i in range(10):  # the two workers take turns; the pace is theirs together
        workers[i % 2].acquire()
        sent.append(t.now)
    assert sent[-1] < NOW + 11 and sent[-1] - NOW > 5
