"""Sync tasks: the names and arguments are the interface Flower users type (DESIGN §6). Each is a few lines
around one service call; a wrong argument fails at once with a message that names it."""

from __future__ import annotations

from typing import Any

from worker.app import app
from worker.enums import RunTrigger
from worker.inputs import boolean
from worker.service import syncing


@app.task(name="tasks.sync.sync_project", bind=True)
def sync_project(self, project_id: Any, start: Any = None, end: Any = None, dry_run: Any = False) -> dict:
    return syncing.sync_window(project_id, start, end, dry_run=boolean(dry_run, "dry_run"), trigger=RunTrigger.task,
                               task_id=self.request.id).to_dict()


@app.task(name="tasks.sync.sync_payroll_period", bind=True)
def sync_payroll_period(self, project_id: Any, period_start: Any = None) -> dict:
    return syncing.sync_payroll_period(project_id, period_start, task_id=self.request.id).to_dict()


@app.task(name="tasks.sync.sync_selected", bind=True)
def sync_selected(
    self, project_id: Any, clock_event_ids: Any, cost_code_id: Any, line_item_type_id: Any, start: Any = None,
    end: Any = None,
) -> dict:
    return syncing.sync_selected(project_id, clock_event_ids, cost_code_id, line_item_type_id, start, end,
                                 task_id=self.request.id).to_dict()


@app.task(name="tasks.sync.run", bind=True)
def run(self, run_id: Any) -> dict:
    return syncing.run_by_id(run_id, task_id=self.request.id).to_dict()
