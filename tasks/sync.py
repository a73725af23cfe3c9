"""Sync tasks: the names and arguments are the interface Flower users type (DESIGN §6)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.args import boolean, id_list, optional_date, positive_int
from worker.app import app
from worker.enums import RunTrigger
from worker.sync.runner import execute_run, find_link
from worker.sync.triggers import payroll_window, request_window, start_run


def _start_and_run(task, project_id: int, make_window, trigger: RunTrigger = RunTrigger.task, **options) -> dict:  # noqa: ANN001
    """Create (or, on a redelivery, find) the run of this message, then run it in this worker."""
    now = datetime.now(UTC)
    with task.session() as s:
        link = find_link(s, project_id)
        window = make_window(s, link, now)
        run_id = start_run(s, link, task.request.id, trigger, window, now=now, **options)
    return execute_run(run_id, task_id=task.request.id).to_dict()


@app.task(name="tasks.sync.sync_project", bind=True)
def sync_project(self, project_id: Any, start: Any = None, end: Any = None, dry_run: Any = False) -> dict:
    pid = positive_int(project_id, "project_id")
    start_d, end_d = optional_date(start, "start"), optional_date(end, "end")
    dry = boolean(dry_run, "dry_run")
    return _start_and_run(self, pid, lambda _s, link, now: request_window(link, start_d, end_d, now), dry_run=dry)


@app.task(name="tasks.sync.sync_payroll_period", bind=True)
def sync_payroll_period(self, project_id: Any, period_start: Any = None) -> dict:
    pid = positive_int(project_id, "project_id")
    start_d = optional_date(period_start, "period_start")
    return _start_and_run(self, pid, lambda s, link, now: payroll_window(s, link, start_d, now))


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
    return _start_and_run(self, pid, lambda _s, link, now: request_window(link, None, None, now),
                          RunTrigger.manual, selection=selection)


@app.task(name="tasks.sync.run", bind=True)
def run(self, run_id: Any) -> dict:
    return execute_run(positive_int(run_id, "run_id"), task_id=self.request.id).to_dict()
