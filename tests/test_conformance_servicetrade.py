"""The ServiceTrade client against the emulator, one or more tests per item of servicetrade.md Part A."""

from __future__ import annotations

import pytest

from worker.clients.errors import CredentialsRejected, MalformedResponse, NotFound, ValidationFailed
from worker.clients.servicetrade import ServiceTradeClient


def client(emulator, h, *, oauth: bool = False, sleeps: list | None = None, **kw) -> ServiceTradeClient:
    sleeper = (sleeps.append if sleeps is not None else lambda _s: None)
    if oauth:
        return ServiceTradeClient(emulator.st_url, client_id=h["st_client_id"], client_secret=h["st_client_secret"],
                                  sleep=sleeper, **kw)
    return ServiceTradeClient(emulator.st_url, username=h["st_username"], password=h["st_password"], sleep=sleeper,
                              **kw)


def calls(emulator, method: str, route: str, status: int | None = None) -> int:
    return sum(r["count"] for r in emulator.admin.requests()["by_route"]
               if r["service"] == "servicetrade" and r["method"] == method and r["route"] == route
               and (status is None or r["status"] == status))


def linked_job(emulator, world) -> dict:
    """A job with the first project's external id: the emulator attaches that project's punches to it."""
    h = world["handles"]
    st = client(emulator, h)
    pid = str(h["project_ids"][0])
    company = st.create_company({"name": "Acme", "customer": True, "externalIds": {"procore": pid},
                                 "address": {"street": "1 A St", "city": "Boston", "state": "MA",
                                             "postalCode": "02110"}})
    location = st.create_location({"name": "Acme HQ", "companyId": company["id"], "externalIds": {"procore": pid},
                                   "address": {"street": "1 A St", "city": "Boston", "state": "MA",
                                               "postalCode": "02110"}})
    return st.create_job({"locationId": location["id"], "vendorId": h["st_vendor_company_id"],
                          "customerId": company["id"], "type": "service_call", "name": "Acme",
                          "externalIds": {"procore": pid}})


# ST-1, ST-2 --------------------------------------------------------------------------------------------------


def test_st2_session_login_gives_a_26_char_token_and_the_vendor_company(world, emulator) -> None:
    seen: list = []
    st = client(emulator, world["handles"], on_session=seen.append)
    data = st.login()
    assert len(data["authToken"]) == 26 and seen == [data["authToken"]]
    me = st.whoami()
    assert me["company_id"] == world["handles"]["st_vendor_company_id"]


def test_st2_wrong_password_is_refused_with_the_remote_message(world, emulator) -> None:
    h = dict(world["handles"], st_password="wrong-password-123")
    with pytest.raises(CredentialsRejected) as info:
        client(emulator, h).login()
    assert info.value.status == 403 and "Invalid credentials provided" in str(info.value)
    assert "wrong-password-123" not in str(info.value)


def test_st2_an_expired_session_logs_in_again_once_and_repeats(world, emulator) -> None:
    st = client(emulator, world["handles"])
    st.login()
    emulator.admin.reset_requests()
    emulator.admin.expire_sessions()
    users = list(st.technicians())
    assert users
    assert calls(emulator, "GET", "/api/user", 401) == 1
    assert calls(emulator, "POST", "/api/auth") == 1


def test_st2_oauth_alternative(world, emulator) -> None:
    st = client(emulator, world["handles"], oauth=True)
    assert st.whoami()["company_id"] == world["handles"]["st_vendor_company_id"]
    emulator.admin.expire_sessions()
    emulator.admin.reset_requests()
    assert list(st.technicians())
    assert calls(emulator, "POST", "/api/oauth2/token") == 1


def test_st2_oauth_with_a_wrong_secret_is_refused(world, emulator) -> None:
    h = dict(world["handles"], st_client_secret="nope")
    with pytest.raises(CredentialsRejected):
        client(emulator, h, oauth=True).whoami()


# ST-3 ---------------------------------------------------------------------------------------------------------


def test_st3_pagination_reads_every_page_when_the_server_pages_smaller(world, emulator) -> None:
    job = linked_job(emulator, world)
    st = client(emulator, world["handles"])
    everything = list(st.clock_events(job_id=job["id"]))
    emulator.admin.config(st_max_page_size=7)
    emulator.admin.reset_requests()
    paged = list(st.clock_events(job_id=job["id"], limit=1000))
    assert [e["id"] for e in paged] == [e["id"] for e in everything] and len(paged) > 7
    assert calls(emulator, "GET", "/api/clock") == -(-len(paged) // 7)


def test_st3_validation_errors_and_unknown_ids(world, emulator) -> None:
    st = client(emulator, world["handles"])
    with pytest.raises(ValidationFailed) as info:
        st.create_job({"locationId": 1, "vendorId": 1, "type": "party"})
    assert info.value.status == 400 and info.value.details
    with pytest.raises(NotFound):
        st.get_job(1234567890123456)


def test_st3_a_malformed_body_names_the_endpoint(world, emulator) -> None:
    st = client(emulator, world["handles"])
    st.login()
    emulator.admin.add_faults({"service": "servicetrade", "path": "/api/user", "kind": "empty_body", "count": 1})
    with pytest.raises(MalformedResponse) as info:
        list(st.technicians())
    assert "/user" in str(info.value) and "empty" in str(info.value)


# ST-4, ST-5 ---------------------------------------------------------------------------------------------------


def test_st4_st5_clock_events_shape_filters_and_inclusive_times(world, emulator) -> None:
    job = linked_job(emulator, world)
    st = client(emulator, world["handles"])
    events = list(st.clock_events(job_id=job["id"]))
    assert events == sorted(events, key=lambda e: (e["eventTime"], e["id"]))
    first = events[0]
    assert {"id", "eventTime", "eventType", "activity", "source", "user", "job", "created", "updated"} <= set(first)
    assert len(str(first["id"])) == 16 and isinstance(first["eventTime"], int)
    at = first["eventTime"]
    exact = list(st.clock_events(job_id=job["id"], start_time=at, end_time=at))
    assert first["id"] in {e["id"] for e in exact}
    user = first["user"]["id"]
    assert {e["user"]["id"] for e in st.clock_events(job_id=job["id"], user_id=user)} == {user}
    assert {e["activity"] for e in st.clock_events(job_id=job["id"], activity="enroute")} == {"enroute"}
    two = sorted({e["user"]["id"] for e in events})[:2]
    assert {e["user"]["id"] for e in st.clock_events(job_id=job["id"], user_ids=two)} == set(two)
    emulator.admin.edit_clock_event(first["id"], eventTime=at + 60)
    changed = list(st.clock_events(job_id=job["id"], updated_after=max(e["updated"] for e in events) + 1))
    assert [e["id"] for e in changed] == [first["id"]]
    summary = st.job_clock_summary(job["id"])
    assert "activityTime" in summary and "pairedEvents" in summary


# ST-6, ST-7 ---------------------------------------------------------------------------------------------------


def test_st6_technicians_carry_the_procore_employee_id(world, emulator) -> None:
    st = client(emulator, world["handles"])
    techs = {u["id"]: u for u in st.technicians()}
    for t in world["handles"]["technicians"]:
        ext = (techs[t["st_user_id"]].get("externalIds") or {}).get("procore")
        assert (ext or None) == t["employee_id"]


def test_st7_create_and_find_by_external_id_and_refuse_a_second_job(world, emulator) -> None:
    job = linked_job(emulator, world)
    st = client(emulator, world["handles"])
    pid = str(world["handles"]["project_ids"][0])
    assert job["number"]
    companies = [c for c in st.list_companies(name="Acme") if (c.get("externalIds") or {}).get("procore") == pid]
    assert len(companies) == 1
    locations = list(st.list_locations(company_id=companies[0]["id"]))
    jobs = [j for j in st.list_jobs(location_id=locations[0]["id"], status="all")
            if (j.get("externalIds") or {}).get("procore") == pid]
    assert [j["id"] for j in jobs] == [job["id"]]
    with pytest.raises(ValidationFailed) as info:
        st.create_job({"locationId": locations[0]["id"], "vendorId": world["handles"]["st_vendor_company_id"],
                       "type": "service_call", "externalIds": {"procore": pid}})
    assert "externalIds" in (info.value.details or {})


# ST-8 ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [{"kind": "429"}, {"kind": "429", "retry_after": 2}, {"kind": "500"},
                                   {"kind": "502"}, {"kind": "503", "retry_after": 1}, {"kind": "504"}])
def test_st8_transient_answers_are_retried_and_retry_after_honoured(world, emulator, fault) -> None:
    sleeps: list = []
    st = client(emulator, world["handles"], sleeps=sleeps)
    st.login()
    emulator.admin.add_faults({"service": "servicetrade", "path": "/api/user", "count": 2, **fault})
    assert list(st.technicians())
    assert len(sleeps) == 2
    if fault.get("retry_after"):
        assert all(s >= fault["retry_after"] for s in sleeps)


def test_st8_errors_carry_the_request_id(world, emulator) -> None:
    st = client(emulator, world["handles"])
    with pytest.raises(NotFound) as info:
        st.get_job(1111111111111111)
    assert info.value.request_id and info.value.request_id in str(info.value)
