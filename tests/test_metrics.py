"""/metrics as the alert rules read it (ops/prometheus/README.md): rendered from a real PostgreSQL and Redis, parsed
back with prometheus_client's parser, and linted by `promtool check metrics`."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from kombu import Connection as BrokerConnection
from kombu import Exchange, Queue
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from worker.clients.metrics import count_response
from worker.clients.ratelimit import RedisRateBudget
from worker.db import get_engine
from worker.enums import EntryMode, LedgerStatus, RunStatus, RunTrigger, ScheduleKind
from worker.health import record_beat_tick
from worker.metrics import render_metrics
from worker.models import Connection, LedgerEntry, ProjectLink, Schedule, SyncRun, WebhookDelivery
from worker.settings import reset_settings
from worker.store import ledger as ledger_store
from worker.store import reports
from worker.web.app import create_app

NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
COMPANY = 4242
NORTH, SOUTH = 5001, 5002
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
CONTRACT = Path(__file__).resolve().parent.parent / "ops" / "prometheus" / "README.md"
UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2"


# ---------------------------------------------------------------------------- records, written as a run leaves them


def add_company(s: Session, company_id: int = COMPANY) -> Connection:
    conn = Connection(procore_company_id=company_id, procore_client_id="client", procore_client_secret="secret",
                      created_at=NOW - timedelta(days=30))
    s.add(conn)
    s.flush()
    return conn


def add_project(s: Session, conn: Connection, project_id: int, name: str, *, scheduled_at: datetime | None = None,
                zone: str = "America/Chicago") -> ProjectLink:
    link = ProjectLink(connection_id=conn.id, procore_project_id=project_id, name=name, time_zone=zone,
                       entry_mode=EntryMode.hours, timesheets_active=True, created_at=NOW - timedelta(days=20))
    s.add(link)
    s.flush()
    if scheduled_at is not None:
        s.add(Schedule(project_link_id=link.id, kind=ScheduleKind.nightly, local_time=time(22, 0), enabled=True,
                       next_run_at=NOW + timedelta(hours=10), created_at=scheduled_at))
        s.flush()
    return link


def add_run(s: Session, link: ProjectLink, status: RunStatus, finished_at: datetime, *,
            dry_run: bool = False) -> SyncRun:
    run = SyncRun(run_key=f"test:{link.id}:{finished_at.isoformat()}:{dry_run}", project_link_id=link.id,
                  trigger=RunTrigger.schedule, window_start=finished_at.date(), window_end=finished_at.date(),
                  dry_run=dry_run, status=status, created_at=finished_at - timedelta(minutes=2),
                  started_at=finished_at - timedelta(minutes=1), finished_at=finished_at)
    s.add(run)
    s.flush()
    return run


def add_row(
    s: Session, link: ProjectLink, key: str, status: LedgerStatus, *, entered_at: datetime, technician: str = "Ann Lee",
    st_user_id: int = 11, work_date: date = date(2026, 3, 2), hours: str = "8.00", reason: str | None = None,
    detail: str | None = None, cost_code_id: int | None = 10, run: SyncRun | None = None,
) -> LedgerEntry:
    """A ledger row in `status` since `entered_at`, with the history a run writes (claimed, then its outcome)."""
    row = LedgerEntry(
        connection_id=link.connection_id, project_link_id=link.id, source_key=key, st_user_id=st_user_id,
        technician_name=technician, work_date=work_date, hours=Decimal(hours), cost_code_id=cost_code_id,
        status=status, reason=reason, detail=detail, created_at=entered_at - timedelta(minutes=5),
        posted_at=entered_at if status is LedgerStatus.posted else None, last_run_id=run.id if run else None)
    s.add(row)
    s.flush()
    run_id = run.id if run else None
    if status is LedgerStatus.skipped:
        ledger_store.add_history(s, [(row.id, None, status, reason, detail)], run_id=run_id, at=entered_at)
    else:
        ledger_store.add_history(s, [(row.id, None, LedgerStatus.pending, None, "claimed for posting")],
                                 run_id=run_id, at=entered_at - timedelta(minutes=5))
        ledger_store.add_history(s, [(row.id, LedgerStatus.pending, status, reason, detail)], run_id=run_id,
                                 at=entered_at)
    return row


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    """A session on the emptied test database whose writes are committed, as a run's are."""
    with Session(get_engine(db_url), expire_on_commit=False) as s:
        yield s
        s.commit()


def a_run_with_failures(s: Session) -> tuple[SyncRun, SyncRun]:
    """North Tower synced cleanly yesterday and today with two entries refused by Procore; South Yard is linked but
    not scheduled and never synced."""
    conn = add_company(s)
    north = add_project(s, conn, NORTH, "North Tower", scheduled_at=NOW - timedelta(days=10))
    add_project(s, conn, SOUTH, "South Yard")
    clean = add_run(s, north, RunStatus.succeeded, NOW - timedelta(days=1))
    today = add_run(s, north, RunStatus.completed_with_problems, NOW - timedelta(hours=3))
    add_run(s, north, RunStatus.succeeded, NOW - timedelta(hours=1), dry_run=True)
    for n in range(3):
        add_row(s, north, f"1{n}:2026-03-02", LedgerStatus.posted, entered_at=NOW - timedelta(hours=3), run=today)
    for n in range(2):
        add_row(s, north, f"2{n}:2026-03-02", LedgerStatus.failed, entered_at=NOW - timedelta(hours=3), run=today,
                reason="refused", detail="Cost code is not in the project's budget")
    add_row(s, north, "30:2026-03-02", LedgerStatus.skipped, entered_at=NOW - timedelta(hours=3), run=today,
            reason="no_employee_id", detail="Bo Diaz has no Procore Employee ID", technician="Bo Diaz")
    s.commit()
    return clean, today


def scrape(db_url: str, redis_url: str, now: datetime = NOW, **kwargs: str) -> dict[str, list]:
    """The samples of each family, by family name."""
    body, content_type = render_metrics(database_url=db_url, redis_url=redis_url, now=now, **kwargs)
    assert content_type.startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(body.decode())}


def values(samples: list, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if name is None or s.name == name}


# ---------------------------------------------------------------------------- tests


def test_after_a_run_with_failures_the_failed_count_and_the_projects_last_success_are_exported(
        session: Session, db_url: str, redis_url: str) -> None:
    _, today = a_run_with_failures(session)
    metrics = scrape(db_url, redis_url)

    rows = values(metrics["stsync_ledger_rows"])
    assert rows[(("reason", ""), ("status", "failed"))] == 2
    assert rows[(("reason", ""), ("status", "posted"))] == 3
    assert rows[(("reason", "no_employee_id"), ("status", "skipped"))] == 1
    assert rows[(("reason", ""), ("status", "unknown"))] == 0  # every status is there, so `== 0` can be told

    last = values(metrics["stsync_project_last_success_timestamp_seconds"])
    # The run that left failed rows behind still synced the project; the later dry run did not.
    assert last[(("active", "true"), ("project", "North Tower"), ("project_id", str(NORTH)))] == (
        today.finished_at.timestamp())
    # Never synced and not scheduled: counted from when it was linked, and not active, so it never alerts.
    assert last[(("active", "false"), ("project", "South Yard"), ("project_id", str(SOUTH)))] == (
        (NOW - timedelta(days=20)).timestamp())

    runs = values(metrics["stsync_runs_last_day"])
    assert runs[(("status", "completed_with_problems"),)] == 1
    # The dry run of the last hour; yesterday's clean run was created 24 h 2 min ago, outside the day.
    assert runs[(("status", "succeeded"),)] == 1
    assert runs[(("status", "failed"),)] == 0 and len(runs) == len(RunStatus)
    assert values(metrics["stsync_scrape_errors"]) == {
        (("source", "database"),): 0, (("source", "redis"),): 0, (("source", "broker"),): 0}


def test_the_export_is_exactly_the_contract_names_labels_and_types_and_the_scrape_errors(
        session: Session, db_url: str, redis_url: str) -> None:
    a_run_with_failures(session)
    client = redis.Redis.from_url(redis_url)
    budget = RedisRateBudget(client, f"stsync:procore-budget:{COMPANY}", clock=NOW.timestamp)
    budget.observe(3600, 3000, int(NOW.timestamp()) + 60)
    count_response(client, COMPANY, 200, NOW.timestamp())
    add_deliveries(session, ("procore", "processed"))
    body, _ = render_metrics(database_url=db_url, redis_url=redis_url, now=NOW)
    contract = {
        name: (frozenset(filter(None, (label.strip() for label in labels.split(",")))), kind)
        for name, labels, kind in re.findall(r"^\| `(stsync_\w+)(?:\{([^}]*)\})?` \| (\w+) \|", CONTRACT.read_text(),
                                             re.MULTILINE)
    }
    assert len(contract) == 9
    contract["stsync_scrape_errors"] = (frozenset({"source"}), "gauge")
    exported = {}
    for family in text_string_to_metric_families(body.decode()):
        name = family.name + ("_total" if family.type == "counter" else "")
        exported[name] = (frozenset(label for s in family.samples for label in s.labels), family.type)
    assert exported == contract


def test_the_console_serves_them_at_metrics_to_its_token(
        session: Session, db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, today = a_run_with_failures(session)
    monkeypatch.setenv("METRICS_TOKEN", "scrape-me")
    monkeypatch.setenv("CELERY_BROKER_URL", redis_url)
    reset_settings()
    answer = create_app().test_client().get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert answer.status_code == 200
    metrics = {family.name: family.samples for family in text_string_to_metric_families(answer.get_data(True))}
    assert values(metrics["stsync_ledger_rows"])[(("reason", ""), ("status", "failed"))] == 2
    last = values(metrics["stsync_project_last_success_timestamp_seconds"])
    assert last[(("active", "true"), ("project", "North Tower"), ("project_id", str(NORTH)))] == (
        today.finished_at.timestamp())


def test_a_scheduled_project_that_never_synced_counts_from_when_its_schedule_was_made(
        session: Session, db_url: str, redis_url: str) -> None:
    conn = add_company(session)
    add_project(session, conn, NORTH, "North Tower", scheduled_at=NOW - timedelta(hours=5))
    session.commit()
    last = values(scrape(db_url, redis_url)["stsync_project_last_success_timestamp_seconds"])
    assert last == {(("active", "true"), ("project", "North Tower"), ("project_id", str(NORTH))):
                    (NOW - timedelta(hours=5)).timestamp()}


def test_oldest_age_counts_from_when_a_row_entered_its_status_and_a_retry_request_does_not_reset_it(
        session: Session, db_url: str, redis_url: str) -> None:
    conn = add_company(session)
    north = add_project(session, conn, NORTH, "North Tower")
    failed = add_row(session, north, "1:2026-03-01", LedgerStatus.failed, entered_at=NOW - timedelta(hours=30))
    add_row(session, north, "2:2026-03-02", LedgerStatus.failed, entered_at=NOW - timedelta(hours=2))
    add_row(session, north, "3:2026-03-02", LedgerStatus.unknown, entered_at=NOW - timedelta(minutes=90))
    add_row(session, north, "4:2026-02-20", LedgerStatus.needs_review, entered_at=NOW - timedelta(days=2))
    # A person asked to send it again an hour ago: it is still failed, since 30 hours.
    ledger_store.add_history(session, [(failed.id, LedgerStatus.failed, LedgerStatus.failed, "retry_requested",
                                        "a person asked to send it again")], run_id=None, at=NOW - timedelta(hours=1))
    session.commit()
    ages = values(scrape(db_url, redis_url)["stsync_ledger_oldest_age_seconds"])
    assert ages == {(("status", "failed"),): 30 * 3600, (("status", "unknown"),): 90 * 60,
                    (("status", "needs_review"),): 2 * 86400, (("status", "pending"),): 0}


def test_queue_lengths_are_what_kombu_holds_in_the_broker_priority_lists_included(
        db_url: str, redis_url: str) -> None:
    queue = Queue("sync", Exchange("sync", type="direct"), routing_key="sync")
    with BrokerConnection(redis_url) as broker:
        producer = broker.Producer(serializer="json")
        for priority in (None, None, 6):
            producer.publish({"task": "x"}, exchange=queue.exchange, routing_key="sync", declare=[queue],
                             priority=priority)
        with broker.channel() as channel:
            held_by_kombu = channel._size("sync")
    assert held_by_kombu == 3
    lengths = values(scrape(db_url, redis_url)["stsync_queue_length"])
    assert lengths == {(("queue", "sync"),): 3, (("queue", "dispatch"),): 0}


def test_rate_budget_beat_tick_and_procore_answers_come_from_redis(
        session: Session, db_url: str, redis_url: str) -> None:
    add_company(session)
    session.commit()
    client = redis.Redis.from_url(redis_url)
    budget = RedisRateBudget(client, f"stsync:procore-budget:{COMPANY}", clock=NOW.timestamp)
    budget.observe(limit=3600, remaining=1200, reset_epoch=int(NOW.timestamp()) + 600)
    budget.acquire()
    for status in (200, 200, 201):
        count_response(client, COMPANY, status, NOW.timestamp())
    record_beat_tick(client, NOW - timedelta(seconds=75))

    metrics = scrape(db_url, redis_url)
    assert values(metrics["stsync_procore_budget_remaining"]) == {(("company_id", str(COMPANY)),): 1199}
    assert values(metrics["stsync_beat_tick_age_seconds"]) == {(): 75}
    answers = values(metrics["stsync_procore_responses"], "stsync_procore_responses_total")
    assert answers == {(("company_id", str(COMPANY)), ("status", "200")): 2,
                       (("company_id", str(COMPANY)), ("status", "201")): 1,
                       (("company_id", str(COMPANY)), ("status", "429")): 0}

    # Once the window has reset, the next call sees the whole limit again.
    later = scrape(db_url, redis_url, now=NOW + timedelta(minutes=11))
    assert values(later["stsync_procore_budget_remaining"]) == {(("company_id", str(COMPANY)),): 3600}


def test_a_beat_that_never_ticked_is_infinitely_old(db_url: str, redis_url: str) -> None:
    assert values(scrape(db_url, redis_url)["stsync_beat_tick_age_seconds"]) == {(): float("inf")}


def test_without_redis_the_database_metrics_are_still_exported_with_a_scrape_error(
        session: Session, db_url: str) -> None:
    a_run_with_failures(session)
    metrics = scrape(db_url, UNREACHABLE_REDIS)
    assert values(metrics["stsync_ledger_rows"])[(("reason", ""), ("status", "failed"))] == 2
    assert values(metrics["stsync_scrape_errors"]) == {
        (("source", "database"),): 0, (("source", "redis"),): 1, (("source", "broker"),): 1}
    assert "stsync_beat_tick_age_seconds" not in metrics and "stsync_queue_length" not in metrics


def test_without_the_database_the_redis_metrics_are_still_exported_with_a_scrape_error(redis_url: str) -> None:
    record_beat_tick(redis.Redis.from_url(redis_url), NOW - timedelta(seconds=30))
    count_response(redis.Redis.from_url(redis_url), COMPANY, 429, NOW.timestamp())
    metrics = scrape(UNREACHABLE_PG, redis_url)
    assert values(metrics["stsync_scrape_errors"]) == {
        (("source", "database"),): 1, (("source", "redis"),): 0, (("source", "broker"),): 0}
    assert values(metrics["stsync_beat_tick_age_seconds"]) == {(): 30}
    assert values(metrics["stsync_procore_responses"], "stsync_procore_responses_total") == {
        (("company_id", str(COMPANY)), ("status", "429")): 1}
    assert "stsync_ledger_rows" not in metrics and "stsync_project_last_success_timestamp_seconds" not in metrics


def add_deliveries(s: Session, *deliveries: tuple[str, str]) -> None:
    for n, (source, outcome) in enumerate(deliveries):
        s.add(WebhookDelivery(source=source, message_id=f"m{n}", outcome=outcome, received_at=NOW))
    s.commit()


def test_webhook_deliveries_are_counted_by_source_and_outcome(session: Session, db_url: str, redis_url: str) -> None:
    assert values(scrape(db_url, redis_url)["stsync_webhook_deliveries"]) == {}
    add_deliveries(session, ("servicetrade", "processed"), ("servicetrade", "processed"), ("procore", "ignored"))
    assert values(scrape(db_url, redis_url)["stsync_webhook_deliveries"]) == {
        (("outcome", "processed"), ("source", "servicetrade")): 2, (("outcome", "ignored"), ("source", "procore")): 1}


def test_a_database_without_the_deliveries_table_counts_none_and_does_not_fail(db_session: Session) -> None:
    db_session.execute(sa.text("DROP TABLE webhook_deliveries"))  # rolled back after the test
    assert reports.webhook_delivery_counts(db_session) == []
    assert reports.ledger_row_counts(db_session) == []


def test_promtool_accepts_the_exported_metrics(session: Session, db_url: str, redis_url: str) -> None:
    a_run_with_failures(session)
    count_response(redis.Redis.from_url(redis_url), COMPANY, 200, NOW.timestamp())
    body, _ = render_metrics(database_url=db_url, redis_url=redis_url, now=NOW)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run scripts/system-deps.sh (Debian package `prometheus`)",
                    pytrace=False)
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stdout and not done.stderr, done.stdout + done.stderr
