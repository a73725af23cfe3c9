"""The company rounding rule (P-8) on the project's local wall clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.sync.rounding import describe_rule, round_interval, round_time
from worker.sync.types import RoundingRule

NY = ZoneInfo("America/New_York")
PHOENIX = ZoneInfo("America/Phoenix")
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
AUCKLAND = ZoneInfo("Pacific/Auckland")
D = date(2026, 6, 10)  # an ordinary summer day


def local(tz: ZoneInfo, d: date, hms: str, *, fold: int = 0) -> datetime:
    """The UTC instant of wall time `hms` on `d` in `tz`."""
    return datetime.combine(d, time.fromisoformat(hms), tzinfo=tz).replace(fold=fold).astimezone(UTC)


def wall(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def rounded_wall(hms: str, rule: str, inc: int, *, is_start: bool = True, tz: ZoneInfo = NY) -> str:
    result = round_time(local(tz, D, hms), RoundingRule(rule, inc), tz, is_start=is_start)
    assert result.tzinfo is UTC
    local_result = result.astimezone(tz)
    return local_result.strftime("%H:%M:%S") if local_result.date() == D else "next " + local_result.strftime("%H:%M")


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("hms", "rule", "is_start", "expected"),
    [
        # Procore's table at 15 minutes; its "11:37 nearest → 11:45" row is a documentation error (P-8).
        ("07:55", "nearest", True, "08:00:00"),
        ("11:37", "nearest", False, "11:30:00"),
        ("12:34", "nearest", True, "12:30:00"),
        ("17:27", "nearest", False, "17:30:00"),
        ("07:55", "up", True, "08:00:00"),
        ("11:37", "up", False, "11:45:00"),
        ("12:34", "up", True, "12:45:00"),
        ("17:27", "up", False, "17:30:00"),
        ("07:55", "down", True, "07:45:00"),
        ("11:37", "down", False, "11:30:00"),
        ("12:34", "down", True, "12:30:00"),
        ("17:27", "down", False, "17:15:00"),
        ("07:55", "favor_employee", True, "07:45:00"),
        ("11:37", "favor_employee", False, "11:45:00"),
        ("12:34", "favor_employee", True, "12:30:00"),
        ("17:27", "favor_employee", False, "17:30:00"),
    ],
)
def test_procore_table_at_15_minutes(hms: str, rule: str, is_start: bool, expected: str) -> None:
    assert rounded_wall(hms, rule, 15, is_start=is_start) == expected


def test_seconds_decide_nearest() -> None:
    assert rounded_wall("11:37:29", "nearest", 15) == "11:30:00"
    assert rounded_wall("11:37:30", "nearest", 15) == "11:45:00"


@pytest.mark.parametrize(
    ("inc", "half", "below_half", "next_step"),
    [
        (5, "10:02:30", "10:02:29.999999", "10:05:00"),
        (6, "10:03:00", "10:02:59", "10:06:00"),
        (10, "10:05:00", "10:04:59", "10:10:00"),
        (15, "10:07:30", "10:07:29", "10:15:00"),
    ],
)
def test_every_rule_at_every_increment(inc: int, half: str, below_half: str, next_step: str) -> None:
    assert rounded_wall(half, "nearest", inc) == next_step  # an exact half goes up
    assert rounded_wall(below_half, "nearest", inc) == "10:00:00"
    for hms in (half, below_half):
        assert rounded_wall(hms, "up", inc) == next_step
        assert rounded_wall(hms, "down", inc) == "10:00:00"
        assert rounded_wall(hms, "favor_employee", inc, is_start=True) == "10:00:00"
        assert rounded_wall(hms, "favor_employee", inc, is_start=False) == next_step
    for rule in ("up", "down", "nearest", "favor_employee"):
        for is_start in (True, False):
            assert rounded_wall("10:00:00", rule, inc, is_start=is_start) == "10:00:00"  # on the increment stays
            assert rounded_wall(next_step, rule, inc, is_start=is_start) == next_step


@pytest.mark.parametrize("inc", [5, 6, 10, 15])
@pytest.mark.parametrize("rule", ["up", "down", "nearest", "favor_employee"])
@pytest.mark.parametrize("is_start", [True, False])
def test_2359_becomes_next_midnight_whatever_the_rule(inc: int, rule: str, is_start: bool) -> None:
    for hms in ("23:59:00", "23:59:30", "23:59:59.999999"):
        assert rounded_wall(hms, rule, inc, is_start=is_start) == "next 00:00"


def test_just_before_2359_follows_the_rule() -> None:
    assert rounded_wall("23:58:59", "down", 15) == "23:45:00"
    assert rounded_wall("23:58:59", "nearest", 15) == "next 00:00"  # nearest anyway
    assert rounded_wall("23:58:59", "up", 6) == "next 00:00"
    assert rounded_wall("23:52:30", "nearest", 15) == "next 00:00"
    assert rounded_wall("23:52:29", "nearest", 15) == "23:45:00"
    assert rounded_wall("23:54:59", "nearest", 10) == "23:50:00"


def test_without_a_rule_times_are_used_as_punched() -> None:
    for hms in ("07:55:13", "23:59:30"):
        t = local(NY, D, hms)
        assert round_time(t, None, NY, is_start=True) == t
        assert round_interval(t, t + timedelta(hours=1), None, NY) == (t, t + timedelta(hours=1))


def test_interval_favoring_the_employee_across_local_midnight() -> None:
    start, end = local(NY, D, "22:07"), local(NY, D + timedelta(days=1), "02:52")
    got = round_interval(start, end, RoundingRule("favor_employee", 15), NY)
    assert (wall(got[0], NY), wall(got[1], NY)) == ("2026-06-10 22:00:00 EDT", "2026-06-11 03:00:00 EDT")


def test_interval_nearest_can_round_to_nothing() -> None:
    start, end = local(NY, D, "10:01"), local(NY, D, "10:06")
    got = round_interval(start, end, RoundingRule("nearest", 15), NY)
    assert got[0] == got[1] == local(NY, D, "10:00")


def test_rounding_uses_the_local_clock_not_utc() -> None:
    # Kathmandu is UTC+05:45: its 10-minute grid is not UTC's.
    t = local(KATHMANDU, D, "09:04:59")
    assert wall(round_time(t, RoundingRule("nearest", 10), KATHMANDU, is_start=True), KATHMANDU) == (
        "2026-06-10 09:00:00 +0545"
    )
    # Kolkata is UTC+05:30: 23:59:30 there is 18:29:30 UTC, still the last minute of the local day.
    t = local(KOLKATA, D, "23:59:30")
    assert round_time(t, RoundingRule("down", 15), KOLKATA, is_start=True) == datetime(2026, 6, 10, 18, 30, tzinfo=UTC)
    assert wall(round_time(local(KOLKATA, D, "09:07"), RoundingRule("up", 6), KOLKATA, is_start=True), KOLKATA) == (
        "2026-06-10 09:12:00 IST"
    )


def test_phoenix_has_no_dst_on_the_spring_forward_day() -> None:
    day = date(2026, 3, 8)
    t = local(PHOENIX, day, "02:07")  # would not exist in New York
    got = round_time(t, RoundingRule("nearest", 15), PHOENIX, is_start=True)
    assert got == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    assert wall(got, PHOENIX) == "2026-03-08 02:00:00 MST"


def test_spring_forward_rounds_with_the_instants_own_offset() -> None:
    day = date(2026, 3, 8)
    before = local(NY, day, "01:52")  # EST
    up = round_time(before, RoundingRule("up", 15), NY, is_start=False)
    # 02:00 EST doesn't exist on the wall; as an instant it is the jump itself, 03:00 EDT, 8 minutes later.
    assert up == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert wall(up, NY) == "2026-03-08 03:00:00 EDT"
    assert up - before == timedelta(minutes=8)
    after = local(NY, day, "03:07")  # EDT
    assert wall(round_time(after, RoundingRule("down", 15), NY, is_start=True), NY) == "2026-03-08 03:00:00 EDT"
    # An hour of real work over the jump stays an hour.
    start, end = round_interval(local(NY, day, "01:37"), local(NY, day, "03:22"), RoundingRule("favor_employee", 15), NY)
    assert (wall(start, NY), wall(end, NY)) == ("2026-03-08 01:30:00 EST", "2026-03-08 03:30:00 EDT")
    assert end - start == timedelta(hours=1)


def test_fall_back_rounds_each_occurrence_in_its_own_offset() -> None:
    day = date(2026, 11, 1)
    first, second = local(NY, day, "01:07", fold=0), local(NY, day, "01:07", fold=1)
    assert second - first == timedelta(hours=1)
    rule = RoundingRule("down", 15)
    assert wall(round_time(first, rule, NY, is_start=True), NY) == "2026-11-01 01:00:00 EDT"
    assert wall(round_time(second, rule, NY, is_start=True), NY) == "2026-11-01 01:00:00 EST"
    # 01:52 EDT rounded up is 02:00 EDT, the instant the clocks read 01:00 EST.
    up = round_time(local(NY, day, "01:52", fold=0), RoundingRule("up", 15), NY, is_start=False)
    assert up == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    assert wall(up, NY) == "2026-11-01 01:00:00 EST"
    start, end = round_interval(
        local(NY, day, "00:55"), local(NY, day, "01:05", fold=1), RoundingRule("nearest", 15), NY
    )
    # 70 real minutes, 00:55 EDT to 01:05 EST, round to the hour from 01:00 EDT to 01:00 EST.
    assert (wall(start, NY), wall(end, NY)) == ("2026-11-01 01:00:00 EDT", "2026-11-01 01:00:00 EST")
    assert end - start == timedelta(hours=1)


def test_describe_rule() -> None:
    assert describe_rule(None) == "no rounding: punched times are used as they are"
    assert describe_rule(RoundingRule("nearest", 15)) == "rounded to the nearest 15 minutes"
    assert describe_rule(RoundingRule("up", 6)) == "rounded up to the next 6 minutes"
    assert describe_rule(RoundingRule("down", 10)) == "rounded down to the previous 10 minutes"
    assert describe_rule(RoundingRule("favor_employee", 5)) == (
        "rounded in the employee's favor to 5 minutes (clock-in down, clock-out up)"
    )


@pytest.mark.parametrize(("rule", "inc"), [("nearest", 7), ("nearest", 30), ("sideways", 15), ("", 5)])
def test_rounding_rule_refuses_what_procore_doesnt_offer(rule: str, inc: int) -> None:
    with pytest.raises(ValueError, match="rounding"):
        RoundingRule(rule, inc)  # type: ignore[arg-type]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        round_time(datetime(2026, 6, 10, 10, 0), RoundingRule("up", 15), NY, is_start=True)


# --------------------------------------------------------------------------- properties

ZONES = [ZoneInfo("UTC"), NY, ZoneInfo("America/Los_Angeles"), PHOENIX, KOLKATA, KATHMANDU, AUCKLAND]
TRANSITIONS = [
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # New York spring forward
    datetime(2026, 11, 1, 6, 0, tzinfo=UTC),  # New York fall back
    datetime(2026, 3, 8, 10, 0, tzinfo=UTC),  # Los Angeles
    datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
    datetime(2026, 4, 4, 14, 0, tzinfo=UTC),  # Auckland fall back
    datetime(2026, 9, 26, 14, 0, tzinfo=UTC),  # Auckland spring forward
]
instants = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
    st.builds(
        lambda t, s: t + timedelta(seconds=s), st.sampled_from(TRANSITIONS), st.integers(-3 * 3600, 3 * 3600)
    ),
)
rules = st.builds(
    RoundingRule, st.sampled_from(["up", "down", "nearest", "favor_employee"]), st.sampled_from([5, 6, 10, 15])
)


def in_last_minute(t: datetime, tz: ZoneInfo) -> bool:
    return t.astimezone(tz).time() >= time(23, 59)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(t=instants, rule=rules, tz=st.sampled_from(ZONES), is_start=st.booleans())
def test_rounding_moves_a_time_by_less_than_one_increment(
    t: datetime, rule: RoundingRule, tz: ZoneInfo, is_start: bool
) -> None:
    moved = round_time(t, rule, tz, is_start=is_start) - t
    if in_last_minute(t, tz):
        assert timedelta(0) < moved <= timedelta(minutes=1)
    else:
        assert abs(moved) < timedelta(minutes=rule.increment_min)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(t=instants, rule=rules, tz=st.sampled_from(ZONES), is_start=st.booleans())
def test_rounding_is_idempotent_and_lands_on_the_local_grid(
    t: datetime, rule: RoundingRule, tz: ZoneInfo, is_start: bool
) -> None:
    once = round_time(t, rule, tz, is_start=is_start)
    assert round_time(once, rule, tz, is_start=is_start) == once
    on_clock = once.astimezone(tz)
    assert (on_clock.minute % rule.increment_min, on_clock.second, on_clock.microsecond) == (0, 0, 0)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(t=instants, inc=st.sampled_from([5, 6, 10, 15]), tz=st.sampled_from(ZONES))
def test_each_rule_rounds_in_its_direction(t: datetime, inc: int, tz: ZoneInfo) -> None:
    def r(rule: str, is_start: bool) -> datetime:
        return round_time(t, RoundingRule(rule, inc), tz, is_start=is_start)  # type: ignore[arg-type]

    assert r("up", True) >= t
    assert r("favor_employee", False) >= t
    if in_last_minute(t, tz):
        assert r("down", True) == r("up", True) == r("nearest", False) == r("favor_employee", True)
    else:
        assert r("down", True) <= t
        assert r("favor_employee", True) <= t
        assert r("down", True) <= r("nearest", True) <= r("up", True)
    assert r("up", True) == r("up", False) and r("down", True) == r("down", False)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(t=instants, tz=st.sampled_from(ZONES))
def test_no_rule_never_moves_a_time(t: datetime, tz: ZoneInfo) -> None:
    assert round_time(t, None, tz, is_start=True) == t
