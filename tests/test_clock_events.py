"""The clock events of a window as the office admin picks them (issues 14, 15): numbered, named, with the rounding
rule in words and the Labor choices; the manual flow refuses what it must refuse before anything is claimed."""

from __future__ import annotations

import pytest

from worker.enums import LedgerStatus
from worker.inputs import InvalidArgument
from worker.service import syncing

from .helpers import END, START, ledger, live_entries, source_key_of


def _linked(stsync) -> int:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    return pid


def test_rows_are_numbered_by_technician_date_and_time_with_names_and_the_rounding_rule(stsync) -> None:
    pid = _linked(stsync)
    view = syncing.clock_events(pid, START, START.replace(day=8))
    assert "15 minutes" in view.rounding
    assert [r.number for r in view.rows] == list(range(1, len(view.rows) + 1))
    keys = [(r.technician, r.date, r.rounded_in or r.actual_in or "") for r in view.rows]
    assert keys == sorted(keys)
    assert all(START <= r.date <= START.replace(day=8) for r in view.rows)
    assert view.lookback_rechecked >= 0
    labels = [c.label for c in view.cost_codes]
    assert "01-100 General Conditions Labor" in labels
    assert any(c.label == "Labor" for c in view.cost_types)
    flagged = [r for r in view.rows if not r.technician_ok]
    assert flagged and all(not r.selectable and r.technician_problem for r in flagged)
    unmapped = [r for r in view.rows if r.technician_ok and r.status == "skipped: no cost code rule matches"]
    assert unmapped and all(r.selectable for r in unmapped), "without rules, the manual flow picks the code"
    assert ledger() == [], "a preview writes nothing"


def test_picked_events_post_with_the_chosen_code_and_show_as_posted_afterwards(stsync, emulator) -> None:
    pid = _linked(stsync)
    view = syncing.clock_events(pid, START, START)
    picked = [r for r in view.rows if r.selectable and r.activity == "onsite"][:3]
    code, kind = view.cost_codes[0], view.cost_types[0]
    outcome = syncing.sync_selected(pid, [r.clock_event_id for r in picked], code.id, kind.id, START, START)
    assert outcome.status.value == "succeeded"
    assert [e["status"] for e in outcome.report.entries] == ["posted"] * len(picked)
    assert all(e["cost_code"] == code.label for e in outcome.report.entries)
    landed = {source_key_of(e) for e in live_entries(emulator, pid)}
    assert landed == {r.source_key for r in picked}

    after = {r.source_key: r for r in syncing.clock_events(pid, START, START).rows}
    for row in picked:
        assert after[row.source_key].status == "posted, awaiting approval"
        assert after[row.source_key].cost_code == code.label and not after[row.source_key].selectable

    # The same events again, with another code: refused by name, nothing moved.
    other = view.cost_codes[1]
    with pytest.raises(InvalidArgument, match="in Procore already"):
        syncing.sync_selected(pid, [picked[0].clock_event_id], other.id, kind.id, START, START)
    assert {source_key_of(e) for e in live_entries(emulator, pid)} == landed


def test_a_cost_code_that_is_not_budgeted_labor_is_refused_naming_the_choices(stsync, emulator) -> None:
    pid = _linked(stsync)
    row = next(r for r in syncing.clock_events(pid, START, START).rows if r.selectable)
    wrong = stsync.h["non_labor_cost_codes"][str(pid)][0]
    with pytest.raises(InvalidArgument, match="01-100 General Conditions Labor"):
        syncing.sync_selected(pid, [row.clock_event_id], wrong["cost_code_id"], wrong["line_item_type_id"],
                              START, START)
    assert ledger() == [] and live_entries(emulator, pid) == []


def test_entries_typed_into_procore_by_hand_show_beside_the_clock_events(stsync, emulator) -> None:
    from worker.db import session_scope
    from worker.service.connections import procore_of

    pid = _linked(stsync)
    view = syncing.clock_events(pid, START, END)
    person = next(t for t in stsync.h["technicians"] if t["expect"] == "ok")
    code = stsync.labor(pid)
    with session_scope() as s:
        _conn, procore = procore_of(s)
        procore.create_entry({"project_id": pid, "party_id": person["party_id"], "date": START.isoformat(),
                              "hours": "8.00", "cost_code_id": code["cost_code_id"],
                              "line_item_type_id": code["line_item_type_id"]})
    hand = syncing.clock_events(pid, START, END).hand_entries
    assert [(h.date, str(h.hours)) for h in hand] == [(START, "8.00")]
    assert hand[0].technician == person["name"]
    assert view.hand_entries == []
    assert ledger(status=LedgerStatus.posted) == []
