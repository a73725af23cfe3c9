"""Proof under faults: the shared rate budget, token refresh under a lock, bad input of every kind, races, and
secrets kept out of logs and the database."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.models import Connection, LedgerEntry, SyncRun

from .helpers import END, START, assert_exactly_once, first_project, ledger
from .stsync_env import write_calls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------ rate budget


@pytest.mark.slow
def test_two_workers_under_a_small_limit_rarely_meet_a_429(stsync, emulator, db_url, redis_url) -> None:
    pids = stsync.h["project_ids"][:2]
    for pid in pids:
        stsync.link(pid)
        stsync.add_default_rule(pid)
    # 25 requests per 10 s, time-scaled by 5 so the test takes seconds; small pages make many calls.
    emulator.admin.config(procore_rate_limit={"hourly": 100000, "spike": 25, "spike_window_s": 10, "time_scale": 5,
                                              "retry_after_on_429": False},
                          procore_max_per_page=1)
    emulator.admin.reset_requests()
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "SERVICETRADE_API_URL": emulator.st_url,
           "PROCORE_API_URL": emulator.procore_url, "PROCORE_LOGIN_URL": emulator.procore_url}
    # Each worker syncs its project three times (first run, then re-runs that read everything again).
    command = " && ".join([f"{sys.executable} -m worker.cli sync {{pid}} --start {START} --end {END} --json"] * 3)
    procs = [subprocess.Popen(["bash", "-c", command.format(pid=pid)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for pid in pids]
    outputs = [p.communicate(timeout=240) for p in procs]
    emulator.admin.config(procore_rate_limit=None, procore_max_per_page=None)
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    counts = emulator.admin.requests()["by_route"]
    procore = [r for r in counts if r["service"] == "procore" and r["route"].startswith("/rest")]
    total = sum(r["count"] for r in procore)
    limited = sum(r["count"] for r in procore if r["status"] == 429)
    print(f"rate budget: {limited} of {total} Procore calls answered 429 ({100 * limited / total:.2f} %)")
    assert total >= 100
    assert limited / total < 0.01
    for pid in pids:
        assert_exactly_once(emulator, pid)


# ------------------------------------------------------------------------------------------ tokens


def test_two_workers_meeting_an_expired_token_refresh_once(stsync, emulator) -> None:
    from worker.connections import get_connection, procore_client

    with session_scope() as s:
        conn = get_connection(s)
        clients = [procore_client(conn) for _ in range(2)]
    clients[0].company_configuration()
    emulator.admin.expire_tokens()
    emulator.admin.reset_requests()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def call(client) -> None:
        barrier.wait()
        try:
            client.company_configuration()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    token_calls = sum(r["count"] for r in emulator.admin.requests()["by_route"] if r["route"].startswith("/oauth"))
    assert token_calls == 1


def test_a_lost_answer_on_the_refresh_call_needs_reauthorisation_not_a_loop(stsync, emulator) -> None:
    h = stsync.h
    stsync("connect", "procore", "--company-id", h["procore_company_id"], "--client-id", h["procore_client_id"],
           "--client-secret", h["procore_client_secret"], "--refresh-token", h["procore_refresh_token"])
    pid = first_project(stsync)
    emulator.admin.expire_tokens()
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": r"^/oauth/token$",
                               "kind": "lost_response", "count": 1})
    emulator.admin.reset_requests()
    result = stsync.json("sync", pid, "--start", START.isoformat(), "--end", END.isoformat(), ok=False)
    assert result["status"] == "failed"
    assert "stsync connect procore" in result["message"]
    token_calls = sum(r["count"] for r in emulator.admin.requests()["by_route"] if r["route"].startswith("/oauth"))
    assert token_calls <= 2
    with session_scope() as s:
        conn = s.scalars(select(Connection)).one()
        assert conn.procore_needs_reauth
    again = stsync("sync", pid, "--start", START.isoformat(), "--end", END.isoformat(), ok=False)
    assert again.exit_code == 1 and "connect procore" in again.output


# ------------------------------------------------------------------------------------------ bad input


def test_malformed_clock_events_are_named_and_the_rest_of_the_batch_posts(stsync, emulator, monkeypatch) -> None:
    from worker.clients.servicetrade import ServiceTradeClient

    pid = first_project(stsync)
    original = ServiceTradeClient.clock_events
    bad = [
        {"id": 9000000000000001, "eventTime": "1772460000", "eventType": "clockIn", "activity": "onsite",
         "user": {"id": 1, "name": "X"}, "job": {"id": 1}},
        {"id": 9000000000000002, "eventTime": 1772460000000, "eventType": "clockIn", "activity": "onsite",
         "user": {"id": 1, "name": "X"}, "job": {"id": 1}},
        {"id": 9000000000000003, "eventTime": 1772460000, "activity": "onsite", "user": {"id": 1, "name": "X"},
         "job": {"id": 1}},
        {"id": 9000000000000004, "eventTime": 1772460000, "eventType": "clockIn", "activity": "lunch",
         "user": {"id": 1, "name": "X"}, "job": {"id": 1}},
        {"eventTime": 1772460000, "eventType": "clockIn", "activity": "onsite"},
    ]

    def with_garbage(self, *args, **kwargs):
        events = list(original(self, *args, **kwargs))
        yield from events[:5]
        yield from bad
        yield from events[5:]
        yield from events[:5]  # a page that repeats

    monkeypatch.setattr(ServiceTradeClient, "clock_events", with_garbage)
    result = stsync.sync(pid, START, END, ok=False)
    assert result["status"] == "completed_with_problems" and "malformed clock event" in result["message"]
    report = result["report"]
    assert report["posted"] > 0
    assert report["malformed_events"] == 5
    problems = report["malformed"]
    assert "clock event 9000000000000001: eventTime must be an integer, got str '1772460000'" in problems
    assert any(p.startswith("clock event 9000000000000002: eventTime 1772460000000 looks like milliseconds")
               for p in problems)
    assert "clock event 9000000000000003: eventType is missing" in problems
    assert any(p.startswith("clock event 9000000000000004: activity 'lunch'") for p in problems)
    assert any(p.startswith("a clock event without an id") for p in problems)
    assert_exactly_once(emulator, pid)


@pytest.mark.parametrize("kind", ["empty_body", "html_502"])
def test_proxy_garbage_from_procore_fails_the_run_with_a_named_error_then_recovers(stsync, emulator, kind) -> None:
    pid = first_project(stsync)
    emulator.admin.add_faults({"service": "procore", "method": "GET", "path": r"/cost_codes$", "kind": kind,
                               "count": 20})
    failed = stsync.json("sync", pid, "--start", START.isoformat(), "--end", END.isoformat(), ok=False)
    assert failed["status"] == "failed"
    assert "cost_codes" in failed["message"]
    emulator.admin.clear_faults()
    assert stsync.sync(pid, START, END)["status"] == "succeeded"
    assert_exactly_once(emulator, pid)


def test_a_422_without_per_index_detail_is_split_until_the_bad_entry_stands_alone(stsync, emulator, monkeypatch) -> None:
    from worker.clients.errors import BulkValidationFailed
    from worker.clients.procore import ProcoreClient

    pid = first_project(stsync)
    original = ProcoreClient.bulk_create_entries
    poison: list[int] = []

    def odd_422(self, entries):
        if not poison:
            poison.append(entries[len(entries) // 3]["origin_data"])
        if any(e["origin_data"] == poison[0] for e in entries):
            raise BulkValidationFailed(
                service="procore", method="POST", endpoint="/rest/v1.0/companies/{cid}/timesheets", status=422,
                message="Unprocessable: something is wrong", request_id=None, details={"weird": True},
                index_errors={},
            )
        return original(self, entries)

    monkeypatch.setattr(ProcoreClient, "bulk_create_entries", odd_422)
    report = stsync.sync(pid, START, END, ok=False)["report"]
    failed = ledger(status=LedgerStatus.failed)
    assert [f"stsync:1|{r.source_key}|{r.content_hash}" for r in failed] == poison
    assert "something is wrong" in failed[0].detail
    assert report["failed"] == 1 and report["posted"] > 0
    assert_exactly_once(emulator, pid)


def test_task_arguments_of_the_wrong_type_fail_at_once_naming_the_argument() -> None:
    from tasks.sync import run, sync_payroll_period, sync_project, sync_selected
    from worker.inputs import InvalidArgument

    cases = [
        (sync_project, {"project_id": "abc"}, "project_id must be an integer id"),
        (sync_project, {"project_id": 5, "start": "03/01/2026"}, "start must be a date as YYYY-MM-DD"),
        (sync_project, {"project_id": 5, "dry_run": "maybe"}, "dry_run must be true or false"),
        (sync_payroll_period, {"project_id": 5, "period_start": 20260301}, "period_start must be a date"),
        (sync_selected, {"project_id": 5, "clock_event_ids": "1,2", "cost_code_id": 1, "line_item_type_id": 1},
         "clock_event_ids must be a non-empty list"),
        (sync_selected, {"project_id": 5, "clock_event_ids": [1, "x"], "cost_code_id": 1, "line_item_type_id": 1},
         "clock_event_ids[1] must be an integer id"),
        (run, {"run_id": None}, "run_id must be an integer id"),
    ]
    for task, kwargs, message in cases:
        with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
            task.run(**kwargs)


# ------------------------------------------------------------------------------------------ races


def test_the_same_project_synced_by_two_workers_at_once_makes_one_set(stsync, emulator) -> None:
    from worker.sync.runner import execute_run

    pid = first_project(stsync)
    from schedules.periods import Period
    from worker.models import ProjectLink, RunTrigger
    from worker.sync.runner import create_run

    with session_scope() as s:
        link = s.scalars(select(ProjectLink)).one()
        ids = [create_run(s, link, trigger=RunTrigger.task, window=Period(START, END), run_key=f"race-{n}").id
               for n in range(2)]
    outcomes: list = []
    threads = [threading.Thread(target=lambda i=i: outcomes.append(execute_run(i))) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    statuses = sorted(o.status.value for o in outcomes)
    # One ran; the other found the project locked and was deferred for a minute (or ran after it, posting nothing).
    assert statuses in (["deferred", "succeeded"], ["succeeded", "succeeded"])
    assert_exactly_once(emulator, pid)
    with session_scope() as s:
        assert len(s.scalars(select(SyncRun)).all()) == 2


def test_two_dispatchers_at_once_make_one_run_per_due_schedule(stsync, emulator) -> None:
    from datetime import timedelta

    from worker.dispatch import dispatch_due
    from worker.models import Schedule

    pid = first_project(stsync)
    stsync("schedule", "set", pid, "--nightly", "23:00")
    with session_scope() as s:
        sched = s.scalars(select(Schedule)).one()
        sched.next_run_at = datetime.now(UTC) - timedelta(minutes=1)
    results: list[list[int]] = []
    barrier = threading.Barrier(2)

    def tick() -> None:
        barrier.wait()
        results.append(dispatch_due(datetime.now(UTC)))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(len(r) for r in results) == [0, 1]
    with session_scope() as s:
        assert len(s.scalars(select(SyncRun)).all()) == 1
        assert s.scalars(select(Schedule)).one().next_run_at > datetime.now(UTC)
    # The same tick again (a redelivered dispatch message) adds nothing.
    assert dispatch_due(datetime.now(UTC)) == []


# ------------------------------------------------------------------------------------------ secrets


def test_a_command_with_secrets_in_its_arguments_and_an_error_path_logs_none(stsync, emulator) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    from worker.logging import configure_logging

    configure_logging("json", "DEBUG", force=True)
    formatter = next(h for h in logging.getLogger().handlers if getattr(h, "_stsync", False)).formatter
    handler.setFormatter(formatter)
    logging.getLogger().addHandler(handler)
    try:
        wrong = "definitely-wrong-secret-0xBEEF"
        result = stsync("connect", "procore", "--company-id", stsync.h["procore_company_id"], "--client-id",
                        stsync.h["procore_client_id"], "--client-secret", wrong, ok=False)
        assert result.exit_code == 1
        st_wrong = "st-wrong-password-0xCAFE"
        stsync("connect", "servicetrade", "--username", stsync.h["st_username"], "--password", st_wrong, ok=False)
        pid = first_project(stsync)
        stsync.sync(pid, START, END)
    finally:
        logging.getLogger().removeHandler(handler)
    everything = stream.getvalue() + result.output
    assert "http.call" in everything  # the capture really saw the outbound calls
    with session_scope() as s:
        conn = s.scalars(select(Connection)).one()
        secrets = [wrong, st_wrong, stsync.h["procore_client_secret"], stsync.h["st_password"],
                   conn.procore_access_token, conn.st_session_token]
    for secret in filter(None, secrets):
        assert secret not in everything


def test_rerun_writes_nothing_even_with_transient_faults(stsync, emulator) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    emulator.admin.add_faults({"service": "any", "kind": "503", "probability": 0.2, "retry_after": 1, "seed": 4},
                              {"service": "any", "kind": "429", "probability": 0.1, "seed": 5})
    emulator.admin.reset_requests()
    stsync.sync(pid, START, END)
    assert write_calls(emulator.admin.requests()) == 0
    assert_exactly_once(emulator, pid)
    assert ledger(status=LedgerStatus.unknown) == []
    with session_scope() as s:
        assert s.scalars(select(LedgerEntry).where(LedgerEntry.status == LedgerStatus.pending)).all() == []


def test_two_runs_storing_the_same_new_technicians_at_once_do_not_collide(stsync) -> None:
    from worker.models import Technician
    from worker.store.technicians import store_technicians
    from worker.sync.context import ResolvedTechnician

    with session_scope() as s:
        conn_id = s.scalars(select(Connection.id)).one()
    techs = [ResolvedTechnician(9_000_000_000_000_000 + n, f"Tech {n}", f"E-{n}", None, "invalid_employee_id",
                                "x") for n in range(50)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def store() -> None:
        barrier.wait()
        try:
            with session_scope() as s:
                store_technicians(s, conn_id, techs, datetime.now(UTC))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=store) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with session_scope() as s:
        assert len(s.scalars(select(Technician).where(Technician.st_user_id >= 9_000_000_000_000_000)).all()) == 50


def test_one_bad_upstream_record_never_fails_a_run(stsync, emulator) -> None:
    """A technician named with a NUL byte and 400 characters, a Procore person with a null id and one with text
    for an id: cleaned, cut or passed over with a warning; the run posts."""
    from worker.models import Technician
    from worker.sync.context import resolve_technicians

    tech = next(t for t in stsync.h["technicians"] if t["expect"] == "ok")
    emulator.admin.patch_user(tech["st_user_id"], firstName="Ana\x00" + "x" * 400, lastName="Bad",
                              email="a@example.com", status="active", timezone="America/New_York", isTech=True,
                              externalIds={"procore": tech["employee_id"]})
    pid = first_project(stsync)
    result = stsync.sync(pid, START, END, ok=False)
    assert result["report"]["posted"] > 0
    with session_scope() as s:
        stored = s.scalars(select(Technician).where(Technician.st_user_id == tech["st_user_id"])).one()
        assert "\x00" not in stored.name and len(stored.name) <= 300

    people = [{"id": None, "employee_id": "E-1", "is_employee": True},
              {"id": "abc", "employee_id": "E-2", "is_employee": True},
              {"id": 7, "employee_id": "E-3", "is_employee": True, "first_name": "Ok", "last_name": "Person"}]
    users = [{"id": "x", "name": "No id"}, {"id": 5, "name": "Fine", "externalIds": {"procore": "E-3"}}]
    resolved = resolve_technicians(users, people)
    assert [(t.st_user_id, t.party_id) for t in resolved] == [(5, 7)]
