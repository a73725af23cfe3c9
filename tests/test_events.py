"""Malformed ServiceTrade clock events end as a named problem, never a bare KeyError or a guess."""

from __future__ import annotations

import pytest

from worker.sync.events import EventProblem, punch_from_event

GOOD = {"id": 1001, "eventTime": 1772460000, "eventType": "clockIn", "activity": "onsite", "source": "mobile",
        "user": {"id": 5, "name": "Ann Tech"}, "job": {"id": 9, "number": 12}, "appointment": None,
        "created": 1772460000, "updated": 1772460000}


def test_a_good_event_becomes_a_punch() -> None:
    punch = punch_from_event(GOOD)
    assert (punch.id, punch.user_id, punch.job_id, punch.event_type) == (1001, 5, 9, "clockIn")
    assert punch.at.timestamp() == 1772460000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eventTime": None}, "clock event 1001: eventTime is missing"),
        ({"eventTime": "1772460000"}, "clock event 1001: eventTime must be an integer, got str '1772460000'"),
        ({"eventTime": 1772460000000}, "clock event 1001: eventTime 1772460000000 looks like milliseconds"),
        ({"eventType": None}, "clock event 1001: eventType is missing"),
        ({"eventType": "clockSideways"}, "clock event 1001: eventType 'clockSideways' is not clockIn or clockOut"),
        ({"activity": "lunch"}, "clock event 1001: activity 'lunch' is not one of"),
        ({"user": None}, "clock event 1001: user is missing"),
        ({"user": {"id": "5"}}, "clock event 1001: user.id must be an integer, got str '5'"),
        ({"job": None}, "clock event 1001: job is missing"),
        ({"id": "1001"}, "a clock event without an id: id must be an integer"),
    ],
)
def test_each_malformed_event_names_the_event_and_the_field(change: dict, message: str) -> None:
    with pytest.raises(EventProblem) as info:
        punch_from_event({**GOOD, **change})
    assert str(info.value).startswith(message)


def test_not_an_object() -> None:
    with pytest.raises(EventProblem, match="expected an object, got list"):
        punch_from_event([1, 2])
