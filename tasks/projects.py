"""Linking a Procore project to ServiceTrade, as a task."""

from __future__ import annotations

from typing import Any

from worker.app import app
from worker.connections import get_connection, procore_client, servicetrade_client
from worker.inputs import InvalidArgument, positive_id
from worker.projects import JOB_TYPES
from worker.projects import link_project as link


@app.task(name="tasks.projects.link_project", bind=True)
def link_project(self, project_id: Any, job_type: Any) -> dict:
    pid = positive_id(project_id, "project_id")
    if not isinstance(job_type, str) or job_type not in JOB_TYPES:
        raise InvalidArgument(f"job_type must be one of {', '.join(JOB_TYPES)}; got {job_type!r}")
    with self.session() as s:
        conn = get_connection(s)
        return link(s, conn, procore_client(conn), servicetrade_client(conn), pid, job_type).to_dict()
