"""A first run without a developer (issue 15): `stsync init` writes the config file, every command reads it (the
environment wins), the default database lives in the user's data folder, and a database that is missing or not
migrated is one line that says what to run. Run as a person would: `python -m worker.cli` in an empty folder."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from worker.crypto import new_secret_key
from worker.settings import reset_settings

# What a fresh machine does not have: no database, no key, no config file named.
NOT_ON_A_FRESH_MACHINE = ("DATABASE_URL", "STSYNC_SECRET_KEY", "STSYNC_SECRET_KEYS", "STSYNC_CONFIG", "LOG_FORMAT",
                          "LOG_LEVEL", "REDIS_URL")


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A user's folders (config and data) inside the test's folder, and nothing of stsync's set."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_ON_A_FRESH_MACHINE}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               HOME=str(tmp_path / "home"))
    (tmp_path / "somewhere").mkdir()
    return env


def stsync(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], cwd=tmp_path / "somewhere", env=env,
                          capture_output=True, text=True, timeout=120)


def test_runs_before_init_prints_one_line_saying_what_to_run_and_creates_nothing(tmp_path, home) -> None:
    done = stsync(tmp_path, home, "runs")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: no stsync database at {tmp_path / 'data' / 'stsync' / 'stsync.db'} yet: run `stsync init` "
        "(once, on a new machine), then `stsync db upgrade`"]
    assert not (tmp_path / "data").exists() and list((tmp_path / "somewhere").iterdir()) == []


def test_init_then_db_upgrade_then_runs_works_from_an_empty_folder(tmp_path, home) -> None:
    init = stsync(tmp_path, home, "init")
    assert init.returncode == 0, init.stderr
    config = tmp_path / "config" / "stsync" / "stsync.env"
    assert f"wrote {config}" in init.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600, "the file holds the secret key"
    text = config.read_text()
    assert "STSYNC_SECRET_KEY=" in text and f"DATABASE_URL=sqlite:///{tmp_path / 'data' / 'stsync' / 'stsync.db'}" in text

    not_yet = stsync(tmp_path, home, "runs")
    assert not_yet.returncode == 1 and not_yet.stderr.strip().splitlines() == [
        f"error: no stsync database at {tmp_path / 'data' / 'stsync' / 'stsync.db'} yet: run `stsync db upgrade`"]

    upgraded = stsync(tmp_path, home, "db", "upgrade")
    assert upgraded.returncode == 0 and "is at the latest schema" in upgraded.stdout, upgraded.stderr
    runs = stsync(tmp_path, home, "runs")
    assert runs.returncode == 0, runs.stderr
    assert runs.stdout.strip() == "(no runs yet)" and "Traceback" not in runs.stderr
    assert list((tmp_path / "somewhere").iterdir()) == [], "nothing is written to the working folder"

    again = stsync(tmp_path, home, "init")
    assert again.returncode == 1 and "exists already" in again.stderr and config.read_text() == text


def test_environment_variables_win_over_the_config_file(tmp_path, home) -> None:
    assert stsync(tmp_path, home, "init").returncode == 0
    other = tmp_path / "other.sqlite"
    env = {**home, "DATABASE_URL": f"sqlite:///{other}"}
    assert stsync(tmp_path, env, "db", "upgrade").returncode == 0
    assert other.exists() and not (tmp_path / "data" / "stsync" / "stsync.db").exists()
    named = {**home, "STSYNC_CONFIG": str(tmp_path / "elsewhere.env")}
    made = stsync(tmp_path, named, "init", "--database-url", f"sqlite:///{other}")
    assert made.returncode == 0 and (tmp_path / "elsewhere.env").exists()
    assert stsync(tmp_path, named, "runs").stdout.strip() == "(no runs yet)"


def test_a_database_not_migrated_is_one_line_naming_the_fix(tmp_path, home) -> None:
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    env = {**home, "DATABASE_URL": f"sqlite:///{empty}", "STSYNC_SECRET_KEY": new_secret_key()}
    done = stsync(tmp_path, env, "technicians")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: the database at sqlite:///{empty} is not set up yet: run `stsync db upgrade`"]


def test_a_procore_that_does_not_answer_is_named_by_its_host(tmp_path, home) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**home, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "STSYNC_SECRET_KEY": new_secret_key(),
           "PROCORE_API_URL": f"http://127.0.0.1:{port}", "PROCORE_LOGIN_URL": f"http://127.0.0.1:{port}"}
    assert stsync(tmp_path, env, "db", "upgrade").returncode == 0
    done = stsync(tmp_path, env, "connect", "procore", "--company-id", "7", "--client-id", "a", "--client-secret", "b")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert f"could not connect to 127.0.0.1:{port}" in done.stderr.strip().splitlines()[-1]


def test_logs_are_short_console_lines_at_warning_on_a_terminal_and_json_elsewhere(monkeypatch) -> None:
    import logging

    from worker.logging import configure_logging

    class Terminal:
        def isatty(self) -> bool:
            return True

        def write(self, _text: str) -> int:
            return 0

        def flush(self) -> None:
            pass

    for name in ("LOG_FORMAT", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    monkeypatch.setattr(sys, "stderr", Terminal())
    configure_logging(force=True)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_stsync", False))
    assert logging.getLogger().level == logging.WARNING
    assert "ConsoleRenderer" in repr(handler.formatter.processors)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    reset_settings()
    configure_logging(force=True)
    assert logging.getLogger().level == logging.DEBUG
    monkeypatch.undo()
    reset_settings()
    configure_logging(force=True)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_stsync", False))
    assert "JSONRenderer" in repr(handler.formatter.processors)
