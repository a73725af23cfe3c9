"""The Procore company rounding rule applied to clock-in and clock-out times (P-8), in the project's zone.

The local wall clock is rounded with the instant's own UTC offset: naive local = instant + offset, round, subtract
the same offset. A nonexistent or ambiguous local time never has to be resolved, and durations stay differences of
UTC instants.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo

from worker.sync.types import RoundingRule

# Procore's footnote: a time of 23:59 always becomes 24:00, whatever the rule.
_LAST_MINUTE = time(23, 59)
_US_PER_MINUTE = 60_000_000


def round_time(t: datetime, rule: RoundingRule | None, tz: tzinfo, *, is_start: bool) -> datetime:
    """`t` rounded by `rule` on the wall clock of `tz`, as a UTC datetime. Without a rule, `t` as it is.

    `is_start` says whether `t` is a clock-in; only `favor_employee` treats the two ends differently.
    """
    if t.tzinfo is None:
        raise ValueError(f"round_time needs a timezone-aware datetime, got naive {t.isoformat()}")
    if rule is None:
        return t
    offset = t.astimezone(tz).utcoffset()
    assert offset is not None  # a tzinfo from zoneinfo always has one for an aware datetime
    local = t.astimezone(UTC).replace(tzinfo=None) + offset
    midnight = datetime.combine(local.date(), time(0))
    if local.time() >= _LAST_MINUTE:
        rounded = midnight + timedelta(days=1)
    else:
        rounded = midnight + timedelta(microseconds=_round_us(local - midnight, rule, is_start))
    return (rounded - offset).replace(tzinfo=UTC)


def round_interval(
    start: datetime, end: datetime, rule: RoundingRule | None, tz: tzinfo
) -> tuple[datetime, datetime]:
    """The clock-in and clock-out of one interval, rounded. The result may be empty or reversed (a short interval
    under `nearest`); the caller decides what that means."""
    return round_time(start, rule, tz, is_start=True), round_time(end, rule, tz, is_start=False)


def describe_rule(rule: RoundingRule | None) -> str:
    """The rule in words, for reports, previews and `project check`."""
    if rule is None:
        return "no rounding: punched times are used as they are"
    n = rule.increment_min
    return {
        "up": f"rounded up to the next {n} minutes",
        "down": f"rounded down to the previous {n} minutes",
        "nearest": f"rounded to the nearest {n} minutes",
        "favor_employee": f"rounded in the employee's favor to {n} minutes (clock-in down, clock-out up)",
    }[rule.rule]


def _round_us(since_midnight: timedelta, rule: RoundingRule, is_start: bool) -> int:
    """Microseconds since local midnight, rounded. Every increment divides a day, so the grid is the same
    whichever midnight it is counted from."""
    us = since_midnight // timedelta(microseconds=1)
    step = rule.increment_min * _US_PER_MINUTE
    below = us - us % step
    if below == us:
        return us
    kind = rule.rule
    if kind == "favor_employee":
        kind = "down" if is_start else "up"
    if kind == "down":
        return below
    if kind == "up":
        return below + step
    # nearest: an exact half goes up
    return below + step if 2 * (us - below) >= step else below
