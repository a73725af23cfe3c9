"""The only beat entry: every minute, turn due schedules and due deferred runs into queued runs, then enqueue; and
start what else is due by the clock: webhook deliveries whose message was lost, and the daily digests."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from tasks.digest import send_digests
from worker.app import app
from worker.dispatch import dispatch_due as dispatch
from worker.health import health_redis_url, record_beat_tick
from worker.service import digest as digest_service
from worker.service import webhooks
from worker.settings import get_settings


@app.task(name="tasks.schedule.dispatch_due", bind=True)
def dispatch_due(self) -> dict:
    from tasks.sync import run

    now = datetime.now(UTC)
    run_ids = dispatch(now)
    # Enqueue only after the commit inside dispatch(): a worker must never receive a run it can't see yet.
    for run_id in run_ids:
        run.apply_async(kwargs={"run_id": run_id}, queue="sync")
    deliveries = webhooks.requeue_unprocessed(now)
    with redis.Redis.from_url(health_redis_url(get_settings())) as store:
        record_beat_tick(store, now)
        digests = digest_service.digests_due(now, store)
    if digests:  # mail goes out from a sync worker: the dispatcher never waits on SMTP or Procore
        send_digests.apply_async(queue="sync")
    return {"enqueued": run_ids, "deliveries": deliveries, "digests_due": len(digests)}
