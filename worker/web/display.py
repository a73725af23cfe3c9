"""How values read on a page: hours with two decimals, times as HH:MM, instants with their zone named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def hours(value: Decimal | float | str | None) -> str:
    if value is None or value == "":
        return "–"
    return f"{Decimal(str(value)):.2f}"


def clock(value: datetime | str | None) -> str:
    """A local time of day, as the table shows actual and rounded punches."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        return value[-5:] if len(value) == len("2026-03-02 07:15") else value
    return value.strftime("%H:%M")


def instant(value: datetime | None) -> str:
    if value is None:
        return "–"
    return value.strftime("%Y-%m-%d %H:%M %Z")


def day(value: date | str | None) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return value.strftime("%a %Y-%m-%d")


def words(value: Any) -> str:
    """An enum value or code as words: `needs_review` → `needs review`."""
    if value is None:
        return "–"
    return str(getattr(value, "value", value)).replace("_", " ")


def sentence(value: str) -> str:
    """Text that starts a sentence: its first letter in capitals, the rest as it is."""
    return value[:1].upper() + value[1:]


FILTERS: dict[str, Callable[..., str]] = {
    "hours": hours,
    "clock": clock,
    "instant": instant,
    "day": day,
    "words": words,
    "sentence": sentence,
}
