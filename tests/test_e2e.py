"""End to end with real processes: a Celery worker, beat (one and two of them) and Flower, on Redis and
PostgreSQL, against the emulators."""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
import requests
from sqlalchemy import select

from emulators.world import generate_world
from worker.db import session_scope
from worker.enums import RunStatus, RunTrigger
from worker.models import SyncRun

from . import processes
from .stsync_env import Stsync, point_at_emulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BROKER_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def live(emulator, db_url, redis_url, monkeypatch, tmp_path):
    """A world whose punches end today, stsync connected and one project linked with a rule, and the environment
    the worker processes get."""
    today = datetime.now(UTC).date()
    world = generate_world(seed=3, projects=2, technicians=4, days=4, start=today - timedelta(days=3))
    emulator.admin.reset(world)
    emulator.admin.clear_faults()
    point_at_emulator(monkeypatch, emulator)
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    stsync = Stsync(world, emulator)
    stsync.connect()
    pid = world["handles"]["project_ids"][0]
    stsync.link(pid)
    stsync.add_default_rule(pid)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": BROKER_URL,
        "SERVICETRADE_API_URL": emulator.st_url,
        "PROCORE_API_URL": emulator.procore_url,
        "PROCORE_LOGIN_URL": emulator.procore_url,
        "DISPATCH_INTERVAL_S": "2",
        "LOG_FORMAT": "json",
    }
    started: list[processes.Proc] = []
    yield {"stsync": stsync, "pid": pid, "env": env, "procs": started, "tmp": tmp_path, "broker": broker}
    for proc in started:
        proc.stop()
    broker.flushdb()


def _runs() -> list[SyncRun]:
    with session_scope() as s:
        rows = s.scalars(select(SyncRun).order_by(SyncRun.id)).all()
        s.expunge_all()
    return rows


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _entries(emulator, pid: int) -> list[dict]:
    return [e for e in emulator.admin.procore_entries()
            if not e.get("deleted_at") and int((e.get("project") or {}).get("id", e.get("project_id"))) == pid]


def _due_next_minute(tz_name: str) -> str:
    local = datetime.now(UTC).astimezone(ZoneInfo(tz_name)) + timedelta(minutes=1)
    return local.strftime("%H:%M")


@pytest.mark.parametrize("beats", [1, 2])
def test_nightly_schedule_due_next_minute_runs_exactly_once(live, emulator, beats: int) -> None:
    stsync, pid, env = live["stsync"], live["pid"], live["env"]
    tz = stsync.json("project", "show", pid)["time_zone"]
    stsync("schedule", "set", pid, "--nightly", _due_next_minute(tz))
    live["procs"].append(processes.worker(env))
    for n in range(beats):
        live["procs"].append(processes.beat(env, live["tmp"] / f"beat-{n}.db"))
    for proc in live["procs"]:
        proc.wait_for(processes.WORKER_READY if "worker" in proc.name else processes.BEAT_READY, 60)

    done = _wait(lambda: [r for r in _runs() if r.trigger == RunTrigger.schedule
                          and r.status == RunStatus.succeeded], 150, "the scheduled run to finish")
    time.sleep(6)  # a few more dispatcher ticks: none of them may add a second run
    scheduled = [r for r in _runs() if r.trigger == RunTrigger.schedule]
    assert len(scheduled) == 1, [(r.run_key, r.status) for r in scheduled]
    assert done[0].counts["posted"] > 0
    entries = _entries(emulator, pid)
    assert len(entries) == done[0].counts["posted"]
    assert max(Counter(e["origin_id"] for e in entries).values()) == 1


def test_flower_triggers_a_sync_with_basic_auth_and_reports_bad_arguments(live, emulator) -> None:
    env, pid = live["env"], live["pid"]
    port = processes.free_port()
    live["procs"].append(processes.worker(env))
    fl = processes.flower(env, port, "ops:flower-pass-123")
    live["procs"].append(fl)
    live["procs"][0].wait_for(processes.WORKER_READY, 60)
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: _up(base), 60, "Flower to answer")
    url = f"{base}/api/task/async-apply/tasks.sync.sync_project"
    today = datetime.now(UTC).date()
    body = {"kwargs": {"project_id": pid, "start": str(today - timedelta(days=3)), "end": str(today)}}

    refused = requests.post(url, json=body, timeout=10)
    assert refused.status_code == 401

    answer = requests.post(url, json=body, auth=("ops", "flower-pass-123"), timeout=10)
    assert answer.status_code == 200, answer.text
    run = _wait(lambda: [r for r in _runs() if r.status == RunStatus.succeeded], 90, "the Flower-triggered run")
    assert run[0].trigger == RunTrigger.task and run[0].counts["posted"] > 0
    assert len(_entries(emulator, pid)) == run[0].counts["posted"]

    bad = requests.post(url, json={"kwargs": {"project_id": "not-a-number"}}, auth=("ops", "flower-pass-123"),
                        timeout=10)
    assert bad.status_code == 200
    task_id = bad.json()["task-id"]

    def failure() -> dict | None:
        info = requests.get(f"{base}/api/task/info/{task_id}", auth=("ops", "flower-pass-123"), timeout=10)
        if info.status_code == 200 and info.json().get("state") == "FAILURE":
            return info.json()
        return None

    info = _wait(failure, 60, "Flower to show the failed task")
    assert "project_id must be an integer id" in info["exception"]


def _up(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthcheck", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_the_same_task_delivered_twice_makes_one_runs_worth_of_entries(live, emulator) -> None:
    from tasks.sync import sync_project

    env, pid = live["env"], live["pid"]
    today = datetime.now(UTC).date()
    kwargs = {"project_id": pid, "start": str(today - timedelta(days=3)), "end": str(today)}
    # The same message id twice, as Redis hands an unacknowledged message out again after a worker is lost.
    for _ in range(2):
        processes.publish(sync_project, BROKER_URL, kwargs=kwargs, task_id="redelivered-0001", queue="sync")
    live["procs"].append(processes.worker(env, concurrency=2))
    live["procs"][0].wait_for(processes.WORKER_READY, 60)
    _wait(lambda: len(live["procs"][0].output().split("succeeded in")) >= 3, 90, "both deliveries to finish")
    runs = _runs()
    assert len(runs) == 1 and runs[0].status == RunStatus.succeeded
    entries = _entries(emulator, pid)
    assert len(entries) == runs[0].counts["posted"] > 0
    assert max(Counter(e["origin_id"] for e in entries).values()) == 1
