"""Cost code rules of a project, in the order they are tried (priority 1 first)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from worker.models import CostCodeRule


def list_rules(s: Session, link_id: int) -> list[CostCodeRule]:
    return list(s.scalars(select(CostCodeRule).where(CostCodeRule.project_link_id == link_id)
                          .order_by(CostCodeRule.priority)))


def taken_priorities(s: Session, link_id: int) -> set[int]:
    return set(s.scalars(select(CostCodeRule.priority).where(CostCodeRule.project_link_id == link_id)))


def add_rule(s: Session, link_id: int, priority: int, **fields: Any) -> CostCodeRule:
    rule = CostCodeRule(project_link_id=link_id, priority=priority, **fields)
    s.add(rule)
    s.flush()
    return rule


def remove_rule(s: Session, link_id: int, priority: int) -> bool:
    """False when the project has no rule of that priority."""
    result = s.execute(delete(CostCodeRule).where(CostCodeRule.project_link_id == link_id,
                                                  CostCodeRule.priority == priority))
    return result.rowcount == 1
