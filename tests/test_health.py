"""Health: the beat tick in Redis, the readiness report (database, Redis, beat, each with a reason) and the
`python -m worker.health` commands that compose healthchecks run, against real PostgreSQL, Redis and a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import redis

from worker.health import beat_tick_age, readiness, record_beat_tick

from . import processes

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def _health(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "worker.health", *args], capture_output=True, text=True,
                          env=env, cwd=processes.ROOT, timeout=60)


def test_beat_tick_age_is_the_seconds_since_the_last_recorded_tick(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert beat_tick_age(client, NOW) is None
    record_beat_tick(client, NOW - timedelta(seconds=42.5))
    assert beat_tick_age(client, NOW) == 42.5
    record_beat_tick(client, NOW)
    assert beat_tick_age(client, NOW + timedelta(minutes=2)) == 120.0


def test_ready_when_database_redis_and_a_recent_beat_tick_are_there(pg_url: str, redis_url: str) -> None:
    record_beat_tick(redis.Redis.from_url(redis_url), NOW - timedelta(seconds=70))
    report = readiness(pg_url, redis_url, NOW)
    assert report["ready"] is True
    assert {name: check["ok"] for name, check in report["checks"].items()} == {
        "database": True, "redis": True, "beat": True}
    assert report["checks"]["beat"]["reason"] == "last beat tick 70 s ago"


def test_not_ready_when_the_beat_tick_is_older_than_three_minutes(pg_url: str, redis_url: str) -> None:
    record_beat_tick(redis.Redis.from_url(redis_url), NOW - timedelta(seconds=181))
    report = readiness(pg_url, redis_url, NOW)
    assert report["ready"] is False
    assert report["checks"]["beat"] == {
        "ok": False, "reason": "last beat tick 181 s ago (limit 180 s): beat or the dispatch worker is down"}
    assert report["checks"]["database"]["ok"] and report["checks"]["redis"]["ok"]


def test_not_ready_before_beat_ever_ticked(pg_url: str, redis_url: str) -> None:
    report = readiness(pg_url, redis_url, NOW)
    assert report["ready"] is False
    assert report["checks"]["beat"]["reason"].startswith("beat has never ticked")


def test_unreachable_database_and_redis_are_named_with_their_reasons() -> None:
    report = readiness(UNREACHABLE_PG, UNREACHABLE_REDIS, NOW)
    assert report["ready"] is False
    checks = report["checks"]
    assert not checks["database"]["ok"] and checks["database"]["reason"].startswith("database unreachable: ")
    assert not checks["redis"]["ok"] and checks["redis"]["reason"].startswith("Redis unreachable: ConnectionError")
    assert checks["beat"] == {"ok": False, "reason": "the beat tick lives in Redis, which is unreachable"}


def test_beat_healthcheck_command_passes_on_a_recent_tick_and_fails_on_an_old_one(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    never = _health("beat", redis_url=redis_url)
    assert never.returncode == 1 and "beat has never ticked" in never.stderr

    record_beat_tick(client, datetime.now(UTC) - timedelta(seconds=200))
    fresh_enough = _health("beat", redis_url=redis_url)
    assert fresh_enough.returncode == 0, fresh_enough.stderr
    assert "(limit 300 s)" in fresh_enough.stdout
    too_old = _health("beat", "--max-age", "100", redis_url=redis_url)
    assert too_old.returncode == 1 and "(limit 100 s)" in too_old.stderr

    unreachable = _health("beat", redis_url=UNREACHABLE_REDIS)
    assert unreachable.returncode == 1 and "Redis unreachable" in unreachable.stderr


def test_worker_healthcheck_command_pings_this_hosts_node_by_name(redis_url: str, db_url: str) -> None:
    env = {**os.environ, "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url, "DATABASE_URL": db_url}
    worker = processes.worker(env, name="healthcheck", concurrency=1)
    try:
        worker.wait_for(processes.WORKER_READY, 60)
        alive = _health("worker", "--name", "healthcheck", redis_url=redis_url)
        assert alive.returncode == 0, alive.stderr
        assert alive.stdout.startswith("healthcheck@")
        absent = _health("worker", "--name", "nobody", "--timeout", "2", redis_url=redis_url)
        assert absent.returncode == 1 and "did not answer a ping within 2 s" in absent.stderr
    finally:
        worker.stop()
