"""Pairing punches into intervals (ST-5): every punch ends in exactly one interval or one skipped item."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.enums import SkipReason
from worker.sync.pairing import pair_punches
from worker.sync.types import Interval, Punch

T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 EDT
NAMES = {7: "Dana Reyes", 8: "Sam Okafor"}


class Clock:
    """Builds punches with increasing ids; `at` is minutes after T0."""

    def __init__(self) -> None:
        self.ids = itertools.count(100)

    def __call__(
        self, event_type: str, minutes: float, *, user: int = 7, job: int = 1, activity: str = "onsite"
    ) -> Punch:
        return Punch(
            id=next(self.ids),
            user_id=user,
            user_name=NAMES.get(user, f"Tech {user}"),
            job_id=job,
            activity=activity,
            event_type=event_type,
            at=T0 + timedelta(minutes=minutes),
        )


@pytest.fixture
def punch() -> Clock:
    return Clock()


def spans(intervals: list[Interval]) -> list[tuple[int, int]]:
    return [(i.clock_in.id, i.clock_out.id) for i in intervals]


def test_a_clock_in_and_the_next_clock_out_make_an_interval(punch: Clock) -> None:
    a, b = punch("clockIn", 0), punch("clockOut", 240)
    result = pair_punches([b, a])
    assert result.skipped == []
    [interval] = result.intervals
    assert (interval.clock_in, interval.clock_out) == (a, b)
    assert (interval.start, interval.end) == (a.at, b.at)
    assert (interval.user_id, interval.user_name, interval.activity, interval.job_id) == (7, "Dana Reyes", "onsite", 1)


def test_a_break_ends_the_onsite_interval_and_is_never_posted(punch: Clock) -> None:
    day = [
        punch("clockIn", 0), punch("clockOut", 240),
        punch("clockIn", 240, activity="onbreak"), punch("clockOut", 270, activity="onbreak"),
        punch("clockIn", 270), punch("clockOut", 510),
    ]
    result = pair_punches(day)
    assert spans(result.intervals) == [(100, 101), (104, 105)]
    [brk] = result.skipped
    assert brk.reason is SkipReason.excluded_activity
    assert [p.id for p in brk.punches] == [102, 103]
    assert "102" in brk.detail and "103" in brk.detail and "never posted" in brk.detail


def test_an_open_break_is_excluded_too(punch: Clock) -> None:
    result = pair_punches([punch("clockIn", 0, activity="onbreak")])
    [item] = result.skipped
    assert item.reason is SkipReason.excluded_activity
    assert "no clock-out yet" in item.detail


def test_breaks_post_when_not_excluded(punch: Clock) -> None:
    result = pair_punches(
        [punch("clockIn", 0, activity="onbreak"), punch("clockOut", 30, activity="onbreak")],
        excluded_activities=frozenset(),
    )
    assert spans(result.intervals) == [(100, 101)] and result.skipped == []


def test_a_clock_in_followed_by_another_clock_in_is_skipped(punch: Clock) -> None:
    first, second, out = punch("clockIn", 0), punch("clockIn", 60), punch("clockOut", 120)
    result = pair_punches([first, second, out])
    assert spans(result.intervals) == [(second.id, out.id)]
    [item] = result.skipped
    assert item.reason is SkipReason.invalid_interval and item.punches == (first,)
    assert item.detail == (
        "onsite clock-in 100 of Dana Reyes (ServiceTrade user 7) at 2026-06-10 12:00 UTC was followed by another "
        "clock-in 101 at 2026-06-10 13:00 UTC with no clock-out in between"
    )


def test_an_orphan_clock_out_is_skipped(punch: Clock) -> None:
    out = punch("clockOut", 30)
    result = pair_punches([out, punch("clockIn", 60), punch("clockOut", 90)])
    assert spans(result.intervals) == [(101, 102)]
    [item] = result.skipped
    assert (item.reason, item.punches) == (SkipReason.invalid_interval, (out,))
    assert "clock-out 100" in item.detail and "orphan clock-out" in item.detail


def test_a_clock_in_never_closed_is_an_open_interval(punch: Clock) -> None:
    result = pair_punches([punch("clockIn", 0), punch("clockOut", 60), punch("clockIn", 90)])
    [item] = result.skipped
    assert item.reason is SkipReason.open_interval
    assert item.detail == (
        "onsite clock-in 102 of Dana Reyes (ServiceTrade user 7) at 2026-06-10 13:30 UTC has no clock-out yet "
        "(open interval)"
    )


def test_zero_length_is_invalid(punch: Clock) -> None:
    a, b = punch("clockIn", 10), punch("clockOut", 10)
    [item] = pair_punches([a, b]).skipped
    assert (item.reason, item.punches) == (SkipReason.invalid_interval, (a, b))
    assert "zero or negative length" in item.detail


def test_same_instant_orders_by_id(punch: Clock) -> None:
    out = punch("clockOut", 10)  # lower id, same time: it comes first, with nothing open
    cin = punch("clockIn", 10)
    result = pair_punches([cin, out])
    assert [s.reason for s in result.skipped] == [SkipReason.invalid_interval, SkipReason.open_interval]
    assert [s.punches for s in result.skipped] == [(out,), (cin,)]


def test_longer_than_a_day_is_invalid_but_a_day_is_not(punch: Clock) -> None:
    long_in, long_out = punch("clockIn", 0), punch("clockOut", 24 * 60 + 1)
    [item] = pair_punches([long_in, long_out]).skipped
    assert item.reason is SkipReason.invalid_interval
    assert "24 h 01 min, longer than 24 hours" in item.detail
    day_in, day_out = punch("clockIn", 0, user=8), punch("clockOut", 24 * 60, user=8)
    assert spans(pair_punches([day_in, day_out]).intervals) == [(day_in.id, day_out.id)]


def test_unknown_event_type_and_activity_are_named(punch: Clock) -> None:
    odd_type = punch("pause", 0)
    odd_activity = punch("clockIn", 5, activity="lunch")
    result = pair_punches([odd_type, odd_activity, punch("clockIn", 10), punch("clockOut", 20)])
    assert spans(result.intervals) == [(102, 103)]
    by_id = {s.punches[0].id: s for s in result.skipped}
    assert by_id[odd_type.id].reason is SkipReason.invalid_interval
    assert "unknown eventType 'pause'" in by_id[odd_type.id].detail
    assert by_id[odd_activity.id].reason is SkipReason.invalid_interval
    assert "unknown activity 'lunch'" in by_id[odd_activity.id].detail


def test_interleaved_technicians_and_jobs_pair_separately(punch: Clock) -> None:
    punches = [
        punch("clockIn", 0, user=7), punch("clockIn", 5, user=8), punch("clockIn", 10, user=7, job=2),
        punch("clockOut", 60, user=7), punch("clockOut", 65, user=8), punch("clockOut", 70, user=7, job=2),
        punch("clockIn", 70, user=7, activity="enroute"), punch("clockOut", 90, user=7, activity="enroute"),
    ]
    result = pair_punches(reversed(punches))
    assert result.skipped == []
    assert spans(result.intervals) == [(100, 103), (101, 104), (102, 105), (106, 107)]
    assert {(i.user_id, i.job_id, i.activity) for i in result.intervals} == {
        (7, 1, "onsite"), (8, 1, "onsite"), (7, 2, "onsite"), (7, 1, "enroute")
    }


def test_details_read_in_the_zone_given(punch: Clock) -> None:
    [item] = pair_punches([punch("clockIn", 0)], tz=ZoneInfo("America/New_York")).skipped
    assert "at 2026-06-10 08:00 EDT" in item.detail


def test_seconds_show_when_there_are_any(punch: Clock) -> None:
    [item] = pair_punches([punch("clockOut", 0.5)]).skipped
    assert "at 2026-06-10 12:00:30 UTC" in item.detail


def test_punches_need_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Punch(1, 7, "Dana", 1, "onsite", "clockIn", datetime(2026, 6, 10, 8, 0))


# --------------------------------------------------------------------------- property


@st.composite
def punch_lists(draw: st.DrawFn) -> list[Punch]:
    n = draw(st.integers(min_value=0, max_value=40))
    ids = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    punches = []
    for pid in ids:
        punches.append(
            Punch(
                id=pid,
                user_id=draw(st.sampled_from([7, 8])),
                user_name=draw(st.sampled_from(["Dana Reyes", "Sam Okafor"])),
                job_id=draw(st.sampled_from([1, 2])),
                activity=draw(st.sampled_from(["onsite", "onsite", "enroute", "onbreak", "lunch"])),
                event_type=draw(st.sampled_from(["clockIn", "clockOut", "clockIn", "clockOut", "pause"])),
                at=T0 + timedelta(minutes=draw(st.integers(0, 60 * 60))),
            )
        )
    return punches


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(punches=punch_lists())
def test_every_punch_is_accounted_for_exactly_once(punches: list[Punch]) -> None:
    result = pair_punches(punches)
    seen = Counter(p.id for i in result.intervals for p in (i.clock_in, i.clock_out))
    seen.update(p.id for s in result.skipped for p in s.punches)
    assert seen == Counter(p.id for p in punches)
    for interval in result.intervals:
        a, b = interval.clock_in, interval.clock_out
        assert (a.event_type, b.event_type) == ("clockIn", "clockOut")
        assert (a.user_id, a.job_id, a.activity) == (b.user_id, b.job_id, b.activity)
        assert a.activity != "onbreak"
        assert timedelta(0) < b.at - a.at <= timedelta(hours=24)
    for item in result.skipped:
        assert all(str(p.id) in item.detail for p in item.punches)
        assert item.punches[0].user_name in item.detail
    assert pair_punches(reversed(punches)) == result  # input order doesn't matter
