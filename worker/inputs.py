"""What people and programs hand stsync, checked once for every front door: ids, limits, dates and windows. A wrong
value is an `InvalidArgument` whose message names the input and what it should look like, never a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from schedules.periods import Period

BIGINT_MAX = 2**63 - 1  # ids are stored as PostgreSQL bigint
# Payroll history does not start before this, and nothing is scheduled this far ahead: a date outside is a typo.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)


class InvalidArgument(ValueError):
    """An input is wrong; the message names it. Raised before any work starts."""


def positive_id(value: Any, name: str) -> int:
    """A Procore or ServiceTrade id: a whole number from 1 to the largest bigint."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"{name} must be an integer id, got {type(value).__name__} {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer id, got {value!r}") from None
    if not 0 < number <= BIGINT_MAX:
        raise InvalidArgument(f"{name} must be a positive id no larger than {BIGINT_MAX}, got {number}")
    return number


def id_list(value: Any, name: str, *, most: int) -> list[int]:
    """A non-empty list of ids, at most `most` of them."""
    if not isinstance(value, list | tuple) or not value:
        raise InvalidArgument(f"{name} must be a non-empty list of integer ids, got {value!r}")
    if len(value) > most:
        raise InvalidArgument(f"{name} holds {len(value)} ids; at most {most} are taken in one call")
    return [positive_id(v, f"{name}[{i}]") for i, v in enumerate(value)]


def positive_limit(value: Any, name: str, *, most: int = 100_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"{name} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be a whole number, got {value!r}") from None
    if not 0 < number <= most:
        raise InvalidArgument(f"{name} must be from 1 to {most}, got {number}")
    return number


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise InvalidArgument(f"{name} must be true or false, got {value!r}")


def parse_day(value: Any, name: str) -> date | None:
    """A local date as YYYY-MM-DD (or a date), between 2000 and 2099; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise InvalidArgument(f"{name} must be a date as YYYY-MM-DD, got {value!r}") from None
    else:
        raise InvalidArgument(f"{name} must be a date as YYYY-MM-DD, got {type(value).__name__} {value!r}")
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InvalidArgument(f"{name} {day} is outside {EARLIEST_DAY.year}-{LATEST_DAY.year}: check the year")
    return day


def parse_window(
    start: Any, end: Any, *, today: date, max_days: int, names: Sequence[str] = ("start", "end")
) -> Period:
    """A window of local dates, both included. Without an end it ends today (in the project's zone); without a
    start it is the end's day alone. At most `max_days` long."""
    start_name, end_name = names
    end_day = parse_day(end, end_name) or today
    start_day = parse_day(start, start_name) or end_day
    if start_day > end_day:
        raise InvalidArgument(f"{start_name} {start_day} is after {end_name} {end_day}")
    window = Period(start_day, end_day)
    if window.days > max_days:
        raise InvalidArgument(
            f"the window {start_day} to {end_day} is {window.days} days; at most {max_days} are synced at once "
            "(split it, or raise MAX_WINDOW_DAYS)"
        )
    return window
