"""Cost code rules of a project (DESIGN §3 step 7): added only with a budgeted Labor cost code and a Labor cost
type of the project, listed with the names a person reads, removed by priority."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from worker.clients.procore import ProcoreClient
from worker.db import session_scope
from worker.enums import RULE_ACTIVITIES, WEEKDAYS
from worker.inputs import InvalidArgument, positive_id, positive_limit
from worker.models import CostCodeRule
from worker.projects import cost_code_label
from worker.service.connections import procore_of
from worker.store import rules as rule_store
from worker.store.links import find_link
from worker.store.technicians import list_technicians
from worker.sync.context import labor_codes
from worker.sync.rules import parse_weekdays, parse_window


@dataclass(frozen=True)
class RuleView:
    """One rule with its conditions and what it posts to, by name as well as id."""

    id: int
    priority: int
    activity: str | None
    st_user_id: int | None
    technician: str | None  # the technician's name, when the rule names one
    weekdays: str | None
    start_window: str | None
    cost_code_id: int
    cost_code: str  # `01-100 General Conditions Labor`
    line_item_type_id: int
    cost_type: str
    timecard_time_type_id: int | None
    billable: bool
    description: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "priority": self.priority, "activity": self.activity, "st_user_id": self.st_user_id,
                "technician": self.technician, "weekdays": self.weekdays, "start_window": self.start_window,
                "cost_code_id": self.cost_code_id, "cost_code": self.cost_code,
                "line_item_type_id": self.line_item_type_id, "cost_type": self.cost_type,
                "timecard_time_type_id": self.timecard_time_type_id, "billable": self.billable,
                "description": self.description}


@dataclass(frozen=True)
class ProcoreNames:
    """Names of a project's cost codes and the company's cost types, read once from Procore."""

    cost_codes: Mapping[int, Mapping[str, Any]]
    cost_types: Mapping[int, Mapping[str, Any]]

    @classmethod
    def read(cls, procore: ProcoreClient, project_id: int) -> ProcoreNames:
        return cls({int(c["id"]): c for c in procore.cost_codes(project_id)},
                   {int(t["id"]): t for t in procore.line_item_types()})

    def cost_code(self, cost_code_id: int) -> str:
        code = self.cost_codes.get(cost_code_id)
        return cost_code_label(code) if code else f"cost code {cost_code_id} (no longer on the project)"

    def cost_type(self, line_item_type_id: int) -> str:
        found = self.cost_types.get(line_item_type_id)
        return str(found.get("name")) if found else f"cost type {line_item_type_id} (no longer in Procore)"


def add_rule(
    project_id: int, cost_code_id: int, line_item_type_id: int, *, activity: str | None = None,
    st_user_id: int | None = None, weekdays: str | None = None, start_between: str | None = None,
    time_type_id: int | None = None, billable: bool = False, description: str | None = None,
    priority: int | None = None,
) -> RuleView:
    """Add a rule after the last one (or at `priority`). Only a budgeted Labor cost code of the project and a
    Labor cost type are accepted; a refusal lists the valid choices by name."""
    project_id = positive_id(project_id, "project_id")
    cost_code_id = positive_id(cost_code_id, "cost_code_id")
    line_item_type_id = positive_id(line_item_type_id, "line_item_type_id")
    if priority is not None:
        priority = positive_limit(priority, "priority", most=10_000)
    if activity is not None and activity not in RULE_ACTIVITIES:
        raise InvalidArgument(f"activity must be one of {', '.join(RULE_ACTIVITIES)}, got {activity!r}")
    if weekdays:
        weekdays = weekday_text(parse_weekdays(weekdays))
    if start_between:
        parse_window(start_between)
    with session_scope() as s:
        link = find_link(s, project_id)
        conn, procore = procore_of(s)
        names = ProcoreNames.read(procore, project_id)
        check_labor(names, cost_code_id, line_item_type_id)
        taken = rule_store.taken_priorities(s, link.id)
        if priority is None:
            priority = max(taken, default=0) + 1
        elif priority in taken:
            raise InvalidArgument(
                f"priority {priority} is taken on project {project_id}; remove that rule or pick another")
        rule = rule_store.add_rule(
            s, link.id, priority, activity=activity, st_user_id=st_user_id, weekdays=weekdays,
            start_window=start_between, cost_code_id=cost_code_id, line_item_type_id=line_item_type_id,
            timecard_time_type_id=time_type_id, billable=billable, description=description)
        return _views(s, conn.id, [rule], names)[0]


def list_rules(project_id: int) -> list[RuleView]:
    """The rules of a project in the order they are tried, with cost codes and cost types by name."""
    project_id = positive_id(project_id, "project_id")
    with session_scope() as s:
        link = find_link(s, project_id)
        rules = rule_store.list_rules(s, link.id)
        if not rules:
            return []
        _conn, procore = procore_of(s)
        return rule_views(s, procore, link.connection_id, project_id, rules)


def remove_rule(project_id: int, priority: int) -> None:
    project_id = positive_id(project_id, "project_id")
    with session_scope() as s:
        link = find_link(s, project_id)
        if not rule_store.remove_rule(s, link.id, priority):
            raise LookupError(f"project {project_id} has no rule #{priority}")


def rule_views(s: Session, procore: ProcoreClient, connection_id: int, project_id: int,
               rules: Sequence[CostCodeRule]) -> list[RuleView]:
    """Rules as a person reads them; Procore is asked for names only when there are rules to name."""
    return _views(s, connection_id, rules, ProcoreNames.read(procore, project_id)) if rules else []


def weekday_text(days: Iterable[int]) -> str:
    return ",".join(WEEKDAYS[d] for d in sorted(days))


def check_labor(names: ProcoreNames, cost_code_id: int, line_item_type_id: int) -> None:
    codes = labor_codes(names.cost_codes.values(), names.cost_types.values())
    if cost_code_id not in codes.usable:
        valid = "\n".join(
            f"  cost code {cid} {cost_code_label(c)}" for cid, c in codes.usable.items()
        ) or "  (none: the project has no budgeted Labor cost code)"
        why = codes.unusable.get(cost_code_id, (None, "not a cost code of this project"))[1]
        raise InvalidArgument(f"cost code {cost_code_id} can't take labor hours ({why}). Valid choices:\n{valid}")
    if line_item_type_id not in codes.labor_line_item_types:
        types = "\n".join(f"  cost type {tid} {t.get('name')}" for tid, t in codes.labor_line_item_types.items())
        raise InvalidArgument(f"cost type {line_item_type_id} is not a Labor cost type. Valid choices:\n{types}")


def _views(s: Session, connection_id: int, rules: Sequence[CostCodeRule], names: ProcoreNames) -> list[RuleView]:
    technicians = {t.st_user_id: t.name for t in list_technicians(s, connection_id)}
    return [
        RuleView(
            id=r.id, priority=r.priority, activity=r.activity, st_user_id=r.st_user_id,
            technician=(technicians.get(r.st_user_id, f"ServiceTrade user {r.st_user_id}")
                        if r.st_user_id is not None else None),
            weekdays=r.weekdays, start_window=r.start_window, cost_code_id=r.cost_code_id,
            cost_code=names.cost_code(r.cost_code_id), line_item_type_id=r.line_item_type_id,
            cost_type=names.cost_type(r.line_item_type_id), timecard_time_type_id=r.timecard_time_type_id,
            billable=r.billable, description=r.description,
        )
        for r in rules
    ]
