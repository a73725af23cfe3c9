"""Cost code rules (DESIGN §3 step 7): parsing their conditions and matching a piece of work."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from worker.sync.rules import in_window, match_rule, parse_weekdays, parse_window
from worker.sync.types import CostRule

NY = ZoneInfo("America/New_York")
BASE = CostRule(
    id=1, priority=1, activity=None, st_user_id=None, weekdays=None, start_window=None,
    cost_code_id=500, line_item_type_id=9, timecard_time_type_id=None, billable=False, description=None,
)


def rule(id: int, priority: int, **conditions: object) -> CostRule:
    return replace(BASE, id=id, priority=priority, cost_code_id=500 + id, **conditions)


def at(day: int, hm: str) -> datetime:
    """A local New York time in the week of Monday 2026-06-08 (day 8 = Monday ... 14 = Sunday)."""
    return datetime.combine(datetime(2026, 6, day).date(), time.fromisoformat(hm), tzinfo=NY)


def match(rules: list[CostRule], local_start: datetime, *, activity: str = "onsite", user: int = 7) -> int | None:
    found = match_rule(rules, activity=activity, st_user_id=user, local_start=local_start)
    return None if found is None else found.id


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon,wed,fri", {0, 2, 4}),
        (" Mon , TUE ", {0, 1}),
        ("monday,sunday", {0, 6}),
        ("sat", {5}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("fri-mon", {4, 5, 6, 0}),
        ("sat-sun,wed", {5, 6, 2}),
        ("mon,mon", {0}),
    ],
)
def test_parse_weekdays(text: str, expected: set[int]) -> None:
    assert parse_weekdays(text) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon,funday", "'funday' in weekdays 'mon,funday' is not a weekday"),
        ("mon,,tue", "empty entry"),
        ("", "empty entry"),
        ("mon-xyz", "'xyz'"),
        ("1,2", "'1'"),
    ],
)
def test_parse_weekdays_names_the_bad_token(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_weekdays(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18:00-05:00", (time(18), time(5))),
        ("7:00-15:30", (time(7), time(15, 30))),
        (" 06:15 - 14:45 ", (time(6, 15), time(14, 45))),
        ("18:00-24:00", (time(18), time(0))),
        ("00:00-06:00", (time(0), time(6))),
    ],
)
def test_parse_window(text: str, expected: tuple[time, time]) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    "text", ["18-05", "18:00", "25:00-01:00", "10:60-11:00", "10:00-10:00", "24:00-06:00", "ab:cd-01:00", ""]
)
def test_parse_window_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(text)


# --------------------------------------------------------------------------- matching


def test_no_rules_or_no_match_is_none() -> None:
    assert match([], at(8, "08:00")) is None
    assert match([rule(1, 1, activity="enroute")], at(8, "08:00")) is None


def test_a_rule_without_conditions_matches_anything() -> None:
    assert match([rule(1, 1)], at(14, "03:00"), activity="offsite", user=99) == 1


def test_lowest_priority_number_wins_whatever_the_order() -> None:
    rules = [rule(3, 30), rule(1, 10, activity="onsite"), rule(2, 20)]
    assert match(rules, at(8, "08:00")) == 1
    assert match(rules, at(8, "08:00"), activity="enroute") == 2
    assert match(list(reversed(rules)), at(8, "08:00"), activity="enroute") == 2


def test_every_condition_must_hold() -> None:
    specific = rule(1, 1, activity="onsite", st_user_id=8, weekdays=frozenset({0}), start_window=(time(6), time(9)))
    fallback = rule(2, 2)
    rules = [specific, fallback]
    assert match(rules, at(8, "07:00"), user=8) == 1
    assert match(rules, at(8, "07:00"), user=7) == 2  # another technician
    assert match(rules, at(9, "07:00"), user=8) == 2  # a Tuesday
    assert match(rules, at(8, "09:00"), user=8) == 2  # the window's end is excluded
    assert match(rules, at(8, "06:00"), user=8) == 1  # its start is included
    assert match(rules, at(8, "07:00"), user=8, activity="enroute") == 2


def test_weekend_rule_by_weekday() -> None:
    rules = [rule(1, 1, weekdays=parse_weekdays("sat,sun")), rule(2, 2)]
    assert [match(rules, at(d, "10:00")) for d in range(8, 15)] == [2, 2, 2, 2, 2, 1, 1]


def test_night_window_wraps_past_midnight() -> None:
    rules = [rule(1, 1, start_window=parse_window("18:00-05:00")), rule(2, 2)]
    assert match(rules, at(8, "18:00")) == 1
    assert match(rules, at(8, "23:59")) == 1
    assert match(rules, at(9, "00:00")) == 1
    assert match(rules, at(9, "04:59")) == 1
    assert match(rules, at(9, "05:00")) == 2
    assert match(rules, at(9, "12:00")) == 2
    assert match(rules, at(9, "17:59")) == 2


def test_window_until_midnight() -> None:
    window = parse_window("18:00-24:00")
    assert in_window(time(23, 59, 59), window) and in_window(time(18), window)
    assert not in_window(time(0), window) and not in_window(time(17, 59), window)


def test_weekday_is_that_of_the_pieces_local_start() -> None:
    # Friday-night rule: a piece starting 02:00 Saturday (after the midnight split) is not Friday's.
    rules = [rule(1, 1, weekdays=frozenset({4}), start_window=parse_window("18:00-05:00")), rule(2, 2)]
    assert match(rules, at(12, "22:00")) == 1
    assert match(rules, at(13, "02:00")) == 2
    # 01:00 UTC on Saturday is still Friday evening in New York.
    saturday_utc = datetime(2026, 6, 13, 1, 0, tzinfo=ZoneInfo("UTC"))
    assert match(rules, saturday_utc.astimezone(NY)) == 1
