"""Shared fixtures: a real PostgreSQL database per test session (migrated with Alembic), Redis, and the API
emulators over real HTTP. A missing service fails the run loudly; nothing here skips."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from worker import logging as worker_logging
from worker.logging import configure_logging
from worker.settings import reset_settings
from worker.sync.context import forget_company_reference
from worker.sync.posting import forget_bulk_refusals

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_SECRET_KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE="


@pytest.fixture(scope="session", autouse=True)
def _test_environment() -> Iterator[None]:
    """Every test runs with a known encryption key and console-free JSON logs."""
    saved = dict(os.environ)
    os.environ["STSYNC_SECRET_KEY"] = TEST_SECRET_KEY
    os.environ["STSYNC_CONFIG"] = "/nonexistent/stsync-tests.env"  # a developer's own `stsync init` file stays out
    os.environ.setdefault("LOG_FORMAT", "json")
    os.environ["REDIS_URL"] = REDIS_TEST_URL
    reset_settings()
    yield
    os.environ.clear()
    os.environ.update(saved)
    reset_settings()


@pytest.fixture(autouse=True)
def _info_logs() -> None:
    """Every test starts with JSON logs at INFO, whatever a test before it configured (a terminal's WARNING, say),
    and loggers that never cache their configuration, so `capture_logs` sees every line whatever ran before."""
    worker_logging.CACHE_LOGGERS = False
    configure_logging("json", "INFO", force=True)


@pytest.fixture(autouse=True)
def _fresh_company_reference() -> Iterator[None]:
    """A worker reuses a company's Procore settings for a minute; each test's emulator world is a new company
    under the same id, so no test sees what an earlier one read."""
    forget_company_reference()
    forget_bulk_refusals()
    yield
    forget_company_reference()
    forget_bulk_refusals()


def _require(what: str, check) -> None:
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is not usable
        pytest.fail(
            f"{what} is not reachable ({exc}). The test suite needs it running; `make test` and .ci/run start it "
            "(see DESIGN §9 / scripts/services.sh).",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head with Alembic."""
    from worker.migrate import upgrade

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    _require("PostgreSQL at 127.0.0.1:5432", lambda: admin.connect().close())
    name = f"stsync_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    from worker.db import dispose_engines

    dispose_engines()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def db_session(pg_url: str) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test (commits become savepoints)."""
    engine = sa.create_engine(pg_url)
    conn = engine.connect()
    trans = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    yield session
    session.close()
    trans.rollback()
    conn.close()
    engine.dispose()


@pytest.fixture
def empty_db_session(db_session: Session) -> Session:
    """The rolled-back session over empty tables: rows that tests through the CLI committed earlier are deleted
    inside the transaction, so they are back afterwards."""
    from worker.models import Base

    for table in reversed(Base.metadata.sorted_tables):
        db_session.execute(sa.delete(table))
    return db_session


@pytest.fixture
def db_url(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test database, emptied before the test, for code that commits through its own sessions
    (the pipeline, the CLI, tasks). DATABASE_URL points at it for the duration of the test."""
    from worker.db import get_engine
    from worker.models import Base

    engine = get_engine(pg_url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    reset_settings()
    yield pg_url
    reset_settings()


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    _require("Redis at 127.0.0.1:6379", client.ping)
    client.flushdb()
    client.close()
    return REDIS_TEST_URL


@pytest.fixture(scope="session")
def emulator():
    """The ServiceTrade + Procore emulators, one process for the whole test session."""
    from emulators.testing import EmulatorProcess

    proc = EmulatorProcess().start()
    yield proc
    proc.stop()


@pytest.fixture
def world(emulator) -> dict:
    """A fresh generated world loaded into the emulator, with faults, counters and config reset."""
    from emulators.world import generate_world

    data = generate_world(seed=1)
    emulator.admin.reset(data)
    emulator.admin.clear_faults()
    emulator.admin.reset_requests()
    return data


@pytest.fixture
def h(emulator) -> dict:
    """The default world (seed 1) loaded afresh, config, faults and request counts reset; its handles."""
    from .helpers import WORLD

    emulator.admin.reset(WORLD)
    return WORLD["handles"]


@pytest.fixture
def stsync(world, emulator, db_url, redis_url, monkeypatch):
    """`stsync` against the emulators and a clean PostgreSQL database, already connected to both APIs."""
    from .stsync_env import Stsync, point_at_emulator

    point_at_emulator(monkeypatch, emulator)
    runner = Stsync(world, emulator)
    runner.connect()
    return runner
