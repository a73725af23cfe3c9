"""Splitting intervals at local midnight (DESIGN §3 step 6) and counting their hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.sync.hours import format_hours, hours_between
from worker.sync.splitting import split_interval
from worker.sync.types import Piece

NY = ZoneInfo("America/New_York")


def local(tz: ZoneInfo, d: date, hm: str, *, fold: int = 0) -> datetime:
    return datetime.combine(d, time.fromisoformat(hm), tzinfo=tz).replace(fold=fold).astimezone(UTC)


def summary(pieces: list[Piece]) -> list[tuple[str, timedelta]]:
    return [(p.work_date.isoformat(), p.end - p.start) for p in pieces]


def test_a_night_shift_splits_at_local_midnight() -> None:
    start, end = local(NY, date(2026, 6, 10), "22:00"), local(NY, date(2026, 6, 11), "06:30")
    pieces = split_interval(start, end, NY)
    assert summary(pieces) == [("2026-06-10", timedelta(hours=2)), ("2026-06-11", timedelta(hours=6, minutes=30))]
    assert pieces[0].end == pieces[1].start == datetime(2026, 6, 11, 4, 0, tzinfo=UTC)  # 00:00 EDT
    assert all(p.start.tzinfo is UTC and p.end.tzinfo is UTC for p in pieces)


def test_a_day_shift_is_one_piece() -> None:
    start, end = local(NY, date(2026, 6, 10), "07:00"), local(NY, date(2026, 6, 10), "15:30")
    assert split_interval(start, end, NY) == [Piece(date(2026, 6, 10), start, end)]


def test_spring_forward_day_is_23_hours() -> None:
    start, end = local(NY, date(2026, 3, 7), "20:00"), local(NY, date(2026, 3, 9), "04:00")
    assert summary(split_interval(start, end, NY)) == [
        ("2026-03-07", timedelta(hours=4)),
        ("2026-03-08", timedelta(hours=23)),
        ("2026-03-09", timedelta(hours=4)),
    ]


def test_fall_back_day_is_25_hours() -> None:
    start, end = local(NY, date(2026, 10, 31), "20:00"), local(NY, date(2026, 11, 2), "04:00")
    assert summary(split_interval(start, end, NY)) == [
        ("2026-10-31", timedelta(hours=4)),
        ("2026-11-01", timedelta(hours=25)),
        ("2026-11-02", timedelta(hours=4)),
    ]


def test_night_shift_over_the_jump_keeps_its_real_length() -> None:
    start, end = local(NY, date(2026, 3, 7), "22:00"), local(NY, date(2026, 3, 8), "06:00")
    assert summary(split_interval(start, end, NY)) == [
        ("2026-03-07", timedelta(hours=2)),
        ("2026-03-08", timedelta(hours=5)),  # 00:00 EST to 06:00 EDT
    ]


def test_a_zone_whose_clocks_jump_at_midnight() -> None:
    havana = ZoneInfo("America/Havana")  # 2026-03-08 00:00 CST becomes 01:00 CDT: that day has no midnight
    start, end = local(havana, date(2026, 3, 7), "22:00"), local(havana, date(2026, 3, 8), "03:00")
    pieces = split_interval(start, end, havana)
    assert summary(pieces) == [("2026-03-07", timedelta(hours=2)), ("2026-03-08", timedelta(hours=2))]
    assert pieces[1].start.astimezone(havana).time() == time(1, 0)


def test_a_zone_whose_clocks_went_back_over_midnight() -> None:
    st_johns = ZoneInfo("America/St_Johns")  # until 2010: 00:01 NDT back to 23:01 NST the day before
    start = datetime(2010, 11, 7, 3, 0, tzinfo=UTC)  # 23:30 NST on 2010-11-06, the repeated half hour
    assert start.astimezone(st_johns).date() == date(2010, 11, 6)
    pieces = split_interval(start, start + timedelta(hours=3), st_johns)
    assert summary(pieces) == [("2010-11-06", timedelta(minutes=30)), ("2010-11-07", timedelta(hours=2, minutes=30))]
    earlier = split_interval(start - timedelta(hours=3), start, st_johns)
    assert [p.work_date for p in earlier] == [date(2010, 11, 6), date(2010, 11, 7)]  # first midnight starts the day


def test_start_date_mode_keeps_the_interval_whole() -> None:
    start, end = local(NY, date(2026, 6, 10), "22:00"), local(NY, date(2026, 6, 11), "06:30")
    assert split_interval(start, end, NY, mode="start_date") == [Piece(date(2026, 6, 10), start, end)]


def test_empty_interval_has_no_pieces() -> None:
    t = local(NY, date(2026, 6, 10), "10:00")
    assert split_interval(t, t, NY) == []
    assert split_interval(t, t, NY, mode="start_date") == []


def test_bad_input_is_refused() -> None:
    t = local(NY, date(2026, 6, 10), "10:00")
    with pytest.raises(ValueError, match="before it starts"):
        split_interval(t, t - timedelta(minutes=1), NY)
    with pytest.raises(ValueError, match="timezone-aware"):
        split_interval(t.replace(tzinfo=None), t, NY)
    with pytest.raises(ValueError, match="split mode"):
        split_interval(t, t + timedelta(hours=1), NY, mode="weekly")  # type: ignore[arg-type]


ZONES = [
    ZoneInfo("UTC"),
    NY,
    ZoneInfo("America/Los_Angeles"),
    ZoneInfo("America/Phoenix"),
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("Pacific/Auckland"),
    ZoneInfo("America/Havana"),
]
starts = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
    st.builds(
        lambda t, s: t + timedelta(seconds=s),
        st.sampled_from([datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
                         datetime(2026, 9, 26, 14, tzinfo=UTC), datetime(2026, 3, 8, 5, tzinfo=UTC)]),
        st.integers(-30 * 3600, 3 * 3600),
    ),
)
lengths = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=80))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(start=starts, length=lengths, tz=st.sampled_from(ZONES))
def test_pieces_are_contiguous_keep_the_duration_and_stay_on_one_local_date(
    start: datetime, length: timedelta, tz: ZoneInfo
) -> None:
    end = start + length
    pieces = split_interval(start, end, tz)
    if length == timedelta(0):
        assert pieces == []
        return
    assert pieces[0].start == start and pieces[-1].end == end
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False))
    assert sum((p.end - p.start for p in pieces), timedelta(0)) == length
    for piece in pieces:
        assert piece.start < piece.end
        assert piece.start.astimezone(tz).date() == piece.work_date
        assert (piece.end - timedelta(microseconds=1)).astimezone(tz).date() == piece.work_date
    assert [p.work_date for p in pieces] == sorted({p.work_date for p in pieces})
    whole = split_interval(start, end, tz, mode="start_date")
    assert whole == [Piece(start.astimezone(tz).date(), start, end)]


# --------------------------------------------------------------------------- hours


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (timedelta(hours=7, minutes=15), "7.25"),
        (timedelta(hours=8), "8.00"),
        (timedelta(minutes=20), "0.33"),
        (timedelta(minutes=40), "0.67"),
        (timedelta(seconds=18), "0.01"),  # 0.005 exactly: half up
        (timedelta(seconds=17), "0.00"),
        (timedelta(hours=25), "25.00"),
    ],
)
def test_hours_between(length: timedelta, expected: str) -> None:
    start = datetime(2026, 6, 10, 12, tzinfo=UTC)
    hours = hours_between(start, start + length)
    assert isinstance(hours, Decimal)
    assert format_hours(hours) == expected


def test_hours_count_real_time_over_a_dst_change() -> None:
    start, end = local(NY, date(2026, 3, 8), "00:00"), local(NY, date(2026, 3, 9), "00:00")
    assert hours_between(start, end) == Decimal("23.00")


def test_format_hours_always_has_two_places() -> None:
    assert format_hours(Decimal("8")) == "8.00"
    assert format_hours(Decimal("7.5")) == "7.50"
    assert format_hours(Decimal("0.125")) == "0.13"
