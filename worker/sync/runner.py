"""A sync_run row from queued to finished: claim it atomically, run the pipeline, record the outcome.

Tasks, the dispatcher and the CLI all go through here, so a run started from Flower, from beat or by hand behaves
the same, and a message delivered twice runs once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from schedules.periods import Period
from worker.clients.errors import ApiError, DeferRun, NeedsReauthorization
from worker.connections import procore_client, servicetrade_client
from worker.crypto import SecretKeyMismatch
from worker.db import LockLost, ProjectBusy, session_scope
from worker.enums import RunStatus, RunTrigger
from worker.models import Connection, ProjectLink, SyncRun
from worker.settings import get_settings
from worker.store import sync_runs as run_store
from worker.sync.pipeline import Progress, Selection, run_sync
from worker.sync.report import RunReport

log = structlog.get_logger("stsync.runner")

BUSY_RETRY = timedelta(minutes=1)


@dataclass(frozen=True)
class RunOutcome:
    run_id: int
    status: RunStatus
    report: RunReport | None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "message": self.message,
            **({"report": self.report.to_dict()} if self.report else {}),
        }


def create_run(s: Session, link: ProjectLink, *, trigger: RunTrigger, window: Period, now: datetime | None = None,
               **options: Any) -> SyncRun | None:
    """Insert a queued run (see worker.store.sync_runs.new_run); None when its run key exists."""
    return run_store.new_run(s, link, trigger=trigger, window=window, now=now or datetime.now(UTC), **options)


def execute_run(
    run_id: int,
    *,
    database_url: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    task_id: str | None = None,
) -> RunOutcome:
    """Claim a queued run and run it here. From the claim on, every way out records how the run ended: nothing
    leaves a run `running` but a dead process, and the dispatcher finds those."""
    now = now or datetime.now(UTC)
    settings = get_settings()
    with session_scope(database_url) as s:
        claimed = run_store.claim_run(s, run_id, now, lease=timedelta(seconds=settings.lease_ttl_s))
    if not claimed:
        with session_scope(database_url) as s:
            run = s.get(SyncRun, run_id)
            if run is None:
                raise LookupError(f"sync run {run_id} does not exist")
            status = run.status
        log.info("run.not_claimed", run_id=run_id, status=status.value)
        return RunOutcome(run_id, status, None, f"run {run_id} is {status.value}; nothing to do")
    try:
        with Heartbeat(run_id, settings.lease_heartbeat_s, database_url):
            return _execute_claimed(run_id, now=now, database_url=database_url, progress=progress,
                                    task_id=task_id)
    except BaseException as exc:
        log.exception("run.crashed", run_id=run_id)
        _finish(run_id, RunStatus.failed, None, f"{type(exc).__name__}: {exc}", database_url)
        raise


class Heartbeat:
    """Renews a running run's lease every `every_s` seconds from a thread of its own, so a run busy in a long
    POST still shows it is alive; a worker that dies stops renewing, and its lease runs out (DESIGN §3 step 1)."""

    def __init__(self, run_id: int, every_s: float, database_url: str | None) -> None:
        self.run_id, self.every_s, self.database_url = run_id, every_s, database_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                with session_scope(self.database_url) as s:
                    if not run_store.renew_lease(s, self.run_id, datetime.now(UTC)):
                        return
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the lease is longer than a beat
                log.warning("run.heartbeat_failed", run_id=self.run_id, error=str(exc))


def _execute_claimed(
    run_id: int, *, now: datetime, database_url: str | None, progress: Progress | None, task_id: str | None,
) -> RunOutcome:
    with session_scope(database_url) as s:
        run = s.get(SyncRun, run_id)
        assert run is not None
        run.task_id = task_id
        link = s.get(ProjectLink, run.project_link_id)
        assert link is not None
        conn = s.get(Connection, link.connection_id)
        assert conn is not None
        window = Period(run.window_start, run.window_end)
        dry_run = run.dry_run
        selection = _selection(run.selection)
        link_id, connection_id, project_id = link.id, conn.id, link.procore_project_id

    with structlog.contextvars.bound_contextvars(run_id=run_id, project_id=project_id):
        try:
            st, procore = servicetrade_client_for(connection_id, database_url)
            report = run_sync(link_id, window, st=st, procore=procore, now=now, run_id=run_id,
                              database_url=database_url, dry_run=dry_run, selection=selection, progress=progress)
        except ProjectBusy as exc:
            return _finish(run_id, RunStatus.deferred, None, f"{exc}; retrying in a minute", database_url,
                           next_attempt_at=now + BUSY_RETRY)
        except DeferRun as exc:
            return _finish(run_id, RunStatus.deferred, None, str(exc), database_url,
                           next_attempt_at=now + timedelta(seconds=max(exc.wait_s, 1)))
        except NeedsReauthorization as exc:
            with session_scope(database_url) as s:
                conn_row = s.get(Connection, connection_id)
                if conn_row is not None:
                    conn_row.procore_needs_reauth = str(exc)
            return _finish(run_id, RunStatus.failed, None, str(exc), database_url)
        except (ApiError, LookupError, ValueError, LockLost, SecretKeyMismatch) as exc:
            log.error("run.failed", error=str(exc))
            return _finish(run_id, RunStatus.failed, None, str(exc), database_url)
        log.info("run.finished", **{k: v for k, v in report.counts().items() if k != "skipped"})
        if report.has_problems:
            return _finish(run_id, RunStatus.completed_with_problems, report, "; ".join(report.problem_lines()),
                           database_url)
        return _finish(run_id, RunStatus.succeeded, report, None, database_url)


def servicetrade_client_for(connection_id: int, database_url: str | None) -> tuple[Any, Any]:
    """The ServiceTrade and Procore clients of a connection, with its stored (decrypted) credentials."""
    with session_scope(database_url) as s:
        conn = s.get(Connection, connection_id)
        if conn is None:
            raise LookupError(f"connection {connection_id} does not exist")
        return servicetrade_client(conn), procore_client(conn)


def _finish(
    run_id: int,
    status: RunStatus,
    report: RunReport | None,
    message: str | None,
    database_url: str | None,
    *,
    next_attempt_at: datetime | None = None,
) -> RunOutcome:
    with session_scope(database_url) as s:
        run_store.finish_run(s, run_id, status, message, at=datetime.now(UTC),
                             counts=report.counts() if report is not None else None, next_attempt_at=next_attempt_at)
    return RunOutcome(run_id, status, report, message)


def _selection(raw: dict[str, Any] | None) -> Selection | None:
    if not raw:
        return None
    return Selection(
        clock_event_ids=frozenset(int(i) for i in raw["clock_event_ids"]),
        cost_code_id=int(raw["cost_code_id"]),
        line_item_type_id=int(raw["line_item_type_id"]),
    )
