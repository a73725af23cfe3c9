"""Exactly once even when the lock is lost (issue 12): a run proves its right to post at each POST, a row claimed by
a run that may still be sending is never sent by another, and a run whose worker died is found within minutes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import select, update

from schedules.periods import Period
from worker.db import LOCK_NAMESPACE, session_scope
from worker.enums import LedgerStatus, RunStatus, RunTrigger
from worker.models import ProjectLink, SyncRun
from worker.store.sync_runs import new_run
from worker.sync.runner import execute_run

from .helpers import END, START, assert_exactly_once, first_project, ledger, live_entries, source_key_of
from .stsync_env import write_calls


def _new_run(key: str) -> int:
    with session_scope() as s:
        link = s.scalars(select(ProjectLink)).one()
        run = new_run(s, link, trigger=RunTrigger.task, window=Period(START, END), now=datetime.now(UTC),
                      run_key=key)
        return run.id


def _lock_backend(db_url: str, link_id: int) -> int | None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        pid = conn.execute(sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns AND objid = :id AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"ns": LOCK_NAMESPACE, "id": link_id}).scalar()
    engine.dispose()
    return pid


def _terminate(db_url: str, pid: int) -> None:
    engine = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    engine.dispose()


def _wait_for(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_run_that_lost_its_lock_mid_post_never_duplicates_and_nothing_goes_missing(stsync, emulator, db_url,
                                                                                      monkeypatch) -> None:
    from worker.settings import reset_settings

    monkeypatch.setenv("PROCORE_POST_CONCURRENCY", "1")  # one chunk in flight: the others wait, claimed, unsent
    reset_settings()
    pid = first_project(stsync)
    with session_scope() as s:
        link_id = s.scalars(select(ProjectLink.id)).one()
    # Run A's first bulk POST is slow: while it waits, the backend holding A's project lock is terminated (a
    # PostgreSQL restart, a failover, an idle timeout or a pooler do the same).
    emulator.admin.add_faults({"service": "procore", "method": "POST", "path": r"/timesheets$", "kind": "latency",
                               "latency_ms": 3000, "count": 1})
    run_a, run_b = _new_run("lost-lock-a"), _new_run("lost-lock-b")
    outcome: dict = {}
    a = threading.Thread(target=lambda: outcome.update(a=execute_run(run_a)))
    a.start()
    _wait_for(lambda: any(r.status == LedgerStatus.pending for r in ledger()))
    _wait_for(lambda: _lock_backend(db_url, link_id) is not None)
    _terminate(db_url, _lock_backend(db_url, link_id))
    _wait_for(lambda: _lock_backend(db_url, link_id) is None)  # the backend is gone, and its lock with it

    # Run B of the same window takes the lock while A's POST is still in flight: it must not send A's rows.
    first_b = execute_run(run_b)
    assert first_b.status == RunStatus.deferred and "may still be sending" in (first_b.message or "")
    a.join(60)
    assert outcome["a"].status == RunStatus.failed and "lost its project lock" in outcome["a"].message
    keys = [source_key_of(e) for e in live_entries(emulator, pid)]
    assert keys and len(keys) == len(set(keys)), "an entry was posted twice"

    # A is known dead now: B's next attempt reconciles A's rows by identity and sends only those proven absent.
    second_b = execute_run(run_b)
    assert second_b.status == RunStatus.succeeded, second_b.message
    assert ledger(status=LedgerStatus.pending) == [] and ledger(status=LedgerStatus.unknown) == []
    assert_exactly_once(emulator, pid)
    assert stsync.sync(pid, START, END, "--dry-run")["report"]["posted"] == 0, "nothing is missing"


def test_a_run_whose_worker_died_is_found_by_its_lease_and_tried_again_then_given_up(stsync) -> None:
    from worker.dispatch import dispatch_due
    from worker.settings import get_settings

    first_project(stsync)
    run_id = _new_run("dead-worker")
    now = datetime.now(UTC)
    lease = timedelta(seconds=get_settings().lease_ttl_s)
    with session_scope() as s:
        s.execute(update(SyncRun).where(SyncRun.id == run_id).values(
            status=RunStatus.running, started_at=now - 2 * lease, heartbeat_at=now - lease + timedelta(seconds=5),
            attempts=1))
    assert dispatch_due(now) == [], "a run whose lease has not run out is left alone"
    assert dispatch_due(now + timedelta(seconds=10)) == [run_id], "found once its lease ran out"
    with session_scope() as s:
        run = s.get(SyncRun, run_id)
        assert run.status == RunStatus.queued and "lease ran out" in run.error

    with session_scope() as s:
        s.execute(update(SyncRun).where(SyncRun.id == run_id).values(
            status=RunStatus.running, heartbeat_at=now - 2 * lease, attempts=get_settings().max_run_attempts))
    assert dispatch_due(now) == []
    with session_scope() as s:
        run = s.get(SyncRun, run_id)
        assert run.status == RunStatus.failed and "gave up after" in run.error


def test_rows_claimed_by_a_dead_run_are_reconciled_then_posted_once(stsync, emulator, monkeypatch) -> None:
    import pytest

    from worker.settings import get_settings
    from worker.sync.pipeline import run_sync
    from worker.sync.posting import Poster
    from worker.sync.runner import servicetrade_client_for

    pid = first_project(stsync)
    dead = _new_run("dies")
    with session_scope() as s:
        s.execute(update(SyncRun).where(SyncRun.id == dead).values(status=RunStatus.running,
                                                                    heartbeat_at=datetime.now(UTC)))
        link = s.scalars(select(ProjectLink)).one()
        link_id, connection_id = link.id, link.connection_id

    def send_then_die(self, rows):
        """The claimed rows reach Procore, then the worker is killed before it records anything."""
        for start in range(0, len(rows), 100):
            self.procore.bulk_create_entries([self.entry_for_post(r) for r in rows[start:start + 100]])
        raise SystemExit("worker killed")

    monkeypatch.setattr(Poster, "post_all", send_then_die)
    st, procore = servicetrade_client_for(connection_id, None)
    with pytest.raises(SystemExit):
        run_sync(link_id, Period(START, END), st=st, procore=procore, now=datetime.now(UTC), run_id=dead)
    monkeypatch.undo()
    assert ledger(status=LedgerStatus.pending), "the dead run left its claims"
    with session_scope() as s:  # ... and its lease runs out
        s.execute(update(SyncRun).where(SyncRun.id == dead).values(
            heartbeat_at=datetime.now(UTC) - timedelta(seconds=2 * get_settings().lease_ttl_s)))
    emulator.admin.reset_requests()
    assert stsync.sync(pid, START, END)["status"] == "succeeded"
    assert write_calls(emulator.admin.requests()) == 0, "everything was found in Procore: nothing sent again"
    assert_exactly_once(emulator, pid)
