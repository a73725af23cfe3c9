"""Cost code rules: parsing their conditions as people type them, and finding the rule for a piece of work
(DESIGN §3 step 7)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, time

from worker.sync.types import CostRule

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_weekdays(text: str) -> frozenset[int]:
    """"mon,wed,fri" → {0, 2, 4}. Names are three letters or whole, any case; a range "mon-fri" includes both
    ends and may wrap ("fri-mon")."""
    days: set[int] = set()
    for raw in text.split(","):
        token = raw.strip().lower()
        if not token:
            raise ValueError(f"weekdays {text!r} have an empty entry; write them like mon,tue,fri")
        first, dash, last = token.partition("-")
        if not dash:
            days.add(_weekday(token, text))
            continue
        a, b = _weekday(first.strip(), text), _weekday(last.strip(), text)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def parse_window(text: str) -> tuple[time, time]:
    """"18:00-05:00" → (18:00, 05:00): the start is included, the end is not, and the window wraps past midnight
    when the end is earlier than the start. "24:00" is accepted as an end."""
    start_text, dash, end_text = text.strip().partition("-")
    if not dash:
        raise ValueError(f"start window {text!r} must look like 07:00-15:30 (start-end, 24-hour clock)")
    start = _clock(start_text.strip(), text, allow_24=False)
    end = _clock(end_text.strip(), text, allow_24=True)
    if start == end:
        raise ValueError(
            f"start window {text!r} starts and ends at the same time; leave the window out to match any time"
        )
    return start, end


def match_rule(
    rules: Iterable[CostRule], *, activity: str, st_user_id: int, local_start: datetime
) -> CostRule | None:
    """The first rule, by ascending priority, whose every condition holds for a piece starting at `local_start`
    (a datetime in the project's zone: its weekday and wall time are what the conditions see)."""
    weekday, clock = local_start.weekday(), local_start.time()
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if rule.activity is not None and rule.activity != activity:
            continue
        if rule.st_user_id is not None and rule.st_user_id != st_user_id:
            continue
        if rule.weekdays is not None and weekday not in rule.weekdays:
            continue
        if rule.start_window is not None and not in_window(clock, rule.start_window):
            continue
        return rule
    return None


def in_window(clock: time, window: tuple[time, time]) -> bool:
    start, end = window
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # wraps past midnight; an end of 00:00 means "until midnight"


def _weekday(token: str, text: str) -> int:
    for names in (WEEKDAY_NAMES, _FULL_NAMES):
        if token in names:
            return names.index(token)
    raise ValueError(f"{token!r} in weekdays {text!r} is not a weekday; use mon, tue, wed, thu, fri, sat, sun")


def _clock(part: str, text: str, *, allow_24: bool) -> time:
    match = _CLOCK.match(part)
    if match is None:
        raise ValueError(f"{part!r} in start window {text!r} is not a time like 07:00")
    hour, minute = int(match[1]), int(match[2])
    if allow_24 and (hour, minute) == (24, 0):
        return time(0)
    if hour > 23 or minute > 59:
        raise ValueError(f"{part!r} in start window {text!r} is not a time of day")
    return time(hour, minute)
