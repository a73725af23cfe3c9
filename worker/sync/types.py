"""Values the pure sync steps pass between them: punches, intervals, skip reasons, rounding and cost code rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Literal, get_args

from worker.enums import SkipReason

RoundingKind = Literal["up", "down", "nearest", "favor_employee"]
ROUNDING_KINDS: frozenset[str] = frozenset(get_args(RoundingKind))
ROUNDING_INCREMENTS = frozenset({5, 6, 10, 15})  # P-4: the only increments Procore offers


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")


@dataclass(frozen=True)
class Punch:
    """One ServiceTrade clock event (ST-5). `event_type` and `activity` are kept as sent: pairing refuses
    values it doesn't know, with a message, instead of the constructor failing the whole run."""

    id: int
    user_id: int
    user_name: str
    job_id: int
    activity: str
    event_type: str  # "clockIn" | "clockOut"
    at: datetime

    def __post_init__(self) -> None:
        _require_aware(f"punch {self.id} time", self.at)


@dataclass(frozen=True)
class Interval:
    """A clock-in and the clock-out that closes it: same technician, job and activity."""

    clock_in: Punch
    clock_out: Punch

    @property
    def start(self) -> datetime:
        return self.clock_in.at

    @property
    def end(self) -> datetime:
        return self.clock_out.at

    @property
    def user_id(self) -> int:
        return self.clock_in.user_id

    @property
    def user_name(self) -> str:
        return self.clock_in.user_name

    @property
    def activity(self) -> str:
        return self.clock_in.activity

    @property
    def job_id(self) -> int:
        return self.clock_in.job_id


@dataclass(frozen=True)
class SkippedPunches:
    """Punches that make no postable interval, the reason, and a sentence for people naming ids, technician
    and times."""

    punches: tuple[Punch, ...]
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class RoundingRule:
    """The Procore company's timecard rounding rule (P-4, P-8)."""

    rule: RoundingKind
    increment_min: int

    def __post_init__(self) -> None:
        if self.rule not in ROUNDING_KINDS:
            raise ValueError(
                f"rounding rule {self.rule!r} is not one of {', '.join(sorted(ROUNDING_KINDS))}"
            )
        if self.increment_min not in ROUNDING_INCREMENTS:
            raise ValueError(
                f"rounding increment {self.increment_min!r} minutes is not one of "
                f"{', '.join(map(str, sorted(ROUNDING_INCREMENTS)))}"
            )


@dataclass(frozen=True)
class Piece:
    """The part of an interval that falls on one local work date."""

    work_date: date
    start: datetime
    end: datetime


@dataclass(frozen=True)
class CostRule:
    """One cost code rule of a project. A condition left as None matches anything (DESIGN §3 step 7)."""

    id: int
    priority: int
    activity: str | None
    st_user_id: int | None
    weekdays: frozenset[int] | None  # 0 = Monday
    start_window: tuple[time, time] | None  # start inclusive, end exclusive; may wrap past midnight
    cost_code_id: int
    line_item_type_id: int
    timecard_time_type_id: int | None
    billable: bool
    description: str | None
