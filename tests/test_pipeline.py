"""The sync pipeline end to end against the emulators over HTTP and a real PostgreSQL: exactly once, every punch
accounted for, changes followed, approvals respected."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.models import ClockEvent, LedgerEntry

from .helpers import END, START, assert_exactly_once, first_project, ledger, live_entries, source_key_of
from .stsync_env import write_calls


def test_first_sync_posts_and_every_punch_ends_in_the_ledger(stsync, emulator) -> None:
    pid = first_project(stsync)
    report = stsync.sync(pid, START, END)
    assert report["status"] == "succeeded", report
    assert report["report"]["posted"] > 0
    assert_exactly_once(emulator, pid)

    job_events = [e for e in emulator.admin.st_state()["clock_events"] if _job_project(emulator, e) == pid]
    in_window = [e for e in job_events if _in_scope(e, START, END)]
    accounted = set()
    for row in ledger():
        accounted.update(x for x in (row.clock_in_event_id, row.clock_out_event_id) if x)
    missing = [e["id"] for e in in_window if e["id"] not in accounted]
    assert missing == [], f"clock events without a ledger row: {missing[:10]}"
    reasons = Counter(r.reason for r in ledger(status=LedgerStatus.skipped))
    # The generated world has technicians without and with invalid Employee IDs, and breaks.
    assert reasons["no_employee_id"] > 0
    assert reasons["invalid_employee_id"] > 0
    assert reasons["excluded_activity"] > 0
    assert report["report"]["budget"]


def _job_project(emulator, event) -> int | None:
    jobs = {j["id"]: j for j in emulator.admin.st_state()["jobs"]}
    job = jobs.get(event["job"]["id"] if isinstance(event.get("job"), dict) else event.get("job_id"))
    ext = (job or {}).get("externalIds") or {}
    return int(ext["procore"]) if ext.get("procore") else None


def _in_scope(event, start: date, end: date) -> bool:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(event["eventTime"], UTC).date()
    return start <= at <= end - timedelta(days=1)


def test_rerunning_the_same_window_posts_nothing_and_writes_nothing(stsync, emulator) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    emulator.admin.reset_requests()
    again = stsync.sync(pid, START, END)
    assert again["report"]["posted"] == 0
    assert again["report"]["unchanged"] > 0
    assert write_calls(emulator.admin.requests()) == 0
    assert_exactly_once(emulator, pid)


def test_rerun_after_lost_response_posts_nothing_twice(stsync, emulator) -> None:
    pid = first_project(stsync)
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": r"/timesheets$",
                               "kind": "lost_response", "count": 1})
    first = stsync.sync(pid, START, END)
    assert first["status"] == "succeeded", first
    stsync.sync(pid, START, END)
    assert_exactly_once(emulator, pid)
    assert ledger(status=LedgerStatus.unknown) == []
    assert ledger(status=LedgerStatus.pending) == []


def test_lost_responses_left_unknown_are_looked_up_by_the_next_run(stsync, emulator, monkeypatch) -> None:
    pid = first_project(stsync)
    # Every bulk POST is committed but unanswered, and the look-ups after them fail too (the look before creating
    # still works): the run ends with unknown rows.
    from worker.sync.posting import Poster

    post_all = Poster.post_all

    def lookups_fail_from_now_on(self, rows):
        emulator.admin.add_faults(
            {"service": "procore", "method": "GET", "path": r"/timecard_entries$", "kind": "500", "count": 200})
        return post_all(self, rows)

    monkeypatch.setattr(Poster, "post_all", lookups_fail_from_now_on)
    emulator.admin.add_faults(
        {"service": "procore", "method": "POST", "path": r"/timesheets$", "kind": "lost_response", "count": 50})
    stsync.sync(pid, START, END, ok=False)
    monkeypatch.undo()
    assert ledger(status=LedgerStatus.unknown) or ledger(status=LedgerStatus.pending)
    emulator.admin.clear_faults()
    emulator.admin.reset_requests()
    stsync.sync(pid, START, END)
    assert ledger(status=LedgerStatus.unknown) == []
    assert_exactly_once(emulator, pid)
    # Everything was found by origin_id: no entry was posted a second time.
    assert write_calls(emulator.admin.requests()) == 0


def test_one_invalid_entry_in_a_chunk_of_100_fails_alone(stsync, emulator, monkeypatch) -> None:
    from worker.clients.procore import ProcoreClient

    pid = first_project(stsync)
    original = ProcoreClient.bulk_create_entries
    corrupted: list[int] = []

    def corrupt_one(self, entries):
        if not corrupted and len(entries) == 100:
            entries = [dict(e) for e in entries]
            entries[37]["cost_code_id"] = stsync.h["non_labor_cost_codes"][str(pid)][0]["cost_code_id"]
            corrupted.append(source_key_of(entries[37]))
        return original(self, entries)

    monkeypatch.setattr(ProcoreClient, "bulk_create_entries", corrupt_one)
    report = stsync.sync(pid, START, END, ok=False)
    assert corrupted, "the world must have at least 100 entries for one project"
    assert report["status"] == "completed_with_problems"
    assert "still failed: 1" in report["message"]
    monkeypatch.undo()
    # The next run of the window still says what is wrong, by name, and still exits non-zero.
    again = stsync.sync(pid, START, END, ok=False)
    assert again["status"] == "completed_with_problems" and "still failed: 1" in again["message"]
    assert again["report"]["posted"] == 0
    failed = ledger(status=LedgerStatus.failed)
    assert [r.source_key for r in failed] == corrupted
    assert failed[0].reason == "procore_rejected"
    assert "cost_code" in failed[0].detail
    assert report["report"]["failed"] == 1
    assert_exactly_once(emulator, pid)
    posted_keys = {source_key_of(e) for e in live_entries(emulator, pid)}
    assert corrupted[0] not in posted_keys


def test_edits_and_deletions_follow_until_approval(stsync, emulator) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    posted = sorted(ledger(status=LedgerStatus.posted), key=lambda r: r.id)
    edited, removed, approved = posted[0], posted[1], posted[2]
    emulator.admin.edit_clock_event(edited.clock_out_event_id,
                                    eventTime=int((edited.actual_end + timedelta(minutes=47)).timestamp()))
    emulator.admin.delete_clock_event(removed.clock_in_event_id)
    emulator.admin.approve_entry(approved.procore_entry_id)
    emulator.admin.edit_clock_event(approved.clock_out_event_id,
                                    eventTime=int((approved.actual_end + timedelta(minutes=31)).timestamp()))
    before = {e["id"]: e for e in emulator.admin.procore_entries()}

    result = stsync.sync(pid, START, END, ok=False)
    report = result["report"]
    assert report["updated"] >= 1 and report["deleted"] >= 1 and report["needs_review"] >= 1
    assert result["status"] == "completed_with_problems" and "still needs review: 1" in result["message"]

    after = {e["id"]: e for e in emulator.admin.procore_entries()}
    with session_scope() as s:
        e_row = s.get(LedgerEntry, edited.id)
        r_row = s.get(LedgerEntry, removed.id)
        a_row = s.get(LedgerEntry, approved.id)
        assert e_row.status == LedgerStatus.posted and e_row.hours > edited.hours
        assert r_row.status == LedgerStatus.deleted
        assert a_row.status == LedgerStatus.needs_review
    assert Decimal(str(after[edited.procore_entry_id]["hours"])) == e_row.hours
    assert after[removed.procore_entry_id]["deleted_at"]
    assert after[approved.procore_entry_id] == before[approved.procore_entry_id], "approved entry was touched"


def test_stored_clock_events_follow_servicetrade_and_unchanged_ones_are_never_rewritten(stsync, emulator) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    posted = sorted(ledger(status=LedgerStatus.posted), key=lambda r: r.id)
    edited, removed, moved = posted[0].clock_out_event_id, posted[1].clock_in_event_id, posted[2].clock_out_event_id
    first = stored_events()
    moved_at = int(first[moved].event_time.timestamp())
    emulator.admin.edit_clock_event(edited, eventTime=int((first[edited].event_time + timedelta(minutes=47)).timestamp()))
    emulator.admin.delete_clock_event(removed)
    emulator.admin.edit_clock_event(moved, eventTime=moved_at - 90 * 86400)  # out of every window read

    stsync.sync(pid, START, END)
    second = stored_events()
    assert second[edited].event_time == first[edited].event_time + timedelta(minutes=47)
    assert second[edited].changed_at > first[edited].changed_at and second[edited].deleted_at is None
    assert second[removed].deleted_at is not None and second[moved].deleted_at is not None
    untouched = [k for k in first if k not in (edited, removed, moved)]
    assert all(second[k].changed_at == first[k].changed_at == first[k].first_seen_at for k in untouched)
    assert all(second[k].deleted_at is None for k in untouched)

    emulator.admin.edit_clock_event(moved, eventTime=moved_at)  # back: stored, deleted, outside the range read
    stsync.sync(pid, START, END)
    third = stored_events()
    assert third[moved].deleted_at is None and third[moved].event_time == first[moved].event_time
    assert len(third) == len(first)
    assert_exactly_once(emulator, pid)


def stored_events() -> dict[int, ClockEvent]:
    with session_scope() as s:
        rows = {e.st_event_id: e for e in s.scalars(select(ClockEvent))}
        s.expunge_all()
    return rows


def test_deleting_an_approved_entrys_source_needs_review(stsync, emulator) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    row = sorted(ledger(status=LedgerStatus.posted), key=lambda r: r.id)[0]
    emulator.admin.approve_entry(row.procore_entry_id)
    emulator.admin.delete_clock_event(row.clock_in_event_id)
    assert stsync.sync(pid, START, END, ok=False)["status"] == "completed_with_problems"
    with session_scope() as s:
        assert s.get(LedgerEntry, row.id).status == LedgerStatus.needs_review
    assert not {e["id"]: e for e in emulator.admin.procore_entries()}[row.procore_entry_id].get("deleted_at")


def test_technician_without_employee_id_posts_once_the_id_is_set(stsync, emulator) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    tech = next(t for t in stsync.h["technicians"] if t["expect"] == "no_employee_id")
    skipped = [r for r in ledger(status=LedgerStatus.skipped)
               if r.st_user_id == tech["st_user_id"] and r.reason != "excluded_activity"]
    assert skipped and all(r.reason == "no_employee_id" for r in skipped)
    assert tech["name"] in skipped[0].detail
    # E-2001 is an office employee in the generated world whom no technician uses yet.
    emulator.admin.patch_user(tech["st_user_id"], externalIds={"procore": "E-2001"})
    stsync.sync(pid, START, END)
    now_rows = [r for r in ledger() if r.st_user_id == tech["st_user_id"] and r.source_key in
                {s.source_key for s in skipped}]
    assert any(r.status == LedgerStatus.posted for r in now_rows)
    assert_exactly_once(emulator, pid)


def test_pagination_with_a_server_page_smaller_than_the_clients(stsync, emulator) -> None:
    pid = first_project(stsync)
    emulator.admin.config(st_max_page_size=7, procore_max_per_page=5)
    report = stsync.sync(pid, START, END)["report"]
    emulator.admin.config(st_max_page_size=None, procore_max_per_page=None)
    full = stsync.json("ledger", pid)
    assert report["posted"] > 7
    assert len(full) >= report["posted"]
    assert_exactly_once(emulator, pid)


def test_manual_flow_posts_exactly_the_selected_events(stsync, emulator) -> None:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)  # no rules: scheduled runs would post nothing
    job_events = sorted(
        (e for e in emulator.admin.st_state()["clock_events"] if _job_project(emulator, e) == pid
         and e["activity"] == "onsite" and e["eventType"] == "clockIn"),
        key=lambda e: e["id"],
    )
    ok_users = {t["st_user_id"] for t in stsync.h["technicians"] if t["expect"] == "ok"}
    chosen = [e for e in job_events if e["user"]["id"] in ok_users][:3]
    code = stsync.labor(pid, 1 % len(stsync.h["labor_cost_codes"][str(pid)]))
    result = stsync.json("sync-events", pid, *sum((["--event", str(e["id"])] for e in chosen), []),
                         "--cost-code-id", code["cost_code_id"], "--line-item-type-id", code["line_item_type_id"],
                         "--start", START.isoformat(), "--end", END.isoformat())
    assert result["status"] == "succeeded"
    entries = live_entries(emulator, pid)
    posted = ledger(status=LedgerStatus.posted)
    assert {r.clock_in_event_id for r in posted} == {e["id"] for e in chosen}
    assert all(r.manual for r in posted)
    assert {(_cost_code(e), e["line_item_type_id"]) for e in entries} == {
        (code["cost_code_id"], code["line_item_type_id"])}
    # A scheduled-style sync with rules leaves the manual rows alone.
    stsync.add_default_rule(pid)
    stsync.sync(pid, START, END)
    with session_scope() as s:
        for row in posted:
            again = s.get(LedgerEntry, row.id)
            assert again.manual and again.cost_code_id == code["cost_code_id"]


def _cost_code(entry) -> int:
    cc = entry.get("cost_code")
    return int(cc["id"]) if isinstance(cc, dict) else int(entry.get("cost_code_id"))


def test_start_stop_project_gets_times_not_hours(stsync, emulator) -> None:
    pid = stsync.h["start_stop_project_ids"][0]
    stsync.link(pid)
    stsync.add_default_rule(pid)
    report = stsync.sync(pid, START, END)
    assert report["status"] == "succeeded", report
    rows = ledger(status=LedgerStatus.posted)
    assert rows and all("time_in" in r.payload and "hours" not in r.payload for r in rows)
    assert_exactly_once(emulator, pid)


def test_dry_run_changes_nothing(stsync, emulator) -> None:
    pid = first_project(stsync)
    emulator.admin.reset_requests()
    result = stsync.sync(pid, START, END, "--dry-run")
    assert result["report"]["dry_run"] is True and result["report"]["posted"] > 0
    assert write_calls(emulator.admin.requests()) == 0
    assert ledger() == []
    assert {"actual_start", "rounded_start", "hours", "action"} <= set(result["report"]["preview"][0])


def _reads(emulator, route_end: str) -> int:
    return sum(r["count"] for r in emulator.admin.requests()["by_route"]
               if r["service"] == "procore" and r["method"] == "GET" and r["route"].endswith(route_end))


def test_a_batch_of_projects_reads_company_settings_once_and_people_every_run(stsync, emulator) -> None:
    pids = stsync.h["project_ids"][:2]
    for pid in pids:
        stsync.link(pid)
        stsync.add_default_rule(pid)
    emulator.admin.reset_requests()
    for pid in pids:
        assert stsync.sync(pid, START, END)["status"] == "succeeded"
    assert _reads(emulator, "/company_configuration") == 1
    assert _reads(emulator, "/rounding_configuration") == 1
    assert _reads(emulator, "/line_item_types") == 1
    assert _reads(emulator, "/people") == 2  # Employee IDs fixed in Procore show in the very next run
    assert _reads(emulator, "/cost_codes") == 2  # per project


def test_company_settings_are_read_again_when_the_cache_is_off(stsync, emulator, monkeypatch) -> None:
    from worker.settings import reset_settings

    pid = first_project(stsync)
    before = stsync.sync(pid, START, END, "--dry-run")["report"]["preview"]
    assert any(row["rounded_start"][-1] == "5" for row in before if row["action"] == "create")  # nearest 15
    monkeypatch.setenv("PROCORE_COMPANY_CACHE_S", "0")
    reset_settings()
    emulator.admin.patch_company(stsync.h["procore_company_id"],
                                 rounding_configuration={"rule": "up", "time_increment": 10})
    emulator.admin.reset_requests()
    report = stsync.sync(pid, START, END, "--dry-run")
    assert _reads(emulator, "/rounding_configuration") == 1
    rounded = [row for row in report["report"]["preview"] if row["action"] == "create"]
    assert rounded and all(row["rounded_start"][-1] == "0" for row in rounded)


def test_company_reference_is_reused_within_its_age_and_read_again_after() -> None:
    from worker.sync.context import company_reference

    class Procore:
        company_id = 7
        api = type("Api", (), {"base_url": "http://procore.test"})()
        reads = 0

        def company_configuration(self):
            Procore.reads += 1
            return {"projects_timecard_in_out_enabled": []}

        def line_item_types(self):
            return [{"id": 1, "base_type": "labor"}]

        def rounding_configuration(self):
            return None

    now = [100.0]
    read = lambda: company_reference(Procore(), max_age_s=60, clock=lambda: now[0])  # noqa: E731
    first = read()
    now[0] += 59
    assert read() is first and Procore.reads == 1
    now[0] += 2
    assert read() is not first and Procore.reads == 2
    assert company_reference(Procore(), max_age_s=0).configuration and Procore.reads == 3


def test_a_one_day_sync_says_what_it_posted_from_the_look_back_and_why(stsync) -> None:
    pid = first_project(stsync)
    day = END - timedelta(days=2)  # a Friday of the world's punches
    printed = stsync("sync", pid, "--start", day.isoformat(), "--end", day.isoformat()).output
    assert f"are dated before {day}: the look-back re-checks the 14 days before the window" in printed
    earlier = [r for r in ledger(status=LedgerStatus.posted) if r.work_date < day]
    on_the_day = [r for r in ledger(status=LedgerStatus.posted) if r.work_date == day]
    assert earlier and on_the_day
    assert f"of which      {len(earlier)} entries" in printed
