"""The Celery app and its signals: logging set up once per process, the engine disposed after fork, and the log
context of every task (task_id, run_id, project_id) bound for its duration."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, Task, signals

from worker.db import dispose_engines
from worker.logging import configure_logging

app = Celery("stsync", include=["tasks.sync", "tasks.schedule", "tasks.projects", "tasks.webhooks", "tasks.digest"])
app.config_from_object("celeryconfig")


class StsyncTask(Task):
    """Base of every stsync task: owns the log context (task_id, task_name, run_id and project_id)."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        context = {"task_id": self.request.id, "task_name": self.name}
        for key in ("run_id", "project_id"):
            if key in kwargs:
                context[key] = kwargs[key]
        with structlog.contextvars.bound_contextvars(**context):
            return super().__call__(*args, **kwargs)


app.Task = StsyncTask  # type: ignore[misc]


@signals.setup_logging.connect
def _setup_logging(**_kwargs: Any) -> None:
    # Connecting to this signal stops Celery from installing its own handlers; ours route through structlog.
    configure_logging()


@signals.worker_process_init.connect
def _after_fork(**_kwargs: Any) -> None:
    # A forked child must not reuse its parent's pooled database connections.
    dispose_engines()


@signals.beat_init.connect
def _beat_init(**_kwargs: Any) -> None:
    configure_logging()
