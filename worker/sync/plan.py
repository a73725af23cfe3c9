"""From punches to planned ledger rows: pairing, rounding, splitting, rule matching and party resolution,
composed. Pure: values in, values out (DESIGN §3 steps 4–8)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from worker.enums import SkipReason, TechnicianStatus
from worker.sync.diff import content_hash
from worker.sync.hours import format_hours, hours_between
from worker.sync.pairing import pair_punches
from worker.sync.rounding import round_interval
from worker.sync.rules import match_rule
from worker.sync.splitting import split_interval
from worker.sync.types import CostRule, Interval, Punch, RoundingRule

SOURCE_DERIVED = frozenset(
    {
        SkipReason.open_interval,
        SkipReason.invalid_interval,
        SkipReason.zero_after_rounding,
        SkipReason.excluded_activity,
    }
)


@dataclass(frozen=True)
class ProjectContext:
    """What a run knows about the Procore project, refreshed once per run (DESIGN §3 step 2)."""

    procore_project_id: int
    tz: ZoneInfo
    start_stop: bool
    rounding: RoundingRule | None
    split_mode: str
    labor_cost_code_ids: frozenset[int]
    labor_line_item_type_ids: frozenset[int]
    timesheets_active: bool
    job_number: int | None = None


@dataclass(frozen=True)
class TechnicianView:
    st_user_id: int
    name: str
    party_id: int | None
    status: TechnicianStatus
    problem: str | None = None


@dataclass(frozen=True)
class PlannedRow:
    """One ledger row as this run sees it: an entry to post, or a skipped row with its reason."""

    source_key: str
    first_punch_at: datetime
    clock_in_event_id: int | None
    clock_out_event_id: int | None
    st_user_id: int | None
    technician_name: str | None
    activity: str | None
    work_date: date | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    rounded_start: datetime | None = None
    rounded_end: datetime | None = None
    piece_start: datetime | None = None
    piece_end: datetime | None = None
    hours: Decimal | None = None
    rule: CostRule | None = None
    party_id: int | None = None
    payload: dict[str, Any] | None = None
    content_hash: str | None = None
    skip_reason: SkipReason | None = None
    detail: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def source_derived(self) -> bool:
        return self.skip_reason in SOURCE_DERIVED


def local_date(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def interval_key(clock_in_id: int, work_date: date) -> str:
    """The ledger's source key: `<clock-in event id>:<local date>` (DESIGN §3 step 9)."""
    return f"{clock_in_id}:{work_date.isoformat()}"


def plan_rows(
    punches: Iterable[Punch],
    ctx: ProjectContext,
    rules: Sequence[CostRule],
    technicians: Mapping[int, TechnicianView],
    *,
    explicit: CostRule | None = None,
) -> list[PlannedRow]:
    """Every punch ends in exactly one planned row: a piece to post or a skipped row with its reason.

    `explicit` replaces rule matching (the manual flow: one cost code and cost type chosen by a person).
    """
    result = pair_punches(punches, tz=ctx.tz)
    rows: list[PlannedRow] = []
    for skipped in result.skipped:
        first = skipped.punches[0]
        suffix = local_date(first.at, ctx.tz).isoformat() if first.event_type == "clockIn" else "out"
        rows.append(
            PlannedRow(
                source_key=f"{first.id}:{suffix}",
                first_punch_at=first.at,
                clock_in_event_id=first.id if first.event_type == "clockIn" else None,
                clock_out_event_id=next((p.id for p in skipped.punches if p.event_type == "clockOut"), None),
                st_user_id=first.user_id,
                technician_name=first.user_name,
                activity=first.activity,
                work_date=local_date(first.at, ctx.tz),
                actual_start=first.at,
                actual_end=skipped.punches[-1].at if len(skipped.punches) > 1 else None,
                skip_reason=skipped.reason,
                detail=skipped.detail,
            )
        )
    for interval in result.intervals:
        rows.extend(_plan_interval(interval, ctx, rules, technicians, explicit))
    return rows


def _plan_interval(
    interval: Interval,
    ctx: ProjectContext,
    rules: Sequence[CostRule],
    technicians: Mapping[int, TechnicianView],
    explicit: CostRule | None,
) -> list[PlannedRow]:
    common: dict[str, Any] = {
        "first_punch_at": interval.start,
        "clock_in_event_id": interval.clock_in.id,
        "clock_out_event_id": interval.clock_out.id,
        "st_user_id": interval.user_id,
        "technician_name": interval.user_name,
        "activity": interval.activity,
        "actual_start": interval.start,
        "actual_end": interval.end,
    }
    rounded_start, rounded_end = round_interval(interval.start, interval.end, ctx.rounding, ctx.tz)
    common.update(rounded_start=rounded_start, rounded_end=rounded_end)
    if rounded_end <= rounded_start:
        start_date = local_date(interval.start, ctx.tz)
        return [
            PlannedRow(
                source_key=interval_key(interval.clock_in.id, start_date),
                work_date=start_date,
                skip_reason=SkipReason.zero_after_rounding,
                detail=(
                    f"{interval.user_name}: {_hm(interval.start, ctx.tz)}–{_hm(interval.end, ctx.tz)} "
                    f"rounds to nothing under the company rule"
                ),
                **common,
            )
        ]
    tech = technicians.get(interval.user_id)
    rows = []
    for piece in split_interval(rounded_start, rounded_end, ctx.tz, mode=ctx.split_mode):
        key = interval_key(interval.clock_in.id, piece.work_date)
        hours = hours_between(piece.start, piece.end)
        base = dict(common, source_key=key, work_date=piece.work_date, piece_start=piece.start,
                    piece_end=piece.end, hours=hours)
        skip = _party_problem(interval, tech)
        if skip is not None:
            rows.append(PlannedRow(**base, skip_reason=skip[0], detail=skip[1]))
            continue
        rule = explicit or match_rule(
            rules, activity=interval.activity, st_user_id=interval.user_id, local_start=piece.start.astimezone(ctx.tz)
        )
        if rule is None:
            rows.append(
                PlannedRow(
                    **base,
                    party_id=tech.party_id,
                    skip_reason=SkipReason.unmapped,
                    detail=(
                        f"no cost code rule matches {interval.activity} work of {interval.user_name} on "
                        f"{piece.work_date:%a %Y-%m-%d} starting {_hm(piece.start, ctx.tz)}"
                    ),
                )
            )
            continue
        invalid = _rule_problem(rule, ctx)
        if invalid is not None:
            rows.append(
                PlannedRow(**base, party_id=tech.party_id, rule=rule, skip_reason=SkipReason.unmapped, detail=invalid)
            )
            continue
        payload = entry_payload(ctx, rule, tech.party_id, piece.work_date, piece.start, piece.end, hours, interval)
        rows.append(
            PlannedRow(
                **base, party_id=tech.party_id, rule=rule, payload=payload, content_hash=content_hash(payload)
            )
        )
    return rows


def _party_problem(interval: Interval, tech: TechnicianView | None) -> tuple[SkipReason, str] | None:
    if tech is None:
        return (
            SkipReason.no_employee_id,
            f"{interval.user_name} (ServiceTrade user {interval.user_id}) is not in ServiceTrade's technician list, "
            "so no Procore Employee ID is known",
        )
    if tech.party_id is not None and tech.status is TechnicianStatus.ok:
        return None
    if tech.status is TechnicianStatus.no_employee_id:
        return (
            SkipReason.no_employee_id,
            f"{tech.name} (ServiceTrade user {tech.st_user_id}) has no Procore Employee ID; set externalIds.procore "
            "on the technician in ServiceTrade",
        )
    return (
        SkipReason.invalid_employee_id,
        tech.problem or f"{tech.name} (ServiceTrade user {tech.st_user_id}) has no valid Procore Employee ID",
    )


def _rule_problem(rule: CostRule, ctx: ProjectContext) -> str | None:
    """A rule saved earlier may point at a cost code that stopped being a budgeted labor one: never post it."""
    label = f"rule #{rule.priority}" if rule.id else "the chosen cost code"
    if rule.cost_code_id not in ctx.labor_cost_code_ids:
        return (
            f"{label} maps to cost code {rule.cost_code_id}, which is not a budgeted Labor cost code of project "
            f"{ctx.procore_project_id} any more"
        )
    if rule.line_item_type_id not in ctx.labor_line_item_type_ids:
        return f"{label} maps to cost type {rule.line_item_type_id}, which is not a Labor cost type"
    return None


def entry_payload(
    ctx: ProjectContext,
    rule: CostRule,
    party_id: int,
    work_date: date,
    start: datetime,
    end: datetime,
    hours: Decimal,
    interval: Interval,
) -> dict[str, Any]:
    """The Procore timecard entry for one piece, without the ledger's origin fields (P-5)."""
    payload: dict[str, Any] = {
        "project_id": ctx.procore_project_id,
        "party_id": party_id,
        "date": work_date.isoformat(),
        "cost_code_id": rule.cost_code_id,
        "line_item_type_id": rule.line_item_type_id,
        "billable": rule.billable,
        "description": rule.description or _default_description(ctx, interval, start, end),
    }
    if ctx.start_stop:
        payload["time_in"] = start.astimezone(ctx.tz).isoformat()
        payload["time_out"] = end.astimezone(ctx.tz).isoformat()
    else:
        payload["hours"] = format_hours(hours)
    if rule.timecard_time_type_id is not None:
        payload["timecard_time_type_id"] = rule.timecard_time_type_id
    return payload


def _default_description(ctx: ProjectContext, interval: Interval, start: datetime, end: datetime) -> str:
    job = f"job #{ctx.job_number}" if ctx.job_number else f"job {interval.job_id}"
    return f"ServiceTrade {job}: {interval.activity} {_hm(start, ctx.tz)}-{_hm(end, ctx.tz)}"


def _hm(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%H:%M")
