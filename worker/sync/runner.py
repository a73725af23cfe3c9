"""A sync_run row from queued to finished: claim it atomically, run the pipeline, record the outcome.

Tasks, the dispatcher and the CLI all go through here, so a run started from Flower, from beat or by hand behaves
the same, and a message delivered twice runs once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schedules.periods import Period
from worker.clients.errors import ApiError, DeferRun, NeedsReauthorization
from worker.connections import procore_client, servicetrade_client
from worker.db import ProjectBusy, is_unique_violation, session_scope
from worker.enums import RunStatus, RunTrigger
from worker.models import Connection, ProjectLink, SyncRun
from worker.settings import get_settings
from worker.sync.pipeline import Progress, RunReport, Selection, SyncPipeline

log = structlog.get_logger("stsync.runner")

BUSY_RETRY = timedelta(minutes=1)


class RunFailed(RuntimeError):
    pass


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


def create_run(
    s: Session,
    link: ProjectLink,
    *,
    trigger: RunTrigger,
    window: Period,
    run_key: str | None = None,
    dry_run: bool = False,
    selection: Selection | None = None,
    schedule_id: int | None = None,
    now: datetime | None = None,
) -> SyncRun | None:
    """Insert a queued run. Returns None when a run with the same key exists (a second beat, a redelivery)."""
    now = now or datetime.now(UTC)
    key = run_key or f"{trigger.value}:{link.id}:{window.start}:{window.end}:{now.timestamp():.6f}"
    run = SyncRun(
        run_key=key,
        project_link_id=link.id,
        schedule_id=schedule_id,
        trigger=trigger,
        window_start=window.start,
        window_end=window.end,
        dry_run=dry_run,
        selection=(
            {
                "clock_event_ids": sorted(selection.clock_event_ids),
                "cost_code_id": selection.cost_code_id,
                "line_item_type_id": selection.line_item_type_id,
            }
            if selection
            else None
        ),
        status=RunStatus.queued,
        attempts=0,
        created_at=now,
    )
    try:
        with s.begin_nested():
            s.add(run)
            s.flush()
    except IntegrityError as exc:
        if is_unique_violation(exc):
            return None
        raise
    return run


def claim_run(run_id: int, now: datetime, database_url: str | None = None) -> bool:
    """Atomically move a run to `running`. False when another worker has it or it already finished."""
    stale = now - timedelta(seconds=get_settings().sync_hard_time_limit_s)
    with session_scope(database_url) as s:
        result = s.execute(
            update(SyncRun)
            .where(
                SyncRun.id == run_id,
                or_(
                    SyncRun.status.in_([RunStatus.queued, RunStatus.deferred]),
                    (SyncRun.status == RunStatus.running) & (SyncRun.started_at < stale),
                ),
            )
            .values(status=RunStatus.running, started_at=now, attempts=SyncRun.attempts + 1, error=None)
        )
        return result.rowcount == 1


def execute_run(
    run_id: int,
    *,
    database_url: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    task_id: str | None = None,
) -> RunOutcome:
    now = now or datetime.now(UTC)
    if not claim_run(run_id, now, database_url):
        with session_scope(database_url) as s:
            run = s.get(SyncRun, run_id)
            if run is None:
                raise LookupError(f"sync run {run_id} does not exist")
            status = run.status
        log.info("run.not_claimed", run_id=run_id, status=status.value)
        return RunOutcome(run_id, status, None, f"run {run_id} is {status.value}; nothing to do")

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
        st, procore = servicetrade_client(conn), procore_client(conn)
        link_id, connection_id = link.id, conn.id

    bound = log.bind(run_id=run_id, project_id=link.procore_project_id)
    pipeline = SyncPipeline(
        link_id, st=st, procore=procore, now=now, database_url=database_url, run_id=run_id, progress=progress
    )
    try:
        report = pipeline.run(window, dry_run=dry_run, selection=selection)
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
    except (ApiError, LookupError, ValueError) as exc:
        bound.error("run.failed", error=str(exc))
        return _finish(run_id, RunStatus.failed, None, str(exc), database_url)
    except Exception as exc:
        bound.exception("run.crashed")
        _finish(run_id, RunStatus.failed, None, f"{type(exc).__name__}: {exc}", database_url)
        raise
    status = RunStatus.succeeded
    message = None
    if report.unknown:
        message = f"{report.unknown} entries have no known outcome yet; the next run looks them up in Procore"
    bound.info("run.finished", **{k: v for k, v in report.counts().items() if k != "skipped"})
    return _finish(run_id, status, report, message, database_url)


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
        run = s.get(SyncRun, run_id)
        assert run is not None
        run.status = status
        run.finished_at = datetime.now(UTC)
        run.error = message if status != RunStatus.succeeded else None
        run.next_attempt_at = next_attempt_at
        if report is not None:
            run.counts = report.counts()
    return RunOutcome(run_id, status, report, message)


def _selection(raw: dict[str, Any] | None) -> Selection | None:
    if not raw:
        return None
    return Selection(
        clock_event_ids=frozenset(int(i) for i in raw["clock_event_ids"]),
        cost_code_id=int(raw["cost_code_id"]),
        line_item_type_id=int(raw["line_item_type_id"]),
    )


def find_link(s: Session, project_id: int) -> ProjectLink:
    links = s.scalars(select(ProjectLink).where(ProjectLink.procore_project_id == project_id)).all()
    if not links:
        raise LookupError(
            f"Procore project {project_id} is not linked yet; run `stsync project link {project_id} --job-type TYPE`"
        )
    if len(links) > 1:
        raise LookupError(f"Procore project {project_id} is linked under several connections")
    return links[0]


def parse_day(value: str | date | None, name: str) -> date | None:
    """A YYYY-MM-DD argument, or a ValueError that names the argument."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{name} must be a date as YYYY-MM-DD, got {value!r}") from exc
