"""The Prometheus metrics of ops/prometheus/README.md (the contract the alert rules use), read from PostgreSQL and
Redis when scraped.

Nothing is counted in process memory: every web process (and every Celery prefork child) would otherwise keep a
registry of its own. Each scrape builds a fresh registry around one collector that reads the database and Redis
once. A store that cannot be read does not fail the scrape: the other's metrics are exported, and
`stsync_scrape_errors{source}` is 1 for the one that failed, so an alert can tell "no failed rows" from "could not
look".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import redis
import structlog
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.clients.metrics import procore_response_counts
from worker.db import session_scope
from worker.enums import LedgerStatus, RunStatus
from worker.health import REDIS_TIMEOUT_S, beat_tick_age, health_redis_url
from worker.settings import get_settings
from worker.store import reports
from worker.store.reports import ProjectSync

log = structlog.get_logger("stsync.metrics")
T = TypeVar("T")

# The Celery queues whose length is exported (celeryconfig.task_queues).
QUEUES = ("sync", "dispatch")
# kombu's Redis transport keeps a queue as a list under its name, and each priority step above 0 as a list named
# `<queue>\x06\x16<step>` (kombu.transport.redis: Channel.sep, PRIORITY_STEPS, _q_for_pri).
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
# The shared Procore rate budget of a company (worker.connections.rate_budget_for).
BUDGET_KEY = "stsync:procore-budget:{company_id}"
AGE_STATUSES = (LedgerStatus.pending, LedgerStatus.unknown, LedgerStatus.needs_review, LedgerStatus.failed)
RUNS_WINDOW = timedelta(days=1)


def render_metrics(
    *, database_url: str | None = None, redis_url: str | None = None, broker_url: str | None = None,
    now: datetime | None = None,
) -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type. `redis_url` is where the beat tick, the
    rate budgets and the Procore answer counts live (REDIS_URL, else the broker); `broker_url` is the Celery
    broker holding the queues (CELERY_BROKER_URL, or `redis_url` when only that is given)."""
    settings = get_settings()
    sources = Sources(
        database_url=database_url or settings.database_url,
        redis_url=redis_url or health_redis_url(settings),
        broker_url=broker_url or redis_url or settings.celery_broker_url,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StsyncCollector(sources, now or datetime.now(UTC)))
    # The classic text format (0.0.4): every name here is a legacy one, and every Prometheus version reads it.
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


@dataclass(frozen=True)
class Sources:
    database_url: str
    redis_url: str
    broker_url: str


@dataclass
class DatabaseFacts:
    projects: list[ProjectSync] = field(default_factory=list)
    ledger_rows: list[tuple[LedgerStatus, str | None, int]] = field(default_factory=list)
    entered: dict[LedgerStatus, datetime] = field(default_factory=dict)
    runs: dict[RunStatus, int] = field(default_factory=dict)
    company_ids: list[int] = field(default_factory=list)
    webhook_deliveries: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass
class RedisFacts:
    beat_tick_age: float | None = None
    budgets: dict[int, int] = field(default_factory=dict)
    responses: dict[int, dict[int, int]] = field(default_factory=dict)


class StsyncCollector(Collector):
    """Reads everything once per scrape and yields the families of the contract."""

    def __init__(self, sources: Sources, now: datetime) -> None:
        self.sources = sources
        self.now = now

    def collect(self) -> Iterator[Metric]:
        errors = {"database": 0, "redis": 0, "broker": 0}
        db = _read_or_none(lambda: read_database(self.sources.database_url, self.now), "database", errors)
        store = _read_or_none(
            lambda: read_redis(self.sources.redis_url, db.company_ids if db else [], self.now), "redis", errors)
        queues = _read_or_none(lambda: read_queue_lengths(self.sources.broker_url), "broker", errors)
        if db is not None:
            yield from database_metrics(db, self.now)
        if store is not None:
            yield from redis_metrics(store)
        if queues is not None:
            yield _gauge("stsync_queue_length", "Messages waiting in the Celery queue.", ["queue"],
                         [((queue,), n) for queue, n in queues.items()])
        yield _gauge("stsync_scrape_errors", "1 when this scrape could not read the source (database, redis, "
                     "broker): its metrics are missing from this scrape.", ["source"],
                     [((source,), n) for source, n in errors.items()])


def _read_or_none(read: Callable[[], T], source: str, errors: dict[str, int]) -> T | None:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - one unreadable store must not fail the whole scrape
        errors[source] = 1
        log.warning("metrics.source_unreadable", source=source, error=f"{type(exc).__name__}: {exc}")
        return None


# ---------------------------------------------------------------------------- reading


def read_database(database_url: str, now: datetime) -> DatabaseFacts:
    with session_scope(database_url) as s:
        return DatabaseFacts(
            projects=reports.project_syncs(s),
            ledger_rows=reports.ledger_row_counts(s),
            entered=reports.oldest_in_status(s, AGE_STATUSES),
            runs=reports.runs_created_since(s, now - RUNS_WINDOW),
            company_ids=reports.connected_company_ids(s),
            webhook_deliveries=reports.webhook_delivery_counts(s),
        )


def read_redis(redis_url: str, company_ids: list[int], now: datetime) -> RedisFacts:
    with _redis(redis_url) as client:
        counts = procore_response_counts(client, now.timestamp())
        return RedisFacts(
            beat_tick_age=beat_tick_age(client, now),
            budgets={company: left for company in company_ids
                     if (left := budget_remaining(client, company, now)) is not None},
            responses={company: c.total for company, c in counts.items()},
        )


def read_queue_lengths(broker_url: str) -> dict[str, int]:
    """Messages waiting in each queue, priority lists counted in, as kombu's own `_size` counts them."""
    with _redis(broker_url) as client:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for key in queue_keys(queue):
                pipe.llen(key)
        lengths = iter(pipe.execute())
        return {queue: sum(next(lengths) for _ in KOMBU_PRIORITY_STEPS) for queue in QUEUES}


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEP}{step}" for step in KOMBU_PRIORITY_STEPS]


def budget_remaining(client: redis.Redis, company_id: int, now: datetime) -> int | None:
    """Calls left in the company's budget as the next call would see it: a window that has passed starts again
    at its limit (worker.clients.ratelimit). None before any Procore answer told the limit."""
    stored = {k.decode(): v.decode() for k, v in client.hgetall(BUDGET_KEY.format(company_id=company_id)).items()}
    if "remaining" not in stored:
        return None
    remaining, limit, reset = int(stored["remaining"]), int(stored.get("limit", -1)), float(stored.get("reset", 0))
    if now.timestamp() >= reset + 1 and limit >= 0:
        return limit
    return remaining


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)


# ---------------------------------------------------------------------------- the families


def database_metrics(db: DatabaseFacts, now: datetime) -> Iterator[Metric]:
    yield _gauge(
        "stsync_project_last_success_timestamp_seconds",
        "Unix time of the project's last sync run that ran to its end; the time its schedule was enabled when it "
        "never did.", ["project_id", "project", "active"],
        [((str(p.project_id), p.name, "true" if p.active else "false"), p.counted_from.timestamp())
         for p in db.projects])
    yield _gauge("stsync_ledger_rows", "Ledger rows per status and reason (the skip reason; empty otherwise).",
                 ["status", "reason"], ledger_row_samples(db.ledger_rows))
    yield _gauge(
        "stsync_ledger_oldest_age_seconds", "Age of the oldest row in the status, since it entered it (0: none).",
        ["status"],
        [((status.value,), max(0.0, (now - db.entered[status]).total_seconds()) if status in db.entered else 0.0)
         for status in AGE_STATUSES])
    yield _gauge("stsync_runs_last_day", "Sync runs created in the last 24 hours, per run status.", ["status"],
                 [((status.value,), db.runs.get(status, 0)) for status in RunStatus])
    yield _gauge("stsync_webhook_deliveries", "Stored webhook deliveries per source and outcome.",
                 ["source", "outcome"], [((source, outcome), n) for source, outcome, n in db.webhook_deliveries])


def redis_metrics(store: RedisFacts) -> Iterator[Metric]:
    yield _gauge("stsync_procore_budget_remaining", "Requests left in the company's shared Procore rate budget.",
                 ["company_id"], [((str(company),), left) for company, left in sorted(store.budgets.items())])
    age = store.beat_tick_age
    yield _gauge("stsync_beat_tick_age_seconds", "Seconds since the dispatcher's last beat tick (+Inf: never).",
                 [], [((), float("inf") if age is None else max(0.0, age))])
    responses = CounterMetricFamily("stsync_procore_responses", "Procore responses by HTTP status code.",
                                    labels=["company_id", "status"])
    for company, by_status in sorted(store.responses.items()):
        # The 429 series exists from a company's first answer, so increase() sees its first 429s.
        for status, n in sorted({429: 0, **by_status}.items()):
            responses.add_metric([str(company), str(status)], n)
    yield responses


def ledger_row_samples(rows: list[tuple[LedgerStatus, str | None, int]]) -> list[tuple[tuple[str, str], int]]:
    """Every status but `skipped` once with reason "" (0 when there is none); `skipped` per reason."""
    counts: dict[tuple[str, str], int] = {
        (status.value, ""): 0 for status in LedgerStatus if status is not LedgerStatus.skipped}
    for status, reason, n in rows:
        key = (status.value, (reason or "") if status is LedgerStatus.skipped else "")
        counts[key] = counts.get(key, 0) + n
    return sorted(counts.items())


def _gauge(name: str, documentation: str, labels: list[str],
           samples: list[tuple[tuple[str, ...], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family
