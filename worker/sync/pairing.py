"""Punches into intervals (ST-5): a clock-in and the next clock-out of the same technician, job and activity.

Every punch ends in exactly one interval or one skipped item; nothing is dropped without a reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from worker.enums import ACTIVITIES, EVENT_TYPES, SkipReason
from worker.sync.types import Interval, Punch, SkippedPunches

# A shift longer than a day is a forgotten clock-out, not work: it would post absurd hours.
MAX_INTERVAL = timedelta(hours=24)
DEFAULT_EXCLUDED = frozenset({"onbreak"})


@dataclass
class PairingResult:
    intervals: list[Interval] = field(default_factory=list)
    skipped: list[SkippedPunches] = field(default_factory=list)


def pair_punches(
    punches: Iterable[Punch],
    *,
    excluded_activities: frozenset[str] = DEFAULT_EXCLUDED,
    tz: tzinfo = UTC,
) -> PairingResult:
    """Pair punches per (technician, job, activity) in (time, id) order.

    Intervals of an excluded activity (breaks) are never posted: all their punches, closed or not, are skipped
    as `excluded_activity`. `tz` only changes how times read in the skip details.
    """
    result = PairingResult()
    groups: dict[tuple[int, int, str], list[Punch]] = defaultdict(list)
    for punch in punches:
        problem = _unknown_value(punch, excluded_activities)
        if problem is not None:
            result.skipped.append(SkippedPunches((punch,), SkipReason.invalid_interval, _describe(punch, tz) + problem))
            continue
        groups[(punch.user_id, punch.job_id, punch.activity)].append(punch)
    for (_user, _job, activity), group in groups.items():
        group.sort(key=lambda p: (p.at, p.id))
        _pair_group(group, activity in excluded_activities, tz, result)
    result.intervals.sort(key=lambda i: (i.start, i.clock_in.id))
    result.skipped.sort(key=lambda s: (s.punches[0].at, s.punches[0].id))
    return result


def _unknown_value(punch: Punch, excluded: frozenset[str]) -> str | None:
    if punch.event_type not in EVENT_TYPES:
        return f" has an unknown eventType {punch.event_type!r} (expected clockIn or clockOut)"
    if punch.activity not in ACTIVITIES and punch.activity not in excluded:
        return f" has an unknown activity {punch.activity!r} (expected one of {', '.join(sorted(ACTIVITIES))})"
    return None


def _pair_group(group: list[Punch], excluded: bool, tz: tzinfo, result: PairingResult) -> None:
    open_in: Punch | None = None
    for punch in group:
        if punch.event_type == "clockIn":
            if open_in is not None:
                _skip_single(
                    result, open_in, excluded, tz,
                    f" was followed by another clock-in {punch.id} at {_when(punch.at, tz)} with no clock-out "
                    "in between",
                )
            open_in = punch
            continue
        if open_in is None:
            _skip_single(result, punch, excluded, tz, " has no clock-in before it (orphan clock-out)")
            continue
        _close(open_in, punch, excluded, tz, result)
        open_in = None
    if open_in is not None:
        if excluded:
            _skip_single(result, open_in, excluded, tz, " has no clock-out yet")
        else:
            result.skipped.append(
                SkippedPunches(
                    (open_in,), SkipReason.open_interval, _describe(open_in, tz) + " has no clock-out yet (open interval)"
                )
            )


def _close(clock_in: Punch, clock_out: Punch, excluded: bool, tz: tzinfo, result: PairingResult) -> None:
    length = clock_out.at - clock_in.at
    if not excluded and timedelta(0) < length <= MAX_INTERVAL:
        result.intervals.append(Interval(clock_in, clock_out))
        return
    both = (clock_in, clock_out)
    span = f"{_describe(clock_in, tz)} and clock-out {clock_out.id} at {_when(clock_out.at, tz)}"
    if excluded:
        result.skipped.append(
            SkippedPunches(both, SkipReason.excluded_activity, f"{span}: {clock_in.activity} time is never posted")
        )
    elif length <= timedelta(0):
        result.skipped.append(
            SkippedPunches(both, SkipReason.invalid_interval, f"{span} make a zero or negative length interval")
        )
    else:
        result.skipped.append(
            SkippedPunches(
                both,
                SkipReason.invalid_interval,
                f"{span} span {_duration(length)}, longer than 24 hours; a clock-out was probably missed",
            )
        )


def _skip_single(result: PairingResult, punch: Punch, excluded: bool, tz: tzinfo, problem: str) -> None:
    if excluded:
        result.skipped.append(
            SkippedPunches(
                (punch,),
                SkipReason.excluded_activity,
                f"{_describe(punch, tz)}{problem}; {punch.activity} time is never posted",
            )
        )
    else:
        result.skipped.append(SkippedPunches((punch,), SkipReason.invalid_interval, _describe(punch, tz) + problem))


def _describe(punch: Punch, tz: tzinfo) -> str:
    kind = {"clockIn": "clock-in", "clockOut": "clock-out"}.get(punch.event_type, "clock event")
    return (
        f"{punch.activity} {kind} {punch.id} of {punch.user_name} (ServiceTrade user {punch.user_id}) "
        f"at {_when(punch.at, tz)}"
    )


def _when(at: datetime, tz: tzinfo) -> str:
    local = at.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if local.second else "%Y-%m-%d %H:%M %Z")


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"
