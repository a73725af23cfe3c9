"""The SQL of connections, project links, rules and schedules, each test inside a transaction that is rolled back."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy.orm import Session

from worker.enums import EntryMode, ScheduleKind
from worker.models import Connection, ProjectLink
from worker.store import connections as connection_store
from worker.store import links as link_store
from worker.store import rules as rule_store
from worker.store import schedules as schedule_store

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture
def s(empty_db_session: Session) -> Session:
    return empty_db_session


def connection(s: Session, company_id: int = 7) -> Connection:
    return connection_store.save_procore(s, company_id, "client", "secret", access_token=None, refresh_token=None,
                                         expires_at=None)


def link(s: Session, conn: Connection, project_id: int = 456) -> ProjectLink:
    return link_store.save_link(s, conn.id, project_id, name=f"Project {project_id}", time_zone="America/New_York",
                                entry_mode=EntryMode.hours, timesheets_active=True)


# ------------------------------------------------------------------------------------- connections


def test_no_stored_connection_says_how_to_connect(s: Session) -> None:
    with pytest.raises(connection_store.NoConnection, match="stsync connect procore"):
        connection_store.get_connection(s)


def test_the_only_connection_is_found_without_a_company_id(s: Session) -> None:
    conn = connection(s)
    assert connection_store.get_connection(s).id == conn.id


def test_several_connections_need_a_company_id(s: Session) -> None:
    connection(s, 7)
    eight = connection(s, 8)
    with pytest.raises(connection_store.NoConnection, match=r"Several Procore companies are connected \(7, 8\)"):
        connection_store.get_connection(s)
    assert connection_store.get_connection(s, 8).id == eight.id


def test_connecting_procore_again_replaces_the_credentials_and_clears_a_reauthorisation(s: Session) -> None:
    first = connection(s)
    first.procore_needs_reauth = "the refresh token was revoked"
    again = connection_store.save_procore(s, 7, "client-2", "secret-2", access_token="a",
                                          refresh_token="r", expires_at=NOW)
    assert again.id == first.id
    s.expire_all()
    row = s.get(Connection, first.id)
    assert (row.procore_client_id, row.procore_client_secret, row.procore_refresh_token) == ("client-2", "secret-2",
                                                                                            "r")
    assert row.procore_needs_reauth is None


def test_servicetrade_credentials_are_stored_on_the_connection(s: Session) -> None:
    conn = connection(s)
    connection_store.save_servicetrade(s, conn, auth_kind="session", username="admin", password="pw",
                                       client_id=None, client_secret=None, session_token="tok",
                                       vendor_company_id=99)
    s.expire_all()
    row = s.get(Connection, conn.id)
    assert (row.st_auth_kind, row.st_username, row.st_password, row.st_session_token,
            row.st_vendor_company_id) == ("session", "admin", "pw", "tok", 99)


# ------------------------------------------------------------------------------------- links


def test_an_unlinked_project_says_how_to_link_it(s: Session) -> None:
    with pytest.raises(LookupError, match="stsync project link 456 --job-type TYPE"):
        link_store.find_link(s, 456)


def test_saving_a_link_twice_completes_the_same_row(s: Session) -> None:
    conn = connection(s)
    first = link(s, conn)
    again = link_store.save_link(s, conn.id, 456, st_job_id=31, st_job_number=1001)
    assert again.id == first.id and link_store.find_link(s, 456).st_job_number == 1001
    assert link_store.link_of(s, conn.id, 456).id == first.id
    assert link_store.link_of(s, conn.id, 457) is None


def test_links_of_a_connection_are_keyed_by_procore_project(s: Session) -> None:
    conn = connection(s)
    a, b = link(s, conn, 456), link(s, conn, 789)
    assert {pid: x.id for pid, x in link_store.links_by_project(s, conn.id).items()} == {456: a.id, 789: b.id}


# ------------------------------------------------------------------------------------- rules


def test_rules_are_listed_by_priority_and_removed_by_it(s: Session) -> None:
    the_link = link(s, connection(s))
    for priority, code in ((2, 11), (1, 10)):
        rule_store.add_rule(s, the_link.id, priority, cost_code_id=code, line_item_type_id=3)
    assert [r.cost_code_id for r in rule_store.list_rules(s, the_link.id)] == [10, 11]
    assert rule_store.taken_priorities(s, the_link.id) == {1, 2}
    assert rule_store.remove_rule(s, the_link.id, 1) is True
    assert rule_store.remove_rule(s, the_link.id, 1) is False
    assert [r.priority for r in rule_store.list_rules(s, the_link.id)] == [2]


# ------------------------------------------------------------------------------------- schedules


def test_setting_a_schedule_of_a_kind_again_replaces_it_enabled(s: Session) -> None:
    the_link = link(s, connection(s))
    first = schedule_store.save_schedule(s, the_link.id, ScheduleKind.nightly, next_run_at=NOW,
                                         local_time=time(23))
    first.enabled = False
    later = NOW + timedelta(days=1)
    again = schedule_store.save_schedule(s, the_link.id, ScheduleKind.nightly, next_run_at=later,
                                         local_time=time(22))
    assert again.id == first.id and again.enabled and again.local_time == time(22) and again.next_run_at == later
    assert schedule_store.schedule_of_kind(s, the_link.id, ScheduleKind.weekly) is None


def test_schedules_are_listed_next_run_first_with_their_project(s: Session) -> None:
    conn = connection(s)
    a, b = link(s, conn, 456), link(s, conn, 789)
    schedule_store.save_schedule(s, a.id, ScheduleKind.nightly, next_run_at=NOW + timedelta(hours=2),
                                 local_time=time(23))
    schedule_store.save_schedule(s, b.id, ScheduleKind.weekly, next_run_at=NOW, local_time=time(18),
                                 weekday=4)
    listed = schedule_store.list_schedules(s)
    assert [(x.kind, lk.procore_project_id) for x, lk in listed] == [(ScheduleKind.weekly, 789),
                                                                     (ScheduleKind.nightly, 456)]
    assert [x.kind for x, _ in schedule_store.list_schedules(s, a.id)] == [ScheduleKind.nightly]
    assert schedule_store.remove_schedule(s, a.id, ScheduleKind.nightly) is True
    assert schedule_store.remove_schedule(s, a.id, ScheduleKind.nightly) is False
