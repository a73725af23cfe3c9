"""Webhooks end to end: the console served by its own process on 127.0.0.1, a real Celery worker on Redis (no beat:
no schedule runs), both hooks registered with the emulators, which deliver to it over HTTP."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import select

from emulators.world import generate_world
from worker.db import session_scope
from worker.enums import LedgerStatus, RunTrigger
from worker.models import ProjectLink, Schedule, SyncRun, WebhookDelivery
from worker.service import webhooks

from . import processes
from .helpers import assert_exactly_once, ledger, live_entries, source_key_of
from .stsync_env import Stsync, point_at_emulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BROKER_URL = "redis://127.0.0.1:6379/7"
T = TypeVar("T")


@pytest.fixture
def live(emulator: Any, db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A world whose punches end today, synced once; the console and a worker running; both hooks registered with
    the emulators, pointing at the console. Runs wait the default WEBHOOK_DEBOUNCE_S (20 s)."""
    today = datetime.now(UTC).date()
    world = generate_world(seed=5, projects=2, technicians=4, days=4, start=today - timedelta(days=3))
    emulator.admin.reset(world)
    emulator.admin.clear_faults()
    emulator.admin.config(webhook_backoff_scale=0.01, webhook_duplicates=True)
    point_at_emulator(monkeypatch, emulator)
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    stsync = Stsync(world, emulator)
    stsync.connect()
    pid = world["handles"]["project_ids"][0]
    stsync.link(pid)
    stsync.add_default_rule(pid)
    env = {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": BROKER_URL,
           "SERVICETRADE_API_URL": emulator.st_url, "PROCORE_API_URL": emulator.procore_url,
           "PROCORE_LOGIN_URL": emulator.procore_url, "LOG_FORMAT": "json"}
    port = processes.free_port()
    procs = [console(env, port), processes.worker(env)]
    procs[0].wait_for(r"Running on http://127\.0\.0\.1", 60)
    procs[1].wait_for(processes.WORKER_READY, 60)
    console_url = f"http://127.0.0.1:{port}"
    webhooks.register_servicetrade(console_url)
    webhooks.register_procore(console_url)
    stsync.sync(pid, today - timedelta(days=3), today)
    yield {"stsync": stsync, "pid": pid, "procs": procs, "zone": world["handles"]["project_zones"][str(pid)],
           "env": env, "port": port}
    for proc in procs:
        proc.stop()
    broker.flushdb()


def console(env: dict[str, str], port: int) -> processes.Proc:
    """The console's Flask app on werkzeug's server, in a process of its own (its own broker settings)."""
    code = ("from worker.web.app import create_app; "
            f"create_app().run(host='127.0.0.1', port={port}, threaded=True, use_reloader=False)")
    return processes.Proc("console", [sys.executable, "-c", code], env).start()


def wait(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stored_deliveries(source: str) -> list[WebhookDelivery]:
    with session_scope() as s:
        rows = list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.source == source)))
        s.expunge_all()
    return rows


def runs() -> list[SyncRun]:
    with session_scope() as s:
        rows = list(s.scalars(select(SyncRun).order_by(SyncRun.id)))
        s.expunge_all()
    return rows


def add_visit(live: dict[str, Any], emulator: Any) -> dict[str, Any]:
    """A technician with a valid Employee ID clocks in and out on the project's job (an hour, ending half an hour
    ago); ServiceTrade sends the two punches in one webhook message. Returns the clock-in."""
    stsync, pid = live["stsync"], live["pid"]
    tech = next(t["st_user_id"] for t in stsync.h["technicians"] if t["expect"] == "ok")
    with session_scope() as s:
        job_id = s.scalars(select(ProjectLink.st_job_id).where(ProjectLink.procore_project_id == pid)).one()
    end = int(time.time()) - 1800
    clock_in, _clock_out = emulator.admin.add_clock_events([
        {"job_id": job_id, "user_id": tech, "activity": "onsite", "eventType": kind, "eventTime": at}
        for kind, at in (("clockIn", end - 3600), ("clockOut", end))])
    return clock_in


def entry_of(emulator: Any, pid: int, clock_in_id: int) -> dict[str, Any] | None:
    return next((e for e in live_entries(emulator, pid)
                 if source_key_of(e).startswith(f"{clock_in_id}:")), None)


def test_a_clock_out_reaches_procore_within_two_minutes_without_any_schedule(live: dict[str, Any],
                                                                             emulator: Any) -> None:
    with session_scope() as s:
        assert s.scalars(select(Schedule)).all() == []
    before = len(runs())
    clock_in = add_visit(live, emulator)
    started = time.monotonic()
    entry = wait(lambda: entry_of(emulator, live["pid"], clock_in["id"]), 120, "the clock-out's entry in Procore")
    took = time.monotonic() - started
    webhook_runs = [r for r in runs()[before:] if r.trigger == RunTrigger.webhook]
    assert len(webhook_runs) == 1 and len(runs()) == before + 1, [(r.trigger, r.status) for r in runs()]
    local_day = datetime.fromtimestamp(clock_in["eventTime"], UTC).astimezone(ZoneInfo(live["zone"])).date()
    assert entry["date"] == local_day.isoformat()
    assert_exactly_once(emulator, live["pid"])
    # Every message came twice (webhook_duplicates): each is stored once.
    st = stored_deliveries("servicetrade")
    assert len(st) == len({d.message_id for d in st}) >= 1
    print(f"clock-out to Procore entry in {took:.1f} s")


def test_an_approval_in_procore_is_in_the_ledger_within_a_minute_and_our_own_writes_are_ignored(
        live: dict[str, Any], emulator: Any) -> None:
    posted = ledger(LedgerStatus.posted)
    row = posted[0]
    own = wait(lambda: len([d for d in stored_deliveries("procore") if d.outcome == "ignored"]) >= len(posted),
               60, "the deliveries about our own entries")
    assert own and all(r.approval_status in (None, "pending") for r in ledger(LedgerStatus.posted))
    emulator.admin.approve_entry(row.procore_entry_id)
    started = time.monotonic()
    wait(lambda: [r for r in ledger() if r.id == row.id and r.approval_status == "approved"], 60,
         "the approval in the ledger")
    took = time.monotonic() - started
    processed = [d for d in stored_deliveries("procore") if d.outcome == "processed"]
    assert len(processed) == 1 and f"ledger row {row.id}" in processed[0].reason
    ignored = Counter(d.reason.split(":")[0] for d in stored_deliveries("procore") if d.outcome == "ignored")
    assert ignored == {"our own write": len(posted)}
    print(f"approval to ledger in {took:.1f} s")


def test_with_deliveries_dropped_the_next_ordinary_run_still_makes_procore_exact(live: dict[str, Any],
                                                                                 emulator: Any) -> None:
    live["procs"][0].stop()  # the console is down: ServiceTrade tries three times, then drops the message
    emulator.admin.clear_webhook_deliveries()
    clock_in = add_visit(live, emulator)
    emulator.admin.wait_for_deliveries(1, outcome="dropped", timeout=30)
    time.sleep(2)
    assert entry_of(emulator, live["pid"], clock_in["id"]) is None
    assert [r for r in runs() if r.trigger == RunTrigger.webhook] == []
    today = datetime.now(UTC).astimezone(ZoneInfo(live["zone"])).date()
    live["stsync"].sync(live["pid"], today, today)
    assert entry_of(emulator, live["pid"], clock_in["id"]) is not None
    assert_exactly_once(emulator, live["pid"])


def test_a_burst_of_job_changes_on_two_worker_processes_makes_at_most_two_runs(live: dict[str, Any],
                                                                              emulator: Any) -> None:
    with session_scope() as s:
        job_id = s.scalars(select(ProjectLink.st_job_id).where(ProjectLink.procore_project_id == live["pid"])).one()
    before = len(runs())
    for n in range(200):  # each change is one message (sent twice), processed by whichever worker takes it
        emulator.admin.patch_job(job_id, description=f"site note {n}")

    def all_processed() -> list[WebhookDelivery] | None:
        stored = stored_deliveries("servicetrade")
        return stored if len(stored) >= 200 and {d.outcome for d in stored} == {"processed"} else None

    assert len(wait(all_processed, 120, "every delivery to be processed")) == 200
    made = runs()[before:]
    assert 1 <= len(made) <= 2 and {r.trigger for r in made} == {RunTrigger.webhook}
    print(f"200 job changes made {len(made)} run(s)")
    wait(lambda: all(r.finished_at for r in runs()[before:]), 120, "the webhook runs to finish")
    assert_exactly_once(emulator, live["pid"])
