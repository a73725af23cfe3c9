"""Procore answers counted by status code in the real Redis (worker/clients/metrics.py), beside the shared rate
budget, and read back for a metrics endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from tests import helpers
from tests.helpers import Sleeps, Stub
from worker.clients.metrics import BUCKET_TTL_S, count_response, hour_key, procore_response_counts, total_key
from worker.clients.procore import MemoryTokenStore, ProcoreClient, TokenSet
from worker.clients.ratelimit import LocalRateBudget, RateBudget, RedisRateBudget

stub = helpers.stub  # the scripted server, as a fixture
COMPANY = 4242
# 10:45 UTC: three quarters into the hour
NOW = datetime(2026, 3, 2, 10, 45, tzinfo=UTC).timestamp()


def procore(stub: Stub, budget: RateBudget) -> ProcoreClient:
    tokens = TokenSet("access-token-1", None, datetime.now(UTC) + timedelta(hours=1))
    return ProcoreClient(stub.url, stub.url, COMPANY, client_id="cid", client_secret="csecret",
                         token_store=MemoryTokenStore(tokens), rate_budget=budget, sleep=Sleeps(), timeout=2)


def test_every_procore_answer_is_counted_by_status_in_redis_beside_the_rate_budget(
        stub: Stub, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = RedisRateBudget(client, f"stsync:procore-budget:{COMPANY}", clock=lambda: NOW)
    stub.answer(200, {"projects_timecard_in_out_enabled": []})
    stub.answer(429, raw=b"You have surpassed the max number of requests for an hour.")
    stub.answer(200, {"projects_timecard_in_out_enabled": []})
    pc = procore(stub, budget)
    pc.company_configuration()
    pc.company_configuration()  # a 429, then the same call again
    counts = procore_response_counts(client, now=NOW)
    assert list(counts) == [COMPANY]
    assert counts[COMPANY].total == {200: 2, 429: 1} and counts[COMPANY].this_hour == {200: 2, 429: 1}
    assert counts[COMPANY].in_last_hour(429) == 1
    bucket = hour_key(COMPANY, datetime.fromtimestamp(NOW, UTC))
    assert bucket == f"stsync:metrics:procore_responses:{COMPANY}:2026030210"
    assert 0 < client.ttl(bucket) <= BUCKET_TTL_S and client.ttl(total_key(COMPANY)) == -1


def test_the_last_hour_takes_this_hour_and_the_share_of_the_previous_one_still_inside_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for _ in range(8):
        count_response(client, COMPANY, 429, NOW - 3600)  # 09:45
    for _ in range(3):
        count_response(client, COMPANY, 429, NOW)
    count_response(client, 7, 200, NOW)
    counts = procore_response_counts(client, now=NOW)
    assert sorted(counts) == [7, COMPANY]
    ours = counts[COMPANY]
    assert ours.total == {429: 11} and ours.previous_hour == {429: 8} and ours.this_hour == {429: 3}
    assert ours.in_last_hour(429) == 3 + 8 * 0.25  # 09:45..10:00 is a quarter of the previous hour
    assert ours.in_last_hour(200) == 0 and counts[7].total == {200: 1}


def test_without_redis_the_answers_are_counted_in_the_process(stub: Stub) -> None:
    budget = LocalRateBudget()
    stub.answer(200, {"projects_timecard_in_out_enabled": []}).answer(404, {"errors": "Not Found"})
    pc = procore(stub, budget)
    pc.company_configuration()
    assert pc.rounding_configuration() is None
    assert dict(budget.responses) == {200: 1, 404: 1}
