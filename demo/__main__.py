"""`make demo` (`python -m demo`): the main job on embedded defaults.

SQLite instead of PostgreSQL, the project's emulators instead of the real APIs (started on a free port with a
generated world), and the very commands an operator types. Everything else is the code the worker runs.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from emulators.testing import EmulatorProcess
from emulators.world import generate_world
from worker.cli import cli
from worker.enums import LedgerStatus
from worker.service.history import list_ledger
from worker.settings import reset_settings

DEMO_START = date(2026, 10, 26)  # two weeks that include the 2026-11-01 fall-back in the US zones
DEMO_END = date(2026, 11, 8)


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
    workdir = Path(os.environ.get("STSYNC_DEMO_DIR") or tempfile.mkdtemp(prefix="stsync-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "stsync-demo.sqlite"
    db_path.unlink(missing_ok=True)

    world = generate_world(seed=7, projects=3, technicians=12, days=(DEMO_END - DEMO_START).days + 1,
                           start=DEMO_START)
    h = world["handles"]
    say("Starting the ServiceTrade and Procore emulators with a generated world")
    with EmulatorProcess(seed=world) as emu:
        print(f"emulators at {emu.base_url}: {len(h['project_ids'])} Procore projects, "
              f"{len(h['technicians'])} technicians, punches {DEMO_START} to {DEMO_END}")
        os.environ.update({
            "DATABASE_URL": f"sqlite:///{db_path}",
            "STSYNC_DEMO": "1",
            "SERVICETRADE_API_URL": emu.st_url,
            "PROCORE_API_URL": emu.procore_url,
            "PROCORE_LOGIN_URL": emu.procore_url,
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "WARNING",
        })
        os.environ.pop("REDIS_URL", None)
        reset_settings()
        report = run_demo(h, emu)
    say("Done")
    print(report)
    print(f"(demo database: {db_path})")


def run_demo(h: dict[str, Any], emu: EmulatorProcess) -> str:
    say("Database (SQLite, embedded default)")
    run_cli("db", "upgrade")

    say("Connect Procore and ServiceTrade (credentials are checked, then stored encrypted)")
    run_cli("connect", "procore", "--company-id", str(h["procore_company_id"]), "--client-id",
            h["procore_client_id"], "--client-secret", h["procore_client_secret"],
            secret_args=(h["procore_client_secret"],))
    run_cli("connect", "servicetrade", "--username", h["st_username"], "--password", h["st_password"],
            secret_args=(h["st_password"],))

    say("Technicians and their Procore Employee IDs")
    run_cli("technicians")

    for pid in h["project_ids"]:
        say(f"Project {pid}: check, link, rules")
        run_cli("project", "check", str(pid), allow_fail=True)
        run_cli("project", "link", str(pid), "--job-type", "service_call")
        codes = h["labor_cost_codes"][str(pid)]
        first, second = codes[0], codes[1 % len(codes)]
        run_cli("rules", "add", str(pid), "--activity", "enroute", "--cost-code-id", str(second["cost_code_id"]),
                "--line-item-type-id", str(second["line_item_type_id"]), "--description", "Travel to site")
        run_cli("rules", "add", str(pid), "--cost-code-id", str(first["cost_code_id"]),
                "--line-item-type-id", str(first["line_item_type_id"]))
        run_cli("schedule", "set", str(pid), "--payroll", "weekly", "--anchor", DEMO_START.isoformat(),
                "--at", "06:00", "--grace-days", "1")

    first_pid = str(h["project_ids"][0])
    say(f"Preview of project {first_pid}, first day (actual vs rounded times, rule, warnings)")
    run_cli("events", first_pid, "--start", DEMO_START.isoformat(), "--end", DEMO_START.isoformat())

    say(f"Sync every project, {DEMO_START} to {DEMO_END}")
    for pid in h["project_ids"]:
        run_cli("sync", str(pid), "--start", DEMO_START.isoformat(), "--end", DEMO_END.isoformat())

    say("Sync again: nothing new, so nothing is posted")
    for pid in h["project_ids"]:
        run_cli("sync", str(pid), "--start", DEMO_START.isoformat(), "--end", DEMO_END.isoformat())

    say("Runs")
    run_cli("runs")
    return reconcile_with_procore(emu, h["project_ids"])


def reconcile_with_procore(emu: EmulatorProcess, project_ids: list[int]) -> str:
    """The ledger's posted rows against what Procore (the emulator) holds, entry by entry."""
    entries = [e for e in emu.admin.procore_entries() if not e.get("deleted_at")]
    rows = [row for pid in project_ids for row in list_ledger(pid, limit=100_000)]
    ledger = {r.procore_entry_id: r for r in rows if r.status == LedgerStatus.posted}
    skipped = [r for r in rows if r.status == LedgerStatus.skipped]
    by_origin: dict[int, int] = {}
    for e in entries:
        by_origin[int(e["origin_id"])] = by_origin.get(int(e["origin_id"]), 0) + 1
    duplicates = sum(n - 1 for n in by_origin.values() if n > 1)
    in_procore = {int(e["id"]) for e in entries}
    missing = [r for r in ledger.values() if r.procore_entry_id not in in_procore]
    procore_hours = sum(Decimal(str(e["hours"])) for e in entries)
    ledger_hours = sum((r.hours or Decimal(0)) for r in ledger.values())
    ok = not duplicates and not missing and len(entries) == len(ledger)
    lines = [
        f"Procore holds {len(entries)} timecard entries ({procore_hours} hours); the ledger has {len(ledger)} posted "
        f"({ledger_hours} hours) and {len(skipped)} skipped with a reason.",
        f"duplicates: {duplicates}, missing: {len(missing)} -> " + ("MATCH" if ok else "MISMATCH"),
    ]
    if not ok:
        raise SystemExit("\n".join(lines))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
