"""Linking a Procore project to ServiceTrade: the checks that must pass before anything syncs, and the
customer, location and job on the ServiceTrade side, created once even across crashes and lost responses (ST-7)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.clients.errors import OutcomeUnknown
from worker.clients.procore import ProcoreClient
from worker.clients.servicetrade import ServiceTradeClient
from worker.enums import EntryMode, SplitMode
from worker.models import Connection, ProjectLink
from worker.settings import get_settings
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


@dataclass
class ProjectCheck:
    project_id: int
    project: dict[str, Any]
    blockers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    codes: LaborCodes | None = None
    entry_mode: str | None = None
    timesheets: bool | None = None
    rounding: str | None = None
    technicians: list[ResolvedTechnician] = field(default_factory=list)
    link: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.blockers

    def to_dict(self) -> dict[str, Any]:
        codes = self.codes
        return {
            "project_id": self.project_id,
            "name": self.project.get("name"),
            "ok": self.ok,
            "blockers": self.blockers,
            "warnings": self.warnings,
            "time_zone": self.project.get("tz_name"),
            "entry_mode": self.entry_mode,
            "timesheets_active": self.timesheets,
            "approval": (
                None
                if self.timesheets is None
                else "entries wait on the Timesheets tool for review and approval"
                if self.timesheets
                else "no Timesheets tool: entries count toward the Labor budget at once"
            ),
            "rounding": self.rounding,
            "labor_cost_codes": [
                {"id": cid, "code": c.get("full_code") or c.get("code"), "name": c.get("name"),
                 "line_item_types": [t for t in c.get("line_item_types") or [] if t.get("base_type") == "labor"]}
                for cid, c in (codes.usable.items() if codes else [])
            ],
            "unusable_cost_codes": [
                {"id": cid, "code": c.get("full_code") or c.get("code"), "name": c.get("name"), "why": why}
                for cid, (c, why) in (codes.unusable.items() if codes else [])
            ],
            "technicians": [technician_dict(t) for t in self.technicians],
            "link": self.link,
        }


def technician_dict(t: ResolvedTechnician) -> dict[str, Any]:
    return {
        "st_user_id": t.st_user_id,
        "name": t.name,
        "employee_id": t.employee_id,
        "party_id": t.party_id if t.status == "ok" else None,
        "status": t.status,
        "warning": t.problem,
    }


def check_project(
    procore: ProcoreClient,
    st: ServiceTradeClient | None,
    project_id: int,
    *,
    link: ProjectLink | None = None,
) -> ProjectCheck:
    """Everything that would stop a sync of this project, each named (issue: `stsync project check`)."""
    project = procore.get_project(project_id)
    check = ProjectCheck(project_id=project_id, project=project)
    for key in REQUIRED_PROJECT_FIELDS:
        if not str(project.get(key) or "").strip():
            check.blockers.append(
                f"the project has no {FIELD_LABELS[key]}: fill in its {FIELD_LABELS[key]} in Procore's project admin"
            )
    try:
        project_zone(project)
    except ProjectProblem as exc:
        check.blockers.append(str(exc))
    check.codes = labor_codes(procore.cost_codes(project_id), procore.line_item_types())
    if not check.codes.usable:
        why = "; ".join(
            f"{c.get('full_code') or c.get('code')} {c.get('name')}: {reason}"
            for c, reason in check.codes.unusable.values()
        )
        check.blockers.append(
            "no budgeted Labor cost code: add a budget line with a Labor cost type to the project"
            + (f" (existing cost codes — {why})" if why else "")
        )
    if not check.codes.labor_line_item_types:
        check.blockers.append("the company has no Labor cost type (line item type with base type 'labor')")
    config = procore.company_configuration()
    in_out = {int(p) for p in config.get("projects_timecard_in_out_enabled") or []}
    check.entry_mode = "start_stop" if project_id in in_out else "hours"
    check.timesheets = timesheets_active(procore.project_tools(project_id))
    check.rounding = describe_rule(rounding_rule(procore.rounding_configuration()))
    if link is not None and link.st_job_id:
        check.link = {"job_id": link.st_job_id, "job_number": link.st_job_number, "job_type": link.job_type,
                      "url": job_url(link.st_job_id)}
    if st is not None:
        check.technicians = fetch_technicians(st, procore)
        for t in check.technicians:
            if t.status != "ok" and t.problem:
                check.warnings.append(t.problem + " — their clock events will be skipped")
    return check


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
    job_id: int
    job_number: int | None
    created: tuple[str, ...]
    already_linked: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "link_id": self.link_id,
            "project_id": self.project_id,
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
    split_mode: str = "midnight",
) -> LinkResult:
    """Create (or find) the ServiceTrade customer, location and job of a Procore project and record the link."""
    existing = s.scalars(
        select(ProjectLink).where(
            ProjectLink.connection_id == conn.id, ProjectLink.procore_project_id == project_id
        )
    ).one_or_none()
    if existing is not None and existing.st_job_id:
        return LinkResult(existing.id, project_id, existing.st_job_id, existing.st_job_number, (), True)
    if job_type not in JOB_TYPES:
        raise LinkRefused(f"unknown job type {job_type!r}; ServiceTrade accepts: {', '.join(JOB_TYPES)}")
    check = check_project(procore, None, project_id)
    if not check.ok:
        raise LinkRefused(
            f"Procore project {project_id} can't be linked yet:\n  - " + "\n  - ".join(check.blockers)
        )
    project = check.project
    vendor_id = conn.st_vendor_company_id or int(st.whoami()["company_id"])
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
    link = existing or ProjectLink(connection_id=conn.id, procore_project_id=project_id)
    link.name = name
    link.time_zone = str(project.get("tz_name"))
    link.entry_mode = EntryMode(check.entry_mode or "hours")
    link.timesheets_active = bool(check.timesheets)
    link.lookback_days = lookback_days or link.lookback_days or get_settings().default_lookback_days
    link.split_mode = SplitMode(split_mode)
    link.job_type = job_type
    link.st_company_id, link.st_location_id = int(company["id"]), int(location["id"])
    link.st_job_id, link.st_job_number = int(job["id"]), _maybe_int(job.get("number"))
    conn.st_vendor_company_id = vendor_id
    s.add(link)
    s.flush()
    log.info("project.linked", project_id=project_id, job_id=link.st_job_id, created=created)
    return LinkResult(link.id, project_id, link.st_job_id, link.st_job_number, tuple(created), False)


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
