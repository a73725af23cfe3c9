"""The daily digest of each company, mailed once its local digest time has come (the dispatcher starts this)."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.app import app
from worker.service import digest as digest_service


@app.task(name="tasks.digest.send_digests", bind=True)
def send_digests(self) -> dict:
    results = digest_service.send_all(datetime.now(UTC))
    return {"sent": [r.company_name for r in results if r.sent],
            "not_sent": {r.company_name: r.error for r in results if r.error}}
