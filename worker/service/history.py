"""What stsync did: recent runs (problems first where a person asks for them) and the ledger rows of a project,
with names a person reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from worker.clients.errors import ApiError
from worker.db import session_scope
from worker.enums import LedgerStatus, RunStatus
from worker.inputs import InvalidArgument, parse_day, positive_id, positive_limit
from worker.service.connections import procore_of
from worker.service.rules import ProcoreNames
from worker.store import ledger as ledger_store
from worker.store import sync_runs as run_store
from worker.store.links import find_link

PROBLEM_RUNS = (RunStatus.failed, RunStatus.completed_with_problems, RunStatus.deferred)


@dataclass(frozen=True)
class RunSummary:
    id: int
    project_id: int
    project_name: str | None
    trigger: str
    window_start: date
    window_end: date
    status: RunStatus
    dry_run: bool
    posted: int | None
    hours: str | None
    skipped: int | None
    failed: int | None
    needs_review: int | None
    duration_s: float | None
    started_at: datetime | None
    next_attempt_at: datetime | None
    error: str | None
    counts: dict[str, Any]

    @property
    def has_problems(self) -> bool:
        return self.status in PROBLEM_RUNS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value + (" (dry run)" if self.dry_run else "")
        data["window"] = f"{self.window_start}..{self.window_end}"
        return data


@dataclass(frozen=True)
class LedgerRowView:
    id: int
    source_key: str
    technician: str | None
    activity: str | None
    date: date | None
    hours: Decimal | None
    cost_code_id: int | None
    cost_code: str | None  # `01-100 General Conditions Labor`
    line_item_type_id: int | None
    cost_type: str | None
    status: LedgerStatus
    reason: str | None
    detail: str | None
    procore_entry_id: int | None
    approval_status: str | None
    manual: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


def list_runs(project_id: int | None = None, limit: int = 50, *, problems_first: bool = False) -> list[RunSummary]:
    """Recent runs, newest first (runs with problems before the rest with `problems_first`)."""
    limit = positive_limit(limit, "limit", most=10_000)
    with session_scope() as s:
        link_id = find_link(s, positive_id(project_id, "project_id")).id if project_id is not None else None
        runs = [_summary(run, link) for run, link in run_store.recent_runs(s, link_id=link_id, limit=limit)]
    if problems_first:
        runs.sort(key=lambda r: not r.has_problems)
    return runs


def get_run(run_id: int) -> RunSummary:
    """One run, as the runs list shows it; a LookupError names a run that does not exist."""
    with session_scope() as s:
        found = run_store.run_with_link(s, positive_id(run_id, "run_id"))
        if found is None:
            raise LookupError(f"there is no sync run {run_id}")
        return _summary(*found)


def list_ledger(
    project_id: int, *, status: LedgerStatus | str | None = None, technician: str | None = None,
    start: date | str | None = None, end: date | str | None = None, limit: int = 500,
) -> list[LedgerRowView]:
    """A project's ledger rows by date and technician, filtered by status, technician (part of the name) and
    dates; cost codes and cost types by name."""
    wanted = _status(status)
    with session_scope() as s:
        link = find_link(s, positive_id(project_id, "project_id"))
        rows = ledger_store.list_rows(
            s, link.id, status=wanted, technician=technician, start=parse_day(start, "start"),
            end=parse_day(end, "end"), limit=positive_limit(limit, "limit", most=100_000))
        names = _names(s, link.procore_project_id) if rows else None
        return [
            LedgerRowView(
                id=r.id, source_key=r.source_key, technician=r.technician_name, activity=r.activity,
                date=r.work_date, hours=r.hours, cost_code_id=r.cost_code_id,
                cost_code=_label(names.cost_code if names else None, r.cost_code_id, "cost code"),
                line_item_type_id=r.line_item_type_id,
                cost_type=_label(names.cost_type if names else None, r.line_item_type_id, "cost type"),
                status=r.status, reason=r.reason, detail=r.detail, procore_entry_id=r.procore_entry_id,
                approval_status=r.approval_status, manual=r.manual,
            )
            for r in rows
        ]


def _status(status: LedgerStatus | str | None) -> LedgerStatus | None:
    if status is None or status == "":
        return None
    try:
        return LedgerStatus(status)
    except ValueError:
        raise InvalidArgument(
            f"status must be one of {', '.join(s.value for s in LedgerStatus)}, got {status!r}") from None


def _names(s: Session, project_id: int) -> ProcoreNames | None:
    """Cost code and cost type names from Procore; without Procore the rows still list, by id."""
    try:
        _conn, procore = procore_of(s)
        return ProcoreNames.read(procore, project_id)
    except (ApiError, LookupError):
        return None


def _label(lookup: Any, value: int | None, what: str) -> str | None:
    if value is None:
        return None
    return lookup(value) if lookup is not None else f"{what} {value}"


def _summary(run: Any, link: Any) -> RunSummary:
    counts = run.counts or {}
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
    return RunSummary(
        id=run.id, project_id=link.procore_project_id, project_name=link.name, trigger=run.trigger.value,
        window_start=run.window_start, window_end=run.window_end, status=run.status, dry_run=run.dry_run,
        posted=counts.get("posted"), hours=counts.get("hours"),
        skipped=sum((counts.get("skipped") or {}).values()) if counts else None,
        failed=counts.get("failed"), needs_review=counts.get("needs_review"),
        duration_s=round(duration, 1) if duration is not None else None, started_at=run.started_at,
        next_attempt_at=run.next_attempt_at, error=run.error, counts=counts,
    )
