"""Rebuilding a window's ledger rows from Procore and ServiceTrade alone (issue 18): after a database was lost or
restored, what Procore holds is the record of what exists. Nothing is sent to Procore."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any

from schedules.nextrun import local_to_utc
from schedules.periods import Period
from worker.clients.procore import ProcoreClient
from worker.clients.servicetrade import ServiceTradeClient
from worker.db import get_engine, project_lock, session_scope
from worker.settings import get_settings
from worker.store import ledger as ledger_store
from worker.store.technicians import store_technicians
from worker.sync.apply import Applier
from worker.sync.context import fetch_technicians, load_project_context
from worker.sync.identity import parse_origin
from worker.sync.pipeline import record_context, snapshot
from worker.sync.plan import plan_rows
from worker.sync.posting import Poster, id_of
from worker.sync.reading import read_events
from worker.sync.report import RunReport


@dataclass(frozen=True)
class RebuildResult:
    project_id: int
    project_name: str
    window: Period
    adopted: int  # ledger rows made or corrected from Procore's entries
    changed_in_procore: int  # entries of ours that Procore holds differently from the clock events: failed, named
    unmatched_in_procore: int  # entries of the project in the window that match no clock event (by hand, or stale)
    not_in_procore: int  # clock events whose entry Procore does not have yet: the next sync posts them

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window"] = [self.window.start.isoformat(), self.window.end.isoformat()]
        return data


def rebuild_window(link_id: int, window: Period, *, st: ServiceTradeClient, procore: ProcoreClient, now: datetime,
                   database_url: str | None = None) -> RebuildResult:
    with project_lock(get_engine(database_url), link_id) as lock:
        with session_scope(database_url) as s:
            link = snapshot(s, link_id)
        ctx, project, _codes = load_project_context(
            procore, link.project_id, split_mode=link.split_mode, job_number=link.job_number,
            company_max_age_s=get_settings().procore_company_cache_s)
        technicians = fetch_technicians(st, procore)
        with session_scope(database_url) as s:
            record_context(s, link_id, ctx, project)
            store_technicians(s, link.connection_id, technicians, now)
        report = RunReport(link.project_id, str(project.get("name") or link.project_id), window.start, window.end,
                           dry_run=False, awaiting_approval=ctx.timesheets_active)
        start = local_to_utc(window.start, time(0), ctx.tz)
        end = local_to_utc(window.end + timedelta(days=1), time(0), ctx.tz)
        if link.job_id is None:
            raise LookupError(f"project {link.project_id} has no ServiceTrade job; run `stsync project link` first")
        punches = read_events(st, link_id, link.job_id, start - timedelta(hours=24), end + timedelta(hours=24),
                              report, now=now, persist=True, database_url=database_url)
        planned = {p.source_key: p for p in plan_rows(punches, ctx, list(link.rules),
                                                      {t.st_user_id: t.view() for t in technicians})
                   if p.work_date is not None and window.start <= p.work_date <= window.end}
        with session_scope(database_url) as s:
            rows = ledger_store.window_rows(s, link_id, scope_start=start, scope_end=end, keys=list(planned))
        poster = Poster(procore, link.project_id, None, now, report, database_url=database_url, guard=lock.check)
        Applier(poster, link_id, link.connection_id, None, now, database_url).adopt_existing(
            planned, rows, window, manual=False)

        in_procore = [e for e in procore.list_entries(window.start, window.end) if not e.get("deleted_at")
                      and id_of(e, "project") == link.project_id]
        ours = {origin.source_key for e in in_procore if (origin := parse_origin(e)) is not None}
        postable = {key for key, p in planned.items() if p.payload is not None}
        return RebuildResult(
            project_id=link.project_id, project_name=report.project_name, window=window, adopted=report.adopted,
            changed_in_procore=report.failed,
            unmatched_in_procore=sum(1 for e in in_procore
                                     if (origin := parse_origin(e)) is None or origin.source_key not in planned),
            not_in_procore=len(postable - ours),
        )
