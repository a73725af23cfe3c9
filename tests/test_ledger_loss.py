"""The ledger can be lost and nothing is posted twice (issue 18): Procore is the record of what exists. Restored
from a backup, emptied, or shared by two installations, a sync of the same window posts each entry once."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from worker.db import dispose_engines
from worker.migrate import upgrade
from worker.settings import reset_settings

from .conftest import PG_ADMIN_URL
from .helpers import assert_exactly_once, first_project, live_entries, source_key_of
from .stsync_env import write_calls

START, MID, END = date(2026, 3, 2), date(2026, 3, 8), date(2026, 3, 15)


def _pg_args(url: str) -> list[str]:
    """libpq's own form of a SQLAlchemy URL, for pg_dump and pg_restore."""
    return ["--dbname", url.replace("postgresql+psycopg://", "postgresql://")]


@pytest.fixture
def databases() -> Iterator[list[str]]:
    """Fresh PostgreSQL databases a test makes as it goes (a restore target, a second installation)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def new(migrate: bool) -> str:
        name = f"stsync_loss_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        if migrate:
            upgrade(url)
        return url

    yield new  # type: ignore[misc]
    dispose_engines()
    with admin.connect() as conn:
        for name in made:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _use(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()


def test_a_restored_backup_posts_nothing_twice(stsync, emulator, databases, monkeypatch, tmp_path: Path) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, MID)
    backup = tmp_path / "stsync.dump"
    subprocess.run(["pg_dump", "--format=custom", "--file", str(backup), *_pg_args(stsync_url())], check=True)
    stsync.sync(pid, START, END)
    before = {source_key_of(e) for e in live_entries(emulator, pid)}

    restored = databases(False)
    subprocess.run(["pg_restore", "--no-owner", *_pg_args(restored), str(backup)], check=True)
    _use(monkeypatch, restored)
    emulator.admin.reset_requests()
    report = stsync.sync(pid, START, END)["report"]

    assert write_calls(emulator.admin.requests()) == 0, "nothing may be sent: Procore has every entry"
    assert report["adopted"] > 0 and report["posted"] == 0
    assert {source_key_of(e) for e in live_entries(emulator, pid)} == before
    assert_exactly_once(emulator, pid)


def test_an_empty_database_adopts_what_procore_has(stsync, emulator, databases, monkeypatch) -> None:
    pid = first_project(stsync)
    stsync.sync(pid, START, END)
    before = {source_key_of(e) for e in live_entries(emulator, pid)}

    _use(monkeypatch, databases(True))
    stsync.connect()
    first_project(stsync)  # the ServiceTrade job exists: linking finds it
    emulator.admin.reset_requests()
    report = stsync.sync(pid, START, END)["report"]

    assert write_calls(emulator.admin.requests()) == 0
    assert report["adopted"] == len(before)
    assert_exactly_once(emulator, pid)


def test_two_installations_syncing_one_company_in_turn_post_each_entry_once(stsync, emulator, databases,
                                                                            monkeypatch) -> None:
    pid = first_project(stsync)
    first, second = stsync_url(), databases(True)
    _use(monkeypatch, second)
    stsync.connect()
    first_project(stsync)
    for url, (start, end) in ((first, (START, MID)), (second, (START, END)), (first, (START, END)),
                              (second, (MID, END))):
        _use(monkeypatch, url)
        stsync.sync(pid, start, end)
    keys = [source_key_of(e) for e in live_entries(emulator, pid)]
    assert len(keys) == len(set(keys)), "an entry was posted twice"
    for url in (first, second):
        _use(monkeypatch, url)
        assert_exactly_once(emulator, pid)


def stsync_url() -> str:
    from worker.settings import get_settings

    return get_settings().database_url


def test_rebuild_makes_the_ledger_from_procore_and_servicetrade_alone(stsync, emulator, databases, monkeypatch) -> None:
    from worker.service import syncing

    pid = first_project(stsync)
    stsync.sync(pid, START, MID)
    posted = {source_key_of(e) for e in live_entries(emulator, pid)}

    _use(monkeypatch, databases(True))
    stsync.connect()
    first_project(stsync)
    emulator.admin.reset_requests()
    result = syncing.rebuild_ledger(pid, START, END)
    assert write_calls(emulator.admin.requests()) == 0, "a rebuild sends nothing"
    assert result.adopted == len(posted) and result.unmatched_in_procore == 0 and result.changed_in_procore == 0
    assert result.not_in_procore > 0, "the days after MID were never synced"
    report = stsync.sync(pid, START, END)["report"]
    assert report["posted"] == result.not_in_procore and report["adopted"] == 0
    assert_exactly_once(emulator, pid)
