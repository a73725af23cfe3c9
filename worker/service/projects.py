"""Procore projects and their link to ServiceTrade: what blocks a sync, linking, the stored link, and the
technicians whose punches the syncs read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.db import session_scope
from worker.enums import EntryMode, LedgerStatus, SplitMode
from worker.inputs import BIGINT_MAX, InvalidArgument, positive_id
from worker.projects import LinkResult, ProjectCheck, TechnicianRow, cost_code_label
from worker.projects import check_project as check_procore_project
from worker.projects import link_project as link_procore_project
from worker.service.connections import clients_of, procore_of
from worker.service.rules import ProcoreNames, RuleView, rule_views
from worker.service.schedules import ScheduleView, schedule_view
from worker.store import ledger as ledger_store
from worker.store import links as link_store
from worker.store import rules as rule_store
from worker.store import schedules as schedule_store
from worker.store.technicians import store_technicians
from worker.sync.context import fetch_technicians, labor_codes

MAX_LOOKBACK_DAYS = 366  # a year back is re-read on every run at most: more is a typo, and slow


@dataclass(frozen=True)
class ProjectDetail:
    """The stored link of a project: its job, zone, entry mode, rules, schedules and ledger totals."""

    project_id: int
    name: str
    time_zone: str
    entry_mode: EntryMode
    timesheets_active: bool
    lookback_days: int
    split_mode: SplitMode
    job_type: str | None
    st_job_id: int | None
    st_job_number: int | None
    rules: tuple[RuleView, ...]
    schedules: tuple[ScheduleView, ...]
    ledger: Mapping[LedgerStatus, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id, "name": self.name, "time_zone": self.time_zone,
            "entry_mode": self.entry_mode.value, "timesheets_active": self.timesheets_active,
            "lookback_days": self.lookback_days, "split_mode": self.split_mode.value, "job_type": self.job_type,
            "st_job_id": self.st_job_id, "st_job_number": self.st_job_number,
            "rules": [r.to_dict() for r in self.rules],
            "schedules": [x.to_dict() for x in self.schedules],
            "ledger": {status.value: n for status, n in self.ledger.items()},
        }


@dataclass(frozen=True)
class ProjectListing:
    """A Procore project of the company and whether stsync links it to a ServiceTrade job."""

    project_id: int
    name: str
    number: str | None
    city: str | None
    linked: bool
    st_job_number: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "name": self.name, "number": self.number, "city": self.city,
                "linked": self.linked, "st_job_number": self.st_job_number}


def list_projects() -> list[ProjectListing]:
    """The company's active Procore projects by name, each with its link state."""
    with session_scope() as s:
        conn, procore = procore_of(s)
        links = link_store.links_by_project(s, conn.id)
        found = [
            ProjectListing(
                project_id=int(p["id"]), name=str(p.get("display_name") or p.get("name") or p["id"]),
                number=p.get("project_number"), city=p.get("city"), linked=int(p["id"]) in links,
                st_job_number=links[int(p["id"])].st_job_number if int(p["id"]) in links else None,
            )
            for p in procore.projects()
        ]
    return sorted(found, key=lambda p: (p.name.lower(), p.project_id))


def resolve_cost_code(project_id: int, text: str | int) -> int:
    """A cost code of the project given as a person types it, by its code (`01-100`) or its id. A code that
    matches nothing is refused with the budgeted Labor cost codes to choose from."""
    project_id = positive_id(project_id, "project_id")
    wanted = str(text).strip()
    with session_scope() as s:
        link_store.find_link(s, project_id)  # an unlinked project says so before Procore is asked
        _conn, procore = procore_of(s)
        names = ProcoreNames.read(procore, project_id)
    for code_id, code in names.cost_codes.items():
        if wanted.lower() in (str(code.get("full_code") or "").lower(), str(code.get("code") or "").lower()):
            return code_id
    if wanted.isdigit() and 0 < int(wanted) <= BIGINT_MAX:
        return int(wanted)
    choices = labor_codes(names.cost_codes.values(), names.cost_types.values()).usable.values()
    listed = "\n".join(f"  {cost_code_label(c)}" for c in choices) or "  (none: the project has no budgeted Labor code)"
    raise InvalidArgument(f"cost code {wanted!r} is not a cost code of project {project_id}. Labor cost codes:\n"
                          f"{listed}")


def resolve_cost_type(text: str | int) -> int:
    """A cost type of the company by its name (`Labor`), its code or its id."""
    wanted = str(text).strip()
    with session_scope() as s:
        _conn, procore = procore_of(s)
        types = {int(t["id"]): t for t in procore.line_item_types()}
    for type_id, found in types.items():
        if wanted.lower() in (str(found.get("name") or "").lower(), str(found.get("code") or "").lower()):
            return type_id
    if wanted.isdigit() and 0 < int(wanted) <= BIGINT_MAX:
        return int(wanted)
    labor = ", ".join(str(t.get("name")) for t in types.values() if t.get("base_type") == "labor") or "(none)"
    raise InvalidArgument(f"cost type {wanted!r} is not a cost type of the company. Labor cost types: {labor}")


def check_project(project_id: int) -> ProjectCheck:
    """Everything that would stop a sync of the project, each named, with its labor cost codes and technicians."""
    project_id = positive_id(project_id, "project_id")
    with session_scope() as s:
        conn, procore, st = clients_of(s)
        link = link_store.link_of(s, conn.id, project_id)
        return check_procore_project(procore, st, project_id, link=link)


def link_project(
    project_id: int, job_type: str, *, lookback_days: int | None = None,
    split_mode: SplitMode | str = SplitMode.midnight,
) -> LinkResult:
    """Create (or find) the project's ServiceTrade customer, location and job, and record the link. Linking an
    already linked project changes nothing and says so."""
    project_id = positive_id(project_id, "project_id")
    if lookback_days is not None and not (isinstance(lookback_days, int) and 0 < lookback_days <= MAX_LOOKBACK_DAYS):
        raise InvalidArgument(
            f"lookback_days must be a whole number from 1 to {MAX_LOOKBACK_DAYS}, got {lookback_days!r}")
    with session_scope() as s:
        conn, procore, st = clients_of(s)
        return link_procore_project(s, conn, procore, st, project_id, job_type, lookback_days=lookback_days,
                                    split_mode=split_mode)


def show_project(project_id: int) -> ProjectDetail:
    """The stored link of a project; its rules name their cost codes and cost types, read from Procore."""
    project_id = positive_id(project_id, "project_id")
    with session_scope() as s:
        link = link_store.find_link(s, project_id)
        rules = rule_store.list_rules(s, link.id)
        if rules:
            _conn, procore = procore_of(s)
            named = tuple(rule_views(s, procore, link.connection_id, project_id, rules))
        else:
            named = ()
        return ProjectDetail(
            project_id=project_id, name=link.name, time_zone=link.time_zone, entry_mode=link.entry_mode,
            timesheets_active=link.timesheets_active, lookback_days=link.lookback_days,
            split_mode=link.split_mode, job_type=link.job_type, st_job_id=link.st_job_id,
            st_job_number=link.st_job_number, rules=named,
            schedules=tuple(schedule_view(x, link) for x, _ in schedule_store.list_schedules(s, link.id)),
            ledger=ledger_store.counts_by_status(s, link.id),
        )


def list_technicians(*, now: datetime | None = None) -> list[TechnicianRow]:
    """Each ServiceTrade technician, read again from ServiceTrade with their Procore Employee ID resolved against
    Procore's people, stored, and returned by name."""
    with session_scope() as s:
        conn, procore, st = clients_of(s)
        resolved = fetch_technicians(st, procore)
        store_technicians(s, conn.id, resolved, now or datetime.now(UTC))
    return sorted((TechnicianRow.of(t) for t in resolved), key=lambda t: (t.name.lower(), t.st_user_id))
