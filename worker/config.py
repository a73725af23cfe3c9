"""The first run without a developer: `stsync init` writes the config file (a new secret key and the database URL),
and every command first checks that its database is there and migrated, saying in one line what to run if not."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

from worker.crypto import new_secret_key
from worker.inputs import InvalidArgument
from worker.logging import mask_url
from worker.migrate import alembic_config
from worker.settings import config_path, default_database_url, get_settings

CONNECT_TIMEOUT_S = 10


class ConfigExists(RuntimeError):
    """`stsync init` never replaces a config file: its key is what makes the stored credentials readable."""


@dataclass(frozen=True)
class InitDone:
    path: Path
    database_url: str


def init_config(database_url: str | None = None, *, path: Path | None = None) -> InitDone:
    """Write the config file with a new secret key and the database URL (default: SQLite in the user's data
    folder), readable by its owner only."""
    path = path or config_path()
    if path.exists():
        raise ConfigExists(
            f"{path} exists already; stsync keeps it (its key decrypts the stored credentials). Remove it first "
            "to start over, or point STSYNC_CONFIG at another file."
        )
    database_url = database_url or default_database_url()
    _parsed(database_url, "--database-url")
    path.parent.mkdir(parents=True, exist_ok=True)
    _make_sqlite_folder(database_url)
    text = (
        "# stsync configuration, written by `stsync init`. Environment variables of the same name win.\n"
        "# STSYNC_SECRET_KEY encrypts the stored credentials: keep a copy somewhere safe.\n"
        f"STSYNC_SECRET_KEY={new_secret_key()}\n"
        f"DATABASE_URL={database_url}\n"
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    return InitDone(path, database_url)


def prepare_database_folder(database_url: str) -> None:
    """`stsync db upgrade` on the default SQLite database creates its folder first."""
    _make_sqlite_folder(database_url)


def database_problem(database_url: str | None = None) -> str | None:
    """None when the database exists and is at the latest schema; otherwise one line saying what to run. A
    missing SQLite file is not created by asking."""
    url = database_url or get_settings().database_url
    shown = mask_url(url)
    try:
        sqlite_file = _sqlite_file(url)
    except InvalidArgument as exc:
        return str(exc)
    if sqlite_file is not None and not sqlite_file.exists():
        first = "" if config_path().exists() else "`stsync init` (once, on a new machine), then "
        return f"no stsync database at {sqlite_file} yet: run {first}`stsync db upgrade`"
    # A database host that doesn't answer is said within seconds, not after the operating system gives up.
    timeout = {} if url.startswith("sqlite") else {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = sa.create_engine(url, connect_args=timeout)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return f"the database at {shown} is not set up yet: run `stsync db upgrade`"
            current = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"can't open the database at {shown} ({reason}): check DATABASE_URL"
    finally:
        engine.dispose()
    if current != _heads():
        return f"the database at {shown} is not at the latest schema: run `stsync db upgrade`"
    return None


@lru_cache(maxsize=1)
def _heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _parsed(database_url: str, name: str = "DATABASE_URL") -> URL:
    try:
        return make_url(database_url)
    except (sa.exc.ArgumentError, ValueError):
        raise InvalidArgument(
            f"{name} {mask_url(database_url)!r} is not a database URL; it looks like "
            "postgresql+psycopg://user:password@host/stsync or sqlite:////path/to/stsync.db") from None


def _sqlite_file(database_url: str) -> Path | None:
    url = _parsed(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).expanduser()


def _make_sqlite_folder(database_url: str) -> None:
    sqlite_file = _sqlite_file(database_url)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
