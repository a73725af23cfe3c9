"""Is this deployment alive: the beat tick in Redis, a readiness report for the web app's /healthz, and the
commands compose healthchecks run.

The dispatcher (run by beat every minute) records a tick; its age says whether beat and the dispatch worker are
both doing their job, which no process check of either one alone can tell.

    python -m worker.health beat [--max-age 300]   exit 0 when the last tick is recent enough
    python -m worker.health worker [--name sync]   exit 0 when this host's worker node answers a ping
"""

from __future__ import annotations

import argparse
import socket
import sys
from datetime import UTC, datetime
from typing import Any

import redis
from kombu.exceptions import OperationalError
from sqlalchemy import text

from worker.db import get_engine
from worker.settings import Settings, get_settings

BEAT_TICK_KEY = "stsync:beat:last_tick"
READY_BEAT_MAX_AGE_S = 180.0
REDIS_TIMEOUT_S = 3.0


def health_redis_url(settings: Settings) -> str:
    """The Redis that holds the beat tick: REDIS_URL when set, else the broker."""
    return settings.redis_url or settings.celery_broker_url


def record_beat_tick(redis_client: redis.Redis, now: datetime) -> None:
    redis_client.set(BEAT_TICK_KEY, repr(now.timestamp()))


def beat_tick_age(redis_client: redis.Redis, now: datetime) -> float | None:
    """Seconds since the last beat tick, or None when no tick was ever recorded."""
    stored = redis_client.get(BEAT_TICK_KEY)
    if stored is None:
        return None
    return now.timestamp() - float(stored)


def readiness(database_url: str, redis_url: str, now: datetime) -> dict[str, Any]:
    """Each dependency with `ok` and a reason a person reads; `ready` only when all are ok."""
    checks = {"database": _check_database(database_url), "redis": _check_redis(redis_url)}
    checks["beat"] = _check_beat(redis_url, now) if checks["redis"]["ok"] else _failed(
        "the beat tick lives in Redis, which is unreachable")
    return {"ready": all(check["ok"] for check in checks.values()), "checks": checks}


def _check_database(database_url: str) -> dict[str, Any]:
    try:
        with get_engine(database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means the database is not usable
        return _failed(f"database unreachable: {type(exc).__name__}: {_first_line(exc)}")
    return {"ok": True, "reason": "database answers"}


def _check_redis(redis_url: str) -> dict[str, Any]:
    try:
        with _redis(redis_url) as client:
            client.ping()
    except redis.RedisError as exc:
        return _failed(f"Redis unreachable: {type(exc).__name__}: {_first_line(exc)}")
    return {"ok": True, "reason": "Redis answers"}


def _check_beat(redis_url: str, now: datetime) -> dict[str, Any]:
    with _redis(redis_url) as client:
        age = beat_tick_age(client, now)
    if age is None:
        return _failed("beat has never ticked: is exactly one beat running, and a worker on the dispatch queue?")
    if age > READY_BEAT_MAX_AGE_S:
        return _failed(f"last beat tick {age:.0f} s ago (limit {READY_BEAT_MAX_AGE_S:.0f} s): "
                       "beat or the dispatch worker is down")
    return {"ok": True, "reason": f"last beat tick {age:.0f} s ago"}


def _failed(reason: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason}


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)


def check_beat(max_age_s: float) -> tuple[bool, str]:
    """The beat tick against a limit, for the beat container's healthcheck."""
    try:
        with _redis(health_redis_url(get_settings())) as client:
            age = beat_tick_age(client, datetime.now(UTC))
    except redis.RedisError as exc:
        return False, f"Redis unreachable: {_first_line(exc)}"
    if age is None:
        return False, "beat has never ticked"
    return age <= max_age_s, f"last beat tick {age:.0f} s ago (limit {max_age_s:.0f} s)"


def check_worker(node_name: str, timeout_s: float) -> tuple[bool, str]:
    """Ping one worker node through the broker, for the worker container's healthcheck."""
    from worker.app import app

    node = f"{node_name}@{socket.gethostname()}"
    try:
        replies = app.control.ping(destination=[node], timeout=timeout_s)
    except OperationalError as exc:
        return False, f"broker unreachable: {_first_line(exc)}"
    if any(node in reply for reply in replies):
        return True, f"{node} answered"
    return False, f"{node} did not answer a ping within {timeout_s:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.health", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    beat = commands.add_parser("beat", help="exit 0 when the last beat tick is recent enough")
    beat.add_argument("--max-age", type=float, default=300.0, help="seconds (default 300)")
    worker = commands.add_parser("worker", help="exit 0 when this host's worker node answers a ping")
    worker.add_argument("--name", default="celery", help="the node name before @host, as given to -n (celery)")
    worker.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.command == "beat":
        ok, reason = check_beat(args.max_age)
    else:
        ok, reason = check_worker(args.name, args.timeout)
    print(reason, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
