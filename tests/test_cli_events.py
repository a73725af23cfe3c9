"""The manual flow as a person types it (issue 15): `stsync events` numbers the rows and names everything,
`stsync sync-events --row ... --cost-code 01-100` posts them, and nothing on the way needs JSON."""

from __future__ import annotations

import re

from .helpers import START, live_entries, source_key_of
from .stsync_env import leave_the_database_empty  # noqa: F401 - an autouse fixture

# `#  technician  date  activity  actual  rounded  hours  cost code  status  event id`; a long status folds onto
# the next lines, which this skips.
ROW = re.compile(r"^\s*(\d+) +(.+?) +(\d\d-\d\d) +(\w+) +(\S+) +(\S+) +([\d.]+|-) +(\S+) +(.*?) +(\d+|-)\s*$")


def _rows(table: str) -> list[dict[str, str]]:
    """The numbered rows of the plain-text events table, by column."""
    names = ("number", "technician", "date", "activity", "actual", "rounded", "hours", "code", "status", "event")
    return [dict(zip(names, m.groups(), strict=True)) for line in table.splitlines() if (m := ROW.match(line))]


def test_the_manual_flow_runs_from_the_command_line_without_json(stsync, emulator) -> None:
    pid = stsync.h["project_ids"][0]
    stsync("project", "link", pid, "--job-type", "service_call")
    shown = stsync("events", pid, "--start", START, "--end", START).stdout
    assert "Rounding: " in shown and "15 minutes" in shown
    table = [line for line in shown.splitlines() if line[:1] in ("#", " ") or line[:1].isdigit()]
    assert table and all(len(line) <= 120 for line in table), "the table fits 120 columns"
    rows = _rows(shown)
    assert [int(r["number"]) for r in rows] == list(range(1, len(rows) + 1))
    assert any("flagged: " in line for line in shown.splitlines()), "a technician without an Employee ID is named"
    pickable = [r for r in rows if r["activity"] == "onsite" and r["status"].startswith("skipped: no cost code")]
    chosen = pickable[:2]

    posted = stsync("sync-events", pid, "--start", START, "--end", START, "--row", chosen[0]["number"],
                    "--row", chosen[1]["number"], "--cost-code", "01-100").stdout
    for row in chosen:
        assert re.search(rf"posted\s+{re.escape(row['technician'])} on {START}, {row['hours']} hours, "
                         r"01-100 General Conditions Labor", posted), posted
    entries = live_entries(emulator, pid)
    assert len(entries) == 2
    assert {str(e["hours"]).rstrip("0").rstrip(".") for e in entries} == {
        r["hours"].rstrip("0").rstrip(".") for r in chosen}

    after = _rows(stsync("events", pid, "--start", START, "--end", START).stdout)
    by_number = {r["number"]: r for r in after}
    for row in chosen:
        assert by_number[row["number"]]["status"].startswith("posted"), "the numbers stay put for the window"
        assert by_number[row["number"]]["code"] == "01-100"
    assert {source_key_of(e) for e in entries} and len({source_key_of(e) for e in entries}) == 2


def test_a_technicians_rows_are_picked_by_name_and_a_flagged_row_is_refused_by_number(stsync, emulator) -> None:
    pid = stsync.h["project_ids"][0]
    stsync("project", "link", pid, "--job-type", "service_call")
    rows = _rows(stsync("events", pid, "--start", START, "--end", START).stdout)
    flagged = next(r for r in rows if r["status"].startswith("skipped: no Procore"))
    refused = stsync("sync-events", pid, "--start", START, "--end", START, "--row", flagged["number"],
                     "--cost-code", "01-100", ok=False)
    assert refused.exit_code == 1
    assert f"--row {flagged['number']} ({flagged['technician']} on {START}) can't be posted" in refused.output
    assert live_entries(emulator, pid) == []

    ok_name = next(r["technician"] for r in rows if r["status"].startswith("skipped: no cost code"))
    theirs = [r for r in rows if r["technician"] == ok_name and r["status"].startswith("skipped: no cost code")]
    out = stsync("sync-events", pid, "--start", START, "--end", START, "--technician", ok_name.split()[0],
                 "--cost-code", "01-100", "--cost-type", "Labor").stdout
    assert out.count(f"posted  {ok_name} on") == len(theirs)
    assert len(live_entries(emulator, pid)) == len(theirs)


def test_without_a_choice_off_a_terminal_sync_events_says_how_to_choose(stsync) -> None:
    pid = stsync.h["project_ids"][0]
    stsync("project", "link", pid, "--job-type", "service_call")
    no_rows = stsync("sync-events", pid, "--start", START, "--end", START, "--cost-code", "01-100", ok=False)
    assert no_rows.exit_code == 1 and "choose events with --row N" in no_rows.output
    unknown = stsync("sync-events", pid, "--start", START, "--end", START, "--row", "999", "--cost-code", "01-100",
                     ok=False)
    assert unknown.exit_code == 1 and "--row 999 is not in the events table" in unknown.output
    no_code = stsync("sync-events", pid, "--start", START, "--end", START, "--all", ok=False)
    assert no_code.exit_code == 1 and "give --cost-code" in no_code.output
    assert "01-100 General Conditions Labor" in no_code.output
    bad_code = stsync("sync-events", pid, "--start", START, "--end", START, "--all", "--cost-code", "77-777",
                      ok=False)
    assert bad_code.exit_code == 1 and "cost code '77-777' is not a cost code of project" in bad_code.output
    assert "Traceback" not in no_rows.output + unknown.output + no_code.output + bad_code.output


def test_rules_take_a_cost_code_by_its_code_and_projects_are_listed_by_name(stsync) -> None:
    pid = stsync.h["project_ids"][0]
    stsync("project", "link", pid, "--job-type", "service_call")
    added = stsync("rules", "add", pid, "--cost-code", "01-100", "--cost-type", "Labor").stdout
    assert "01-100 General Conditions Labor, Labor" in added
    listing = stsync("projects").stdout
    assert "linked: job #" in listing and "not linked" in listing
    names = {p["project_id"]: p["linked"] for p in stsync.json("projects")}
    assert names[pid] is True and set(stsync.h["project_ids"]) <= set(names)
