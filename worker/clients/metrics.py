"""Procore answers counted by status code in Redis, for a /metrics endpoint ("Procore calls answered 429 in the last
hour") and for whoever looks at Redis by hand.

Key layout (company ids and status codes are decimal; hours are UTC):
- `stsync:metrics:procore_responses:{company_id}`: a hash, field `<status>` → answers since counting began. Never
  expires: a Prometheus counter is read from it.
- `stsync:metrics:procore_responses:{company_id}:{yyyymmddhh}`: the same hash for one clock hour, expiring
  BUCKET_TTL_S after it is first written, so that a rate over the last hour can be computed without Prometheus.

Each answer costs one round trip (HINCRBY, HINCRBY, EXPIRE in one pipeline), made beside the rate budget's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis

PREFIX = "stsync:metrics:procore_responses"
BUCKET_TTL_S = 48 * 3600
HOUR_FORMAT = "%Y%m%d%H"


def total_key(company_id: int) -> str:
    return f"{PREFIX}:{int(company_id)}"


def hour_key(company_id: int, when: datetime) -> str:
    return f"{total_key(company_id)}:{when.astimezone(UTC).strftime(HOUR_FORMAT)}"


def count_response(client: redis.Redis, company_id: int, status: int, now: float) -> None:
    """Count one Procore answer of `status` for the company, in the total and in the hour of `now` (unix s)."""
    bucket = hour_key(company_id, datetime.fromtimestamp(now, UTC))
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(total_key(company_id), str(status), 1)
    pipe.hincrby(bucket, str(status), 1)
    pipe.expire(bucket, BUCKET_TTL_S)
    pipe.execute()


@dataclass(frozen=True)
class ResponseCounts:
    """One company's counts by status: since counting began, in the current clock hour and in the one before."""

    total: dict[int, int] = field(default_factory=dict)
    this_hour: dict[int, int] = field(default_factory=dict)
    previous_hour: dict[int, int] = field(default_factory=dict)
    minutes_into_hour: float = 0.0

    def in_last_hour(self, status: int) -> float:
        """Answers of `status` in the last 60 minutes, estimated from the two hourly buckets: all of this hour's,
        and the share of the previous hour's that falls inside the window (the sliding-window counter estimate)."""
        share = 1.0 - self.minutes_into_hour / 60.0
        return self.this_hour.get(status, 0) + self.previous_hour.get(status, 0) * share


def procore_response_counts(client: redis.Redis, now: float | None = None) -> dict[int, ResponseCounts]:
    """Every company's counts, by company id. `now` (unix seconds; the current time by default) picks the hour."""
    at = datetime.fromtimestamp(now, UTC) if now is not None else datetime.now(UTC)
    counts: dict[int, ResponseCounts] = {}
    for company_id in _companies(client):
        counts[company_id] = ResponseCounts(
            total=_read(client, total_key(company_id)),
            this_hour=_read(client, hour_key(company_id, at)),
            previous_hour=_read(client, hour_key(company_id, at - timedelta(hours=1))),
            minutes_into_hour=at.minute + at.second / 60.0,
        )
    return counts


def _companies(client: redis.Redis) -> list[int]:
    found: set[int] = set()
    for key in client.scan_iter(match=f"{PREFIX}:*", count=500):
        name = key.decode() if isinstance(key, bytes) else key
        company = name[len(PREFIX) + 1:].split(":", 1)[0]
        if company.isdigit():
            found.add(int(company))
    return sorted(found)


def _read(client: redis.Redis, key: str) -> dict[int, int]:
    return {int(status): int(n) for status, n in client.hgetall(key).items()}
