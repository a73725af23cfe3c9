"""When a schedule runs next and what window that run covers (DESIGN §5), in the project's local time.

A local time that doesn't exist on a spring-forward day runs at the first valid minute after the gap; one that
occurs twice on a fall-back day runs once, at its first occurrence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from schedules.periods import Period, nightly_window, period_containing, weekly_window
from worker.enums import PayrollKind, ScheduleKind

# A run date is found well within this many days for every kind (a month plus grace); more means a bad spec.
_MAX_SEARCH_DAYS = 400


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule as stored: its kind and local time, plus what that kind needs.

    weekly needs `weekday` (0 = Monday); payroll needs `payroll_kind`, and an `anchor` when biweekly. An anchor
    given to another kind is ignored, as `period_containing` does.
    """

    kind: ScheduleKind
    at: time
    weekday: int | None = None
    payroll_kind: PayrollKind | None = None
    anchor: date | None = None
    grace_days: int = 0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", ScheduleKind(self.kind))
        except ValueError:
            raise ValueError(f"schedule kind {self.kind!r} is not one of nightly, weekly, payroll") from None
        if self.at.tzinfo is not None:
            raise ValueError(f"a schedule's time is a local wall time without a zone, got {self.at.isoformat()}")
        if self.kind is ScheduleKind.weekly:
            if self.weekday is None or not 0 <= self.weekday <= 6:
                raise ValueError(f"a weekly schedule needs a weekday from 0 (Monday) to 6, got {self.weekday!r}")
        elif self.weekday is not None:
            raise ValueError(f"only a weekly schedule has a weekday; a {self.kind} one got {self.weekday!r}")
        if self.kind is ScheduleKind.payroll:
            if self.payroll_kind is None:
                raise ValueError("a payroll schedule needs a payroll kind: weekly, biweekly, semimonthly or monthly")
            kind = PayrollKind(self.payroll_kind)
            if kind is PayrollKind.biweekly and self.anchor is None:
                raise ValueError("a biweekly payroll schedule needs an anchor date: the first day of any one period")
        elif self.payroll_kind is not None:
            raise ValueError(f"only a payroll schedule has a payroll kind; a {self.kind} one got {self.payroll_kind!r}")
        if self.grace_days < 0:
            raise ValueError(f"grace days can't be negative, got {self.grace_days}")


@dataclass(frozen=True)
class ScheduledRun:
    at_utc: datetime
    local_date: date  # the schedule's date; the run itself may be later on a day whose time was skipped
    window: Period


def next_run(spec: ScheduleSpec, tz: tzinfo, after: datetime) -> ScheduledRun:
    """The first run of `spec` strictly after the instant `after`."""
    if after.tzinfo is None:
        raise ValueError(f"next_run needs a timezone-aware `after`, got naive {after.isoformat()}")
    # A run of an earlier date is never after `after`: even when a skipped time pushes it past midnight, it
    # lands on the jump, the first instant of the next date.
    first = after.astimezone(tz).date()
    for offset in range(_MAX_SEARCH_DAYS):
        d = first + timedelta(days=offset)
        window = _window_of_run_on(spec, d)
        if window is None:
            continue
        at_utc = local_to_utc(d, spec.at, tz)
        if at_utc > after:
            return ScheduledRun(at_utc=at_utc, local_date=d, window=window)
    raise ValueError(f"no run of {spec} within {_MAX_SEARCH_DAYS} days after {after.isoformat()}")


def local_to_utc(d: date, t: time, tz: tzinfo) -> datetime:
    """The UTC instant of wall time `t` on local date `d` in `tz`.

    Twice on that day (fall back): the first occurrence. Not at all (spring forward): the moment the clocks
    jump, i.e. the first valid time after the gap (02:30 on 2026-03-08 in New York → 03:00 EDT).
    """
    naive = datetime.combine(d, t)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # In a gap, fold=0 reads the wall time with the offset before the jump and fold=1 with the one after, so the
    # jump lies between the two instants. Transitions fall on whole seconds: a search over epoch seconds is exact.
    lo = math.floor(naive.replace(tzinfo=tz, fold=1).timestamp())
    hi = math.ceil(first.timestamp())
    after_jump = _offset(first, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(datetime.fromtimestamp(mid, UTC), tz) == after_jump:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _offset(at: datetime, tz: tzinfo) -> timedelta | None:
    return at.astimezone(tz).utcoffset()


def _window_of_run_on(spec: ScheduleSpec, d: date) -> Period | None:
    """The window of the run scheduled on local date `d`, or None when `spec` doesn't run that day."""
    if spec.kind is ScheduleKind.nightly:
        return nightly_window(d)
    if spec.kind is ScheduleKind.weekly:
        return weekly_window(d) if d.weekday() == spec.weekday else None
    assert spec.payroll_kind is not None  # checked by ScheduleSpec
    last_day = d - timedelta(days=1 + spec.grace_days)
    period = period_containing(last_day, PayrollKind(spec.payroll_kind), spec.anchor)
    return period if period.end == last_day else None
