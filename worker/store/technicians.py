"""Technicians of a connection as last read from ServiceTrade, with the Procore person their Employee ID resolves
to, or why it doesn't."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.db import dialect_insert
from worker.enums import TechnicianStatus
from worker.models import Technician
from worker.sync.context import ResolvedTechnician
from worker.text import clean_text


def store_technicians(s: Session, connection_id: int, techs: Sequence[ResolvedTechnician], now: datetime) -> None:
    """Upsert the technicians of a connection. Two projects' runs may refresh the same technicians at once, so
    this is one INSERT ... ON CONFLICT DO UPDATE, never a read followed by an insert."""
    if not techs:
        return
    rows = [
        {"connection_id": connection_id, "st_user_id": t.st_user_id, "name": clean_text(t.name, 300, "technician name"),
         "employee_id": clean_text(t.employee_id, 100, "Employee ID") if t.employee_id else None,
         "procore_party_id": t.party_id, "status": TechnicianStatus(t.status), "problem": clean_text(t.problem, 2000, "technician problem") if t.problem else None,
         "refreshed_at": now}
        for t in techs
    ]
    stmt = dialect_insert(s, Technician.__table__).values(rows)
    s.execute(stmt.on_conflict_do_update(
        index_elements=["connection_id", "st_user_id"],
        set_={k: stmt.excluded[k] for k in ("name", "employee_id", "procore_party_id", "status", "problem",
                                             "refreshed_at")},
    ))


def list_technicians(s: Session, connection_id: int) -> list[Technician]:
    """The stored technicians of a connection, by name."""
    return list(s.scalars(select(Technician).where(Technician.connection_id == connection_id)
                          .order_by(Technician.name, Technician.st_user_id)))
