"""Sync tasks: the names and arguments are the interface Flower users type (DESIGN §6)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.args import boolean, id_list, optional_date, positive_int
from worker.app import app
from worker.models import RunTrigger
from worker.sync.runner import execute_run, find_link
from worker.sync.triggers import payroll_window, request_window, start_run


@app.task(name="tasks.sync.sync_project", bind=True)
def sync_project(self, project_id: Any, start: Any = None, end: Any = None, dry_run: Any = False) -> dict:
    pid = positive_int(project_id, "project_id")
    start_d, end_d = optional_date(start, "start"), optional_date(end, "end")
    dry = boolean(dry_run, "dry_run")
    now = datetime.now(UTC)
    with self.session() as s:
        link = find_link(s, pid)
        window = request_window(link, start_d, end_d, now)
        run_id = start_run(s, link, self.request.id, RunTrigger.task, window, dry_run=dry, now=now)
    return execute_run(run_id, task_id=self.request.id).to_dict()


@app.task(name="tasks.sync.sync_payroll_period", bind=True)
def sync_payroll_period(self, project_id: Any, period_start: Any = None) -> dict:
    pid = positive_int(project_id, "project_id")
    start_d = optional_date(period_start, "period_start")
    now = datetime.now(UTC)
    with self.session() as s:
        link = find_link(s, pid)
        window = payroll_window(s, link, start_d, now)
        run_id = start_run(s, link, self.request.id, RunTrigger.task, window, now=now)
    return execute_run(run_id, task_id=self.request.id).to_dict()


@app.task(name="tasks.sync.sync_selected", bind=True)
def sync_selected(
    self, project_id: Any, clock_event_ids: Any, cost_code_id: Any, line_item_type_id: Any
) -> dict:
    from worker.sync.pipeline import Selection

    pid = positive_int(project_id, "project_id")
    selection = Selection(
        frozenset(id_list(clock_event_ids, "clock_event_ids")),
        positive_int(cost_code_id, "cost_code_id"),
        positive_int(line_item_type_id, "line_item_type_id"),
    )
    now = datetime.now(UTC)
    with self.session() as s:
        link = find_link(s, pid)
        window = request_window(link, None, None, now)
        run_id = start_run(s, link, self.request.id, RunTrigger.manual, window, selection=selection, now=now)
    return execute_run(run_id, task_id=self.request.id).to_dict()


@app.task(name="tasks.sync.run", bind=True)
def run(self, run_id: Any) -> dict:
    return execute_run(positive_int(run_id, "run_id"), task_id=self.request.id).to_dict()
