"""The schema: migrations on PostgreSQL and SQLite, models and migrations in agreement, idempotency constraints,
and credentials encrypted at rest."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from worker.enums import EntryMode, LedgerStatus, RunStatus, RunTrigger
from worker.models import Base, Connection, LedgerEntry, ProjectLink, SyncRun

from .conftest import PG_ADMIN_URL, TEST_SECRET_KEY


def _stsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env={**os.environ, **env},
        timeout=120,
    )


def test_models_and_migrations_agree_on_postgresql(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
    engine.dispose()


def test_db_upgrade_command_on_an_empty_postgresql_database() -> None:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"stsync_up_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        result = _stsync("db", "upgrade", env={"DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        assert "latest schema" in result.stdout
        engine = sa.create_engine(url)
        tables = set(sa.inspect(engine).get_table_names())
        engine.dispose()
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        # A second upgrade is a no-op, not an error.
        assert _stsync("db", "upgrade", env={"DATABASE_URL": url}).returncode == 0
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_db_upgrade_command_on_sqlite(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    result = _stsync("db", "upgrade", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(url)
    assert "ledger_entries" in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert compare_metadata(ctx, Base.metadata) == []
    engine.dispose()


def _connection(session) -> Connection:
    conn = Connection(procore_company_id=42, procore_client_id="cid", procore_client_secret="very-secret-value-1")
    session.add(conn)
    session.flush()
    return conn


def _link(session, conn: Connection, project_id: int = 7) -> ProjectLink:
    link = ProjectLink(connection_id=conn.id, procore_project_id=project_id, name="P", time_zone="America/New_York",
                       entry_mode=EntryMode.hours, timesheets_active=True)
    session.add(link)
    session.flush()
    return link


def test_one_ledger_row_per_connection_and_source_key(db_session) -> None:
    conn = _connection(db_session)
    link = _link(db_session, conn)
    db_session.add(LedgerEntry(connection_id=conn.id, project_link_id=link.id, source_key="1:2026-03-02",
                               status=LedgerStatus.pending))
    db_session.flush()
    db_session.add(LedgerEntry(connection_id=conn.id, project_link_id=link.id, source_key="1:2026-03-02",
                               status=LedgerStatus.pending))
    with pytest.raises(IntegrityError):
        db_session.flush()


def test_one_link_per_connection_and_project(db_session) -> None:
    conn = _connection(db_session)
    _link(db_session, conn, 7)
    with pytest.raises(IntegrityError):
        _link(db_session, conn, 7)


def test_one_sync_run_per_run_key(db_session) -> None:
    conn = _connection(db_session)
    link = _link(db_session, conn)
    for _ in range(2):
        db_session.add(SyncRun(run_key="schedule:1:2026-03-01:2026-03-14", project_link_id=link.id,
                               trigger=RunTrigger.schedule, window_start=date(2026, 3, 1),
                               window_end=date(2026, 3, 14), status=RunStatus.queued,
                               created_at=datetime.now(UTC)))
    with pytest.raises(IntegrityError):
        db_session.flush()


def test_credentials_are_not_stored_in_plaintext(db_session) -> None:
    conn = _connection(db_session)
    conn.procore_refresh_token = "refresh-token-plaintext-xyz"
    conn.st_password = "st-password-plaintext-abc"
    db_session.flush()
    raw = db_session.execute(sa.text(
        "SELECT procore_client_secret, procore_refresh_token, st_password FROM connections WHERE id = :id"),
        {"id": conn.id}).one()
    for stored, plain in zip(raw, ("very-secret-value-1", "refresh-token-plaintext-xyz", "st-password-plaintext-abc"),
                             strict=True):
        assert plain not in stored
        assert stored.startswith("gAAAA")  # a Fernet token
    db_session.expire_all()
    again = db_session.get(Connection, conn.id)
    assert again.procore_refresh_token == "refresh-token-plaintext-xyz"


def test_a_command_that_needs_the_key_says_how_to_make_one(tmp_path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}", "STSYNC_SECRET_KEY": ""}
    assert _stsync("db", "upgrade", env=env).returncode == 0
    result = _stsync("connect", "procore", "--company-id", "1", "--client-id", "a", "--client-secret", "b", env=env)
    assert result.returncode == 1
    assert "STSYNC_SECRET_KEY is not set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr


def test_test_key_is_a_valid_fernet_key() -> None:
    from cryptography.fernet import Fernet

    Fernet(TEST_SECRET_KEY.encode())
