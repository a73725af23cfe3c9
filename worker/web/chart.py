"""The hours posted per day by cost code, laid out as a stacked bar chart for a server-rendered SVG: readable
without JavaScript, each bar titled with its numbers, the colours named in a legend beside them."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Protocol

# Colours that stay apart for the common kinds of colour blindness (Okabe–Ito), then greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999")
WIDTH, HEIGHT = 1000, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 12, 44
MOST_DAYS = 62


class PostedRow(Protocol):
    date: date | None
    cost_code: str | None
    hours: Decimal | None


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class DayLabel:
    x: float
    label: str


@dataclass(frozen=True)
class Series:
    cost_code: str
    colour: str
    hours: Decimal


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    plot_right: float
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    days: tuple[DayLabel, ...]
    legend: tuple[Series, ...]
    start: date
    end: date

    @property
    def total(self) -> Decimal:
        return sum((s.hours for s in self.legend), Decimal("0"))


def hours_chart(
    rows: Iterable[PostedRow], start: date | None = None, end: date | None = None
) -> Chart | None:
    """The chart of the rows' hours from `start` to `end` (default: the days that have hours, at most the last
    MOST_DAYS of them); None when there is nothing to draw."""
    by_day: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in rows:
        if row.date is not None and row.hours:
            by_day[row.date][row.cost_code or "no cost code"] += row.hours
    if not by_day:
        return None
    end = end or max(by_day)
    start = max(start or min(by_day), end - timedelta(days=MOST_DAYS - 1))
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for day in days:
        for code, hours in by_day.get(day, {}).items():
            totals[code] += hours
    if not totals:
        return None
    codes = sorted(totals)
    colours = {code: PALETTE[i % len(PALETTE)] for i, code in enumerate(codes)}
    top = _nice_top(max((sum(by_day.get(d, {}).values(), Decimal("0")) for d in days), default=Decimal("1")))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(days)
    scale = plot_h / float(top)
    bars: list[Bar] = []
    for i, day in enumerate(days):
        y = TOP + plot_h
        for code in codes:
            hours = by_day.get(day, {}).get(code)
            if not hours:
                continue
            height = float(hours) * scale
            y -= height
            bars.append(
                Bar(
                    LEFT + i * slot + slot * 0.15,
                    y,
                    slot * 0.7,
                    height,
                    colours[code],
                    f"{day:%a %Y-%m-%d}: {hours:.2f} h on {code}",
                )
            )
    step = max(1, math.ceil(len(days) / 16))
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=LEFT,
        plot_bottom=TOP + plot_h,
        plot_right=WIDTH - RIGHT,
        bars=tuple(bars),
        ticks=tuple(Tick(TOP + plot_h - float(v) * scale, f"{v:g} h") for v in _tick_values(top)),
        days=tuple(
            DayLabel(LEFT + i * slot + slot / 2, f"{d:%a %d}") for i, d in enumerate(days) if i % step == 0
        ),
        legend=tuple(Series(code, colours[code], totals[code]) for code in codes),
        start=start,
        end=end,
    )


def _nice_top(value: Decimal) -> Decimal:
    """The axis top: the next of 1, 2, 5, 10, 20, ... hours at or above the tallest bar."""
    target = max(float(value), 1.0)
    magnitude = 10 ** math.floor(math.log10(target))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= target:
            return Decimal(str(factor * magnitude))
    return Decimal(str(10 * magnitude))


def _tick_values(top: Decimal) -> list[Decimal]:
    return [top * Decimal(i) / 4 for i in range(5)]
