"""The rest of the command line as people use it (issue 15): reports never call a window with problems complete,
progress off a terminal is JSON lines, the ledger by name and rebuilt, a terminal is asked for its choice, and the
commands other work needs (rotate-key, user add, digest, webhooks status)."""

from __future__ import annotations

import io
import json
import sys

from sqlalchemy import delete

from worker.db import session_scope
from worker.models import LedgerEntry
from worker.service.users import list_users
from worker.settings import reset_settings

from .conftest import TEST_SECRET_KEY
from .helpers import START, live_entries
from .stsync_env import leave_the_database_empty  # noqa: F401 - an autouse fixture


def _linked(stsync) -> str:
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    return str(pid)


def test_a_sync_with_problems_names_them_exits_non_zero_and_never_says_procore_has_everything(stsync) -> None:
    pid = _linked(stsync)  # no rules: every interval a technician could post is unmapped
    for _ in range(2):  # the window's next run still says so
        result = stsync("sync", pid, "--start", START, "--end", START, ok=False)
        assert result.exit_code == 1
        assert "still skipped: " in result.stdout and "(unmapped)" in result.stdout
        assert "Procore already has every entry" not in result.stdout


def test_sync_off_a_terminal_reports_progress_as_json_lines_on_stderr(stsync) -> None:
    pid = _linked(stsync)
    stsync.add_default_rule(pid)
    result = stsync("sync", pid, "--start", START, "--end", START.replace(day=8))
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"progress"')]
    assert lines and {line["progress"] for line in lines} >= {"posted"}
    assert all(set(line) == {"progress", "done", "total"} for line in lines)
    assert "{" not in result.stdout.splitlines()[0], "stdout stays the report"


def test_the_ledger_names_cost_codes_and_a_lost_ledger_is_rebuilt_from_procore(stsync, emulator) -> None:
    pid = _linked(stsync)
    stsync.add_default_rule(pid)
    stsync("sync", pid, "--start", START, "--end", START)
    table = stsync("ledger", pid, "--status", "posted").stdout
    assert "01-100 General Conditions Labor" in table and "posted" in table
    assert "01-100 General Conditions Labor" in stsync("ledger", "show", pid, "--wide").stdout
    posted = len(live_entries(emulator, int(pid)))
    with session_scope() as s:  # the ledger is lost (a restore from an old backup, say)
        s.execute(delete(LedgerEntry))
    rebuilt = stsync("ledger", "rebuild", pid, "--start", START, "--end", START).stdout
    assert "nothing sent" in rebuilt and f"adopted                {posted} entries found in Procore" in rebuilt
    assert len(live_entries(emulator, int(pid))) == posted
    assert stsync("ledger", pid, "--status", "posted").stdout.count("01-100 General Conditions Labor") == posted


def test_on_a_terminal_sync_events_shows_the_rows_and_codes_and_asks(stsync, emulator, monkeypatch) -> None:
    import worker.cli

    pid = _linked(stsync)
    monkeypatch.setattr(worker.cli, "interactive", lambda: True)
    result = stsync("sync-events", pid, "--start", START, "--end", START, input="7-8\n2\n")
    out = result.stdout
    assert "Rows to post" in out and "Labor cost codes:" in out and "1. 01-100 General Conditions Labor" in out
    posted = [line for line in out.splitlines() if line.strip().startswith("posted  ")]
    assert len(posted) == 2 and all(" hours, " in line for line in posted)
    assert len(live_entries(emulator, int(pid))) == 2


def test_rotate_key_re_encrypts_every_secret_so_the_old_key_can_go(stsync, monkeypatch) -> None:
    from worker.crypto import new_secret_key

    newest = new_secret_key()
    monkeypatch.setenv("STSYNC_SECRET_KEYS", f"{newest},{TEST_SECRET_KEY}")
    reset_settings()
    said = stsync("rotate-key").stdout
    assert "stored secret(s) re-encrypted with the newest key" in said and not said.startswith("0 ")
    monkeypatch.setenv("STSYNC_SECRET_KEYS", newest)
    monkeypatch.setenv("STSYNC_SECRET_KEY", "")
    reset_settings()
    assert "Marcus Tanaka" in stsync("technicians").stdout, "the stored credentials open with the new key alone"
    # Back under the suite's key, and before the fixtures' own reset: no later test may meet the new one.
    monkeypatch.setenv("STSYNC_SECRET_KEYS", f"{TEST_SECRET_KEY},{newest}")
    reset_settings()
    stsync("rotate-key")
    monkeypatch.undo()
    reset_settings()


def test_user_add_takes_the_password_at_a_hidden_prompt(stsync) -> None:
    result = stsync("user", "add", "Payroll@Example.com", "--role", "payroll",
                    input="a-long-password-1\na-long-password-1\n")
    assert "payroll@example.com can sign in to the console as payroll" in result.stdout
    assert "a-long-password-1" not in result.output
    assert [(u.email, u.role.value) for u in list_users()] == [("payroll@example.com", "payroll")]


def test_digest_prints_and_webhooks_status_says_what_is_not_registered(stsync) -> None:
    _linked(stsync)
    digest = stsync("digest", "--print").stdout
    assert digest.strip() and "Traceback" not in digest
    status = stsync("webhooks", "status").stdout
    assert "servicetrade" in status and "procore" in status and "not registered" in status


def test_events_wide_shows_every_column(stsync) -> None:
    pid = _linked(stsync)
    wide = stsync("events", pid, "--start", START, "--end", START, "--wide").stdout
    header = next(line for line in wide.splitlines() if line.startswith("#"))
    assert "source key" in header and f"{START}" in wide


class Terminal(io.StringIO):
    """Output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_tables_have_colour_on_a_terminal_and_are_plain_text_elsewhere(monkeypatch) -> None:
    from worker.cli import TECHNICIAN_COLUMNS, _flagged, print_table

    rows = [{"name": "Keiko Ali", "employee_id": None, "status": "no_employee_id", "warning": "set an Employee ID"}]
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for stream, coloured in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stdout", stream)
        print_table(rows, TECHNICIAN_COLUMNS, row_style=_flagged)
        text = stream.getvalue()
        assert ("\x1b[" in text) is coloured and "Keiko Ali" in text
        if not coloured:
            assert text.isascii(), "no box drawing off a terminal"


def test_a_long_sync_shows_a_bar_on_a_terminal_and_json_lines_elsewhere(monkeypatch) -> None:
    from worker.cli import ProgressShown

    monkeypatch.setenv("TERM", "xterm-256color")
    terminal, pipe = Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    with ProgressShown() as progress:
        for done in range(0, 101, 25):
            progress("posted", done, 100)
    assert "posted" in terminal.getvalue() and "100/100" in terminal.getvalue()
    assert '{"progress"' not in terminal.getvalue()
    monkeypatch.setattr(sys, "stderr", pipe)
    with ProgressShown() as progress:
        progress("read", 500, 0)
        progress("posted", 100, 100)
    assert [json.loads(line) for line in pipe.getvalue().splitlines()] == [
        {"progress": "read", "done": 500, "total": None}, {"progress": "posted", "done": 100, "total": 100}]
