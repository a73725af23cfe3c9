"""Tasks called as functions (STYLE: tasks are tested by calling them), and the dispatcher's recovery paths."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from worker.db import session_scope
from worker.enums import RunStatus, RunTrigger
from worker.models import SyncRun

from .helpers import assert_exactly_once, first_project


def test_sync_payroll_period_task_syncs_exactly_that_period(stsync, emulator) -> None:
    from tasks.sync import sync_payroll_period

    pid = first_project(stsync)
    stsync("schedule", "set", pid, "--payroll", "biweekly", "--anchor", "2026-03-02", "--at", "06:00")
    result = sync_payroll_period.run(project_id=pid, period_start="2026-03-02")
    assert result["status"] == "succeeded"
    with session_scope() as s:
        run = s.scalars(select(SyncRun)).one()
        assert (run.window_start, run.window_end) == (date(2026, 3, 2), date(2026, 3, 15))
    assert_exactly_once(emulator, pid)
    wrong = None
    try:
        sync_payroll_period.run(project_id=pid, period_start="2026-03-03")
    except ValueError as exc:
        wrong = str(exc)
    assert wrong and "period_start 2026-03-03 is not the first day of a biweekly payroll period" in wrong


def test_dispatcher_requeues_due_deferred_runs_and_recovers_stranded_ones(stsync, emulator) -> None:
    from schedules.periods import Period
    from worker.dispatch import dispatch_due
    from worker.models import ProjectLink
    from worker.sync.runner import create_run

    first_project(stsync)
    now = datetime.now(UTC)
    with session_scope() as s:
        link = s.scalars(select(ProjectLink)).one()
        window = Period(date(2026, 3, 2), date(2026, 3, 15))
        deferred = create_run(s, link, trigger=RunTrigger.task, window=window, run_key="d")
        deferred.status, deferred.next_attempt_at = RunStatus.deferred, now - timedelta(seconds=1)
        later = create_run(s, link, trigger=RunTrigger.task, window=window, run_key="l")
        later.status, later.next_attempt_at = RunStatus.deferred, now + timedelta(minutes=5)
        stranded = create_run(s, link, trigger=RunTrigger.task, window=window, run_key="s")
        stranded.status, stranded.started_at = RunStatus.running, now - timedelta(hours=2)
        ids = {"deferred": deferred.id, "later": later.id, "stranded": stranded.id}
    enqueued = dispatch_due(now)
    assert sorted(enqueued) == sorted([ids["deferred"], ids["stranded"]])
    with session_scope() as s:
        assert s.get(SyncRun, ids["deferred"]).status == RunStatus.queued
        assert s.get(SyncRun, ids["later"]).status == RunStatus.deferred
        assert "recovered" in s.get(SyncRun, ids["stranded"]).error
    assert dispatch_due(now) == []  # nothing twice
