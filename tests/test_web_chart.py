"""The project page's chart of hours posted per day by cost code: bars stacked per day, each titled with its
numbers, colours named in the legend with their totals, and an axis that fits the tallest day."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace

from worker.web.chart import HEIGHT, PALETTE, TOP, hours_chart

GENERAL, ELECTRICAL = "01-100 General Conditions Labor", "26-050 Electrical Labor"


def row(day: int, code: str, hours: str) -> SimpleNamespace:
    return SimpleNamespace(date=date(2026, 3, day), cost_code=code, hours=Decimal(hours))


def test_hours_are_stacked_per_day_and_totalled_per_cost_code() -> None:
    chart = hours_chart([row(2, GENERAL, "7.50"), row(2, GENERAL, "1.00"), row(2, ELECTRICAL, "4.25"),
                         row(4, ELECTRICAL, "8.00")])
    assert chart is not None
    assert (chart.start, chart.end) == (date(2026, 3, 2), date(2026, 3, 4))
    assert [(s.cost_code, s.hours) for s in chart.legend] == [(GENERAL, Decimal("8.50")),
                                                              (ELECTRICAL, Decimal("12.25"))]
    assert chart.total == Decimal("20.75")
    assert [b.title for b in chart.bars] == [
        f"Mon 2026-03-02: 8.50 h on {GENERAL}", f"Mon 2026-03-02: 4.25 h on {ELECTRICAL}",
        f"Wed 2026-03-04: 8.00 h on {ELECTRICAL}"]
    assert {b.colour for b in chart.bars} == set(PALETTE[:2])


def test_the_axis_tops_out_at_a_round_number_above_the_tallest_day() -> None:
    chart = hours_chart([row(2, GENERAL, "8.50"), row(2, ELECTRICAL, "4.25"), row(3, GENERAL, "3")])
    assert chart is not None
    assert [t.label for t in chart.ticks] == ["0 h", "5 h", "10 h", "15 h", "20 h"]
    tallest = sum(b.height for b in chart.bars[:2])
    assert abs(tallest - (HEIGHT - TOP - 44) * 12.75 / 20) < 0.01
    assert all(b.y >= TOP for b in chart.bars)


def test_days_without_hours_keep_their_place_and_a_chosen_period_is_kept() -> None:
    chart = hours_chart([row(3, GENERAL, "2")], date(2026, 3, 1), date(2026, 3, 7))
    assert chart is not None
    assert len(chart.days) == 7 and chart.days[0].label == "Sun 01"
    assert chart.bars[0].x > chart.days[1].x - 30


def test_nothing_to_draw_is_no_chart() -> None:
    assert hours_chart([]) is None
    assert hours_chart([row(2, GENERAL, "0")]) is None
    assert hours_chart([row(2, GENERAL, "3")], date(2026, 3, 10), date(2026, 3, 12)) is None
