"""Payroll periods, sync windows and next-run times (DESIGN §5), in the project's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.nextrun import ScheduledRun, ScheduleSpec, local_to_utc, next_run
from schedules.periods import Period, last_closed_period, nightly_window, period_containing, weekly_window
from worker.enums import PayrollKind

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
AUCKLAND = ZoneInfo("Pacific/Auckland")


def P(start: str, end: str) -> Period:
    return Period(date.fromisoformat(start), date.fromisoformat(end))


def d(text: str) -> date:
    return date.fromisoformat(text)


# --------------------------------------------------------------------------- periods


def test_period_days_and_membership() -> None:
    period = P("2028-02-16", "2028-02-29")
    assert period.days == 14
    assert d("2028-02-29") in period and d("2028-03-01") not in period
    assert P("2026-06-10", "2026-06-10").days == 1
    with pytest.raises(ValueError, match="before it starts"):
        P("2026-06-10", "2026-06-09")


@pytest.mark.parametrize(
    ("day", "anchor", "expected"),
    [
        ("2026-06-10", None, P("2026-06-08", "2026-06-14")),  # Monday to Sunday without an anchor
        ("2026-06-08", None, P("2026-06-08", "2026-06-14")),
        ("2026-06-14", None, P("2026-06-08", "2026-06-14")),
        ("2026-12-31", None, P("2026-12-28", "2027-01-03")),  # over the year end
        ("2026-06-10", "2026-01-04", P("2026-06-07", "2026-06-13")),  # a Sunday anchor: Sunday to Saturday
        ("2026-06-06", "2026-06-10", P("2026-06-03", "2026-06-09")),  # an anchor after the day still aligns
        ("2028-03-01", "2026-01-01", P("2028-02-24", "2028-03-01")),  # Thursday weeks over a leap day
    ],
)
def test_weekly_periods(day: str, anchor: str | None, expected: Period) -> None:
    assert period_containing(d(day), PayrollKind.weekly, d(anchor) if anchor else None) == expected
    assert period_containing(d(day), PayrollKind.weekly, d(anchor) if anchor else None).days == 7


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2026-01-05", P("2026-01-05", "2026-01-18")),  # the anchor itself
        ("2026-01-18", P("2026-01-05", "2026-01-18")),
        ("2026-01-19", P("2026-01-19", "2026-02-01")),  # over a month end
        ("2026-01-04", P("2025-12-22", "2026-01-04")),  # before the anchor, over the year end
        ("2028-02-29", P("2028-02-28", "2028-03-12")),  # 56 fortnights after the anchor, over a leap day
    ],
)
def test_biweekly_periods_align_to_the_anchor(day: str, expected: Period) -> None:
    assert period_containing(d(day), PayrollKind.biweekly, d("2026-01-05")) == expected


def test_biweekly_needs_an_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        period_containing(d("2026-06-10"), PayrollKind.biweekly)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2026-02-01", P("2026-02-01", "2026-02-15")),
        ("2026-02-15", P("2026-02-01", "2026-02-15")),
        ("2026-02-16", P("2026-02-16", "2026-02-28")),
        ("2028-02-29", P("2028-02-16", "2028-02-29")),
        ("2026-04-30", P("2026-04-16", "2026-04-30")),
        ("2026-12-31", P("2026-12-16", "2026-12-31")),
    ],
)
def test_semimonthly_periods(day: str, expected: Period) -> None:
    assert period_containing(d(day), PayrollKind.semimonthly) == expected
    assert period_containing(d(day), PayrollKind.semimonthly, d("2020-01-09")) == expected  # anchor ignored


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2028-02-10", P("2028-02-01", "2028-02-29")),
        ("2027-02-28", P("2027-02-01", "2027-02-28")),
        ("2026-12-31", P("2026-12-01", "2026-12-31")),
        ("2026-01-01", P("2026-01-01", "2026-01-31")),
    ],
)
def test_monthly_periods(day: str, expected: Period) -> None:
    assert period_containing(d(day), PayrollKind.monthly) == expected


@pytest.mark.parametrize(
    ("today", "kind", "anchor", "expected"),
    [
        ("2026-01-01", PayrollKind.semimonthly, None, P("2025-12-16", "2025-12-31")),
        ("2026-01-15", PayrollKind.semimonthly, None, P("2025-12-16", "2025-12-31")),  # its last day: still open
        ("2026-01-16", PayrollKind.semimonthly, None, P("2026-01-01", "2026-01-15")),
        ("2028-03-01", PayrollKind.monthly, None, P("2028-02-01", "2028-02-29")),
        ("2027-01-01", PayrollKind.monthly, None, P("2026-12-01", "2026-12-31")),
        ("2026-06-10", PayrollKind.weekly, None, P("2026-06-01", "2026-06-07")),
        ("2026-01-05", PayrollKind.biweekly, "2026-01-05", P("2025-12-22", "2026-01-04")),
        ("2026-01-18", PayrollKind.biweekly, "2026-01-05", P("2025-12-22", "2026-01-04")),
    ],
)
def test_last_closed_period(today: str, kind: PayrollKind, anchor: str | None, expected: Period) -> None:
    assert last_closed_period(d(today), kind, d(anchor) if anchor else None) == expected


def test_nightly_and_weekly_windows() -> None:
    assert nightly_window(d("2028-02-29")) == P("2028-02-29", "2028-02-29")
    assert weekly_window(d("2027-01-02")) == P("2026-12-27", "2027-01-02")
    assert weekly_window(d("2028-03-01")) == P("2028-02-24", "2028-03-01")


# --------------------------------------------------------------------------- local_to_utc


@pytest.mark.parametrize(
    ("tz", "day", "at", "expected_utc", "expected_local"),
    [
        (NY, "2026-06-10", "02:30", "2026-06-10T06:30", "02:30 EDT"),
        (NY, "2026-03-08", "02:30", "2026-03-08T07:00", "03:00 EDT"),  # doesn't exist: the jump
        (NY, "2026-03-08", "02:00", "2026-03-08T07:00", "03:00 EDT"),
        (NY, "2026-11-01", "01:30", "2026-11-01T05:30", "01:30 EDT"),  # twice: the first
        (LA, "2026-03-08", "02:59", "2026-03-08T10:00", "03:00 PDT"),
        (LA, "2026-11-01", "01:00", "2026-11-01T08:00", "01:00 PDT"),
        (AUCKLAND, "2026-09-27", "02:15", "2026-09-26T14:00", "03:00 NZDT"),
        (AUCKLAND, "2026-04-05", "02:15", "2026-04-04T13:15", "02:15 NZDT"),
        (ZoneInfo("America/Havana"), "2026-03-08", "00:00", "2026-03-08T05:00", "01:00 CDT"),  # no midnight
        (ZoneInfo("Pacific/Apia"), "2011-12-30", "12:00", "2011-12-30T10:00", "00:00 +14"),  # a skipped day
    ],
)
def test_local_to_utc(tz: ZoneInfo, day: str, at: str, expected_utc: str, expected_local: str) -> None:
    got = local_to_utc(d(day), time.fromisoformat(at), tz)
    assert got == datetime.fromisoformat(expected_utc).replace(tzinfo=UTC)
    assert got.tzinfo is UTC
    assert got.astimezone(tz).strftime("%H:%M %Z") == expected_local


# --------------------------------------------------------------------------- next_run


def nightly(at: str) -> ScheduleSpec:
    return ScheduleSpec(kind="nightly", at=time.fromisoformat(at))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def on_clock(run: ScheduledRun, tz: ZoneInfo) -> str:
    return run.at_utc.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def test_nightly_runs_each_day_for_that_day() -> None:
    run = next_run(nightly("22:00"), NY, utc("2026-06-10T12:00"))
    assert run == ScheduledRun(utc("2026-06-11T02:00"), d("2026-06-10"), P("2026-06-10", "2026-06-10"))
    # strictly after: a run at exactly `after` is not the next one
    assert next_run(nightly("22:00"), NY, run.at_utc).local_date == d("2026-06-11")
    assert next_run(nightly("22:00"), NY, run.at_utc - timedelta(seconds=1)) == run


@pytest.mark.parametrize(
    ("tz", "after", "expected"),
    [
        (NY, "2026-03-07T12:00", "2026-03-08 03:00 EDT"),
        (LA, "2026-03-07T12:00", "2026-03-08 03:00 PDT"),
        (AUCKLAND, "2026-09-26T00:00", "2026-09-27 03:00 NZDT"),
    ],
)
def test_a_time_skipped_by_spring_forward_runs_when_the_clocks_jump(tz: ZoneInfo, after: str, expected: str) -> None:
    run = next_run(nightly("02:30"), tz, utc(after))
    assert on_clock(run, tz) == expected
    assert run.window == nightly_window(run.local_date) and run.local_date.isoformat() == expected[:10]
    following = next_run(nightly("02:30"), tz, run.at_utc)
    assert following.local_date == run.local_date + timedelta(days=1)
    assert following.at_utc.astimezone(tz).time() == time(2, 30)


@pytest.mark.parametrize(
    ("tz", "after", "first", "then"),
    [
        (NY, "2026-10-31T12:00", "2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"),
        (LA, "2026-10-31T12:00", "2026-11-01 01:30 PDT", "2026-11-02 01:30 PST"),
        (AUCKLAND, "2026-04-04T00:00", "2026-04-05 02:30 NZDT", "2026-04-06 02:30 NZST"),
    ],
)
def test_a_time_repeated_by_fall_back_runs_once(tz: ZoneInfo, after: str, first: str, then: str) -> None:
    spec = nightly("01:30") if tz is not AUCKLAND else nightly("02:30")
    run = next_run(spec, tz, utc(after))
    assert on_clock(run, tz) == first
    again = next_run(spec, tz, run.at_utc)
    assert on_clock(again, tz) == then  # the second 01:30 of that night is not a run
    assert again.at_utc - run.at_utc == timedelta(hours=25)


def test_a_day_skipped_whole_still_has_its_run() -> None:
    apia = ZoneInfo("Pacific/Apia")  # went from 2011-12-29 straight to 2011-12-31
    run = next_run(nightly("12:00"), apia, utc("2011-12-30T00:00"))  # 13:00 on the 29th there
    assert run.local_date == d("2011-12-30") and run.window == P("2011-12-30", "2011-12-30")
    assert on_clock(run, apia) == "2011-12-31 00:00 +14"
    assert on_clock(next_run(nightly("12:00"), apia, run.at_utc), apia) == "2011-12-31 12:00 +14"


def test_weekly_runs_on_its_weekday_covering_the_seven_days_ending_then() -> None:
    spec = ScheduleSpec(kind="weekly", at=time(18), weekday=4)  # Fridays 18:00
    run = next_run(spec, NY, utc("2026-06-10T12:00"))
    assert on_clock(run, NY) == "2026-06-12 18:00 EDT"
    assert run.window == P("2026-06-06", "2026-06-12")
    assert on_clock(next_run(spec, NY, run.at_utc), NY) == "2026-06-19 18:00 EDT"
    # the week of the DST change is 7 local days and one hour shorter, and still runs at 18:00 local
    march = next_run(spec, NY, utc("2026-03-08T00:00"))
    assert on_clock(march, NY) == "2026-03-13 18:00 EDT"
    assert march.window == P("2026-03-07", "2026-03-13")


def test_weekly_run_late_on_its_day_is_found_from_utc_on_the_next() -> None:
    # 23:30 Friday in Los Angeles is already Saturday in UTC.
    spec = ScheduleSpec(kind="weekly", at=time(23, 30), weekday=4)
    run = next_run(spec, LA, utc("2026-06-13T06:00"))
    assert on_clock(run, LA) == "2026-06-12 23:30 PDT"


@pytest.mark.parametrize(
    ("spec", "after", "at", "window"),
    [
        (ScheduleSpec(kind="payroll", at=time(6), payroll_kind=PayrollKind.semimonthly, grace_days=2),
         "2026-02-16T00:00", "2026-02-18 06:00 EST", P("2026-02-01", "2026-02-15")),
        (ScheduleSpec(kind="payroll", at=time(6), payroll_kind=PayrollKind.semimonthly),
         "2028-02-20T00:00", "2028-03-01 06:00 EST", P("2028-02-16", "2028-02-29")),
        (ScheduleSpec(kind="payroll", at=time(7), payroll_kind=PayrollKind.monthly),
         "2028-02-15T00:00", "2028-03-01 07:00 EST", P("2028-02-01", "2028-02-29")),
        (ScheduleSpec(kind="payroll", at=time(7), payroll_kind=PayrollKind.monthly, grace_days=3),
         "2026-12-20T00:00", "2027-01-04 07:00 EST", P("2026-12-01", "2026-12-31")),
        (ScheduleSpec(kind="payroll", at=time(5), payroll_kind=PayrollKind.biweekly, anchor=d("2026-01-05")),
         "2026-01-10T00:00", "2026-01-19 05:00 EST", P("2026-01-05", "2026-01-18")),
        (ScheduleSpec(kind="payroll", at=time(5), payroll_kind=PayrollKind.weekly, anchor=d("2026-06-07")),
         "2026-06-10T00:00", "2026-06-14 05:00 EDT", P("2026-06-07", "2026-06-13")),
        # payroll runs at 02:30 on the spring-forward Sunday: at 03:00 EDT
        (ScheduleSpec(kind="payroll", at=time(2, 30), payroll_kind=PayrollKind.weekly, anchor=d("2026-03-01")),
         "2026-03-02T00:00", "2026-03-08 03:00 EDT", P("2026-03-01", "2026-03-07")),
    ],
)
def test_payroll_runs_after_the_period_plus_grace(spec: ScheduleSpec, after: str, at: str, window: Period) -> None:
    run = next_run(spec, NY, utc(after))
    assert on_clock(run, NY) == at
    assert run.window == window
    assert run.local_date == window.end + timedelta(days=1 + spec.grace_days)


def test_dispatcher_can_recover_the_run_it_is_due_for() -> None:
    spec = ScheduleSpec(kind="payroll", at=time(6), payroll_kind=PayrollKind.semimonthly, grace_days=1)
    run = next_run(spec, LA, utc("2026-03-01T00:00"))
    assert next_run(spec, LA, run.at_utc - timedelta(seconds=1)) == run
    later = next_run(spec, LA, run.at_utc)
    assert later.window == P("2026-03-01", "2026-03-15") and on_clock(later, LA) == "2026-03-17 06:00 PDT"


def test_next_run_from_the_clock_now() -> None:
    spec = nightly("02:30")
    with freeze_time("2026-03-07 17:00:00"):
        run = next_run(spec, NY, datetime.now(UTC))
    assert on_clock(run, NY) == "2026-03-08 03:00 EDT"
    with freeze_time("2026-09-26 13:59:59"):  # 02:59:59 NZST, a second before Auckland's clocks jump
        run = next_run(spec, AUCKLAND, datetime.now(UTC))
    assert on_clock(run, AUCKLAND) == "2026-09-27 03:00 NZDT"
    with freeze_time("2026-04-04 13:30:00"):  # the first 02:30 in Auckland: the next run is tomorrow's
        run = next_run(spec, AUCKLAND, datetime.now(UTC))
    assert on_clock(run, AUCKLAND) == "2026-04-06 02:30 NZST"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "hourly"}, "not one of"),
        ({"kind": "weekly"}, "weekday"),
        ({"kind": "weekly", "weekday": 7}, "weekday"),
        ({"kind": "nightly", "weekday": 2}, "only a weekly"),
        ({"kind": "payroll"}, "payroll kind"),
        ({"kind": "payroll", "payroll_kind": PayrollKind.biweekly}, "anchor"),
        ({"kind": "nightly", "payroll_kind": PayrollKind.monthly}, "only a payroll"),
        ({"kind": "payroll", "payroll_kind": PayrollKind.monthly, "grace_days": -1}, "negative"),
        ({"kind": "nightly", "at": time(2, 0, tzinfo=UTC)}, "local wall time"),
        ({"kind": "payroll", "payroll_kind": "fortnightly"}, "fortnightly"),
    ],
)
def test_schedule_spec_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleSpec(**{"at": time(2)} | kwargs)


def test_next_run_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(nightly("02:00"), NY, datetime(2026, 6, 10, 12, 0))


ZONES = [NY, LA, AUCKLAND, ZoneInfo("Asia/Kolkata"), ZoneInfo("UTC")]


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
    minutes=st.integers(0, 24 * 60 - 1),
    tz=st.sampled_from(ZONES),
)
def test_nightly_next_run_is_the_first_after(after: datetime, minutes: int, tz: ZoneInfo) -> None:
    at = time(minutes // 60, minutes % 60)
    run = next_run(nightly(at.isoformat()), tz, after)
    assert run.at_utc > after
    assert local_to_utc(run.local_date - timedelta(days=1), at, tz) <= after  # the day before was not later
    wall = run.at_utc.astimezone(tz)
    assert wall.date() == run.local_date
    if wall.time() != at:  # only when `at` doesn't exist that day: then the run is right after the gap
        round_trip = datetime.combine(run.local_date, at, tzinfo=tz).astimezone(UTC).astimezone(tz)
        assert round_trip.time() != at
        assert at < wall.time() <= (datetime.combine(run.local_date, at) + timedelta(hours=1)).time()
