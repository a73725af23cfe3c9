"""Every command and every task given wrong input (issue 12, item 7): a named error and an exit status, never a
traceback. The catalogue runs the CLI in-process for every case and as a real process for a few, to see the
stderr a person sees."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from worker.cli import cli
from worker.inputs import BIGINT_MAX, InvalidArgument
from worker.settings import reset_settings

from .stsync_env import leave_the_database_empty  # noqa: F401 - an autouse fixture

BEYOND_BIGINT = str(BIGINT_MAX + 1)
UNKNOWN = "4242424242"  # a Procore project id nobody linked
LINKED = "{pid}"  # the test's linked project, filled in per case; "{other}" is one not linked
WINDOW_TOO_LONG = ("--start", "2025-01-01", "--end", "2026-03-15")  # 439 days; MAX_WINDOW_DAYS is 400
BIGINT_WORDS = f"no larger than {BIGINT_MAX}"

# (command, exit status, words the message must hold). Usage errors (wrong type, out of range) exit 2 with click's
# `Invalid value for ...`; inputs the service refuses exit 1 with `error: ...`.
CASES: list[tuple[tuple[str, ...], int, str]] = [
    # ids beyond bigint, zero, negative, text where a number goes
    (("project", "check", BEYOND_BIGINT), 2, BIGINT_WORDS),
    (("project", "check", "0"), 2, "project_id must be a positive id"),
    (("project", "show", "--", "-5"), 2, "project_id must be a positive id"),
    (("project", "link", "abc", "--job-type", "service_call"), 2, "project_id must be an integer id, got 'abc'"),
    (("project", "link", "{other}", "--job-type", "plumbing_party"), 1, "unknown job type 'plumbing_party'"),
    (("project", "link", LINKED, "--job-type", "service_call", "--lookback-days", "-3"), 1,
     "lookback_days must be a whole number from 1 to 366, got -3"),
    (("project", "show", UNKNOWN), 1, UNKNOWN),
    (("runs", "--project", BEYOND_BIGINT), 2, BIGINT_WORDS),
    (("rules", "add", BEYOND_BIGINT, "--cost-code", "01-100"), 2, BIGINT_WORDS),
    (("rules", "add", LINKED, "--cost-code", "77-777"), 1, "cost code '77-777' is not a cost code of project"),
    (("rules", "add", LINKED, "--cost-code", "01-100", "--cost-type", "Concrete"), 1,
     "cost type 'Concrete' is not a cost type of the company"),
    (("rules", "add", LINKED, "--cost-code", "01-100", "--priority", "-1"), 1, "priority must be from 1"),
    (("rules", "add", LINKED, "--cost-code", "01-100", "--technician", "0"), 2, "st_user_id must be a positive id"),
    (("rules", "add", LINKED, "--cost-code", "01-100", "--start-between", "25:00-26:00"), 1, "25:00-26:00"),
    (("rules", "list", UNKNOWN), 1, UNKNOWN),
    (("rules", "remove", LINKED, "--priority", "9"), 1, "has no rule #9"),
    (("schedule", "set", LINKED, "--nightly", "25:99"), 1, "25:99"),
    (("schedule", "set", LINKED, "--payroll", "weekly", "--at", "06:00", "--anchor", "0001-01-01"), 1,
     "0001-01-01"),
    (("schedule", "set", BEYOND_BIGINT, "--nightly", "23:00"), 2, BIGINT_WORDS),
    (("schedule", "list", "--project", "-1"), 2, "project_id must be a positive id"),
    (("schedule", "pause", LINKED, "--kind", "nightly"), 1, "has no nightly schedule"),
    (("schedule", "resume", UNKNOWN, "--kind", "weekly"), 1, UNKNOWN),
    (("schedule", "remove", LINKED, "--kind", "fortnightly"), 2, "'fortnightly' is not one of"),
    # dates and windows
    (("sync", LINKED, "--start", "0001-01-01"), 1, "start 0001-01-01 is outside 2000-2099"),
    (("sync", LINKED, "--end", "9999-12-31"), 1, "end 9999-12-31 is outside 2000-2099"),
    (("sync", LINKED, "--start", "2026-13-45"), 1, "start must be a date as YYYY-MM-DD, got '2026-13-45'"),
    (("sync", LINKED, *WINDOW_TOO_LONG), 1, "is 439 days; at most 400"),
    (("sync", LINKED, "--start", "2026-03-15", "--end", "2026-03-02"), 1, "start 2026-03-15 is after end 2026-03-02"),
    (("sync", UNKNOWN, "--start", "2026-03-02"), 1, UNKNOWN),
    (("sync", BEYOND_BIGINT, "--enqueue"), 2, BIGINT_WORDS),
    (("events", LINKED, "--end", "9999-12-31"), 1, "end 9999-12-31 is outside 2000-2099"),
    (("events", LINKED, *WINDOW_TOO_LONG), 1, "at most 400"),
    (("events", "0"), 2, "project_id must be a positive id"),
    # the manual flow
    (("sync-events", LINKED, "--event", BEYOND_BIGINT, "--cost-code", "01-100", "--cost-type", "Labor"), 2,
     BIGINT_WORDS),
    (("sync-events", LINKED, "--event", "0", "--cost-code", "01-100"), 2, "event_ids must be a positive id"),
    (("sync-events", LINKED, "--event", "1", "--event", "2", "--event", "3", "--event", "4", "--cost-code", "01-100",
      "--cost-type", "Labor"), 1, "clock_event_ids holds 4 ids; at most 3 are taken in one call"),
    (("sync-events", LINKED, "--row", "0", "--cost-code", "01-100", "--start", "2026-03-02"), 1,
     "--row 0 is not in the events table"),
    (("sync-events", LINKED, "--all", "--cost-code", "01-100", "--start", "0001-01-01"), 1,
     "start 0001-01-01 is outside"),
    (("sync-events", LINKED, "--technician", "Nobody At All", "--cost-code", "01-100", "--start", "2026-03-02"), 1,
     "--technician 'Nobody At All' has no rows"),
    (("sync-events", UNKNOWN, "--all", "--cost-code", "01-100"), 1, UNKNOWN),
    # history
    (("ledger", LINKED, "--limit", "-1"), 1, "limit must be from 1 to 100000, got -1"),
    (("ledger", LINKED, "--start", "9999-12-31"), 1, "start 9999-12-31 is outside"),
    (("ledger", LINKED, "--status", "lost"), 2, "'lost' is not one of"),
    (("ledger", BEYOND_BIGINT), 2, BIGINT_WORDS),
    (("ledger", "show", "0"), 2, "project_id must be a positive id"),
    (("ledger", "rebuild", LINKED, "--start", "0001-01-01", "--end", "2026-03-02"), 1, "start 0001-01-01 is outside"),
    (("ledger", "rebuild", LINKED, *WINDOW_TOO_LONG), 1, "at most 400"),
    (("ledger", "rebuild", UNKNOWN, "--start", "2026-03-02", "--end", "2026-03-02"), 1, UNKNOWN),
    (("runs", "--limit", "-1"), 1, "limit must be from 1 to 10000, got -1"),
    (("runs", "--limit", "many"), 2, "'many' is not a valid integer"),
    (("retry", UNKNOWN), 1, UNKNOWN),
    (("retry", "-1"), 2, "No such option '-1'"),
    # connections, people, digests, webhooks, the console
    (("connect", "procore", "--company-id", BEYOND_BIGINT, "--client-id", "a", "--client-secret", "b"), 2,
     BIGINT_WORDS),
    (("connect", "servicetrade"), 1, "give --username and --password"),
    (("connect", "servicetrade", "--client-id", "x"), 1, "--client-id and --client-secret go together"),
    (("user", "add", "not-an-email", "--role", "admin", "--password", "long-enough-password"), 1,
     "'not-an-email' is not an email address"),
    (("user", "add", "a@example.com", "--role", "owner", "--password", "long-enough-password"), 2,
     "'owner' is not one of"),
    (("digest",), 1, "give exactly one of --print and --send"),
    (("digest", "--print", "--company-id", "0"), 2, "company_id must be a positive id"),
    (("digest-settings", "--to", "payroll at example dot com"), 1, "is not an email address"),
    (("digest-settings", "--at", "7pm"), 1, "must be a local time as HH:MM"),
    (("digest-settings", "--zone", "Mars/Olympus"), 1, "is not a known zone"),
    (("webhooks", "register", "procore", "--url", "ftp://example.com"), 1, "url must be the console's public https"),
    (("webhooks", "register", "gitlab", "--url", "https://example.com"), 2, "'gitlab' is not one of"),
    (("webhooks", "status", "--company-id", BEYOND_BIGINT), 2, BIGINT_WORDS),
    (("web", "--bind", "localhost:99999"), 1, "--bind must look like 127.0.0.1:8000"),
    (("init", "--database-url", "not a url"), 1, "'not a url' is not a database URL"),
]


@pytest.fixture
def linked(stsync, monkeypatch) -> Iterator[str]:
    """A connected installation with one linked project; at most 3 event ids per call, to test the bound."""
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    monkeypatch.setenv("MAX_EVENT_IDS", "3")
    monkeypatch.setenv("STSYNC_CONFIG", "/nonexistent/stsync.env")  # `init` must refuse before writing anything
    reset_settings()
    yield str(pid)
    monkeypatch.undo()  # before the fixtures' own reset: no later test may keep the bound of 3
    reset_settings()


def test_every_command_names_the_wrong_input_and_never_shows_a_traceback(linked, stsync) -> None:
    other = str(stsync.h["project_ids"][1])  # not linked
    wrong = []
    for args, code, words in CASES:
        filled = [a.format(pid=linked, other=other) for a in args]
        result = CliRunner().invoke(cli, filled)
        said = result.output
        if (result.exit_code != code or words not in said or "Traceback" in said
                or (result.exception is not None and not isinstance(result.exception, SystemExit))):
            wrong.append(f"stsync {' '.join(filled)} -> exit {result.exit_code} (expected {code}), "
                         f"said {said.strip()[-300:]!r}, raised {result.exception!r}")
    assert not wrong, "\n".join(wrong)


def test_every_command_of_the_cli_is_in_the_catalogue() -> None:
    def leaves(group, prefix=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from leaves(command, (*prefix, name))
            else:
                yield (*prefix, name)

    covered = {args[: len(leaf)] for args, _, _ in CASES for leaf in leaves(cli) if args[: len(leaf)] == leaf}
    missing = {" ".join(leaf) for leaf in leaves(cli)} - {" ".join(c) for c in covered}
    # db upgrade takes no input; rotate-key reads only the configured keys; technicians and projects take none
    assert missing <= {"db upgrade", "rotate-key", "technicians", "projects"}, missing


def _task_cases(pid: int) -> list[tuple[object, dict[str, object], type[Exception], str]]:
    from tasks.projects import link_project
    from tasks.sync import run, sync_payroll_period, sync_project, sync_selected
    from tasks.webhooks import process

    return [
        (sync_project, {"project_id": BIGINT_MAX + 1}, InvalidArgument, BIGINT_WORDS),
        (sync_project, {"project_id": "abc"}, InvalidArgument, "project_id must be an integer id, got 'abc'"),
        (sync_project, {"project_id": -4}, InvalidArgument, "project_id must be a positive id"),
        (sync_project, {"project_id": None}, InvalidArgument, "project_id must be an integer id"),
        (sync_project, {"project_id": pid, "start": "0001-01-01"}, InvalidArgument, "start 0001-01-01 is outside"),
        (sync_project, {"project_id": pid, "end": "9999-12-31"}, InvalidArgument, "end 9999-12-31 is outside"),
        (sync_project, {"project_id": pid, "start": "2025-01-01", "end": "2026-03-15"}, InvalidArgument,
         "at most 400"),
        (sync_project, {"project_id": pid, "dry_run": "maybe"}, InvalidArgument, "dry_run must be true or false"),
        (sync_project, {"project_id": int(UNKNOWN)}, LookupError, UNKNOWN),
        (sync_payroll_period, {"project_id": pid, "period_start": "someday"}, InvalidArgument,
         "period_start must be a date as YYYY-MM-DD, got 'someday'"),
        (sync_payroll_period, {"project_id": pid}, InvalidArgument, "has no payroll schedule"),
        (sync_selected, {"project_id": pid, "clock_event_ids": [1, 2, 3, 4], "cost_code_id": 1,
                         "line_item_type_id": 1}, InvalidArgument, "clock_event_ids holds 4 ids; at most 3"),
        (sync_selected, {"project_id": pid, "clock_event_ids": "1,2", "cost_code_id": 1, "line_item_type_id": 1},
         InvalidArgument, "clock_event_ids must be a non-empty list"),
        (sync_selected, {"project_id": pid, "clock_event_ids": [BIGINT_MAX + 1], "cost_code_id": 1,
                         "line_item_type_id": 1}, InvalidArgument, "clock_event_ids[0] must be a positive id"),
        (sync_selected, {"project_id": pid, "clock_event_ids": [1], "cost_code_id": 0, "line_item_type_id": 1},
         InvalidArgument, "cost_code_id must be a positive id"),
        (sync_selected, {"project_id": pid, "clock_event_ids": [1], "cost_code_id": 123, "line_item_type_id": 1},
         InvalidArgument, "cost code 123 can't take labor hours"),
        (run, {"run_id": "x"}, InvalidArgument, "run_id must be an integer id, got 'x'"),
        (run, {"run_id": 999_999}, LookupError, "sync run 999999 does not exist"),
        (link_project, {"project_id": pid, "job_type": "plumbing_party"}, InvalidArgument, "job_type must be one of"),
        (link_project, {"project_id": 0, "job_type": "service_call"}, InvalidArgument, "project_id must be a positive"),
        (process, {"delivery_id": -1}, InvalidArgument, "delivery_id must be a positive id"),
    ]


def test_every_task_refuses_wrong_arguments_by_name(linked) -> None:
    wrong = []
    for task, kwargs, kind, words in _task_cases(int(linked)):
        try:
            task.run(**kwargs)
        except kind as exc:
            if words not in str(exc):
                wrong.append(f"{task.name}({kwargs}) said {exc!r}")
        except Exception as exc:  # noqa: BLE001 - any other failure is what this test looks for
            wrong.append(f"{task.name}({kwargs}) raised {type(exc).__name__}: {exc}")
        else:
            wrong.append(f"{task.name}({kwargs}) accepted it")
    assert not wrong, "\n".join(wrong)


def test_every_task_module_is_in_the_catalogue() -> None:
    import importlib
    import pkgutil

    import tasks

    modules = [importlib.import_module(f"tasks.{m.name}") for m in pkgutil.iter_modules(tasks.__path__)]
    defined = {obj.name for module in modules for obj in vars(module).values()
               if hasattr(obj, "run") and hasattr(obj, "name") and str(obj.name).startswith("tasks.")}
    named = {task.name for task, _, _, _ in _task_cases(1)}
    # the dispatcher and the digest sender take no arguments at all
    assert defined - named == {"tasks.schedule.dispatch_due", "tasks.digest.send_digests"}, defined - named


@pytest.mark.parametrize("args,words", [
    (("sync", BEYOND_BIGINT), BIGINT_WORDS),
    (("runs", "--limit", "-1"), "limit must be from 1 to 10000, got -1"),
    (("events", "1", "--start", "9999-12-31"), "start 9999-12-31 is outside 2000-2099"),
])
def test_a_real_process_prints_the_named_error_and_no_traceback(db_url, args, words) -> None:
    env = {**os.environ, "DATABASE_URL": db_url}
    done = subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode in (1, 2)
    assert words in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) <= 4, "a short usage note at most, then the error"
