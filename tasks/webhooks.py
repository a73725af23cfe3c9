"""Webhook tasks: processing one stored delivery (queued by the receiver after its commit)."""

from __future__ import annotations

from typing import Any

from worker.app import app
from worker.clients.errors import ApiError
from worker.inputs import positive_id
from worker.service import webhooks

# An API that failed now (ServiceTrade listing the punch, Procore reading the entry) is asked again a few times;
# the delivery keeps its `failed` outcome and reason if it never answers, and the scheduled runs are the backstop.
RETRIES = 3
RETRY_AFTER_S = 30


@app.task(name="tasks.webhooks.process", bind=True, max_retries=RETRIES)
def process(self, delivery_id: Any) -> dict:
    try:
        return webhooks.process_delivery(positive_id(delivery_id, "delivery_id")).to_dict()
    except ApiError as exc:
        raise self.retry(exc=exc, countdown=RETRY_AFTER_S * (self.request.retries + 1)) from exc
