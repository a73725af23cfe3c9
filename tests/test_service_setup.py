"""The set-up half of the service layer, called the way every front door calls it: connecting, checking and linking
projects, technicians, rules and schedules, with results that carry the names a person reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from worker.db import session_scope
from worker.enums import EntryMode, ScheduleKind, TechnicianStatus
from worker.inputs import InvalidArgument
from worker.logging import redact_text
from worker.service import connections, projects, rules, schedules
from worker.store.connections import get_connection
from worker.store.technicians import list_technicians as stored_technicians

from .stsync_env import Stsync

MONDAY_NOON = datetime(2026, 3, 2, 17, tzinfo=UTC)  # 12:00 in New York


def project_names(stsync: Stsync) -> dict[int, str]:
    return {p["id"]: p["name"] for p in stsync.world["procore"]["projects"]}


def linked(stsync: Stsync) -> int:
    pid = stsync.h["project_ids"][0]
    projects.link_project(pid, "service_call")
    return pid


# ------------------------------------------------------------------------------------- connections


def test_connecting_procore_checks_the_credentials_and_redacts_the_secret(stsync: Stsync) -> None:
    h = stsync.h
    done = connections.connect_procore(h["procore_company_id"], h["procore_client_id"], h["procore_client_secret"])
    assert done.company_id == h["procore_company_id"] and done.grant == "client credentials"
    assert done.start_stop_projects == len(h["start_stop_project_ids"])
    assert h["procore_client_secret"] not in redact_text(f"secret={h['procore_client_secret']}")


def test_servicetrade_needs_a_password_or_a_whole_oauth_client(stsync: Stsync) -> None:
    with pytest.raises(InvalidArgument, match="give --username and --password"):
        connections.connect_servicetrade(username=stsync.h["st_username"])
    with pytest.raises(InvalidArgument, match="--client-id and --client-secret go together"):
        connections.connect_servicetrade(client_id="only-the-id")


def test_connecting_servicetrade_names_the_account_and_keeps_the_procore_side(stsync: Stsync) -> None:
    h = stsync.h
    done = connections.connect_servicetrade(username=h["st_username"], password=h["st_password"])
    assert done.company_id == h["st_vendor_company_id"] and done.auth_kind == "session" and done.company_name
    with session_scope() as s:
        conn = get_connection(s)
        assert (conn.st_username, conn.procore_company_id) == (h["st_username"], h["procore_company_id"])


# ------------------------------------------------------------------------------------- projects


def test_a_check_names_the_project_and_its_labor_cost_codes_by_code_and_name(stsync: Stsync) -> None:
    pid = stsync.h["project_ids"][0]
    check = projects.check_project(pid)
    assert check.ok and check.name == project_names(stsync)[pid]
    labels = {c["id"]: c["label"] for c in check.to_dict()["labor_cost_codes"]}
    assert labels[stsync.labor(pid)["cost_code_id"]] == "01-100 General Conditions Labor"
    assert {t.status for t in check.technicians} >= {TechnicianStatus.ok, TechnicianStatus.no_employee_id}
    assert check.link is None


def test_linking_names_the_project_and_a_second_link_changes_nothing(stsync: Stsync) -> None:
    pid = stsync.h["project_ids"][0]
    first = projects.link_project(pid, "service_call", lookback_days=21, split_mode="start_date")
    again = projects.link_project(pid, "service_call")
    assert first.project_name == project_names(stsync)[pid] and not first.already_linked
    assert again.already_linked and again.job_id == first.job_id
    shown = projects.show_project(pid)
    assert (shown.lookback_days, shown.split_mode.value, shown.job_type) == (21, "start_date", "service_call")
    assert shown.entry_mode in (EntryMode.hours, EntryMode.start_stop)
    assert projects.check_project(pid).link["job_id"] == first.job_id


def test_technicians_are_refreshed_stored_and_listed_by_name(stsync: Stsync) -> None:
    rows = projects.list_technicians()
    assert [r.name.lower() for r in rows] == sorted(r.name.lower() for r in rows)
    expected = {t["st_user_id"]: t["expect"] for t in stsync.h["technicians"]}
    assert {r.st_user_id: r.status.value for r in rows} == expected
    with session_scope() as s:
        stored = stored_technicians(s, get_connection(s).id)
        assert {t.st_user_id: t.status.value for t in stored} == expected


# ------------------------------------------------------------------------------------- rules


def test_a_rule_reads_with_its_cost_code_cost_type_and_technician_by_name(stsync: Stsync) -> None:
    pid = linked(stsync)
    projects.list_technicians()
    tech = stsync.h["technicians"][0]
    code = stsync.labor(pid)
    added = rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"], activity="onsite",
                           st_user_id=tech["st_user_id"], weekdays="fri,mon", start_between="18:00-05:00")
    assert (added.priority, added.cost_code, added.cost_type) == (1, "01-100 General Conditions Labor", "Labor")
    assert added.technician == tech["name"] and added.weekdays == "mon,fri"
    fallback = rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"])
    assert fallback.priority == 2 and fallback.technician is None
    assert [r.priority for r in rules.list_rules(pid)] == [1, 2]
    assert [r.cost_code for r in projects.show_project(pid).rules] == ["01-100 General Conditions Labor"] * 2


def test_a_taken_priority_and_a_bad_condition_are_refused_before_anything_is_stored(stsync: Stsync) -> None:
    pid = linked(stsync)
    code = stsync.labor(pid)
    rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"], priority=5)
    with pytest.raises(InvalidArgument, match="priority 5 is taken"):
        rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"], priority=5)
    with pytest.raises(InvalidArgument, match="priority must be from 1 to 10000, got 0"):
        rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"], priority=0)
    with pytest.raises(InvalidArgument, match="activity must be one of onsite, enroute, offsite"):
        rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"], activity="onbreak")
    with pytest.raises(ValueError, match="'funday' in weekdays"):
        rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"], weekdays="funday")
    assert [r.priority for r in rules.list_rules(pid)] == [5]


def test_removing_a_rule_that_is_not_there_says_so(stsync: Stsync) -> None:
    pid = linked(stsync)
    code = stsync.labor(pid)
    rules.add_rule(pid, code["cost_code_id"], code["line_item_type_id"])
    rules.remove_rule(pid, 1)
    with pytest.raises(LookupError, match=f"project {pid} has no rule #1"):
        rules.remove_rule(pid, 1)
    assert rules.list_rules(pid) == []


# ------------------------------------------------------------------------------------- schedules


def test_a_weekly_schedule_runs_next_on_its_weekday_in_the_projects_zone(stsync: Stsync) -> None:
    pid = linked(stsync)
    view = schedules.set_schedule(pid, "weekly", "18:00", weekday="fri", now=MONDAY_NOON)
    assert (view.kind, view.detail, view.enabled) == (ScheduleKind.weekly, "fri@18:00", True)
    assert view.project_name == project_names(stsync)[pid]
    assert view.next_run_local.startswith("2026-03-06 18:00")
    assert view.window is not None and view.window.end == date(2026, 3, 6)


def test_a_biweekly_payroll_needs_its_anchor(stsync: Stsync) -> None:
    pid = linked(stsync)
    with pytest.raises(InvalidArgument, match="biweekly payroll schedule needs an anchor date"):
        schedules.set_schedule(pid, ScheduleKind.payroll, time(6), payroll_kind="biweekly")
    view = schedules.set_schedule(pid, ScheduleKind.payroll, time(6), payroll_kind="biweekly", anchor="2026-03-02",
                                  grace_days=1, now=MONDAY_NOON)
    assert view.detail == "biweekly at 06:00, anchor 2026-03-02, +1 day(s) grace"
    # The period that closed the day before runs the morning after its grace day.
    assert (view.window.start, view.window.end) == (date(2026, 2, 16), date(2026, 3, 1))
    assert view.next_run_local.startswith("2026-03-03 06:00")


def test_a_paused_schedule_resumes_from_now_without_making_up_missed_runs(stsync: Stsync) -> None:
    pid = linked(stsync)
    schedules.set_schedule(pid, "nightly", "23:00", now=MONDAY_NOON)
    assert schedules.pause_schedule(pid, "nightly").enabled is False
    a_week_later = datetime(2026, 3, 9, 17, tzinfo=UTC)
    resumed = schedules.resume_schedule(pid, "nightly", now=a_week_later)
    assert resumed.enabled and resumed.next_run_local.startswith("2026-03-09 23:00")
    assert [(x.kind, x.enabled) for x in schedules.list_schedules(pid)] == [(ScheduleKind.nightly, True)]


def test_a_removed_schedule_is_gone_and_removing_it_again_says_so(stsync: Stsync) -> None:
    pid = linked(stsync)
    schedules.set_schedule(pid, "nightly", "23:00")
    schedules.remove_schedule(pid, "nightly")
    assert schedules.list_schedules() == []
    with pytest.raises(LookupError, match=f"project {pid} has no nightly schedule"):
        schedules.remove_schedule(pid, "nightly")
    with pytest.raises(LookupError, match="has no weekly schedule"):
        schedules.pause_schedule(pid, "weekly")


def test_a_schedule_time_and_weekday_are_checked(stsync: Stsync) -> None:
    pid = linked(stsync)
    with pytest.raises(InvalidArgument, match="local time as HH:MM, got '25:00'"):
        schedules.set_schedule(pid, "nightly", "25:00")
    with pytest.raises(InvalidArgument, match="weekday of a schedule must be one of mon"):
        schedules.set_schedule(pid, "weekly", "18:00", weekday="someday")
    with pytest.raises(InvalidArgument, match="schedule kind must be one of"):
        schedules.set_schedule(pid, "hourly", "18:00")
