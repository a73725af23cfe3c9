"""The emulators' named variants (procore.md P-12, servicetrade.md ST-9): each one over real HTTP, and the admin
switch that turns them on and off."""

from __future__ import annotations

import pytest
import requests

from emulators.testing import AdminError
from tests.helpers import WORLD, bulk_url, procore_session, st_login
from tests.helpers import emulator_entry as entry

LOCKED_WORDS = ("cannot be modified", "locked")




def company_url(emulator, h, path: str) -> str:
    return f"{emulator.procore_url}/rest/v1.0/companies/{h['procore_company_id']}/{path}"


def stored_origin_ids(emulator) -> list[int]:
    return sorted(e["origin_id"] for e in emulator.admin.procore_entries() if e["deleted_at"] is None)


def test_variants_are_switched_per_service_checked_by_name_and_cleared_by_reset(emulator, h):
    assert emulator.admin.variants() == {"procore": [], "servicetrade": []}
    emulator.admin.set_variants(procore=["integer_hours", "locked_403"])
    assert emulator.admin.set_variants(servicetrade=["paging_loose"]) == {
        "procore": ["integer_hours", "locked_403"], "servicetrade": ["paging_loose"]}
    assert emulator.admin.config()["variants"]["servicetrade"] == ["paging_loose"]
    with pytest.raises(AdminError, match="unknown procore variants"):
        emulator.admin.set_variants(procore=["no_such_reading"])
    assert emulator.admin.variants()["procore"] == ["integer_hours", "locked_403"]  # a refused change changes nothing
    emulator.admin.reset(WORLD)
    assert emulator.admin.variants() == {"procore": [], "servicetrade": []}


def test_partial_commit_keeps_the_valid_entries_of_a_bulk_call_and_answers_422(emulator, h):
    emulator.admin.set_variants(procore=["partial_commit"])
    s = procore_session(emulator, h)
    items = [entry(h, origin_id=1), entry(h, tech=6, hours="25", origin_id=2), entry(h, tech=4, origin_id=3)]
    r = s.post(bulk_url(emulator, h), json={"timecard_entries": items})
    assert r.status_code == 422
    assert r.json() == {"errors": [{"index": 1, "errors": {"hours": ["must be less than or equal to 24"]}}]}
    assert stored_origin_ids(emulator) == [1, 3]


def test_bulk_forbidden_refuses_the_bulk_route_but_the_company_single_create_works(emulator, h):
    emulator.admin.set_variants(procore=["bulk_forbidden"])
    s = procore_session(emulator, h)
    r = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, origin_id=7)]})
    assert r.status_code == 403 and "errors" in r.json()
    assert stored_origin_ids(emulator) == []

    one = entry(h, origin_id=7, origin_data='{"source_key": "k-7"}')
    project_id = one.pop("project_id")
    created = s.post(company_url(emulator, h, "timecard_entries"), json={"project_id": project_id, "timecard_entry": one})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["origin_id"], body["origin_data"]) == (7, '{"source_key": "k-7"}')
    assert body["project"]["id"] == project_id and body["approval_status"] == "pending"
    listed = s.get(company_url(emulator, h, "timecard_entries"), params={"start_date": "2026-03-02",
                                                                    "end_date": "2026-03-02"}).json()
    assert [(e["id"], e["origin_id"], e["origin_data"]) for e in listed] == [
        (body["id"], 7, '{"source_key": "k-7"}')]


def test_bulk_500_after_commit_stores_every_entry_and_answers_500(emulator, h):
    emulator.admin.set_variants(procore=["bulk_500_after_commit"])
    s = procore_session(emulator, h)
    r = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, origin_id=1), entry(h, tech=4, origin_id=2)]})
    assert r.status_code == 500
    assert stored_origin_ids(emulator) == [1, 2]
    invalid = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, hours="0", origin_id=3)]})
    assert invalid.status_code == 422  # an invalid call still commits nothing
    assert stored_origin_ids(emulator) == [1, 2]


def test_integer_hours_stores_whole_hours_and_answers_with_them(emulator, h):
    emulator.admin.set_variants(procore=["integer_hours"])
    s = procore_session(emulator, h)
    [created] = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, hours="7.75")]}).json()
    assert created["hours"] == "7.0"
    pid = h["project_ids"][0]
    entry_url = f"{emulator.procore_url}/rest/v1.0/projects/{pid}/timecard_entries/{created['id']}"
    assert s.get(entry_url).json()["hours"] == "7.0"
    patched = s.patch(entry_url, json={"timecard_entry": {"hours": "5.5"}})
    assert patched.json()["hours"] == "5.0"

    start_stop = h["start_stop_project_ids"][0]
    code = h["labor_cost_codes"][str(start_stop)][0]
    timed = s.post(f"{emulator.procore_url}/rest/v1.0/projects/{start_stop}/timecard_entries", json={"timecard_entry": {
        "party_id": h["technicians"][0]["party_id"], "date": "2026-03-02", "time_in": "2026-03-02T08:00:00-05:00",
        "time_out": "2026-03-02T16:45:00-05:00", "lunch_time": 30, "cost_code_id": code["cost_code_id"],
        "line_item_type_id": code["line_item_type_id"]}})
    assert timed.status_code == 201
    assert (timed.json()["hours"], timed.json()["time_out"]) == ("8.0", "2026-03-02T21:45:00Z")


def test_no_approval_status_leaves_it_out_of_write_answers_only(emulator, h):
    emulator.admin.set_variants(procore=["no_approval_status"])
    s = procore_session(emulator, h)
    [bulk] = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]}).json()
    pid = h["project_ids"][0]
    single = s.post(f"{emulator.procore_url}/rest/v1.0/projects/{pid}/timecard_entries",
                    json={"timecard_entry": entry(h, tech=4)}).json()
    entry_url = f"{emulator.procore_url}/rest/v1.0/projects/{pid}/timecard_entries/{bulk['id']}"
    updated = s.patch(entry_url, json={"timecard_entry": {"description": "moved"}}).json()
    assert all("approval_status" not in answer for answer in (bulk, single, updated))
    assert s.get(entry_url).json()["approval_status"] == "pending"
    listed = s.get(company_url(emulator, h, "timecard_entries")).json()
    assert [e["approval_status"] for e in listed] == ["pending", "pending"]


def test_locked_403_refuses_changes_to_approved_entries_with_other_words(emulator, h):
    emulator.admin.set_variants(procore=["locked_403"])
    s = procore_session(emulator, h)
    items = [entry(h, origin_id=1), entry(h, tech=4, origin_id=2)]
    [first, second] = s.post(bulk_url(emulator, h), json={"timecard_entries": items}).json()
    emulator.admin.approve_entry(first["id"])
    emulator.admin.approve_entry(second["id"], "completed")
    pid = h["project_ids"][0]
    for entry_id in (first["id"], second["id"]):
        url = f"{emulator.procore_url}/rest/v1.0/projects/{pid}/timecard_entries/{entry_id}"
        for r in (s.patch(url, json={"timecard_entry": {"hours": "6"}}), s.delete(url)):
            assert r.status_code == 403
            assert not any(word in r.text.lower() for word in LOCKED_WORDS), r.text
    assert [(e["hours"], e["deleted_at"]) for e in emulator.admin.procore_entries()] == [("7.25", None)] * 2


def test_userinfo_bare_answers_the_identity_calls_without_the_envelope(emulator, h):
    emulator.admin.set_variants(servicetrade=["userinfo_bare"])
    token = requests.post(f"{emulator.st_url}/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": h["st_client_id"],
        "client_secret": h["st_client_secret"]}).json()["access_token"]
    info = requests.get(f"{emulator.st_url}/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"}).json()
    assert "data" not in info and info["company"]["id"] == h["st_vendor_company_id"]

    session = st_login(emulator, h)  # the login answer itself keeps its envelope
    me = session.get(f"{emulator.st_url}/auth").json()
    assert "data" not in me
    assert me["authenticated"] is True and me["user"]["company"]["id"] == h["st_vendor_company_id"]


def test_paging_loose_sends_no_total_pages_a_string_page_and_no_list_on_an_empty_page(emulator, h):
    emulator.admin.set_variants(servicetrade=["paging_loose"])
    emulator.admin.config(st_max_page_size=7)
    s = st_login(emulator, h)
    technicians = len(h["technicians"])
    pages, page = [], 1
    while True:
        data = s.get(f"{emulator.st_url}/user", params={"isTech": "true", "page": page}).json()["data"]
        pages.append(data)
        if "users" not in data:
            break
        page += 1
    assert all("totalPages" not in data for data in pages)
    assert [data["page"] for data in pages] == [str(n) for n in range(1, len(pages) + 1)]
    assert [len(data.get("users", [])) for data in pages] == [7, technicians - 7, 0]
    assert all(isinstance(u["id"], int) for u in pages[0]["users"])
