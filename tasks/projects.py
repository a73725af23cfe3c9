"""Linking a Procore project to ServiceTrade, as a task."""

from __future__ import annotations

from typing import Any

from worker.app import app
from worker.inputs import InvalidArgument, positive_id
from worker.projects import JOB_TYPES
from worker.service import projects


@app.task(name="tasks.projects.link_project", bind=True)
def link_project(self, project_id: Any, job_type: Any) -> dict:
    pid = positive_id(project_id, "project_id")
    if not isinstance(job_type, str) or job_type not in JOB_TYPES:
        raise InvalidArgument(f"job_type must be one of {', '.join(JOB_TYPES)}; got {job_type!r}")
    return projects.link_project(pid, job_type).to_dict()
