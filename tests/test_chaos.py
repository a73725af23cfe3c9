"""Chaos: transient faults, lost responses, project lock connections terminated under running syncs, and a worker
killed with SIGKILL at random moments, several times. Afterwards Procore must hold exactly the expected entries:
0 duplicates, 0 missing, 0 wrong."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from datetime import date
from decimal import Decimal

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import select

from emulators.world import generate_world
from worker.db import LOCK_NAMESPACE, session_scope
from worker.enums import LedgerStatus, RunStatus
from worker.models import Connection, LedgerEntry, SyncRun
from worker.sync.context import resolve_technicians
from worker.sync.events import punch_from_event
from worker.sync.plan import ProjectContext, plan_rows
from worker.sync.types import CostRule, RoundingRule

from . import processes
from .stsync_env import Stsync, point_at_emulator

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
BROKER_URL = "redis://127.0.0.1:6379/12"
START, END = date(2026, 3, 2), date(2026, 3, 15)
KILLS = 5

FAULTS = [
    # 10 % transient faults across both APIs, 2 % lost responses on Procore writes.
    {"service": "any", "kind": "429", "probability": 0.03, "retry_after": 1},
    {"service": "any", "kind": "503", "probability": 0.02, "retry_after": 1},
    {"service": "any", "kind": "500", "probability": 0.02},
    {"service": "any", "kind": "502", "probability": 0.02},
    {"service": "any", "kind": "timeout", "probability": 0.01, "latency_ms": 300},
    {"service": "procore", "method": "POST", "kind": "lost_response", "probability": 0.02},
    {"service": "procore", "method": "PATCH", "kind": "lost_response", "probability": 0.02},
]


def expected_entries(world: dict, stsync: Stsync) -> Counter:
    """What Procore must end up holding, computed from the world alone with the pure planner."""
    h = world["handles"]
    st, pc = world["servicetrade"], world["procore"]
    techs = {t.st_user_id: t.view() for t in resolve_technicians(
        [u for u in st["users"] if u.get("isTech")], pc["companies"][0]["people"])}
    company = pc["companies"][0]
    rounding = company.get("rounding_configuration")
    expected: Counter = Counter()
    for pid in h["project_ids"]:
        project = next(p for p in pc["projects"] if p["id"] == pid)
        code = stsync.labor(pid)
        rule = CostRule(id=1, priority=1, activity=None, st_user_id=None, weekdays=None, start_window=None,
                        cost_code_id=code["cost_code_id"], line_item_type_id=code["line_item_type_id"],
                        timecard_time_type_id=None, billable=False, description=None)
        from zoneinfo import ZoneInfo

        ctx = ProjectContext(
            procore_project_id=pid, tz=ZoneInfo(project["tz_name"]),
            start_stop=pid in company.get("projects_timecard_in_out_enabled", []),
            rounding=RoundingRule(rounding["rule"], rounding["time_increment"]) if rounding else None,
            split_mode="midnight", labor_cost_code_ids=frozenset({code["cost_code_id"]}),
            labor_line_item_type_ids=frozenset({code["line_item_type_id"]}), timesheets_active=False)
        job_events = [{"id": n + 1, "eventTime": e["eventTime"], "eventType": e["eventType"],
                       "activity": e["activity"], "user": {"id": e["user_id"], "name": str(e["user_id"])},
                       "job": {"id": 1}} for n, e in enumerate(_plan_events(world, pid))]
        punches = [punch_from_event(e) for e in job_events]
        for row in plan_rows(punches, ctx, [rule], techs):
            if row.payload and START <= row.work_date <= END:
                expected[(pid, row.party_id, row.work_date.isoformat(), str(row.hours))] += 1
    return expected


def _plan_events(world: dict, pid: int) -> list[dict]:
    return world["servicetrade"]["clock_event_plans"][str(pid)]


def actual_entries(emulator) -> tuple[Counter, Counter]:
    live = [e for e in emulator.admin.procore_entries() if not e.get("deleted_at")]
    by_origin = Counter(e["origin_data"].split("|")[1] for e in live)  # the source key: an entry's identity
    got: Counter = Counter()
    for e in live:
        pid = int((e.get("project") or {}).get("id", e.get("project_id")))
        party = int((e.get("party") or {}).get("id", e.get("party_id")))
        got[(pid, party, e["date"], str(Decimal(str(e["hours"])).quantize(Decimal("0.01"))))] += 1
    return got, by_origin


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_chaos_leaves_exactly_the_expected_entries(seed, emulator, db_url, redis_url, monkeypatch, tmp_path):
    rng = random.Random(seed)
    world = generate_world(seed=seed, projects=5, technicians=14, days=14, start=START)
    emulator.admin.reset(world)
    emulator.admin.clear_faults()
    point_at_emulator(monkeypatch, emulator)
    stsync = Stsync(world, emulator)
    stsync.connect()
    for pid in world["handles"]["project_ids"]:
        stsync.link(pid)
        stsync.add_default_rule(pid)
    expected = expected_entries(world, stsync)
    assert sum(expected.values()) >= 2000, f"the world must make at least 2,000 entries, made {sum(expected.values())}"

    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    env = {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": BROKER_URL, "LOG_FORMAT": "json",
           "SERVICETRADE_API_URL": emulator.st_url, "PROCORE_API_URL": emulator.procore_url,
           "PROCORE_LOGIN_URL": emulator.procore_url, "HTTP_TIMEOUT_S": "2"}
    emulator.admin.add_faults(*[dict(f, seed=seed + i) for i, f in enumerate(FAULTS)])
    # Some latency per call makes a sync last seconds, so that the kills land in the middle of the work.
    emulator.admin.config(latency_ms=15)
    from tasks.sync import sync_project

    logs: list[str] = []

    def enqueue_all() -> None:
        for pid in world["handles"]["project_ids"]:
            processes.publish(sync_project, BROKER_URL, queue="sync",
                              kwargs={"project_id": pid, "start": str(START), "end": str(END)})

    kills = interrupted = locks_killed = 0
    while kills < KILLS:
        worker = processes.worker(env, name=f"chaos{kills}", concurrency=2)
        worker.wait_for(processes.WORKER_READY, 60)
        enqueue_all()
        time.sleep(rng.uniform(0.5, 3.0))
        locks_killed += _terminate_lock_backends(db_url)  # a database restart, failover or pooler under the syncs
        time.sleep(rng.uniform(0.2, 1.5))
        worker.kill()
        kills += 1
        interrupted += _count_status(RunStatus.running)
        logs.append(worker.output())
        broker.flushdb()  # the killed worker's messages: the next round enqueues fresh ones, as beat would

    # Keep the faults on and let clean rounds finish the work.
    worker = processes.worker(env, name="chaos-final", concurrency=2)
    worker.wait_for(processes.WORKER_READY, 60)
    try:
        for _round in range(8):
            before = _finished_runs()
            enqueue_all()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and _finished_runs() - before < len(world["handles"]["project_ids"]):
                time.sleep(0.5)
            if _settled():
                break
        else:
            pytest.fail(f"the ledger did not settle: {_open_rows()} rows still pending/unknown; last runs: {_last_runs()}")
    finally:
        worker.stop()
        logs.append(worker.output())
        emulator.admin.clear_faults()
        emulator.admin.config(latency_ms=0)

    got, by_origin = actual_entries(emulator)
    duplicates = sum(n - 1 for n in by_origin.values() if n > 1)
    missing = expected - got
    wrong = got - expected
    counts = {"seed": seed, "expected": sum(expected.values()), "actual": sum(got.values()),
              "duplicates": duplicates, "missing": sum(missing.values()), "wrong": sum(wrong.values()),
              "kills": kills, "runs_cut_by_kills": interrupted, "lock_connections_killed": locks_killed,
              "requests": emulator.admin.requests()["total"]}
    print("chaos:", json.dumps(counts))
    assert (duplicates, sum(missing.values()), sum(wrong.values())) == (0, 0, 0), counts
    assert interrupted >= 1, "no kill landed while a sync was running: the test proved nothing about crashes"
    assert locks_killed >= 1, "no lock connection was terminated under a running sync"

    # No configured secret in any log line of the whole run.
    with session_scope() as s:
        conn = s.scalars(select(Connection)).one()
        secrets = [conn.procore_client_secret, conn.procore_access_token, conn.procore_refresh_token,
                   conn.st_password, conn.st_session_token, world["handles"]["st_password"],
                   world["handles"]["procore_client_secret"]]
    everything = "\n".join(logs)
    assert everything, "the workers logged nothing"
    for secret in filter(None, secrets):
        assert secret not in everything


def _count_status(status: RunStatus) -> int:
    with session_scope() as s:
        rows = s.scalars(select(SyncRun).where(SyncRun.status == status)).all()
        for row in rows:  # a killed worker's run: leave it recognisably stranded, as the dispatcher would see it
            row.status = RunStatus.failed
            row.error = "killed by the chaos test"
        return len(rows)


def _terminate_lock_backends(db_url: str) -> int:
    """Terminate every backend holding a project lock: their runs must stop before their next POST."""
    engine = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        killed = conn.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns"
            " AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"ns": LOCK_NAMESPACE}).scalar() or 0
    engine.dispose()
    return int(killed)


def _finished_runs() -> int:
    with session_scope() as s:
        return len(s.scalars(select(SyncRun.id).where(SyncRun.status.in_(
            [RunStatus.succeeded, RunStatus.completed_with_problems, RunStatus.failed, RunStatus.deferred]))).all())


def _open_rows() -> int:
    with session_scope() as s:
        return len(s.scalars(select(LedgerEntry.id).where(
            LedgerEntry.status.in_([LedgerStatus.pending, LedgerStatus.unknown]))).all())


def _last_runs() -> list[tuple[str, str | None]]:
    with session_scope() as s:
        return [(r.status.value, r.error) for r in s.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(5))]


def _settled() -> bool:
    with session_scope() as s:
        last = s.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(5)).all()
    return _open_rows() == 0 and bool(last) and all(r.status == RunStatus.succeeded for r in last)

