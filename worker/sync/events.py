"""Turning one raw ServiceTrade clock event (ST-5) into a Punch, or a named problem.

ServiceTrade's shape is only partly documented, so anything unexpected is refused with a message that names the
event and the field, instead of being guessed at: a wrong guess here is hours on the wrong day.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.enums import ACTIVITIES, EVENT_TYPES
from worker.sync.types import Punch
from worker.text import clean_text

# Epoch seconds stay below this until the year 5138; a larger number is milliseconds (or garbage).
_MAX_EPOCH_SECONDS = 10**11


class EventProblem(ValueError):
    def __init__(self, event_id: int | None, message: str) -> None:
        self.event_id = event_id
        label = f"clock event {event_id}" if event_id is not None else "a clock event without an id"
        super().__init__(f"{label}: {message}")


def _int(raw: Mapping[str, Any], key: str, event_id: int | None, *, path: str | None = None) -> int:
    value = raw.get(key) if isinstance(raw, Mapping) else None
    where = path or key
    if value is None:
        raise EventProblem(event_id, f"{where} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventProblem(event_id, f"{where} must be an integer, got {type(value).__name__} {value!r}")
    return value


def punch_from_event(raw: Any) -> Punch:
    if not isinstance(raw, Mapping):
        raise EventProblem(None, f"expected an object, got {type(raw).__name__}")
    event_id = raw.get("id") if isinstance(raw.get("id"), int) and not isinstance(raw.get("id"), bool) else None
    _int(raw, "id", None)
    event_time = _int(raw, "eventTime", event_id)
    if event_time >= _MAX_EPOCH_SECONDS:
        raise EventProblem(
            event_id, f"eventTime {event_time} looks like milliseconds, not the epoch seconds ServiceTrade sends"
        )
    if event_time <= 0:
        raise EventProblem(event_id, f"eventTime {event_time} is not a time")
    event_type = raw.get("eventType")
    if event_type is None:
        raise EventProblem(event_id, "eventType is missing")
    if event_type not in EVENT_TYPES:
        raise EventProblem(event_id, f"eventType {event_type!r} is not clockIn or clockOut")
    activity = raw.get("activity")
    if activity not in ACTIVITIES:
        raise EventProblem(event_id, f"activity {activity!r} is not one of {', '.join(sorted(ACTIVITIES))}")
    user = raw.get("user")
    if not isinstance(user, Mapping):
        raise EventProblem(event_id, "user is missing")
    job = raw.get("job")
    if not isinstance(job, Mapping):
        raise EventProblem(event_id, "job is missing")
    return Punch(
        id=event_id,  # type: ignore[arg-type]
        user_id=_int(user, "id", event_id, path="user.id"),
        user_name=clean_text(user.get("name") or f"user {user.get('id')}", 300, "technician name"),
        job_id=_int(job, "id", event_id, path="job.id"),
        activity=str(activity),
        event_type=str(event_type),
        at=datetime.fromtimestamp(event_time, tz=UTC),
    )
