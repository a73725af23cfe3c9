"""Safe whatever Procore and ServiceTrade really answer (issue 13): the pipeline end to end against every reading of
the APIs the emulators know (P-12, ST-9), with Procore's final state checked entry by entry: 0 duplicates,
0 missing, and every row's status and reason as expected."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from worker.enums import LedgerStatus

from .helpers import END, START, first_project, ledger, live_entries, source_key_of

MATRIX: dict[str, dict[str, int]] = {}


def _expected(stsync, pid: int) -> set[str]:
    """The entries a sync of the window must leave in Procore, from a dry run under the default reading."""
    preview = stsync.sync(pid, START, END, "--dry-run", ok=False)["report"]["preview"]
    return {row["source_key"] for row in preview
            if row["action"] == "create" and START.isoformat() <= row["date"] <= END.isoformat()}


def _record(variant: str, expected: set[str], emulator, pid: int) -> dict[str, int]:
    keys = Counter(source_key_of(e) for e in live_entries(emulator, pid))
    counts = {
        "expected": len(expected),
        "in_procore": sum(keys.values()),
        "posted": len(ledger(status=LedgerStatus.posted)),
        "failed": len(ledger(status=LedgerStatus.failed)),
        "needs_review": len(ledger(status=LedgerStatus.needs_review)),
        "duplicates": sum(n - 1 for n in keys.values() if n > 1),
        "missing": len(expected - set(keys)),
    }
    MATRIX[variant] = counts
    return counts


@pytest.fixture(scope="module", autouse=True)
def _write_matrix() -> Any:
    yield
    if MATRIX:  # the figures docs/api-assumptions.md quotes
        out = Path(__file__).parent.parent / ".variant-matrix.json"
        out.write_text(json.dumps(MATRIX, indent=2, sort_keys=True))


def test_partial_commit_adopts_what_procore_kept_and_refuses_only_the_bad_entry(stsync, emulator, monkeypatch) -> None:
    from worker.clients.procore import ProcoreClient

    pid = first_project(stsync)
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(procore=["partial_commit"])
    original, bad = ProcoreClient.bulk_create_entries, []

    def one_bad(self, entries):
        if not bad and len(entries) > 10:
            entries = [dict(e) for e in entries]
            entries[7]["cost_code_id"] = stsync.h["non_labor_cost_codes"][str(pid)][0]["cost_code_id"]
            bad.append(source_key_of(entries[7]))
        return original(self, entries)

    monkeypatch.setattr(ProcoreClient, "bulk_create_entries", one_bad)
    result = stsync.sync(pid, START, END, ok=False)
    assert result["status"] == "completed_with_problems"
    counts = _record("partial_commit", expected - set(bad), emulator, pid)
    assert (counts["duplicates"], counts["missing"], counts["failed"]) == (0, 0, 1)
    [failed] = ledger(status=LedgerStatus.failed)
    assert failed.source_key == bad[0] and failed.reason == "procore_rejected"


def test_bulk_forbidden_posts_through_the_single_route_exactly_once(stsync, emulator) -> None:
    pid = first_project(stsync)
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(procore=["bulk_forbidden"])
    report = stsync.sync(pid, START, END)["report"]
    assert report["route"] == "single"
    counts = _record("bulk_forbidden", expected, emulator, pid)
    assert (counts["duplicates"], counts["missing"], counts["failed"]) == (0, 0, 0)


def test_a_500_after_commit_is_looked_up_not_resent(stsync, emulator) -> None:
    pid = first_project(stsync)
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(procore=["bulk_500_after_commit"])
    assert stsync.sync(pid, START, END)["status"] == "succeeded"
    counts = _record("bulk_500_after_commit", expected, emulator, pid)
    assert (counts["duplicates"], counts["missing"], counts["failed"]) == (0, 0, 0)
    assert counts["posted"] == len(expected)


def test_hours_procore_truncated_are_failed_with_both_values_never_posted(stsync, emulator) -> None:
    pid = first_project(stsync)
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(procore=["integer_hours"])
    result = stsync.sync(pid, START, END, ok=False)
    assert result["status"] == "completed_with_problems"
    changed = ledger(status=LedgerStatus.failed)
    assert changed and all(r.reason == "procore_changed_entry" for r in changed)
    assert all(r.hours != r.hours.to_integral_value() for r in changed), "only fractional hours were changed"
    assert "hours: sent" in changed[0].detail and "stored" in changed[0].detail
    assert all(p.hours == p.hours.to_integral_value() for p in ledger(status=LedgerStatus.posted))
    counts = _record("integer_hours", expected, emulator, pid)
    assert (counts["duplicates"], counts["missing"]) == (0, 0)
    again = stsync.sync(pid, START, END, ok=False)  # still named, still not sent twice
    assert "still failed" in again["message"] and again["report"]["procore_writes"] == 0


def test_answers_without_approval_status_are_read_back(stsync, emulator) -> None:
    pid = first_project(stsync)
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(procore=["no_approval_status"])
    stsync.sync(pid, START, END)
    assert all(r.approval_status for r in ledger(status=LedgerStatus.posted))
    counts = _record("no_approval_status", expected, emulator, pid)
    assert (counts["duplicates"], counts["missing"], counts["failed"]) == (0, 0, 0)


def test_an_entry_locked_with_a_403_in_other_words_needs_review(stsync, emulator, monkeypatch) -> None:
    from worker.sync.posting import Poster

    pid = first_project(stsync)
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(procore=["locked_403"])
    stsync.sync(pid, START, END)
    row = sorted(ledger(status=LedgerStatus.posted), key=lambda r: r.id)[0]
    before = {e["id"]: e for e in emulator.admin.procore_entries()}[row.procore_entry_id]
    # Approved after this run read the approvals: the PATCH itself meets the lock, answered 403.
    monkeypatch.setattr(Poster, "approved_now", lambda self, rows: set())
    emulator.admin.approve_entry(row.procore_entry_id)
    emulator.admin.edit_clock_event(row.clock_out_event_id,
                                    eventTime=int((row.actual_end + timedelta(minutes=37)).timestamp()))
    result = stsync.sync(pid, START, END, ok=False)
    assert result["status"] == "completed_with_problems"
    [review] = ledger(status=LedgerStatus.needs_review)
    assert review.id == row.id and review.reason == "approved" and "refused to change" in review.detail
    after = {e["id"]: e for e in emulator.admin.procore_entries()}[row.procore_entry_id]
    assert Decimal(str(after["hours"])) == Decimal(str(before["hours"])), "the approved entry was left as it was"
    counts = _record("locked_403", expected, emulator, pid)
    assert (counts["duplicates"], counts["missing"]) == (0, 0)


def test_servicetrade_identity_without_its_envelope_still_connects_and_syncs(stsync, emulator) -> None:
    emulator.admin.set_variants(servicetrade=["userinfo_bare"])
    stsync.connect()
    pid = first_project(stsync)
    emulator.admin.set_variants(servicetrade=[])
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(servicetrade=["userinfo_bare"])
    stsync.sync(pid, START, END)
    counts = _record("userinfo_bare", expected, emulator, pid)
    assert (counts["duplicates"], counts["missing"], counts["failed"]) == (0, 0, 0)


def test_loose_paging_without_total_pages_reads_every_event(stsync, emulator) -> None:
    pid = first_project(stsync)
    expected = _expected(stsync, pid)
    emulator.admin.set_variants(servicetrade=["paging_loose"])
    emulator.admin.config(st_max_page_size=7)  # the server caps pages below what the client asks for (ST-3)
    stsync.sync(pid, START, END)
    counts = _record("paging_loose", expected, emulator, pid)
    assert (counts["duplicates"], counts["missing"], counts["failed"]) == (0, 0, 0)
