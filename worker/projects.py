"""Linking a Procore project to ServiceTrade: the checks that must pass before anything syncs, and the
customer, location and job on the ServiceTrade side, created once even across crashes and lost responses (ST-7)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.orm import Session

from worker.clients.errors import OutcomeUnknown
from worker.clients.procore import ProcoreClient
from worker.clients.servicetrade import ServiceTradeClient
from worker.enums import EntryMode, SplitMode, TechnicianStatus
from worker.models import Connection, ProjectLink
from worker.settings import get_settings
from worker.store import links as link_store
from worker.sync.context import (
    REQUIRED_PROJECT_FIELDS,
    LaborCodes,
    ProjectProblem,
    ResolvedTechnician,
    fetch_technicians,
    labor_codes,
    project_zone,
    rounding_rule,
    timesheets_active,
)
from worker.sync.rounding import describe_rule

log = structlog.get_logger("stsync.projects")

# ServiceTrade's job types (servicetrade.md Part B §5); POST /job refuses anything else.
JOB_TYPES = (
    "unknown", "repair", "construction", "upgrade", "service_call", "urgent_service_call", "priority_service_call",
    "emergency_service_call", "cleaning", "inspection", "priority_inspection", "reinspection", "survey",
    "preventative_maintenance", "quality_assurance", "inspection_repair", "delivery", "pickup", "exchange", "sales",
    "installation", "warranty", "training", "testing", "administrative", "replacement", "design", "hookup",
)
FIELD_LABELS = {"name": "name", "address": "address", "city": "city", "state_code": "state", "zip": "zip"}


def cost_code_label(code: Mapping[str, Any]) -> str:
    """A cost code as a person reads it: `01-100 General Conditions Labor`."""
    return f"{code.get('full_code') or code.get('code')} {code.get('name')}".strip()


@dataclass(frozen=True)
class TechnicianRow:
    """A ServiceTrade technician, the Procore Employee ID found on them, the person it resolves to, or what to fix."""

    st_user_id: int
    name: str
    employee_id: str | None
    party_id: int | None
    status: TechnicianStatus
    warning: str | None

    @classmethod
    def of(cls, t: ResolvedTechnician) -> TechnicianRow:
        party = t.party_id if t.status == TechnicianStatus.ok else None
        return cls(t.st_user_id, t.name, t.employee_id, party, t.status, t.problem)

    def to_dict(self) -> dict[str, Any]:
        return {"st_user_id": self.st_user_id, "name": self.name, "employee_id": self.employee_id,
                "party_id": self.party_id, "status": self.status.value, "warning": self.warning}


@dataclass(frozen=True)
class ProjectCheck:
    """What stands between a Procore project and its first sync, each blocker and warning in words."""

    project_id: int
    project: Mapping[str, Any]
    blockers: tuple[str, ...]
    warnings: tuple[str, ...]
    codes: LaborCodes
    entry_mode: EntryMode
    timesheets: bool
    rounding: str
    technicians: tuple[TechnicianRow, ...] = ()
    link: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.blockers

    @property
    def name(self) -> str:
        return str(self.project.get("name") or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "name": self.project.get("name"),
            "ok": self.ok,
            "blockers": list(self.blockers),
            "warnings": list(self.warnings),
            "time_zone": self.project.get("tz_name"),
            "entry_mode": self.entry_mode.value,
            "timesheets_active": self.timesheets,
            "approval": approval_note(self.timesheets),
            "rounding": self.rounding,
            "labor_cost_codes": [
                {"id": cid, "code": c.get("full_code") or c.get("code"), "name": c.get("name"),
                 "label": cost_code_label(c),
                 "line_item_types": [t for t in c.get("line_item_types") or [] if t.get("base_type") == "labor"]}
                for cid, c in self.codes.usable.items()
            ],
            "unusable_cost_codes": [
                {"id": cid, "code": c.get("full_code") or c.get("code"), "name": c.get("name"),
                 "label": cost_code_label(c), "why": why}
                for cid, (c, why) in self.codes.unusable.items()
            ],
            "technicians": [t.to_dict() for t in self.technicians],
            "link": dict(self.link) if self.link is not None else None,
        }


def approval_note(timesheets: bool) -> str:
    if timesheets:
        return "entries wait on the Timesheets tool for review and approval"
    return "no Timesheets tool: entries count toward the Labor budget at once"


def check_project(
    procore: ProcoreClient,
    st: ServiceTradeClient | None,
    project_id: int,
    *,
    link: ProjectLink | None = None,
) -> ProjectCheck:
    """Everything that would stop a sync of this project, each named (`stsync project check`). Technicians are
    checked only when ServiceTrade is given."""
    project = procore.get_project(project_id)
    blockers = [
        f"the project has no {FIELD_LABELS[key]}: fill in its {FIELD_LABELS[key]} in Procore's project admin"
        for key in REQUIRED_PROJECT_FIELDS if not str(project.get(key) or "").strip()
    ]
    try:
        project_zone(project)
    except ProjectProblem as exc:
        blockers.append(str(exc))
    codes = labor_codes(procore.cost_codes(project_id), procore.line_item_types())
    if not codes.usable:
        why = "; ".join(f"{cost_code_label(c)}: {reason}" for c, reason in codes.unusable.values())
        blockers.append(
            "no budgeted Labor cost code: add a budget line with a Labor cost type to the project"
            + (f" (existing cost codes — {why})" if why else "")
        )
    if not codes.labor_line_item_types:
        blockers.append("the company has no Labor cost type (line item type with base type 'labor')")
    config = procore.company_configuration()
    in_out = {int(p) for p in config.get("projects_timecard_in_out_enabled") or []}
    technicians = tuple(TechnicianRow.of(t) for t in fetch_technicians(st, procore)) if st is not None else ()
    return ProjectCheck(
        project_id=project_id,
        project=project,
        blockers=tuple(blockers),
        warnings=tuple(t.warning + " — their clock events will be skipped"
                       for t in technicians if t.status != TechnicianStatus.ok and t.warning),
        codes=codes,
        entry_mode=EntryMode.start_stop if project_id in in_out else EntryMode.hours,
        timesheets=timesheets_active(procore.project_tools(project_id)),
        rounding=describe_rule(rounding_rule(procore.rounding_configuration())),
        technicians=technicians,
        link=({"job_id": link.st_job_id, "job_number": link.st_job_number, "job_type": link.job_type,
               "url": job_url(link.st_job_id)} if link is not None and link.st_job_id else None),
    )


def job_url(job_id: int) -> str:
    base = get_settings().servicetrade_api_url.rstrip("/")
    root = base[: -len("/api")] if base.endswith("/api") else base
    return f"{root}/job/{job_id}"


class LinkRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class LinkResult:
    link_id: int
    project_id: int
    project_name: str
    job_id: int
    job_number: int | None
    created: tuple[str, ...]
    already_linked: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "link_id": self.link_id,
            "project_id": self.project_id,
            "project_name": self.project_name,
            "job_id": self.job_id,
            "job_number": self.job_number,
            "job_url": job_url(self.job_id),
            "created": list(self.created),
            "already_linked": self.already_linked,
        }


def link_project(
    s: Session,
    conn: Connection,
    procore: ProcoreClient,
    st: ServiceTradeClient,
    project_id: int,
    job_type: str,
    *,
    lookback_days: int | None = None,
    split_mode: SplitMode | str = SplitMode.midnight,
) -> LinkResult:
    """Create (or find) the ServiceTrade customer, location and job of a Procore project and record the link.
    The caller owns the transaction."""
    existing = link_store.link_of(s, conn.id, project_id)
    if existing is not None and existing.st_job_id:
        return LinkResult(existing.id, project_id, existing.name, existing.st_job_id, existing.st_job_number, (),
                          True)
    if job_type not in JOB_TYPES:
        raise LinkRefused(f"unknown job type {job_type!r}; ServiceTrade accepts: {', '.join(JOB_TYPES)}")
    check = check_project(procore, None, project_id)
    if not check.ok:
        raise LinkRefused(
            f"Procore project {project_id} can't be linked yet:\n  - " + "\n  - ".join(check.blockers)
        )
    project = check.project
    vendor_id = conn.st_vendor_company_id or int(st.whoami()["company_id"])
    company, location, job, created = _servicetrade_job(st, project_id, project, job_type, vendor_id)
    link = link_store.save_link(
        s, conn.id, project_id,
        name=check.name,
        time_zone=str(project.get("tz_name")),
        entry_mode=check.entry_mode,
        timesheets_active=check.timesheets,
        lookback_days=lookback_days or (existing.lookback_days if existing else None)
        or get_settings().default_lookback_days,
        split_mode=SplitMode(split_mode),
        job_type=job_type,
        st_company_id=int(company["id"]),
        st_location_id=int(location["id"]),
        st_job_id=int(job["id"]),
        st_job_number=_maybe_int(job.get("number")),
    )
    conn.st_vendor_company_id = vendor_id
    log.info("project.linked", project_id=project_id, job_id=link.st_job_id, created=created)
    return LinkResult(link.id, project_id, link.name, int(job["id"]), link.st_job_number, tuple(created), False)


def _servicetrade_job(
    st: ServiceTradeClient, project_id: int, project: Mapping[str, Any], job_type: str, vendor_id: int,
) -> tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any], list[str]]:
    """The customer, location and job of the project on the ServiceTrade side, and which of them were created."""
    external = {"procore": str(project_id)}
    address = {
        "street": project.get("address"),
        "city": project.get("city"),
        "state": project.get("state_code"),
        "postalCode": project.get("zip"),
    }
    name = str(project.get("name"))
    created: list[str] = []

    company = _find_or_create(
        "company",
        lambda: st.list_companies(name=name),
        lambda: st.create_company({"name": name, "customer": True, "address": address, "externalIds": external}),
        external,
        created,
    )
    location = _find_or_create(
        "location",
        lambda: st.list_locations(company_id=int(company["id"])),
        lambda: st.create_location(
            {"name": name, "companyId": int(company["id"]), "address": address, "externalIds": external}
        ),
        external,
        created,
    )
    job = _find_or_create(
        "job",
        lambda: st.list_jobs(location_id=int(location["id"]), status="all"),
        lambda: st.create_job(
            {"locationId": int(location["id"]), "vendorId": vendor_id, "customerId": int(company["id"]),
             "type": job_type, "name": name, "externalIds": external}
        ),
        external,
        created,
    )
    return company, location, job, created


def _find_or_create(
    kind: str,
    listing: Callable[[], Iterable[Mapping[str, Any]]],
    create: Callable[[], Mapping[str, Any]],
    external: Mapping[str, str],
    created: list[str],
) -> Mapping[str, Any]:
    """ST-7: there is no filter by external id, so list and match on the client side; create only when absent.

    A lost response on the create is answered by looking again, never by creating blind.
    """
    found = _match(listing(), external)
    if found is not None:
        return found
    try:
        item = create()
    except OutcomeUnknown:
        log.warning("project.create_outcome_unknown", kind=kind)
        found = _match(listing(), external)
        if found is None:
            raise
        return found
    created.append(kind)
    return item


def _match(items: Iterable[Mapping[str, Any]], external: Mapping[str, str]) -> Mapping[str, Any] | None:
    for item in items:
        ids = item.get("externalIds") or {}
        if all(str(ids.get(k)) == v for k, v in external.items()):
            return item
    return None


def _maybe_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
