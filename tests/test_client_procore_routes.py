"""Procore's single-entry route and the refusals the pipeline falls back on (P-5, P-7, P-12): the company-form
create against the emulator, and what the emulator's default does not answer (a refused bulk route, a 403 on an
entry, answers missing fields) against the scripted HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import helpers
from tests.helpers import DAY, Recorder, Sleeps, SpyBudget, Stub, counted
from tests.helpers import procore_client as client
from tests.helpers import procore_entry as entry
from worker.clients.errors import (
    ApiError,
    BulkRouteRefused,
    BulkValidationFailed,
    CredentialsRejected,
    EntryLocked,
    EntryRefused,
    NotFound,
    OutcomeUnknown,
    ValidationFailed,
)
from worker.clients.procore import MemoryTokenStore, ProcoreClient, TokenSet

stub = helpers.stub  # the scripted server, as a fixture
COMPANY = 4242
SINGLE = r"^/rest/v1\.0/companies/\d+/timecard_entries$"


def on_stub(stub: Stub, **kw: Any) -> ProcoreClient:
    """A client holding a fresh token: no token call before the scripted ones."""
    tokens = TokenSet("access-token-1", None, datetime.now(UTC) + timedelta(hours=1))
    return ProcoreClient(stub.url, stub.url, COMPANY, client_id="cid", client_secret="csecret",
                         token_store=MemoryTokenStore(tokens), sleep=Sleeps(), timeout=2, **kw)


def answered_entry(n: int, **over: Any) -> dict[str, Any]:
    """An entry the way a Procore that stores what it likes answers it: no approval_status, its own hours."""
    return {"id": 900 + n, "project": {"id": 11}, "party": {"id": 21}, "date": "2026-03-02", "hours": "7.0",
            "cost_code": {"id": 31}, "line_item_type_id": 41, "origin_id": 5000 + n, **over}


def sent_entry(n: int) -> dict[str, Any]:
    return {"project_id": 11, "party_id": 21, "date": "2026-03-02", "hours": "7.25", "cost_code_id": 31,
            "line_item_type_id": 41, "origin_id": 5000 + n, "origin_data": f"src-{n}"}


# ------------------------------------------------------------------------------------------------ single create


def test_a_single_entry_is_created_through_the_company_form_with_its_project_beside_it(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    rec = Recorder()
    pc = client(emulator, h, session=rec)
    sent = entry(h, 3)
    created = pc.create_entry(sent)
    assert created["origin_id"] == 5003 and created["project"]["id"] == sent["project_id"]
    request = rec.sent[-1]
    assert urlsplit(request.url).path == f"/rest/v1.0/companies/{h['procore_company_id']}/timecard_entries"
    body = json.loads(request.body)
    assert body["project_id"] == sent["project_id"] and "project_id" not in body["timecard_entry"]
    assert body["timecard_entry"]["origin_id"] == 5003 and request.headers["Procore-Company-Id"]


def test_a_single_create_takes_from_the_rate_budget_and_is_resent_only_when_nothing_was_created(
        world: dict, emulator: Any) -> None:
    h = world["handles"]
    spy, sleeps = SpyBudget(), Sleeps()
    pc = client(emulator, h, rate_budget=spy, sleeps=sleeps)
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": SINGLE, "kind": "429", "count": 1})
    pc.create_entry(entry(h, 0))
    assert len(emulator.admin.procore_entries()) == 1 and len(sleeps) == 1
    assert [e[2] for e in spy.events if e[0] == "response"] == [429, 201]
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": SINGLE, "kind": "500", "count": 1})
    emulator.admin.reset_requests()
    with pytest.raises(OutcomeUnknown):
        pc.create_entry(entry(h, 1))
    assert counted(emulator, method="POST", route="/rest/v1.0/companies/{cid}/timecard_entries") == 1


def test_a_single_create_without_a_project_is_refused_before_sending(stub: Stub) -> None:
    sent = sent_entry(0)
    del sent["project_id"]
    with pytest.raises(ValueError, match="project_id"):
        on_stub(stub).create_entry(sent)
    assert stub.received == []


# ------------------------------------------------------------------------------------------------ bulk route refused


@pytest.mark.parametrize(("status", "body"), [
    (403, {"errors": "You do not have access to this feature"}),
    (404, {"errors": "Not Found"}),
    (400, {"errors": "A maximum of 25 timecard entries can be created at once"}),
])
def test_a_bulk_route_refused_by_status_is_its_own_error_and_not_resent(stub: Stub, status: int, body: dict) -> None:
    stub.answer(status, body)
    with pytest.raises(BulkRouteRefused) as info:
        on_stub(stub).bulk_create_entries([sent_entry(0), sent_entry(1)])
    refused = info.value
    assert refused.status == status and refused.message == body["errors"]
    assert not isinstance(refused, CredentialsRejected | ValidationFailed | NotFound)
    assert f"POST /rest/v1.0/companies/{{cid}}/timesheets answered {status}" in str(refused)
    assert len(stub.received) == 1


def test_a_422_on_the_bulk_route_is_still_a_validation_failure_by_index(stub: Stub) -> None:
    stub.answer(422, {"errors": [{"index": 1, "errors": {"hours": ["must be less than or equal to 24"]}}]})
    with pytest.raises(BulkValidationFailed) as info:
        on_stub(stub).bulk_create_entries([sent_entry(0), sent_entry(1)])
    assert not isinstance(info.value, BulkRouteRefused) and list(info.value.index_errors) == [1]


def test_a_refused_bulk_route_then_single_creates_post_each_entry_once(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    entries = [entry(h, n) for n in range(3)]
    try:
        created = pc.bulk_create_entries(entries)
    except BulkRouteRefused:
        created = [pc.create_entry(e) for e in entries]
    assert sorted(e["origin_id"] for e in emulator.admin.procore_entries()) == [c["origin_id"] for c in created]


# ------------------------------------------------------------------------------------------------ entry writes refused


@pytest.mark.parametrize(("method", "status", "message"), [
    ("PATCH", 403, "You do not have permission to edit this timecard entry"),
    ("DELETE", 422, "Timecard entry is signed"),
])
def test_an_entry_write_refused_for_another_reason_carries_procores_status_and_words(
        stub: Stub, method: str, status: int, message: str) -> None:
    stub.answer(status, {"errors": message})
    pc = on_stub(stub)
    with pytest.raises(EntryRefused) as info:
        if method == "PATCH":
            pc.update_entry(11, 901, {"hours": "6.5"})
        else:
            pc.delete_entry(11, 901)
    assert type(info.value) is EntryRefused and info.value.status == status and info.value.message == message
    assert stub.received[-1]["method"] == method and len(stub.received) == 1


@pytest.mark.parametrize(("status", "message"), [
    (422, "Approved timecard entries cannot be modified"),
    (403, "Approved timecard entries cannot be modified"),
    (422, "Completed timecard entries cannot be deleted"),
])
def test_a_locked_entry_is_entry_locked_whether_procore_answers_403_or_422(
        stub: Stub, status: int, message: str) -> None:
    stub.answer(status, {"errors": message})
    with pytest.raises(EntryLocked) as info:
        on_stub(stub).update_entry(11, 901, {"hours": "6.5"})
    assert isinstance(info.value, EntryRefused) and info.value.status == status


def test_a_locked_entry_in_the_emulator_is_entry_locked_and_an_entry_refused(world: dict, emulator: Any) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    (created,) = pc.bulk_create_entries([entry(h)])
    emulator.admin.approve_entry(created["id"])
    with pytest.raises(EntryRefused) as info:
        pc.delete_entry(h["project_ids"][0], created["id"])
    assert isinstance(info.value, EntryLocked) and info.value.status == 422


def test_other_errors_on_an_entry_write_keep_their_own_kind(stub: Stub) -> None:
    stub.answer(404, {"errors": "Not Found"})
    with pytest.raises(NotFound):
        on_stub(stub).update_entry(11, 901, {"hours": "6.5"})
    stub.answer(409, {"errors": "conflict"})
    with pytest.raises(ValidationFailed) as info:
        on_stub(stub).update_entry(11, 901, {"hours": "6.5"})
    assert not isinstance(info.value, EntryRefused)


# ------------------------------------------------------------------------------------------------ answers as answered


def test_writes_return_procores_entries_as_answered_without_inventing_fields(stub: Stub) -> None:
    bulk = [answered_entry(0), answered_entry(1, hours="7.5")]
    single = answered_entry(2)
    patched = answered_entry(3, approval_status="approved")
    stub.answer(200, bulk).answer(201, single).answer(200, patched)
    pc = on_stub(stub)
    assert pc.bulk_create_entries([sent_entry(0), sent_entry(1)]) == bulk
    assert pc.create_entry(sent_entry(2)) == single
    assert pc.update_entry(11, 903, {"hours": "7.0"}) == patched
    assert stub.received[0]["path"] == f"/rest/v1.0/companies/{COMPANY}/timesheets"


def test_an_entry_is_read_back_by_project_and_id(stub: Stub) -> None:
    stub.answer(200, answered_entry(4, approval_status="completed"))
    assert on_stub(stub).get_entry(11, 904)["approval_status"] == "completed"
    assert stub.received[-1]["path"] == "/rest/v1.0/projects/11/timecard_entries/904"


def test_entries_are_listed_company_wide_a_thousand_a_page_one_page_at_a_time(world: dict, emulator: Any) -> None:
    h = world["handles"]
    first = h["project_ids"][0]
    second = next(p for p in h["project_ids"][1:] if p not in h["start_stop_project_ids"])
    code = h["labor_cost_codes"][str(second)][0]
    rec = Recorder()
    pc = client(emulator, h, session=rec)
    pc.bulk_create_entries([entry(h, n) for n in range(4)] + [
        entry(h, 10 + n, project_id=second, cost_code_id=code["cost_code_id"],
              line_item_type_id=code["line_item_type_id"]) for n in range(2)])
    emulator.admin.config(procore_max_per_page=2)
    emulator.admin.reset_requests()
    pages: Iterator[dict[str, Any]] = pc.list_entries(DAY, DAY + timedelta(days=6))
    listed = [next(pages)]
    assert counted(emulator, route="/rest/v1.0/companies/{cid}/timecard_entries") == 1  # one page read so far
    listed += list(pages)
    assert sorted(e["origin_id"] for e in listed) == [5000, 5001, 5002, 5003, 5010, 5011]
    assert {e["project"]["id"] for e in listed} == {first, second}
    assert counted(emulator, route="/rest/v1.0/companies/{cid}/timecard_entries") == 3
    query = parse_qs(urlsplit(rec.sent[-3].url).query)
    assert query["per_page"] == ["1000"] and not any(k.startswith("filters") for k in query)


def test_entry_locked_is_an_entry_refused_and_still_a_validation_failure() -> None:
    assert issubclass(EntryLocked, EntryRefused) and issubclass(EntryLocked, ValidationFailed)
    assert issubclass(BulkRouteRefused, ApiError) and not issubclass(BulkRouteRefused, ValidationFailed)
