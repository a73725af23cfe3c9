"""DESIGN §3 step 2: what a run needs from Procore and ServiceTrade, read once per run."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from worker.clients.procore import ProcoreClient
from worker.clients.servicetrade import ServiceTradeClient
from worker.enums import TechnicianStatus
from worker.sync.plan import ProjectContext, TechnicianView
from worker.sync.types import RoundingRule
from worker.text import clean_text

log = structlog.get_logger("stsync.sync")

TIMESHEETS_TOOL_TITLE = "Timesheets"
REQUIRED_PROJECT_FIELDS = ("name", "address", "city", "state_code", "zip")


class ProjectProblem(RuntimeError):
    """The Procore project cannot be synced as it is; the message says what to fix."""


@dataclass(frozen=True)
class LaborCodes:
    """Cost codes of the project that can take labor hours, and why the others can't (P-4)."""

    usable: dict[int, dict[str, Any]]  # cost code id → cost code
    unusable: dict[int, tuple[dict[str, Any], str]]  # cost code id → (cost code, why)
    labor_line_item_types: dict[int, dict[str, Any]]


def project_zone(project: Mapping[str, Any]) -> ZoneInfo:
    name = project.get("tz_name")
    if not name:
        raise ProjectProblem(f"Procore project {project.get('id')} has no time zone (tz_name); set it in Procore")
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ProjectProblem(f"Procore project {project.get('id')} has an unknown time zone {name!r}") from exc


def labor_codes(cost_codes: Iterable[Mapping[str, Any]], line_item_types: Iterable[Mapping[str, Any]]) -> LaborCodes:
    labor_types = {int(t["id"]): dict(t) for t in line_item_types if t.get("base_type") == "labor"}
    usable: dict[int, dict[str, Any]] = {}
    unusable: dict[int, tuple[dict[str, Any], str]] = {}
    for code in cost_codes:
        has_labor = any(t.get("base_type") == "labor" for t in code.get("line_item_types") or [])
        if not code.get("budgeted"):
            unusable[int(code["id"])] = (dict(code), "not budgeted on the project")
        elif not has_labor:
            unusable[int(code["id"])] = (dict(code), "no Labor cost type on its budget line")
        else:
            usable[int(code["id"])] = dict(code)
    return LaborCodes(usable=usable, unusable=unusable, labor_line_item_types=labor_types)


def rounding_rule(config: Mapping[str, Any] | None) -> RoundingRule | None:
    if not config:
        return None
    return RoundingRule(rule=str(config["rule"]), increment_min=int(config["time_increment"]))


def timesheets_active(tools: Iterable[Mapping[str, Any]]) -> bool:
    return any(t.get("title") == TIMESHEETS_TOOL_TITLE and t.get("is_active") for t in tools)


@dataclass(frozen=True)
class CompanyReference:
    """The company-wide Procore settings a run needs: the same for every project of the company."""

    configuration: dict[str, Any]
    line_item_types: list[dict[str, Any]]
    rounding: dict[str, Any] | None


_company_cache: dict[tuple[str, int], tuple[float, CompanyReference]] = {}
_company_cache_guard = threading.Lock()


def company_reference(
    procore: ProcoreClient, *, max_age_s: float, clock: Callable[[], float] = time.monotonic
) -> CompanyReference:
    """Company configuration, cost types and rounding rule, read at most once per `max_age_s` per company in
    this process. The dispatcher starts every due project of a company in the same minute, and a worker takes
    them one after the next: without this, each of those runs reads the same three objects again. The people
    (Employee IDs) and everything per project are read by every run, so a fix there shows in the next run."""
    key = (procore.api.base_url, procore.company_id)
    now = clock()
    with _company_cache_guard:
        hit = _company_cache.get(key)
    if hit is not None and now - hit[0] < max_age_s:
        return hit[1]
    configuration, line_item_types, rounding = side_by_side(
        procore.company_configuration, lambda: list(procore.line_item_types()), procore.rounding_configuration)
    ref = CompanyReference(configuration, line_item_types, rounding)
    if max_age_s > 0:
        with _company_cache_guard:
            _company_cache[key] = (now, ref)
    return ref


def forget_company_reference() -> None:
    """Drop what company_reference holds (tests that change a company's settings in the emulator)."""
    with _company_cache_guard:
        _company_cache.clear()


def load_project_context(
    procore: ProcoreClient, project_id: int, *, split_mode: str, job_number: int | None, company_max_age_s: float = 0
) -> tuple[ProjectContext, dict[str, Any], LaborCodes]:
    project, company, cost_codes, tools = side_by_side(
        lambda: procore.get_project(project_id),
        lambda: company_reference(procore, max_age_s=company_max_age_s),
        lambda: list(procore.cost_codes(project_id)),
        lambda: list(procore.project_tools(project_id)),
    )
    in_out = {int(p) for p in company.configuration.get("projects_timecard_in_out_enabled") or []}
    codes = labor_codes(cost_codes, company.line_item_types)
    ctx = ProjectContext(
        procore_project_id=project_id,
        tz=project_zone(project),
        start_stop=project_id in in_out,
        rounding=rounding_rule(company.rounding),
        split_mode=split_mode,
        labor_cost_code_ids=frozenset(codes.usable),
        labor_line_item_type_ids=frozenset(codes.labor_line_item_types),
        timesheets_active=timesheets_active(tools),
        job_number=job_number,
    )
    return ctx, project, codes


@dataclass(frozen=True)
class ResolvedTechnician:
    st_user_id: int
    name: str
    employee_id: str | None
    party_id: int | None
    status: TechnicianStatus
    problem: str | None

    def view(self) -> TechnicianView:
        return TechnicianView(self.st_user_id, self.name, self.party_id, self.status, self.problem)


def resolve_technicians(
    st_users: Iterable[Mapping[str, Any]], people: Iterable[Mapping[str, Any]]
) -> list[ResolvedTechnician]:
    """Match each technician's `externalIds.procore` to a Procore person who is an employee (ST-6, P-4)."""
    by_employee_id: dict[str, Mapping[str, Any]] = {}
    for person in people:
        emp = str(person.get("employee_id") or "").strip()
        if emp and _whole_id(person.get("id")) is not None:
            by_employee_id.setdefault(emp, person)
        elif emp:  # one odd record must not fail every project's run
            log.warning("procore.person_without_id", employee_id=emp[:40], id=repr(person.get("id"))[:40])
    resolved = []
    for user in st_users:
        uid = _whole_id(user.get("id"))
        if uid is None:
            log.warning("servicetrade.user_without_id", id=repr(user.get("id"))[:40])
            continue
        name = clean_text(user.get("name") or f"{user.get('firstName', '')} {user.get('lastName', '')}".strip(), 300,
                          "technician name")
        emp = str(((user.get("externalIds") or {}).get("procore")) or "").strip() or None
        if emp is None:
            resolved.append(ResolvedTechnician(uid, name, None, None, TechnicianStatus.no_employee_id,
                                               f"{name} has no Procore Employee ID in ServiceTrade"))
            continue
        person = by_employee_id.get(emp)
        if person is None:
            resolved.append(ResolvedTechnician(
                uid, name, emp, None, TechnicianStatus.invalid_employee_id,
                f"{name}'s Procore Employee ID {emp!r} matches no Procore person; correct it in ServiceTrade"))
            continue
        full = f"{person.get('first_name', '')} {person.get('last_name', '')}".strip()
        if not person.get("is_employee"):
            resolved.append(ResolvedTechnician(
                uid, name, emp, int(person["id"]), TechnicianStatus.not_employee,
                f"{name}'s Procore Employee ID {emp!r} belongs to {full}, who is not marked as an employee in "
                "Procore"))
            continue
        resolved.append(ResolvedTechnician(uid, name, emp, int(person["id"]), TechnicianStatus.ok, None))
    return resolved


def _whole_id(value: Any) -> int | None:
    """An id as a positive bigint, or None for what is not one (null, text, a number out of range)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 and not isinstance(value, bool | float) else None


def fetch_technicians(st: ServiceTradeClient, procore: ProcoreClient) -> list[ResolvedTechnician]:
    users, people = side_by_side(lambda: list(st.technicians()), lambda: list(procore.people(employees_only=False)))
    return resolve_technicians(users, people)


def side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """Independent reads made at once, their answers in order: a run's waits on the APIs overlap instead of adding
    up. Each call runs in a copy of the caller's log context, so its lines still carry the run's ids."""
    if len(calls) == 1:
        return [calls[0]()]
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="read") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        return [future.result() for future in futures]
