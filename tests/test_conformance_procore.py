"""The Procore client against the emulator, one or more tests per item of procore.md Part A."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import requests

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
)
from worker.clients.procore import MemoryTokenStore, ProcoreClient, TokenSet
from worker.clients.ratelimit import LocalRateBudget

DAY = date(2026, 3, 2)


def client(emulator, h, *, store=None, sleeps=None, **kw) -> ProcoreClient:
    return ProcoreClient(emulator.procore_url, emulator.procore_url, h["procore_company_id"],
                         client_id=h["procore_client_id"], client_secret=h["procore_client_secret"],
                         token_store=store or MemoryTokenStore(),
                         sleep=sleeps.append if sleeps is not None else (lambda _s: None), **kw)


def token_calls(emulator) -> int:
    return sum(r["count"] for r in emulator.admin.requests()["by_route"] if r["route"].startswith("/oauth"))


def entry(h, n: int = 0, **over) -> dict:
    pid = h["project_ids"][0]
    code = h["labor_cost_codes"][str(pid)][0]
    party = next(t["party_id"] for t in h["technicians"] if t["expect"] == "ok")
    return {"project_id": pid, "party_id": party, "date": (DAY + timedelta(days=n % 5)).isoformat(),
            "hours": "7.25", "cost_code_id": code["cost_code_id"], "line_item_type_id": code["line_item_type_id"],
            "origin_id": 1000 + n, "origin_data": f"key-{n}", **over}


# P-2 ----------------------------------------------------------------------------------------------------------


def test_p2_client_credentials_token_is_fetched_once_and_reused(world, emulator) -> None:
    store = MemoryTokenStore()
    pc = client(emulator, world["handles"], store=store)
    pc.company_configuration()
    pc.company_configuration()
    assert token_calls(emulator) == 1
    assert store.tokens is not None and store.tokens.refresh_token is None
    assert store.tokens.expires_at - datetime.now(UTC) > timedelta(minutes=80)


def test_p2_refresh_five_minutes_early(world, emulator) -> None:
    store = MemoryTokenStore()
    pc = client(emulator, world["handles"], store=store)
    pc.company_configuration()
    old = store.tokens
    store.tokens = TokenSet(old.access_token, old.refresh_token, datetime.now(UTC) + timedelta(minutes=4))
    pc._tokens = store.tokens
    pc.company_configuration()
    assert token_calls(emulator) == 2 and store.tokens.access_token != old.access_token


def test_p2_refresh_tokens_rotate_and_the_old_one_is_dead(world, emulator) -> None:
    h = world["handles"]
    first = MemoryTokenStore(TokenSet("", h["procore_refresh_token"], datetime(1970, 1, 1, tzinfo=UTC)))
    client(emulator, h, store=first).company_configuration()
    assert first.tokens.refresh_token and first.tokens.refresh_token != h["procore_refresh_token"]
    stale = MemoryTokenStore(TokenSet("", h["procore_refresh_token"], datetime(1970, 1, 1, tzinfo=UTC)))
    with pytest.raises(NeedsReauthorization) as info:
        client(emulator, h, store=stale).company_configuration()
    assert "stsync connect procore" in str(info.value)


def test_p2_a_401_refreshes_once_and_repeats(world, emulator) -> None:
    pc = client(emulator, world["handles"])
    pc.company_configuration()
    emulator.admin.expire_tokens()
    emulator.admin.reset_requests()
    assert pc.company_configuration()
    assert token_calls(emulator) == 1


def test_p2_wrong_client_secret_is_refused(world, emulator) -> None:
    h = dict(world["handles"], procore_client_secret="not-the-secret")
    with pytest.raises(CredentialsRejected) as info:
        client(emulator, h).company_configuration()
    assert "not-the-secret" not in str(info.value)


# P-3 ----------------------------------------------------------------------------------------------------------


def test_p3_the_company_header_is_sent_and_its_absence_is_refused(world, emulator) -> None:
    pc = client(emulator, world["handles"])
    assert pc.company_configuration()  # the client sends it
    token = pc._access_token()
    raw = requests.get(f"{emulator.procore_url}/rest/v1.0/company_configuration",
                       params={"company_id": world["handles"]["procore_company_id"]},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert raw.status_code == 400 and raw.json() == {"errors": "Missing Procore-Company-Id header!"}


# P-4 ----------------------------------------------------------------------------------------------------------


def test_p4_every_read_the_sync_needs(world, emulator) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    pid = h["project_ids"][0]
    project = pc.get_project(pid)
    assert {"id", "name", "address", "city", "state_code", "zip", "tz_name", "time_zone"} <= set(project)
    assert set(pc.company_configuration()["projects_timecard_in_out_enabled"]) == set(h["start_stop_project_ids"])
    rounding = pc.rounding_configuration()
    assert rounding["time_increment"] in (5, 6, 10, 15) and rounding["rule"] in ("up", "down", "nearest",
                                                                                "favor_employee")
    assert any(t["title"] == "Timesheets" for t in pc.project_tools(pid))
    codes = list(pc.cost_codes(pid))
    assert {c["id"] for c in codes} >= {c["cost_code_id"] for c in h["labor_cost_codes"][str(pid)]}
    assert all({"budgeted", "line_item_types"} <= set(c) for c in codes)
    assert any(t["base_type"] == "labor" for t in pc.line_item_types())
    employees = list(pc.people())
    assert employees and all(p["is_employee"] for p in employees)
    assert len(list(pc.people(employees_only=False))) > len(employees)
    assert pc.time_types() and pc.time_types(project_id=pid)
    emulator.admin.patch_company(h["procore_company_id"], rounding_configuration=None)
    assert pc.rounding_configuration() is None


# P-5 ----------------------------------------------------------------------------------------------------------


def test_p5_bulk_create_returns_entries_in_order_with_origin_fields(world, emulator) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    created = pc.bulk_create_entries([entry(h, n) for n in range(3)])
    assert [c["origin_id"] for c in created] == [1000, 1001, 1002]
    assert all(c["approval_status"] == "pending" for c in created)
    with pytest.raises(ValueError, match="1 to 100"):
        pc.bulk_create_entries([entry(h, n) for n in range(101)])


def test_p5_one_invalid_entry_refuses_the_whole_call_with_its_index(world, emulator) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    bad = entry(h, 1, cost_code_id=h["non_labor_cost_codes"][str(h["project_ids"][0])][0]["cost_code_id"])
    with pytest.raises(BulkValidationFailed) as info:
        pc.bulk_create_entries([entry(h, 0), bad, entry(h, 2)])
    assert list(info.value.index_errors) == [1]
    assert [e for e in emulator.admin.procore_entries()] == []


def test_p5_a_lost_response_is_outcome_unknown_not_a_refusal(world, emulator) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": r"/timesheets$",
                               "kind": "lost_response", "count": 1})
    with pytest.raises(OutcomeUnknown) as info:
        pc.bulk_create_entries([entry(h, 0)])
    assert not isinstance(info.value, BulkValidationFailed)
    assert len(emulator.admin.procore_entries()) == 1  # it was committed: only a look-up can tell


def test_p5_start_stop_projects_take_times_and_single_create(world, emulator) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    pid = h["start_stop_project_ids"][0]
    code = h["labor_cost_codes"][str(pid)][0]
    body = entry(h, 0, project_id=pid, cost_code_id=code["cost_code_id"])
    body.pop("hours")
    body |= {"time_in": "2026-03-02T07:00:00-06:00", "time_out": "2026-03-02T15:30:00-06:00"}
    created = pc.create_entry(body)
    assert created["time_in"].endswith("Z") and float(created["hours"]) == 8.5
    with pytest.raises(BulkValidationFailed):
        pc.bulk_create_entries([entry(h, 1, project_id=pid, cost_code_id=code["cost_code_id"])])  # hours: wrong kind


# P-6, P-7, P-10 -----------------------------------------------------------------------------------------------


def test_p6_p10_list_entries_by_party_and_date_across_pages(world, emulator) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    pc.bulk_create_entries([entry(h, n) for n in range(10)])
    emulator.admin.config(procore_max_per_page=3)
    emulator.admin.reset_requests()
    party = entry(h)["party_id"]
    got = list(pc.list_entries(DAY, DAY + timedelta(days=4), party_ids=[party]))
    assert sorted(e["origin_id"] for e in got) == list(range(1000, 1010))
    pages = sum(r["count"] for r in emulator.admin.requests()["by_route"] if r["route"].endswith("timecard_entries"))
    assert pages == 4
    assert list(pc.list_entries(DAY, DAY, party_ids=[123])) == []


def test_p7_patch_delete_and_approved_entries_are_locked(world, emulator) -> None:
    h = world["handles"]
    pc = client(emulator, h)
    a, b, c = pc.bulk_create_entries([entry(h, n) for n in range(3)])
    pid = h["project_ids"][0]
    assert pc.update_entry(pid, a["id"], {"hours": "6.50"})["hours"] in ("6.5", "6.50")
    pc.delete_entry(pid, b["id"])
    with pytest.raises(NotFound):
        pc.get_entry(pid, b["id"])
    emulator.admin.approve_entry(c["id"])
    with pytest.raises(EntryLocked):
        pc.update_entry(pid, c["id"], {"hours": "1.00"})
    with pytest.raises(EntryLocked):
        pc.delete_entry(pid, c["id"])


# P-9 ----------------------------------------------------------------------------------------------------------


def test_p9_rate_limit_headers_are_exposed_after_every_response(world, emulator) -> None:
    budget = LocalRateBudget()
    pc = client(emulator, world["handles"], rate_budget=budget)
    pc.company_configuration()
    info = pc.last_rate_limit
    assert info is not None and info.limit > 0 and info.remaining < info.limit and info.reset > 0
    assert budget.remaining == info.remaining


@pytest.mark.parametrize("fault", [{"kind": "429"}, {"kind": "429", "retry_after": 3},
                                   {"kind": "503", "retry_after": 2}, {"kind": "500"}, {"kind": "502"},
                                   {"kind": "504"}, {"kind": "html_502"}, {"kind": "timeout", "latency_ms": 50}])
def test_p9_transient_answers_on_reads_are_retried(world, emulator, fault) -> None:
    sleeps: list = []
    pc = client(emulator, world["handles"], sleeps=sleeps, timeout=2)
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "path": "company_configuration", "count": 1, **fault})
    assert pc.company_configuration()
    assert len(sleeps) == 1
    if fault.get("retry_after"):
        assert sleeps[0] >= fault["retry_after"]


def test_p9_a_wait_of_a_minute_or_more_defers_the_run(world, emulator) -> None:
    pc = client(emulator, world["handles"])
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "path": "company_configuration", "kind": "503",
                               "retry_after": 600, "count": 1})
    with pytest.raises(DeferRun) as info:
        pc.company_configuration()
    assert info.value.wait_s >= 600


def test_p9_writes_are_not_retried_blind(world, emulator) -> None:
    h = world["handles"]
    sleeps: list = []
    pc = client(emulator, h, sleeps=sleeps)
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": r"/timesheets$", "kind": "500",
                               "count": 1})
    with pytest.raises(OutcomeUnknown):
        pc.bulk_create_entries([entry(h, 0)])
    assert sleeps == []
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": r"/timesheets$", "kind": "429",
                               "retry_after": 1, "count": 1})
    assert pc.bulk_create_entries([entry(h, 1)])  # a 429 proves nothing was created: retried in-process
    assert sleeps and sleeps[-1] >= 1


# P-11 and bad bodies ------------------------------------------------------------------------------------------


def test_p11_an_unknown_project_is_not_found(world, emulator) -> None:
    with pytest.raises(NotFound) as info:
        client(emulator, world["handles"]).get_project(999)
    assert "/rest/v1.0/projects/{id}" in str(info.value)


def test_an_empty_or_html_body_names_the_endpoint(world, emulator) -> None:
    pc = client(emulator, world["handles"])
    pc.company_configuration()
    emulator.admin.add_faults({"service": "procore", "path": "company_configuration", "kind": "empty_body",
                               "count": 1})
    with pytest.raises(MalformedResponse) as info:
        pc.company_configuration()
    assert "company_configuration" in str(info.value) and "empty" in str(info.value)
    emulator.admin.add_faults({"service": "procore", "path": "company_configuration", "kind": "html_502",
                               "count": 10})
    with pytest.raises(TransientError) as info2:
        pc.company_configuration()
    assert "HTML" in str(info2.value)
