"""Task argument checks: a wrong argument fails at once with a message that names it."""

from __future__ import annotations

from datetime import date
from typing import Any

from worker.app import InvalidArgument


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"{name} must be an integer id, got {type(value).__name__} {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer id, got {value!r}") from None
    if number <= 0:
        raise InvalidArgument(f"{name} must be a positive id, got {number}")
    return number


def optional_date(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a date as YYYY-MM-DD, got {type(value).__name__} {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be a date as YYYY-MM-DD, got {value!r}") from None


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise InvalidArgument(f"{name} must be true or false, got {value!r}")


def id_list(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise InvalidArgument(f"{name} must be a non-empty list of integer ids, got {value!r}")
    return [positive_int(v, f"{name}[{i}]") for i, v in enumerate(value)]
