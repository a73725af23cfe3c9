"""Linking a Procore project to ServiceTrade: the checks before anything syncs, exactly one customer, location
and job even across lost responses, job types, technicians and rule validation."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from worker.cli import cli
from worker.enums import LedgerStatus

from .helpers import END, START, ledger
from .stsync_env import point_at_emulator


def _mine(items: list[dict], pid: int) -> list[dict]:
    return [i for i in items if (i.get("externalIds") or {}).get("procore") == str(pid)]


def test_a_complete_project_passes_the_check(stsync) -> None:
    pid = stsync.h["project_ids"][0]
    data = stsync.json("project", "check", pid)
    assert data["ok"] is True and data["blockers"] == []
    assert data["labor_cost_codes"]
    assert data["rounding"].startswith(("rounded", "no rounding"))
    assert data["entry_mode"] in ("hours", "start_stop")
    assert data["approval"]


@pytest.mark.parametrize(("field", "label"), [("name", "name"), ("address", "address"), ("city", "city"),
                                              ("state_code", "state"), ("zip", "zip")])
def test_each_missing_project_field_is_named(stsync, emulator, field: str, label: str) -> None:
    pid = stsync.h["project_ids"][0]
    emulator.admin.patch_project(pid, **{field: ""})
    result = stsync("project", "check", pid, ok=False)
    assert result.exit_code == 1
    assert f"the project has no {label}" in result.output
    refused = stsync("project", "link", pid, "--job-type", "service_call", ok=False)
    assert refused.exit_code == 1 and f"no {label}" in refused.output


def test_no_budgeted_labor_cost_code_blocks_and_says_why(stsync, emulator) -> None:
    pid = stsync.h["project_ids"][0]
    for code in stsync.h["labor_cost_codes"][str(pid)]:
        emulator.admin.patch_cost_code(code["cost_code_id"], budgeted=False)
    data = stsync.json("project", "check", pid, ok=False)
    assert data["ok"] is False
    assert any("no budgeted Labor cost code" in b for b in data["blockers"])
    whys = {c["why"] for c in data["unusable_cost_codes"]}
    assert "not budgeted on the project" in whys
    assert "no Labor cost type on its budget line" in whys


def test_link_creates_exactly_one_company_location_and_job(stsync, emulator) -> None:
    pid = stsync.h["project_ids"][0]
    result = stsync.link(pid)
    assert result["created"] == ["company", "location", "job"] and result["job_number"]
    again = stsync.link(pid)
    assert again["already_linked"] is True and again["job_id"] == result["job_id"]
    state = emulator.admin.st_state()
    assert len(_mine(state["companies"], pid)) == 1
    assert len(_mine(state["locations"], pid)) == 1
    assert len(_mine(state["jobs"], pid)) == 1


@pytest.mark.parametrize(("path", "listing"), [(r"/api/company$", "list_companies"),
                                               (r"/api/location$", "list_locations"),
                                               (r"/api/job$", "list_jobs")])
def test_a_lost_response_on_each_create_then_a_rerun_leaves_one_of_each(
    stsync, emulator, monkeypatch, path: str, listing: str
) -> None:
    from worker.clients.servicetrade import ServiceTradeClient

    pid = stsync.h["project_ids"][0]
    emulator.admin.add_faults({"service": "servicetrade", "method": "POST", "path": path, "kind": "lost_response",
                               "count": 1})
    original = getattr(ServiceTradeClient, listing)
    calls: list[int] = []

    def crash_on_second_look(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the look-up after the lost response: the process dies here
            raise LookupError("simulated crash after a lost response")
        return list(original(self, *args, **kwargs))

    monkeypatch.setattr(ServiceTradeClient, listing, crash_on_second_look)
    first = stsync("project", "link", pid, "--job-type", "service_call", ok=False)
    assert first.exit_code == 1 and "simulated crash" in first.output
    monkeypatch.setattr(ServiceTradeClient, listing, original)
    second = stsync.link(pid)
    assert second["job_id"] and second["already_linked"] is False
    state = emulator.admin.st_state()
    assert len(_mine(state["companies"], pid)) == 1
    assert len(_mine(state["locations"], pid)) == 1
    assert len(_mine(state["jobs"], pid)) == 1


def test_a_lost_response_is_resolved_by_looking_again_in_the_same_run(stsync, emulator) -> None:
    pid = stsync.h["project_ids"][0]
    for path in (r"/api/company$", r"/api/location$", r"/api/job$"):
        emulator.admin.add_faults({"service": "servicetrade", "method": "POST", "path": path,
                                   "kind": "lost_response", "count": 1})
    result = stsync.link(pid)
    assert result["created"] == []  # each was found by its external id, not created a second time
    state = emulator.admin.st_state()
    assert [len(_mine(state[k], pid)) for k in ("companies", "locations", "jobs")] == [1, 1, 1]


def test_an_unknown_job_type_is_refused_with_the_valid_list(stsync) -> None:
    result = stsync("project", "link", stsync.h["project_ids"][0], "--job-type", "plumbing_party", ok=False)
    assert result.exit_code == 1
    assert "unknown job type 'plumbing_party'" in result.output
    assert "service_call" in result.output and "preventative_maintenance" in result.output


def test_technicians_show_each_status(stsync) -> None:
    rows = {r["st_user_id"]: r for r in stsync.json("technicians")}
    expected = {t["st_user_id"]: t["expect"] for t in stsync.h["technicians"]}
    assert {k: rows[k]["status"] for k in expected} == expected
    assert set(expected.values()) >= {"ok", "no_employee_id", "invalid_employee_id", "not_employee"}
    for uid, status in expected.items():
        if status == "ok":
            assert rows[uid]["party_id"] and rows[uid]["warning"] is None
        else:
            assert rows[uid]["warning"] and rows[uid]["name"] in rows[uid]["warning"]


def test_rules_add_refuses_non_labor_and_unbudgeted_codes_listing_valid_ones(stsync) -> None:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    valid = stsync.labor(pid)
    for bad in (stsync.h["non_labor_cost_codes"][str(pid)][0], stsync.h["unbudgeted_cost_codes"][str(pid)][0]):
        result = stsync("rules", "add", pid, "--cost-code-id", bad["cost_code_id"], "--line-item-type-id",
                        valid["line_item_type_id"], ok=False)
        assert result.exit_code == 1
        assert f"cost code {bad['cost_code_id']} can't take labor hours" in result.output
        assert f"cost code {valid['cost_code_id']}" in result.output
    wrong_type = stsync("rules", "add", pid, "--cost-code-id", valid["cost_code_id"], "--line-item-type-id",
                        stsync.h["non_labor_line_item_type_id"], ok=False)
    assert wrong_type.exit_code == 1 and "is not a Labor cost type" in wrong_type.output
    assert stsync.json("rules", "list", pid) == []


def test_a_rule_that_became_invalid_makes_intervals_unmapped_not_wrong_posts(stsync, emulator) -> None:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    stsync.add_default_rule(pid)
    emulator.admin.patch_cost_code(stsync.labor(pid)["cost_code_id"], budgeted=False)
    emulator.admin.reset_requests()
    result = stsync.sync(pid, START, END, ok=False)
    assert result["status"] == "completed_with_problems" and "still skipped" in result["message"]
    report = result["report"]
    assert report["posted"] == 0 and report["skipped"]["unmapped"] > 0
    unmapped = [r for r in ledger(status=LedgerStatus.skipped) if r.reason == "unmapped"]
    assert "not a budgeted Labor cost code" in unmapped[0].detail
    assert [e for e in emulator.admin.procore_entries() if not e.get("deleted_at")] == []


def test_rules_list_names_cost_codes_and_cost_types_and_keeps_the_ids_in_json(stsync) -> None:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    stsync.add_default_rule(pid)
    table = stsync("rules", "list", pid).output
    assert "01-100 General Conditions Labor" in table and "Labor" in table
    [rule] = stsync.json("rules", "list", pid)
    assert rule["cost_code_id"] == stsync.labor(pid)["cost_code_id"]
    assert (rule["cost_code"], rule["cost_type"]) == ("01-100 General Conditions Labor", "Labor")


def test_a_schedule_is_paused_resumed_and_removed_from_the_command_line(stsync) -> None:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    stsync("schedule", "set", pid, "--weekly", "fri@18:00")
    assert "paused" in stsync("schedule", "pause", pid, "--kind", "weekly").output
    assert [s["enabled"] for s in stsync.json("schedule", "list")] == [False]
    assert "resumed; next run" in stsync("schedule", "resume", pid, "--kind", "weekly").output
    stsync("schedule", "remove", pid, "--kind", "weekly")
    assert stsync.json("schedule", "list") == []
    again = stsync("schedule", "remove", pid, "--kind", "weekly", ok=False)
    assert again.exit_code == 1 and f"project {pid} has no weekly schedule" in again.output


def test_a_schedule_given_two_ways_or_badly_is_one_line_of_error(stsync) -> None:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    both = stsync("schedule", "set", pid, "--nightly", "23:00", "--weekly", "fri@18:00", ok=False)
    assert both.exit_code == 1 and "give exactly one of --nightly" in both.output
    bad_day = stsync("schedule", "set", pid, "--weekly", "someday@18:00", ok=False)
    assert bad_day.exit_code == 1 and bad_day.output.startswith("error: the weekday of a schedule")
    assert "Traceback" not in bad_day.output


def test_every_log_line_of_a_command_names_the_command(stsync, caplog) -> None:
    caplog.set_level("INFO")
    stsync("project", "check", stsync.h["project_ids"][0])
    calls = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "http.call"]
    assert calls and all(str(c.get("command", "")).endswith("project check") for c in calls)


def test_secrets_can_be_typed_at_a_hidden_prompt_instead_of_the_command_line(world, emulator, db_url, redis_url,
                                                                             monkeypatch) -> None:
    point_at_emulator(monkeypatch, emulator)
    h = world["handles"]
    procore = CliRunner().invoke(cli, ["connect", "procore", "--company-id", str(h["procore_company_id"]),
                                       "--client-id", h["procore_client_id"]],
                                 input=h["procore_client_secret"] + "\n")
    assert procore.exit_code == 0, procore.output
    assert "connected with client credentials" in procore.output
    assert h["procore_client_secret"] not in procore.output
    st = CliRunner().invoke(cli, ["connect", "servicetrade", "--username", h["st_username"]],
                            input=h["st_password"] + "\n")
    assert st.exit_code == 0 and "connected as" in st.output and h["st_password"] not in st.output
