"""The ServiceTrade + Procore emulators over real HTTP: the Part A behaviours the rest of the project relies on,
the admin API, fault injection and the world generator. Plain `requests`, not the project's clients."""

from __future__ import annotations

import base64
import json
import math
import time
from collections import Counter
from datetime import UTC, date, datetime
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from emulators.testing import AdminError, EmulatorProcess
from emulators.world import generate_world
from emulators.world import main as world_main
from tests.helpers import WORLD, bulk_url, procore_session, st_job, st_login, st_pages
from tests.helpers import emulator_entry as entry

# ---------------------------------------------------------------------------------------------- ServiceTrade

def test_st_session_login_401_with_empty_body_and_relogin(emulator, h):
    s = requests.Session()
    bad = s.post(f"{emulator.st_url}/auth", json={"username": h["st_username"], "password": "wrong"})
    assert bad.status_code == 403
    assert bad.json() == {"messages": {"error": ["Invalid credentials provided"]}}
    r = s.post(f"{emulator.st_url}/auth", json={"username": h["st_username"], "password": h["st_password"]})
    data = r.json()["data"]
    assert len(data["authToken"]) == 26 and r.cookies["PHPSESSID"] == data["authToken"]
    assert data["user"]["company"]["id"] == h["st_vendor_company_id"]
    assert r.headers["x-request-id"]
    assert s.get(f"{emulator.st_url}/user", params={"isTech": "true"}).status_code == 200

    assert emulator.admin.expire_sessions() >= 1
    dead = s.get(f"{emulator.st_url}/user")
    assert dead.status_code == 401 and dead.content == b"" and dead.headers["x-request-id"]
    info = s.get(f"{emulator.st_url}/auth")
    assert info.status_code == 404
    assert info.json()["messages"]["error"] == ["No active session found for given auth token"]
    st_login(emulator, h)  # a new login works at once
    assert requests.get(f"{emulator.st_url}/clock").status_code == 401  # no session at all
    assert s.delete(f"{emulator.st_url}/auth").status_code == 204


def test_st_oauth_tokens_rotate_and_userinfo_names_the_vendor(emulator, h):
    url = f"{emulator.st_url}/oauth2/token"
    bad = requests.post(url, data={"grant_type": "client_credentials", "client_id": h["st_client_id"],
                                   "client_secret": "nope"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    tok = requests.post(url, data={"grant_type": "client_credentials", "client_id": h["st_client_id"],
                                   "client_secret": h["st_client_secret"]}).json()
    claims = json.loads(base64.urlsafe_b64decode(tok["access_token"].split(".")[1] + "=="))
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 86400
    assert claims["exp"] == pytest.approx(time.time() + 86400, abs=5)
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    info = requests.get(f"{emulator.st_url}/oauth2/userinfo", headers=bearer).json()["data"]
    assert info["company"]["id"] == h["st_vendor_company_id"]

    new = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                   "client_id": h["st_client_id"]}).json()
    assert new["refresh_token"] != tok["refresh_token"]
    again = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                     "client_id": h["st_client_id"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert requests.post(f"{emulator.st_url}/oauth2/revoke", data={"token": new["access_token"]}).status_code == 200
    revoked = requests.get(f"{emulator.st_url}/user", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert revoked.status_code == 401 and revoked.content == b""


def test_st_page_size_cap_returns_fewer_items_than_limit(emulator, h):
    s = st_login(emulator, h)
    job = st_job(emulator, s, h)
    expected = [e["id"] for e in emulator.admin.st_state()["clock_events"] if e["job"]["id"] == job["id"]]
    emulator.admin.config(st_max_page_size=7)
    first = s.get(f"{emulator.st_url}/clock", params={"jobId": job["id"], "limit": 50}).json()["data"]
    assert len(first["events"]) == 7 and first["page"] == 1
    assert first["totalPages"] == math.ceil(len(expected) / 7)
    events = st_pages(s, f"{emulator.st_url}/clock", "events", jobId=job["id"], limit=50)
    assert [e["id"] for e in events] == expected
    assert [(e["eventTime"], e["id"]) for e in events] == sorted((e["eventTime"], e["id"]) for e in events)
    empty = s.get(f"{emulator.st_url}/clock", params={"jobId": job["id"], "startTime": 1, "endTime": 2}).json()["data"]
    assert empty == {"totalPages": 1, "page": 1, "events": []}
    bad = s.get(f"{emulator.st_url}/clock", params={"jobId": "abc"})
    assert bad.status_code == 400 and "jobId" in bad.json()["messages"]["validation"]


def test_st_clock_filters_edits_and_deletes(emulator, h):
    s = st_login(emulator, h)
    job = st_job(emulator, s, h)
    url = f"{emulator.st_url}/clock"
    all_events = st_pages(s, url, "events", jobId=job["id"], limit=1000)
    event = all_events[len(all_events) // 2]
    assert set(event) == {"id", "eventTime", "eventType", "activity", "source", "user", "job", "appointment",
                          "created", "updated"}
    assert event["job"] == {"id": job["id"], "number": job["number"]}
    same_time = s.get(url, params={"jobId": job["id"], "startTime": event["eventTime"],
                                   "endTime": event["eventTime"]}).json()["data"]["events"]
    assert event["id"] in [e["id"] for e in same_time]  # both bounds inclusive
    assert all(e["eventTime"] == event["eventTime"] for e in same_time)
    tech_a, tech_b = (t["st_user_id"] for t in h["technicians"][:2])
    one = st_pages(s, url, "events", jobId=job["id"], userId=tech_a, activity="onbreak", limit=1000)
    assert one and {(e["user"]["id"], e["activity"]) for e in one} == {(tech_a, "onbreak")}
    two = st_pages(s, url, "events", jobId=job["id"], userIds=f"{tech_a},{tech_b}", limit=1000)
    assert {e["user"]["id"] for e in two} == {tech_a, tech_b}

    edited = emulator.admin.edit_clock_event(event["id"], eventTime=event["eventTime"] + 120)
    assert edited["eventTime"] == event["eventTime"] + 120 and edited["updated"] > event["updated"]
    changed = s.get(url, params={"jobId": job["id"], "updatedAfter": edited["updated"]}).json()["data"]["events"]
    assert [e["id"] for e in changed] == [event["id"]]
    emulator.admin.delete_clock_event(event["id"])
    remaining = st_pages(s, url, "events", jobId=job["id"], limit=1000)
    assert len(remaining) == len(all_events) - 1 and event["id"] not in {e["id"] for e in remaining}
    added = emulator.admin.add_clock_events([{"job_id": job["id"], "user_id": tech_a, "activity": "onsite",
                                         "eventType": "clockIn", "eventTime": 1_780_000_000}])
    assert s.get(url, params={"jobId": job["id"], "startTime": 1_780_000_000}).json()["data"]["events"] == added


def test_st_job_gets_the_projects_plan_and_external_ids_are_unique(emulator, h):
    s = st_login(emulator, h)
    plan = WORLD["servicetrade"]["clock_event_plans"][str(h["project_ids"][0])]
    job = st_job(emulator, s, h)
    assert job["status"] == "new" and isinstance(job["number"], int)
    assert 10**15 <= job["id"] < 2**53
    events = st_pages(s, f"{emulator.st_url}/clock", "events", jobId=job["id"], limit=1000)
    assert len(events) == len(plan)
    assert Counter((e["user"]["id"], e["eventTime"]) for e in events) == Counter(
        (p["user_id"], p["eventTime"]) for p in plan)

    location_id = job["location"]["id"]
    dup = s.post(f"{emulator.st_url}/job", json={"locationId": location_id, "vendorId": h["st_vendor_company_id"],
                                            "type": "repair", "externalIds": {"procore": str(h["project_ids"][0])}})
    assert dup.status_code == 400 and "externalIds" in dup.json()["messages"]["validation"]
    bad_type = s.post(f"{emulator.st_url}/job", json={"locationId": location_id, "vendorId": h["st_vendor_company_id"],
                                                 "type": "lunch"})
    assert bad_type.status_code == 400 and bad_type.json()["data"] is None
    assert "type" in bad_type.json()["messages"]["validation"]

    default_list = s.get(f"{emulator.st_url}/job", params={"locationId": location_id}).json()["data"]["jobs"]
    assert default_list == []  # ServiceTrade lists only scheduled jobs unless asked
    jobs = s.get(f"{emulator.st_url}/job", params={"locationId": location_id, "status": "all"}).json()["data"]["jobs"]
    assert [j["externalIds"] for j in jobs] == [{"procore": str(h["project_ids"][0])}]
    found = s.get(f"{emulator.st_url}/company", params={"name": "summit"}).json()["data"]["companies"]
    assert [c["externalIds"]["procore"] for c in found] == [str(h["project_ids"][0])]

    summary = s.get(f"{emulator.st_url}/job/{job['id']}/clockevent").json()["data"]
    onsite = [p for p in summary["pairedEvents"] if p["start"]["activity"] == "onsite"]
    assert summary["activityTime"]["onsite"] == sum(p["elapsedTime"] for p in onsite) > 0
    assert s.get(f"{emulator.st_url}/job/123").status_code == 404


def test_st_users_carry_employee_ids(emulator, h):
    s = st_login(emulator, h)
    techs = st_pages(s, f"{emulator.st_url}/user", "users", isTech="true")
    assert {u["id"] for u in techs} == {t["st_user_id"] for t in h["technicians"]}
    assert set(techs[0]) == {"id", "firstName", "lastName", "name", "email", "status", "timezone", "externalIds"}
    tech = h["technicians"][1]
    emulator.admin.patch_user(tech["st_user_id"], externalIds={"procore": "E-1234"})
    user = s.get(f"{emulator.st_url}/user/{tech['st_user_id']}").json()["data"]
    assert user["externalIds"] == {"procore": "E-1234"}


# ---------------------------------------------------------------------------------------------- Procore

def test_procore_refresh_token_rotates_and_the_old_one_dies(emulator, h):
    url = f"{emulator.procore_url}/oauth/token"
    emulator.admin.config(procore_token_ttl_s=120)
    basic = {"Authorization": "Basic " + base64.b64encode(
        f"{h['procore_client_id']}:{h['procore_client_secret']}".encode()).decode()}
    first = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": h["procore_refresh_token"]},
                          headers=basic)
    assert first.status_code == 200 and first.json()["expires_in"] == 120
    rotated = first.json()["refresh_token"]
    old = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": h["procore_refresh_token"],
                                   "client_id": h["procore_client_id"],
                                   "client_secret": h["procore_client_secret"]})
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    assert requests.post(url, data={"grant_type": "refresh_token", "refresh_token": rotated},
                         headers=basic).status_code == 200
    cc = requests.post(url, data={"grant_type": "client_credentials", "client_id": h["procore_client_id"],
                                  "client_secret": h["procore_client_secret"]}).json()
    assert "refresh_token" not in cc
    wrong = requests.post(url, data={"grant_type": "client_credentials", "client_id": h["procore_client_id"],
                                     "client_secret": "x"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


REDIRECT_URI = "http://127.0.0.1:5000/connections/procore/callback"


def authorize(emulator, h, decision: str = "approve", state: str = "st-42", **params) -> requests.Response:
    """A person opens the authorize page and presses a button: the form POST, redirect not followed."""
    query = {"response_type": "code", "client_id": h["procore_client_id"], "redirect_uri": REDIRECT_URI,
             "state": state, **params}
    page = requests.get(f"{emulator.procore_url}/oauth/authorize", params=query)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "stsync" in page.text and 'value="approve">Approve</button>' in page.text
    assert '<form method="post" action="/oauth/authorize">' in page.text
    return requests.post(f"{emulator.procore_url}/oauth/authorize", data={**query, "decision": decision},
                         allow_redirects=False)


def redirect_params(resp: requests.Response) -> dict[str, str]:
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return dict(parse_qsl(location.query))


def redeem(emulator, h, code: str, redirect_uri: str = REDIRECT_URI) -> requests.Response:
    return requests.post(f"{emulator.procore_url}/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": h["procore_client_id"], "client_secret": h["procore_client_secret"]})


def test_procore_authorization_code_grant_gives_tokens_that_work_and_rotate(emulator, h):
    back = redirect_params(authorize(emulator, h, state="a b&c"))
    assert back["state"] == "a b&c" and len(back["code"]) >= 32
    tokens = redeem(emulator, h, back["code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["expires_in"] == 5400 and body["token_type"] == "bearer" and body["refresh_token"]
    projects = requests.get(f"{emulator.procore_url}/rest/v1.0/projects", headers={
        "Authorization": f"Bearer {body['access_token']}", "Procore-Company-Id": str(h["procore_company_id"])})
    assert projects.status_code == 200 and len(projects.json()) == len(h["project_ids"])
    refreshed = requests.post(f"{emulator.procore_url}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": h["procore_client_id"],
        "client_secret": h["procore_client_secret"]})
    assert refreshed.status_code == 200 and refreshed.json()["refresh_token"] != body["refresh_token"]


def test_authorization_codes_are_single_use_short_lived_and_bound_to_the_redirect_uri(emulator, h):
    code = redirect_params(authorize(emulator, h))["code"]
    assert redeem(emulator, h, code).status_code == 200
    again = redeem(emulator, h, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    elsewhere = redirect_params(authorize(emulator, h))["code"]
    assert redeem(emulator, h, elsewhere, redirect_uri="http://127.0.0.1:5000/other").json()["error"] == "invalid_grant"

    emulator.admin.config(procore_auth_code_ttl_s=1)
    late = redirect_params(authorize(emulator, h))["code"]
    time.sleep(1.1)
    assert redeem(emulator, h, late).json()["error"] == "invalid_grant"


def test_authorize_deny_unknown_client_and_bad_redirect(emulator, h):
    denied = redirect_params(authorize(emulator, h, decision="deny"))
    assert denied == {"error": "access_denied", "state": "st-42"}
    unknown = requests.get(f"{emulator.procore_url}/oauth/authorize", params={
        "response_type": "code", "client_id": "nobody", "redirect_uri": REDIRECT_URI})
    assert unknown.status_code == 400 and "Unknown application" in unknown.text
    no_redirect = requests.get(f"{emulator.procore_url}/oauth/authorize", params={
        "response_type": "code", "client_id": h["procore_client_id"], "redirect_uri": "not a url"})
    assert no_redirect.status_code == 400
    token = requests.post(f"{emulator.procore_url}/oauth/authorize", allow_redirects=False, data={
        "response_type": "token", "client_id": h["procore_client_id"], "redirect_uri": REDIRECT_URI})
    assert redirect_params(token) == {"error": "unsupported_response_type"}


def test_procore_needs_a_token_and_the_company_header(emulator, h):
    s = procore_session(emulator, h)
    project_url = f"{emulator.procore_url}/rest/v1.0/projects/{h['project_ids'][0]}"
    project = s.get(project_url).json()
    assert project["tz_name"] == "America/New_York"
    assert all(project[k] for k in ("name", "address", "city", "state_code", "zip"))
    missing = s.get(project_url, headers={"Procore-Company-Id": None})
    assert missing.status_code == 400 and missing.json() == {"errors": "Missing Procore-Company-Id header!"}
    emulator.admin.expire_tokens()
    expired = s.get(project_url)
    assert expired.status_code == 401 and expired.json() == {"errors": "The access token is invalid"}
    s = procore_session(emulator, h)
    config = s.get(f"{emulator.procore_url}/rest/v1.0/company_configuration").json()
    assert config["projects_timecard_in_out_enabled"] == h["start_stop_project_ids"]
    emulator.admin.patch_company(h["procore_company_id"], rounding_configuration=None)
    rounding = s.get(f"{emulator.procore_url}/rest/v1.0/companies/{h['procore_company_id']}/rounding_configuration")
    assert rounding.status_code == 404
    assert s.get(f"{emulator.procore_url}/rest/v1.0/projects/42").status_code == 404


def test_bulk_create_is_all_or_nothing_with_index_errors(emulator, h):
    s = procore_session(emulator, h)
    pid = h["project_ids"][0]
    non_labor = h["non_labor_cost_codes"][str(pid)][0]
    not_employee = next(i for i, t in enumerate(h["technicians"]) if t["expect"] == "not_employee")
    bad = [entry(h, origin_id=1),
           entry(h, cost_code_id=non_labor["cost_code_id"], line_item_type_id=non_labor["line_item_type_id"]),
           {**entry(h), "party_id": h["non_employee_person_id"], "hours": "25"},
           entry(h, hours=7.25, date="2026-3-2")]
    assert h["technicians"][not_employee]["party_id"] is None
    r = s.post(bulk_url(emulator, h), json={"timecard_entries": bad})
    assert r.status_code == 422
    errors = {e["index"]: e["errors"] for e in r.json()["errors"]}
    assert set(errors) == {1, 2, 3}
    assert "cost_code_id" in errors[1] and "line_item_type_id" in errors[1]
    assert set(errors[2]) == {"party_id", "hours"} and set(errors[3]) == {"hours", "date"}
    assert emulator.admin.procore_entries() == []

    start_stop = h["start_stop_project_ids"][0]
    timed = {**entry(h, project_index=1, origin_id=3, origin_data="k3|h"), "hours": None,
             "time_in": "2026-03-02T07:08:00-06:00", "time_out": "2026-03-02T15:38:00-06:00", "lunch_time": "30"}
    good = [entry(h, origin_id=1, origin_data="k1|h"), entry(h, tech=4, hours="8", origin_id=2), timed]
    created = s.post(bulk_url(emulator, h), json={"timecard_entries": good}).json()
    assert [e["origin_id"] for e in created] == [1, 2, 3] and created[0]["origin_data"] == "k1|h"
    assert all(e["approval_status"] == "pending" and e["billable"] is False for e in created)
    assert created[2]["project"]["id"] == start_stop and created[2]["hours"] == "8.0"
    assert (created[2]["time_in"], created[2]["time_out"]) == ("2026-03-02T13:08:00Z", "2026-03-02T21:38:00Z")
    wrong_mode = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, project_index=1)]})
    assert wrong_mode.status_code == 422 and "hours" in wrong_mode.json()["errors"][0]["errors"]
    single = s.post(f"{emulator.procore_url}/rest/v1.0/projects/{pid}/timecard_entries",
                    json={"timecard_entry": entry(h, day="2026-03-03")})
    assert single.status_code == 201 and single.json()["date"] == "2026-03-03"


def test_bulk_over_100_entries_is_400(emulator, h):
    s = procore_session(emulator, h)
    r = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)] * 101})
    assert r.status_code == 400 and "100" in r.json()["errors"]
    assert emulator.admin.procore_entries() == []


def test_approved_entries_are_locked_and_deleted_ones_are_kept_for_admin(emulator, h):
    s = procore_session(emulator, h)
    cid, pid = h["procore_company_id"], h["project_ids"][0]
    locked, free = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h), entry(h, tech=4)]}).json()
    emulator.admin.approve_entry(locked["id"])
    for url in (f"{emulator.procore_url}/rest/v1.0/projects/{pid}/timecard_entries/{locked['id']}",
                f"{emulator.procore_url}/rest/v1.0/companies/{cid}/timecard_entries/{locked['id']}"):
        patch = s.patch(url, json={"timecard_entry": {"hours": "6"}})
        assert patch.status_code == 422
        assert patch.json() == {"errors": "Approved timecard entries cannot be modified"}
        assert s.delete(url).status_code == 422
    free_url = f"{emulator.procore_url}/rest/v1.0/companies/{cid}/timecard_entries/{free['id']}"
    patched = s.patch(free_url, json={"project_id": pid, "timecard_entry": {"hours": "6.5"}}).json()
    assert patched["hours"] == "6.5" and patched["updated_at"] >= free["updated_at"]
    assert s.delete(free_url).status_code == 200
    assert s.get(free_url).status_code == 404
    listed = s.get(f"{emulator.procore_url}/rest/v1.0/companies/{cid}/timecard_entries",
                   params={"start_date": "2026-03-02", "end_date": "2026-03-02"}).json()
    assert [e["id"] for e in listed] == [locked["id"]]
    admin = {e["id"]: e for e in emulator.admin.procore_entries()}
    assert admin[free["id"]]["deleted_at"] and admin[locked["id"]]["approval_status"] == "approved"


def test_entry_lists_paginate_with_link_headers_and_filter_by_party(emulator, h):
    s = procore_session(emulator, h)
    days = [f"2026-03-{d:02d}" for d in range(2, 7)]
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, tech=t, day=d) for d in days
                                                         for t in (0, 4, 6, 7, 8)]})
    emulator.admin.config(procore_max_per_page=10)
    url = f"{emulator.procore_url}/rest/v1.0/companies/{h['procore_company_id']}/timecard_entries"
    first = s.get(url, params={"start_date": "2026-03-03", "end_date": "2026-03-06", "per_page": 50})
    assert first.headers["Total"] == "20" and first.headers["Per-Page"] == "10" and len(first.json()) == 10
    seen, resp = [], first
    while True:
        seen += resp.json()
        if 'rel="next"' not in resp.headers["Link"]:
            break
        resp = s.get(resp.links["next"]["url"])
    assert len(seen) == 20 and len({e["id"] for e in seen}) == 20
    assert {e["date"] for e in seen} == set(days[1:])
    assert s.get(url, params={"start_date": "2026-03-03", "page": 9}).json() == []
    parties = [h["technicians"][t]["party_id"] for t in (0, 4)]
    one = s.get(url, params={"filters[party_id]": parties[0]}).json()
    assert len(one) == 5 and {e["party"]["id"] for e in one} == {parties[0]}
    both = s.get(url, params={"filters[party_id][]": parties, "start_date": "2026-03-02",
                              "end_date": "2026-03-02"}).json()
    assert {e["party"]["id"] for e in both} == set(parties) and len(both) == 2


def test_rate_limit_headers_on_every_response_and_429_when_over(emulator, h):
    s = procore_session(emulator, h)
    emulator.admin.config(procore_rate_limit={"spike": 3, "spike_window_s": 0.5, "retry_after_on_429": True})
    url = f"{emulator.procore_url}/rest/v1.0/projects/{h['project_ids'][0]}"
    remaining = [s.get(url).headers["X-Rate-Limit-Remaining"] for _ in range(2)]
    failed = s.get(f"{emulator.procore_url}/rest/v1.0/projects/42")  # failed requests count too
    assert remaining == ["2", "1"] and failed.status_code == 404 and failed.headers["X-Rate-Limit-Remaining"] == "0"
    over = s.get(url)
    assert over.status_code == 429 and over.headers["Content-Type"].startswith("text/plain")
    assert over.headers["X-Rate-Limit-Limit"] == "3" and over.headers["X-Rate-Limit-Remaining"] == "0"
    assert int(over.headers["X-Rate-Limit-Reset"]) >= int(time.time()) and int(over.headers["Retry-After"]) >= 1
    time.sleep(0.6)
    assert s.get(url).status_code == 200


@pytest.mark.parametrize(("kind", "status", "retry_after"), [
    ("429", 429, "7"), ("503", 503, "7"), ("500", 500, None), ("502", 502, None), ("504", 504, None)])
def test_status_faults_answer_before_anything_happens(emulator, h, kind, status, retry_after):
    s = procore_session(emulator, h)
    rule = {"service": "procore", "method": "POST", "path": "/timesheets$", "kind": kind, "count": 1}
    emulator.admin.add_faults({**rule, "retry_after": 7} if retry_after else rule)
    r = s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    assert r.status_code == status and r.headers.get("Retry-After") == retry_after
    assert "X-Rate-Limit-Remaining" in r.headers  # every /rest answer carries them, injected ones too
    assert emulator.admin.procore_entries() == []
    assert s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]}).status_code == 200  # count used up


def test_body_faults_html_and_empty(emulator, h):
    s = st_login(emulator, h)
    emulator.admin.add_faults({"service": "servicetrade", "path": "^/api/user$", "kind": "html_502", "count": 1},
                         {"service": "servicetrade", "path": "^/api/user$", "kind": "empty_body", "count": 1})
    html = s.get(f"{emulator.st_url}/user")
    assert html.status_code == 502 and html.headers["Content-Type"] == "text/html" and "<html>" in html.text
    empty = s.get(f"{emulator.st_url}/user")
    assert empty.status_code == 200 and empty.content == b""
    assert s.get(f"{emulator.st_url}/user").json()["data"]["users"]


def test_latency_timeout_and_expire_auth_faults(emulator, h):
    s = procore_session(emulator, h)
    url = f"{emulator.procore_url}/rest/v1.0/projects/{h['project_ids'][0]}"
    emulator.admin.add_faults({"service": "procore", "kind": "latency", "latency_ms": 300, "count": 1})
    began = time.monotonic()
    assert s.get(url).status_code == 200 and time.monotonic() - began >= 0.3

    emulator.admin.add_faults({"service": "procore", "method": "POST", "kind": "timeout", "latency_ms": 200, "count": 1})
    with pytest.raises(requests.ConnectionError):
        s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]})
    assert emulator.admin.procore_entries() == []  # nothing processed
    emulator.admin.add_faults({"service": "procore", "method": "POST", "kind": "timeout", "latency_ms": 1500,
                          "count": 1})
    with pytest.raises(requests.ReadTimeout):
        s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h)]}, timeout=0.3)

    emulator.admin.add_faults({"service": "procore", "kind": "expire_auth", "count": 1})
    assert s.get(url).status_code == 401
    assert s.get(url).status_code == 401  # the token really is gone
    st = st_login(emulator, h)
    emulator.admin.add_faults({"service": "servicetrade", "kind": "expire_auth", "count": 1})
    assert st.get(f"{emulator.st_url}/user").status_code == 401


def test_lost_response_commits_and_closes_without_a_byte(emulator, h):
    s = procore_session(emulator, h)
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": "/timesheets$", "kind": "lost_response",
                          "count": 1})
    with pytest.raises(requests.ConnectionError):
        s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, origin_id=77)]})
    assert [e["origin_id"] for e in emulator.admin.procore_entries()] == [77]
    listed = s.get(f"{emulator.procore_url}/rest/v1.0/companies/{h['procore_company_id']}/timecard_entries",
                   params={"start_date": "2026-03-02", "end_date": "2026-03-02"})
    assert [e["origin_id"] for e in listed.json()] == [77]


def test_probability_faults_are_reproducible_with_a_seed(emulator, h):
    def pattern() -> list[int]:
        emulator.admin.clear_faults()
        emulator.admin.add_faults({"service": "servicetrade", "kind": "500", "probability": 0.5, "seed": 3})
        return [requests.get(f"{emulator.st_url}/user").status_code for _ in range(12)]

    first = pattern()
    assert first == pattern() and set(first) == {401, 500}
    with pytest.raises(AdminError):
        emulator.admin.add_faults({"kind": "teapot"})


def test_requests_are_counted_by_route_template_without_admin_calls(emulator, h):
    s = procore_session(emulator, h)
    emulator.admin.reset_requests()
    s.get(f"{emulator.procore_url}/rest/v1.0/projects/{h['project_ids'][0]}")
    s.get(f"{emulator.procore_url}/rest/v1.0/projects/{h['project_ids'][1]}")
    s.post(bulk_url(emulator, h), json={"timecard_entries": [entry(h, project_index=1)]})
    requests.get(f"{emulator.st_url}/clock")
    emulator.admin.st_state()
    counts = emulator.admin.requests()
    rows = {(r["service"], r["method"], r["route"], r["status"]): r["count"] for r in counts["by_route"]}
    assert rows == {("procore", "GET", "/rest/v1.0/projects/{pid}", 200): 2,
                    ("procore", "POST", "/rest/v1.0/companies/{cid}/timesheets", 422): 1,
                    ("servicetrade", "GET", "/api/clock", 401): 1}
    assert counts["total"] == 4


def test_a_failed_start_raises_with_the_emulators_stderr():
    with pytest.raises(RuntimeError, match="KeyError"):
        EmulatorProcess(seed={"servicetrade": {"users": [{"firstName": "no id"}]}}).start()


# ---------------------------------------------------------------------------------------------- world

def test_world_is_deterministic_and_has_every_technician_kind(tmp_path):
    assert generate_world(seed=1) == WORLD and generate_world(seed=2) != WORLD
    h = WORLD["handles"]
    assert {t["expect"] for t in h["technicians"]} == {"ok", "no_employee_id", "invalid_employee_id",
                                                       "not_employee"}
    people = {p["employee_id"]: p for p in WORLD["procore"]["companies"][0]["people"]}
    for tech in h["technicians"]:
        match = people.get(tech["employee_id"] or "")
        valid = bool(match and match["is_employee"])
        assert valid == (tech["expect"] == "ok")
        assert tech["party_id"] == (match["id"] if valid else None)
    projects = WORLD["procore"]["projects"]
    assert [p["tz_name"] for p in projects] == ["America/New_York", "America/Chicago", "America/Los_Angeles"]
    assert h["start_stop_project_ids"] == [projects[1]["id"]]
    active = [any(t["title"] == "Timesheets" and t["is_active"] for t in p["tools"]) for p in projects]
    assert True in active and False in active

    out = tmp_path / "world.json"
    assert world_main(["--out", str(out), "--seed", "1"]) == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(WORLD))


def test_world_plans_have_overnight_dst_and_unrounded_punches():
    zone = ZoneInfo("America/New_York")
    plan = WORLD["servicetrade"]["clock_event_plans"][str(WORLD["handles"]["project_ids"][0])]
    by_user: dict[int, list[dict]] = {}
    for e in plan:
        by_user.setdefault(e["user_id"], []).append(e)
    onsite = []
    for events in by_user.values():
        opened = {}
        for e in events:
            if e["eventType"] == "clockIn":
                opened[e["activity"]] = e["eventTime"]
            else:
                onsite.append((e["activity"], opened.pop(e["activity"]), e["eventTime"]))
        assert not opened  # every punch is closed
    local = [(a, datetime.fromtimestamp(s, zone), datetime.fromtimestamp(t, zone)) for a, s, t in onsite]
    assert any(s.date() != t.date() for _, s, t in local)  # crosses local midnight
    assert any(s.utcoffset() != t.utcoffset() for _, s, t in local)  # spans 2026-03-08
    assert {a for a, _, _ in local} == {"enroute", "onsite", "onbreak"}
    assert sum(1 for _, s, _ in local if s.minute % 5) > 0.9 * len(local)
    assert min(s for _, s, _ in local).date() == date(2026, 3, 2)
    big = generate_world(seed=5, projects=2, technicians=100, days=28, visits_per_day=2)
    intervals = sum(len(p) for p in big["servicetrade"]["clock_event_plans"].values()) // 2
    assert intervals > 20_000
    assert datetime.fromtimestamp(plan[0]["eventTime"], UTC).year == 2026
