"""Payroll periods and sync windows as local dates (DESIGN §5). Both ends of a period are included."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from worker.enums import PayrollKind


@dataclass(frozen=True)
class Period:
    """Local dates from `start` to `end`, both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"a period can't end ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __contains__(self, d: object) -> bool:
        return isinstance(d, date) and self.start <= d <= self.end


def period_containing(d: date, kind: PayrollKind, anchor: date | None = None) -> Period:
    """The payroll period of `kind` that `d` falls in.

    weekly: 7 days starting on the anchor's weekday (Monday without an anchor). biweekly: 14 days aligned to the
    anchor, the first day of any one period; it is required. semimonthly and monthly follow the calendar and
    ignore the anchor.
    """
    kind = PayrollKind(kind)
    if kind is PayrollKind.weekly:
        first_weekday = anchor.weekday() if anchor is not None else 0
        start = d - timedelta(days=(d.weekday() - first_weekday) % 7)
        return Period(start, start + timedelta(days=6))
    if kind is PayrollKind.biweekly:
        if anchor is None:
            raise ValueError("a biweekly payroll period needs an anchor date: the first day of any one period")
        start = d - timedelta(days=(d - anchor).days % 14)
        return Period(start, start + timedelta(days=13))
    last = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
    if kind is PayrollKind.semimonthly:
        if d.day <= 15:
            return Period(d.replace(day=1), d.replace(day=15))
        return Period(d.replace(day=16), last)
    return Period(d.replace(day=1), last)


def last_closed_period(today: date, kind: PayrollKind, anchor: date | None = None) -> Period:
    """The latest period that ended before `today`: today's own period is still open, even on its last day."""
    current = period_containing(today, kind, anchor)
    return period_containing(current.start - timedelta(days=1), kind, anchor)


def nightly_window(d: date) -> Period:
    return Period(d, d)


def weekly_window(d: date) -> Period:
    """The seven days ending with `d`."""
    return Period(d - timedelta(days=6), d)
