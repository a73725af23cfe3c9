"""Helpers shared by test modules, so that no test module imports another: the sync window most tests use, the
entries Procore (the emulator) holds, the ledger as stored, and the exactly-once check."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.models import LedgerEntry
from worker.sync.identity import parse_origin

from .stsync_env import Stsync

START, END = date(2026, 3, 2), date(2026, 3, 15)


def live_entries(emulator: Any, project_id: int | None = None) -> list[dict[str, Any]]:
    """The timecard entries Procore holds and nobody deleted, of one project or all."""
    entries = [e for e in emulator.admin.procore_entries() if not e.get("deleted_at")]
    if project_id is not None:
        entries = [e for e in entries if entry_project(e) == project_id]
    return entries


def entry_project(entry: dict[str, Any]) -> int:
    project = entry.get("project")
    return int(project["id"]) if isinstance(project, dict) else int(entry["project_id"])


def source_key_of(entry: dict[str, Any]) -> str:
    """The source key an entry of ours was posted for (its identity, DESIGN §3 step 10)."""
    origin = parse_origin(entry)
    assert origin is not None, f"entry {entry.get('id')} carries no stsync identity: {entry.get('origin_data')!r}"
    return origin.source_key


def ledger(status: LedgerStatus | None = None) -> list[LedgerEntry]:
    """The ledger rows as stored (detached, readable after the session closed), optionally of one status."""
    with session_scope() as s:
        query = select(LedgerEntry)
        if status is not None:
            query = query.where(LedgerEntry.status == status)
        rows = list(s.scalars(query))
        s.expunge_all()
    return rows


def assert_exactly_once(emulator: Any, project_id: int) -> None:
    """Procore holds each entry of the project once, and each is a posted ledger row with its id, date and hours."""
    entries = live_entries(emulator, project_id)
    origins = Counter(source_key_of(e) for e in entries)
    assert [o for o, n in origins.items() if n > 1] == [], "duplicate entries in Procore"
    posted = {r.source_key: r for r in ledger(status=LedgerStatus.posted)}
    mine = {o for o in origins if o in posted}
    assert mine == set(origins), "Procore holds entries the ledger does not know as posted"
    for e in entries:
        row = posted[source_key_of(e)]
        assert int(e["id"]) == row.procore_entry_id
        assert e["date"] == row.work_date.isoformat()
        if row.payload.get("hours") is not None:
            assert Decimal(str(e["hours"])) == row.hours


def first_project(stsync: Stsync) -> int:
    """The first project of the world, linked, with one rule to its first Labor cost code."""
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    stsync.add_default_rule(pid)
    return pid
