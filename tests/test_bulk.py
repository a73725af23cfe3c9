"""The bulk writes of worker/db.py: COPY and array parameters on PostgreSQL, executemany on SQLite (the demo).
Both must store exactly the same thing, and neither may take a value SQLAlchemy itself would refuse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from worker.db import insert_many, one_of, staged, update_rows
from worker.enums import LedgerStatus
from worker.models import Base, ClockEvent, LedgerEntry

AT = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)


LINK = 7_000_001  # ids of this test's own connection and link, clear of what other tests leave behind


@pytest.fixture(params=["postgresql", "sqlite"])
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    if request.param == "postgresql":
        s = request.getfixturevalue("db_session")  # rolled back after the test
    else:
        engine = sa.create_engine("sqlite://")
        Base.metadata.create_all(engine)
        s = Session(engine)
    s.execute(sa.text("INSERT INTO connections (id, procore_company_id, procore_client_id, procore_client_secret) "
                      f"VALUES ({LINK}, {LINK}, 'client', 'secret')"))
    s.execute(sa.text("INSERT INTO project_links (id, connection_id, procore_project_id, name, time_zone, entry_mode, "
                      f"timesheets_active, lookback_days, split_mode) "
                      f"VALUES ({LINK}, {LINK}, 10, 'p', 'UTC', 'hours', false, 14, 'midnight')"))
    yield s
    s.rollback()


def ledger_row(key: str, **extra: object) -> dict[str, object]:
    return {"connection_id": LINK, "project_link_id": LINK, "source_key": key, "status": LedgerStatus.pending,
            "attempts": 1, "manual": False, **extra}


def mine(table: sa.Table) -> sa.Select:
    return sa.select(table).where(table.c.project_link_id == LINK)


def test_insert_many_stores_every_type_and_leaves_missing_columns_null(session: Session) -> None:
    insert_many(session, LedgerEntry.__table__, [
        ledger_row("1:2026-03-02", payload={"hours": "1.50", "party_id": 7}, hours=Decimal("1.50"),
                   actual_start=AT, work_date=date(2026, 3, 2)),
        ledger_row("2:2026-03-02", reason="no_employee_id", status=LedgerStatus.skipped),
    ])
    rows = {r.source_key: r for r in session.execute(mine(LedgerEntry.__table__))}
    first, second = rows["1:2026-03-02"], rows["2:2026-03-02"]
    assert first.payload == {"hours": "1.50", "party_id": 7} and first.hours == Decimal("1.50")
    assert first.actual_start == AT and first.work_date == date(2026, 3, 2) and first.status == LedgerStatus.pending
    assert first.reason is None and second.payload is None and second.hours is None
    assert second.status == LedgerStatus.skipped and second.reason == "no_employee_id"
    assert first.created_at is not None  # server defaults apply to columns no row has


def test_insert_many_refuses_a_naive_datetime_naming_it(session: Session) -> None:
    with pytest.raises((ValueError, sa.exc.StatementError), match="naive datetime"):
        insert_many(session, LedgerEntry.__table__, [ledger_row("1:x", actual_start=datetime(2026, 3, 2, 8, 0))])


def test_update_rows_sets_each_rows_values_and_the_common_ones(session: Session) -> None:
    insert_many(session, LedgerEntry.__table__, [ledger_row(f"{n}:k") for n in range(3)])
    ids = {r.source_key: r.id for r in session.execute(mine(LedgerEntry.__table__))}
    update_rows(session, LedgerEntry.__table__,
                [{"id": ids["0:k"], "procore_entry_id": 500, "approval_status": "pending"},
                 {"id": ids["2:k"], "procore_entry_id": 502, "approval_status": "approved"}],
                status=LedgerStatus.posted, posted_at=AT)
    got = {r.source_key: (r.status, r.procore_entry_id, r.approval_status, r.posted_at)
           for r in session.execute(mine(LedgerEntry.__table__))}
    assert got == {"0:k": (LedgerStatus.posted, 500, "pending", AT),
                   "1:k": (LedgerStatus.pending, None, None, None),
                   "2:k": (LedgerStatus.posted, 502, "approved", AT)}


def test_one_of_matches_long_and_empty_lists(session: Session) -> None:
    insert_many(session, LedgerEntry.__table__, [ledger_row(f"{n}:k") for n in range(1500)])
    wanted = [f"{n}:k" for n in range(0, 1500, 2)] + ["not-there"]
    found = session.scalars(sa.select(LedgerEntry.source_key).where(one_of(session, LedgerEntry.source_key, wanted)))
    assert sorted(found) == sorted(wanted[:-1])
    assert session.scalars(sa.select(LedgerEntry.id).where(one_of(session, LedgerEntry.id, []))).all() == []


def test_staged_rows_feed_one_upsert_on_postgresql_and_nothing_elsewhere(session: Session) -> None:
    table = ClockEvent.__table__
    rows = [{"project_link_id": LINK, "st_event_id": n, "st_user_id": 5, "user_name": "Tech", "st_job_id": 9,
             "activity": "onsite", "event_type": "clockIn", "event_time": AT, "first_seen_at": AT, "changed_at": AT}
            for n in range(1, 4)]
    source = staged(session, table, rows)
    if session.get_bind().dialect.name != "postgresql":
        assert source is None
        return
    assert sorted(r.st_event_id for r in session.execute(source)) == [1, 2, 3]
    session.execute(sa.insert(table).from_select([c.name for c in source.selected_columns], source))
    assert len(session.execute(mine(table)).all()) == 3
    again = staged(session, table, rows[:1])  # the same temporary table, a second batch in one transaction
    assert again is not None and [r.st_event_id for r in session.execute(again)] == [1]
