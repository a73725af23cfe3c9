"""The only beat entry: every minute, turn due schedules and due deferred runs into queued runs, then enqueue."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from worker.app import app
from worker.dispatch import dispatch_due as dispatch
from worker.health import health_redis_url, record_beat_tick
from worker.settings import get_settings


@app.task(name="tasks.schedule.dispatch_due", bind=True)
def dispatch_due(self) -> dict:
    from tasks.sync import run

    now = datetime.now(UTC)
    run_ids = dispatch(now)
    with redis.Redis.from_url(health_redis_url(get_settings())) as tick_store:
        record_beat_tick(tick_store, now)
    # Enqueue only after the commit inside dispatch(): a worker must never receive a run it can't see yet.
    for run_id in run_ids:
        run.apply_async(kwargs={"run_id": run_id}, queue="sync")
    return {"enqueued": run_ids}
