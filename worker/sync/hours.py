"""Hours as Procore takes them: a decimal string with two places ("7.25", P-5)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

_HUNDREDTH = Decimal("0.01")


def hours_between(start: datetime, end: datetime) -> Decimal:
    """Hours from `start` to `end` (aware instants, so DST changes count), to the hundredth, halves up."""
    span = end - start
    # Whole microseconds as an integer keep the division exact before the one quantize.
    micros = Decimal(span // timedelta(microseconds=1))
    return (micros / Decimal(3_600_000_000)).quantize(_HUNDREDTH, rounding=ROUND_HALF_UP)


def format_hours(hours: Decimal) -> str:
    """"7.25", "8.00": always two places."""
    return str(hours.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP))
