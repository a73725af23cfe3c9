"""`make demo` (`python -m demo`): the story an office admin follows, on embedded defaults.

SQLite instead of PostgreSQL, the project's emulators instead of the real APIs (started on a free port with a
generated world of the last two weeks), and the very commands an admin types: connect, check a project (one is
missing its zip), link, preview a day with the rounding rule, post chosen events by hand with two cost codes, let the
nightly schedule post the rest, and compare what Procore holds with what stsync recorded.

`python -m demo --console` (`make console`) then keeps the emulators running and serves the web console on
http://127.0.0.1:8000 (or WEB_BIND) with a demo user whose credentials it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from emulators.testing import EmulatorProcess
from emulators.world import generate_world
from worker.cli import cli
from worker.dispatch import dispatch_due
from worker.enums import LedgerStatus
from worker.service import projects as project_service
from worker.service import syncing
from worker.service.history import list_ledger
from worker.service.schedules import list_schedules
from worker.settings import get_settings, reset_settings
from worker.sync.runner import execute_run

DAYS = 14
DEMO_USER = "admin@demo.stsync"
DEMO_PASSWORD = "demo-password-1"  # the demo's own console user, printed for the person running it


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run_cli(*args: str, secret_args: tuple[str, ...] = (), allow_fail: bool = False) -> int:
    """Run one `stsync` command in this process and show it as typed (secrets masked)."""
    shown = ["***" if a in secret_args else a for a in args]
    print(f"$ stsync {shlex.join(shown)}", flush=True)
    try:
        cli.main(list(args), prog_name="stsync", standalone_mode=False)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    if code and not allow_fail:
        raise SystemExit(f"demo: `stsync {shown[0]} ...` failed with exit status {code}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m demo")
    parser.add_argument("--console", action="store_true", help="then serve the web console on 127.0.0.1:8000")
    console = parser.parse_args().console
    workdir = Path(os.environ.get("STSYNC_DEMO_DIR") or tempfile.mkdtemp(prefix="stsync-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "stsync-demo.sqlite"
    db_path.unlink(missing_ok=True)

    end = datetime.now(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=DAYS - 1)
    world = generate_world(seed=7, projects=3, technicians=12, days=DAYS, start=start)
    h = world["handles"]
    say("Starting the ServiceTrade and Procore emulators with a generated world")
    with EmulatorProcess(seed=world) as emu:
        print(f"emulators at {emu.base_url}: {len(h['project_ids'])} Procore projects, "
              f"{len(h['technicians'])} technicians, punches {start} to {end}")
        os.environ.update({
            "DATABASE_URL": f"sqlite:///{db_path}",
            "STSYNC_DEMO": "1",
            "STSYNC_CONFIG": str(workdir / "stsync.env"),  # the demo never reads a config file of yours
            "SERVICETRADE_API_URL": emu.st_url,
            "PROCORE_API_URL": emu.procore_url,
            "PROCORE_LOGIN_URL": emu.procore_url,
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "WARNING",
        })
        os.environ.pop("REDIS_URL", None)
        reset_settings()
        print(run_demo(h, emu, start, end))
        print(f"(demo database: {db_path})")
        if console:
            serve_console()


def run_demo(h: dict[str, Any], emu: EmulatorProcess, start: date, end: date) -> str:
    projects = [str(pid) for pid in h["project_ids"]]
    first, broken = projects[0], projects[1]
    say("1. Set up the database (SQLite here; PostgreSQL in production)")
    run_cli("db", "upgrade")

    say("2. Connect Procore and ServiceTrade: the credentials are checked, then stored encrypted")
    run_cli("connect", "procore", "--company-id", str(h["procore_company_id"]), "--client-id",
            h["procore_client_id"], "--client-secret", h["procore_client_secret"],
            secret_args=(h["procore_client_secret"],))
    run_cli("connect", "servicetrade", "--username", h["st_username"], "--password", h["st_password"],
            secret_args=(h["st_password"],))
    run_cli("projects")

    say("3. Check a project before linking it: here someone left the zip code empty in Procore")
    original = emu.admin.patch_project(int(broken), zip=None)
    run_cli("project", "check", broken, allow_fail=True)
    print("(the admin types the zip code into the project in Procore, then checks again)")
    emu.admin.patch_project(int(broken), zip=original.get("zip") or "11201")
    run_cli("project", "check", broken)

    say("4. Link every project to a ServiceTrade job")
    for pid in projects:
        run_cli("project", "link", pid, "--job-type", "service_call")

    say(f"5. Preview one day of {first}: actual and rounded times, by the company's rounding rule")
    run_cli("events", first, "--start", start.isoformat(), "--end", start.isoformat())

    say("6. The manual flow: pick rows of that table and post them, with two cost codes")
    view = syncing.clock_events(int(first), start, start)
    pickable = [r for r in view.rows if r.selectable]
    onsite = [str(r.number) for r in pickable if r.activity == "onsite"][:2]
    travel = [str(r.number) for r in pickable if r.activity == "enroute"][:1]
    codes = [c.label.split(" ", 1)[0] for c in view.cost_codes]
    day = ("--start", start.isoformat(), "--end", start.isoformat())
    run_cli("sync-events", first, *day, *_rows(onsite), "--cost-code", codes[0])
    run_cli("sync-events", first, *day, *_rows(travel), "--cost-code", codes[1 % len(codes)])

    say("7. Rules for everything else, and a nightly schedule that posts by itself")
    for pid in projects:
        labor = [c["code"] for c in project_service.check_project(int(pid)).to_dict()["labor_cost_codes"]]
        run_cli("rules", "add", pid, "--activity", "enroute", "--cost-code", labor[1 % len(labor)],
                "--description", "Travel to site")
        run_cli("rules", "add", pid, "--cost-code", labor[0])
        run_cli("schedule", "set", pid, "--nightly", "23:30")
    run_cli("rules", "list", first)

    say("8. The night comes: the dispatcher starts each project's run (it re-checks the 14 days before too)")
    run_nightly()
    run_cli("runs")
    run_cli("ledger", first, "--status", "skipped", "--limit", "5")

    say("9. Run the same window again: nothing new, so nothing is posted")
    run_cli("sync", first, "--start", start.isoformat(), "--end", end.isoformat(), allow_fail=True)
    say("Done")
    return reconcile_with_procore(emu, h["project_ids"])


def _rows(numbers: list[str]) -> list[str]:
    return [arg for n in numbers for arg in ("--row", n)]


def run_nightly() -> None:
    """What beat and a worker do at the schedules' time: the dispatcher turns due schedules into runs, a worker
    runs them (here, in this process)."""
    due = max(s.next_run_at for s in list_schedules())  # the last project's 23:30 (the zones differ)
    for run_id in dispatch_due(due):
        outcome = execute_run(run_id)
        print(f"nightly run {run_id}: {outcome.status.value}"
              + (f", {outcome.report.posted} entries posted ({outcome.report.hours} hours)" if outcome.report else ""))


def reconcile_with_procore(emu: EmulatorProcess, project_ids: list[int]) -> str:
    """The ledger's posted rows against what Procore (the emulator) holds, entry by entry, in words."""
    entries = [e for e in emu.admin.procore_entries() if not e.get("deleted_at")]
    rows = [row for pid in project_ids for row in list_ledger(pid, limit=100_000)]
    posted = {r.procore_entry_id: r for r in rows if r.status == LedgerStatus.posted}
    skipped = sum(1 for r in rows if r.status == LedgerStatus.skipped)
    per_origin: dict[int, int] = {}
    for e in entries:
        per_origin[int(e["origin_id"])] = per_origin.get(int(e["origin_id"]), 0) + 1
    twice = sum(n - 1 for n in per_origin.values() if n > 1)
    in_procore = {int(e["id"]) for e in entries}
    missing = [r for r in posted.values() if r.procore_entry_id not in in_procore]
    if twice or missing or len(entries) != len(posted):
        raise SystemExit(f"MISMATCH: Procore holds {len(entries)} entries, stsync recorded {len(posted)}; "
                         f"{len(missing)} missing, {twice} twice")
    return (f"Procore now holds exactly the {len(posted):,} entries stsync recorded: nothing missing, nothing "
            f"twice. ({skipped:,} intervals were left out, each with its reason in `stsync ledger`.)")


def serve_console() -> None:
    """The console on the demo's world, until Ctrl-C."""
    from worker.service.users import add_user
    from worker.web.app import serve

    add_user(DEMO_USER, DEMO_PASSWORD, "admin")
    bind = get_settings().web_bind  # WEB_BIND, 127.0.0.1:8000 unless told otherwise
    say(f"The web console: http://{bind}")
    print(f"sign in as {DEMO_USER} with password {DEMO_PASSWORD} (Ctrl-C stops the console and the emulators)",
          flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve(bind, workers=1)  # one process: the demo's sign-in throttle lives in memory


if __name__ == "__main__":
    main()
