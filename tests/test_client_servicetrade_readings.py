"""The ServiceTrade client reading answers as ServiceTrade's official SDK reads them (ST-9), and registering webhooks
(ST-10), against the scripted HTTP server: the emulator's default answers are ST-3's."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests import helpers
from tests.helpers import Sleeps, Stub
from worker.clients.errors import MalformedResponse, OutcomeUnknown, ValidationFailed
from worker.clients.servicetrade import ServiceTradeClient

stub = helpers.stub  # the scripted server, as a fixture
SESSION = "s" * 26
EVENTS = ["created", "updated", "deleted"]


def session_client(stub: Stub) -> ServiceTradeClient:
    """A client with a live session: no login call before the scripted ones."""
    return ServiceTradeClient(stub.url, username="u", password="p", session_token=SESSION, sleep=Sleeps(), timeout=2)


def oauth_client(stub: Stub) -> ServiceTradeClient:
    stub.answer(200, {"access_token": "access-token-1", "token_type": "Bearer", "expires_in": 86400})
    return ServiceTradeClient(stub.url, client_id="cid", client_secret="csecret", sleep=Sleeps(), timeout=2)


def event(n: int) -> dict[str, Any]:
    return {"id": n, "eventTime": 1_780_000_000 + n, "eventType": "clockIn", "activity": "onsite"}


def readings(logs: list[dict[str, Any]]) -> list[str]:
    return [e["reading"] for e in logs if e["event"] == "servicetrade.lenient_reading"]


def pages_asked(stub: Stub) -> list[str]:
    return [r["query"]["page"][0] for r in stub.received if r["path"] == "/clock"]


# ------------------------------------------------------------------------------------------------ identity


def test_userinfo_without_the_data_envelope_and_a_company_id_as_a_string_is_read(stub: Stub) -> None:
    st = oauth_client(stub)
    stub.answer(200, {"userId": 5, "name": "API User", "company": {"id": "9001", "name": "Vendor Co"}})
    with capture_logs() as logs:
        me = st.whoami()
    assert me == {"user_id": 5, "name": "API User", "company_id": 9001, "company_name": "Vendor Co"}
    assert readings(logs) == ["identity_without_envelope", "numbers_as_strings"]
    warning = next(e for e in logs if e["event"] == "servicetrade.lenient_reading")
    assert warning["log_level"] == "warning" and warning["path"] == "/oauth2/userinfo"


def test_userinfo_with_the_envelope_is_read_without_a_warning(stub: Stub) -> None:
    st = oauth_client(stub)
    stub.answer(200, {"data": {"userId": 5, "name": "API User", "company": {"id": 9001, "name": "Vendor Co"}}})
    with capture_logs() as logs:
        assert st.whoami()["company_id"] == 9001
    assert readings(logs) == []


def test_the_session_identity_without_the_envelope_is_read(stub: Stub) -> None:
    stub.answer(200, {"user": {"id": 3, "name": "API", "company": {"id": 77, "name": "Vendor"}}})
    assert session_client(stub).whoami()["company_id"] == 77


def test_an_identity_that_is_neither_enveloped_nor_an_identity_is_malformed(stub: Stub) -> None:
    st = oauth_client(stub)
    stub.answer(200, {"messages": {"success": ["ok"]}})
    with pytest.raises(MalformedResponse, match="the response envelope has no 'data'"):
        st.whoami()


def test_a_company_id_that_is_not_a_number_is_still_malformed(stub: Stub) -> None:
    st = oauth_client(stub)
    stub.answer(200, {"data": {"userId": 5, "company": {"id": "nine", "name": "Vendor"}}})
    with pytest.raises(MalformedResponse, match="data.company.id should be an integer, got a string"):
        st.whoami()


# ------------------------------------------------------------------------------------------------ pages


def test_pages_without_total_pages_are_read_past_a_short_page_until_an_empty_one(stub: Stub) -> None:
    # ST-3: the server may cap pages below `limit`, so a short page is not the last one when nothing says so.
    stub.answer(200, {"data": {"page": 1, "events": [event(1), event(2)]}})
    stub.answer(200, {"data": {"page": 2, "events": [event(3)]}})
    stub.answer(200, {"data": {"page": 3, "events": [event(4)]}})
    stub.answer(200, {"data": {"page": 4}})  # the loose reading's empty page: no list at all
    with capture_logs() as logs:
        got = list(session_client(stub).clock_events(limit=2))
    assert [e["id"] for e in got] == [1, 2, 3, 4]
    assert pages_asked(stub) == ["1", "2", "3", "4"]
    assert readings(logs) == ["pages_without_total", "missing_list"]  # once per client, not once per page


def test_pages_without_total_pages_stop_on_an_empty_page(stub: Stub) -> None:
    stub.answer(200, {"data": {"page": 1, "events": [event(1), event(2)]}})
    stub.answer(200, {"data": {"page": 2, "events": []}})
    assert [e["id"] for e in session_client(stub).clock_events(limit=2)] == [1, 2]
    assert pages_asked(stub) == ["1", "2"]


def test_page_numbers_sent_as_strings_are_read_as_numbers(stub: Stub) -> None:
    stub.answer(200, {"data": {"page": "1", "totalPages": "2", "events": [event(1)]}})
    stub.answer(200, {"data": {"page": "2", "totalPages": "2", "events": [event(2)]}})
    with capture_logs() as logs:
        got = list(session_client(stub).clock_events())
    assert [e["id"] for e in got] == [1, 2] and pages_asked(stub) == ["1", "2"]
    assert readings(logs) == ["numbers_as_strings"]


def test_a_list_missing_from_data_is_read_as_empty(stub: Stub) -> None:
    stub.answer(200, {"data": {"page": 1, "totalPages": 1}})
    with capture_logs() as logs:
        assert list(session_client(stub).technicians()) == []
    assert readings(logs) == ["missing_list"]
    assert next(e for e in logs if e["event"] == "servicetrade.lenient_reading")["field"] == "data.users"


def test_each_lenient_reading_is_logged_once_per_client(stub: Stub) -> None:
    for _ in range(3):  # three lists of one page each, the empty page ending each
        stub.answer(200, {"data": {"page": 1, "events": [event(1)]}})
        stub.answer(200, {"data": {"page": 2, "events": []}})
    first = session_client(stub)
    with capture_logs() as logs:
        list(first.clock_events())
        list(first.clock_events())
        list(session_client(stub).clock_events())
    assert readings(logs) == ["pages_without_total", "pages_without_total"]


def test_a_server_answering_another_page_than_asked_is_malformed_not_read_for_ever(stub: Stub) -> None:
    stub.answer(200, {"data": {"page": 1, "events": [event(1), event(2)]}})
    stub.answer(200, {"data": {"page": 1, "events": [event(1), event(2)]}})
    with pytest.raises(MalformedResponse, match="page 2 was asked and page 1 came back"):
        list(session_client(stub).clock_events(limit=2))


# ------------------------------------------------------------------------------------------------ webhooks (ST-10)


def sent_json(stub: Stub, index: int = -1) -> Any:
    return json.loads(stub.received[index]["body"])


def test_a_webhook_is_created_with_its_url_entity_events_and_changesets(stub: Stub) -> None:
    hook = {"id": 41, "hookUrl": "https://stsync.example/hooks/st/tok-abcdef", "enabled": True, "confirmed": False}
    stub.answer(200, {"data": hook})
    st = session_client(stub)
    assert st.create_webhook(hook["hookUrl"], {"clockevent": EVENTS, "job": ["updated"]}) == hook
    request = stub.received[-1]
    assert (request["method"], request["path"]) == ("POST", "/webhook")
    assert request["headers"]["Cookie"] == f"PHPSESSID={SESSION}"
    assert sent_json(stub) == {"hookUrl": hook["hookUrl"], "enabled": True, "includeChangesets": True,
                               "entityEvents": [{"entityType": "clockevent", "events": EVENTS},
                                                {"entityType": "job", "events": ["updated"]}]}


def test_webhooks_are_listed_updated_and_deleted(stub: Stub) -> None:
    stub.answer(200, {"data": {"webhooks": [{"id": 41, "hookUrl": "https://a"}, {"id": 42, "hookUrl": "https://b"}]}})
    stub.answer(200, {"data": {"webhooks": []}})  # no totalPages: the empty page 2 ends the list
    stub.answer(200, {"data": {"id": 41, "enabled": False}})
    stub.answer(204)
    st = session_client(stub)
    assert [h["id"] for h in st.list_webhooks()] == [41, 42]
    assert st.update_webhook(41, enabled=False, entity_events={"clockevent": EVENTS})["enabled"] is False
    assert (stub.received[2]["method"], stub.received[2]["path"]) == ("PUT", "/webhook/41")
    assert sent_json(stub, 2) == {"enabled": False, "entityEvents": [{"entityType": "clockevent", "events": EVENTS}]}
    st.delete_webhook(41)
    assert (stub.received[3]["method"], stub.received[3]["path"]) == ("DELETE", "/webhook/41")
    stub.answer(200, {})
    st.delete_webhook(42)  # the other answer ServiceTrade gives a DELETE


def test_a_webhook_create_whose_answer_is_lost_is_outcome_unknown_and_not_sent_again(stub: Stub) -> None:
    stub.drop()
    with pytest.raises(OutcomeUnknown):
        session_client(stub).create_webhook("https://stsync.example/hooks/st/tok", {"clockevent": EVENTS})
    assert len(stub.received) == 1


def test_the_secret_in_a_hook_url_never_reaches_an_error_message(stub: Stub) -> None:
    url = "https://stsync.example/hooks/st/tok-very-secret-123"
    stub.answer(400, {"messages": {"error": [f"{url} is not a public https url"], "validation": {"hookUrl": url}},
                      "data": None})
    with pytest.raises(ValidationFailed) as info:
        session_client(stub).create_webhook(url, {"clockevent": EVENTS})
    assert "tok-very-secret-123" not in str(info.value) and "[REDACTED]" in str(info.value)


# ------------------------------------------------------------------------------------------------ pages side by side


def pages_of(answers: dict[int, tuple[list[int], int | None]], asked: list[int]
             ) -> Callable[[int], tuple[list[dict[str, Any]], int | None]]:
    """A page reader answering from a script: page -> (event ids, the totalPages it says)."""

    def read(page: int) -> tuple[list[dict[str, Any]], int | None]:
        asked.append(page)
        ids, total = answers[page]
        return [event(n) for n in ids], total

    return read


def test_a_list_that_grows_while_read_side_by_side_is_read_to_its_new_end() -> None:
    asked: list[int] = []
    read = pages_of({2: ([3, 4], 3), 3: ([5], 3)}, asked)  # page 1 said 2 pages; page 2 says 3
    got = [e["id"] for e in ServiceTradeClient._pages_side_by_side(read, 2)]
    assert got == [3, 4, 5] and sorted(asked) == [2, 3]


def test_a_list_that_shrinks_while_read_side_by_side_ends_where_its_pages_say() -> None:
    asked: list[int] = []
    read = pages_of({2: ([3], 2), 3: ([], 2), 4: ([], 2), 5: ([], 2)}, asked)  # page 1 said 5; page 2 says 2
    got = [e["id"] for e in ServiceTradeClient._pages_side_by_side(read, 5)]
    assert got == [3] and 2 in asked and max(asked) <= 5
