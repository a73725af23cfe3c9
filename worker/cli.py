"""The `stsync` command (DESIGN §7): options, prompts and printing around one `worker.service` call per command.
Tables for people, JSON for programs, non-zero exit on failure."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from typing import Any

import click
import structlog

from worker.clients.errors import ApiError, CredentialsRejected, NeedsReauthorization
from worker.crypto import SecretKeyMismatch
from worker.db import ProjectBusy
from worker.enums import RULE_ACTIVITIES, LedgerStatus, PayrollKind, RunStatus, ScheduleKind
from worker.inputs import InvalidArgument
from worker.logging import configure_logging
from worker.projects import LinkRefused
from worker.service import connections as connection_service
from worker.service import history, syncing
from worker.service import projects as project_service
from worker.service import rules as rule_service
from worker.service import schedules as schedule_service
from worker.settings import MissingSecretKey
from worker.store.connections import NoConnection
from worker.sync.runner import RunOutcome

EXPECTED = (
    ApiError, NoConnection, MissingSecretKey, SecretKeyMismatch, LinkRefused, LookupError, InvalidArgument,
    ValueError, ProjectBusy, NeedsReauthorization,
)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures become one clear message and exit status 1, never a traceback; wrong input
    (`InvalidArgument`) included."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Every log line of the command, the HTTP client's included, says which command it came from.
        with structlog.contextvars.bound_contextvars(command=click.get_current_context().command_path):
            try:
                return fn(*args, **kwargs)
            except CredentialsRejected as exc:
                _fail(f"{exc}\nCheck the credentials and run the connect command again.")
            except EXPECTED as exc:
                _fail(str(exc))

    return wrapper


def emit(data: Any, as_json: bool, table: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_json_default))
    else:
        table()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], empty: str = "(none)") -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    click.echo("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


@click.group()
def cli() -> None:
    """stsync: ServiceTrade clock events into Procore timesheets, exactly once."""
    configure_logging()


# ---------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@handled
def db_upgrade() -> None:
    """Migrate the database (DATABASE_URL) to the latest schema."""
    from worker.logging import mask_url
    from worker.migrate import upgrade
    from worker.settings import get_settings

    url = get_settings().database_url
    upgrade(url)
    click.echo(f"database at {mask_url(url)} is at the latest schema")


# ---------------------------------------------------------------------------- connect


@cli.group()
def connect() -> None:
    """Store the credentials of Procore and ServiceTrade (encrypted), after checking them against the APIs."""


@connect.command("procore")
@click.option("--company-id", type=int, required=True, help="Procore company id")
@click.option("--client-id", required=True)
@click.option("--client-secret", envvar="PROCORE_CLIENT_SECRET", prompt="Procore client secret", hide_input=True,
              help="asked for (hidden) when neither given nor in PROCORE_CLIENT_SECRET")
@click.option("--refresh-token", envvar="PROCORE_REFRESH_TOKEN", default=None,
              help="for a connection that a Procore user authorised")
@handled
def connect_procore(company_id: int, client_id: str, client_secret: str, refresh_token: str | None) -> None:
    done = connection_service.connect_procore(company_id, client_id, client_secret, refresh_token)
    click.echo(f"Procore company {done.company_id} connected with {done.grant} "
               f"({done.start_stop_projects} project(s) record start/stop times).")


@connect.command("servicetrade")
@click.option("--username", default=None)
@click.option("--password", envvar="SERVICETRADE_PASSWORD", default=None,
              help="asked for (hidden) when neither given nor in SERVICETRADE_PASSWORD")
@click.option("--client-id", default=None, help="OAuth client id (instead of username/password)")
@click.option("--client-secret", envvar="SERVICETRADE_CLIENT_SECRET", default=None)
@click.option("--company-id", type=int, default=None, help="Procore company of the connection, when several")
@handled
def connect_servicetrade(
    username: str | None, password: str | None, client_id: str | None, client_secret: str | None,
    company_id: int | None,
) -> None:
    if username and not password:
        password = click.prompt("ServiceTrade password", hide_input=True)
    done = connection_service.connect_servicetrade(username=username, password=password, client_id=client_id,
                                                   client_secret=client_secret, company_id=company_id)
    click.echo(f"ServiceTrade account {done.company_name} ({done.company_id}) connected as {done.user_name}.")


# ---------------------------------------------------------------------------- project


@cli.group()
def project() -> None:
    """Link Procore projects to ServiceTrade and check them."""


@project.command("check")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def project_check(project_id: int, as_json: bool) -> None:
    """Everything that would stop a sync of PROJECT_ID, each named; exit 1 when something blocks."""
    result = project_service.check_project(project_id)
    data = result.to_dict()
    emit(data, as_json, lambda: _print_check(data))
    if not result.ok:
        sys.exit(1)


def _print_check(d: dict[str, Any]) -> None:
    click.echo(f"Procore project {d['project_id']}: {d['name']}")
    click.echo(f"  time zone      {d['time_zone']}")
    click.echo(f"  entry mode     {'start/stop times' if d['entry_mode'] == 'start_stop' else 'total hours'}")
    click.echo(f"  Timesheets     {'active' if d['timesheets_active'] else 'off'}: {d['approval']}")
    click.echo(f"  rounding       {d['rounding']}")
    if d["link"]:
        click.echo(f"  ServiceTrade   job #{d['link']['job_number']} ({d['link']['job_type']}) {d['link']['url']}")
    else:
        click.echo("  ServiceTrade   not linked yet")
    click.echo("Labor cost codes:")
    print_table(d["labor_cost_codes"], [("id", "id"), ("code", "code"), ("name", "name")],
                empty="  (none usable)")
    if d["unusable_cost_codes"]:
        click.echo("Cost codes that can't take labor:")
        print_table(d["unusable_cost_codes"], [("id", "id"), ("code", "code"), ("name", "name"), ("why", "why")])
    if d["technicians"]:
        click.echo("Technicians:")
        print_table(d["technicians"], [("name", "technician"), ("employee_id", "employee id"),
                                       ("status", "status"), ("warning", "what to fix")])
    for b in d["blockers"]:
        click.echo(f"BLOCKS SYNC: {b}")
    click.echo("ready to sync" if d["ok"] else "not ready: fix the items marked BLOCKS SYNC")


@project.command("link")
@click.argument("project_id", type=int)
@click.option("--job-type", required=True, help="ServiceTrade job type, e.g. service_call or construction")
@click.option("--lookback-days", type=int, default=None)
@click.option("--split", "split_mode", type=click.Choice(["midnight", "start_date"]), default="midnight",
              help="split intervals at local midnight (default) or keep each on its start date")
@click.option("--json", "as_json", is_flag=True)
@handled
def project_link(project_id: int, job_type: str, lookback_days: int | None, split_mode: str, as_json: bool) -> None:
    """Create (or find) the ServiceTrade customer, location and job for PROJECT_ID and record the link."""
    result = project_service.link_project(project_id, job_type, lookback_days=lookback_days, split_mode=split_mode)
    data = result.to_dict()

    def show() -> None:
        if result.already_linked:
            click.echo(f"Procore project {project_id} ({result.project_name}) is already linked to ServiceTrade "
                       f"job #{result.job_number}: {data['job_url']}")
        else:
            made = ", ".join(result.created) or "nothing (all found from an earlier attempt)"
            click.echo(f"Linked Procore project {project_id} ({result.project_name}) to ServiceTrade job "
                       f"#{result.job_number} ({data['job_url']}); created: {made}.")

    emit(data, as_json, show)


@project.command("show")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def project_show(project_id: int, as_json: bool) -> None:
    """The stored link of PROJECT_ID: job, zone, mode, rules, schedules, ledger totals."""
    data = project_service.show_project(project_id).to_dict()

    def show() -> None:
        for key in ("name", "time_zone", "entry_mode", "timesheets_active", "lookback_days", "split_mode",
                    "job_type", "st_job_number"):
            click.echo(f"  {key:<18}{_cell(data[key])}")
        click.echo("Rules:")
        print_table(data["rules"], RULE_COLUMNS)
        click.echo("Schedules:")
        print_table(data["schedules"], SCHEDULE_COLUMNS)
        click.echo("Ledger: " + (", ".join(f"{k} {v}" for k, v in sorted(data["ledger"].items())) or "empty"))

    emit(data, as_json, show)


@cli.command("technicians")
@click.option("--json", "as_json", is_flag=True)
@handled
def technicians(as_json: bool) -> None:
    """Each ServiceTrade technician, their Procore Employee ID and the person it resolves to, or what to fix."""
    data = [t.to_dict() for t in project_service.list_technicians()]
    emit(data, as_json, lambda: print_table(data, [
        ("name", "technician"), ("st_user_id", "ServiceTrade id"), ("employee_id", "employee id"),
        ("party_id", "Procore person"), ("status", "status"), ("warning", "what to fix")]))


# ---------------------------------------------------------------------------- rules

RULE_COLUMNS = [("priority", "priority"), ("activity", "activity"), ("technician", "technician"),
                ("weekdays", "weekdays"), ("start_window", "start between"), ("cost_code", "cost code"),
                ("cost_type", "cost type"), ("timecard_time_type_id", "time type"), ("billable", "billable"),
                ("description", "description")]


@cli.group()
def rules() -> None:
    """Ordered cost code rules of a project: first match wins."""


@rules.command("add")
@click.argument("project_id", type=int)
@click.option("--cost-code-id", type=int, required=True)
@click.option("--line-item-type-id", type=int, required=True)
@click.option("--activity", type=click.Choice([a.value for a in RULE_ACTIVITIES]), default=None)
@click.option("--technician", "st_user_id", type=int, default=None, help="ServiceTrade user id")
@click.option("--weekdays", default=None, help="mon,tue,...")
@click.option("--start-between", default=None, help="HH:MM-HH:MM local; may wrap midnight (18:00-05:00)")
@click.option("--time-type-id", type=int, default=None, help="Procore timecard time type")
@click.option("--billable/--not-billable", default=False)
@click.option("--description", default=None)
@click.option("--priority", type=int, default=None, help="1 is tried first; default: after the last rule")
@handled
def rules_add(project_id: int, cost_code_id: int, line_item_type_id: int, activity: str | None,
              st_user_id: int | None, weekdays: str | None, start_between: str | None, time_type_id: int | None,
              billable: bool, description: str | None, priority: int | None) -> None:
    """Add a rule to PROJECT_ID; only a budgeted Labor cost code and a Labor cost type are accepted."""
    rule = rule_service.add_rule(
        project_id, cost_code_id, line_item_type_id, activity=activity, st_user_id=st_user_id, weekdays=weekdays,
        start_between=start_between, time_type_id=time_type_id, billable=billable, description=description,
        priority=priority)
    click.echo(f"rule #{rule.priority} added to project {project_id}: {rule.cost_code}, {rule.cost_type}")


@rules.command("list")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def rules_list(project_id: int, as_json: bool) -> None:
    data = [r.to_dict() for r in rule_service.list_rules(project_id)]
    emit(data, as_json, lambda: print_table(data, RULE_COLUMNS, empty="(no rules: every interval is unmapped)"))


@rules.command("remove")
@click.argument("project_id", type=int)
@click.option("--priority", type=int, required=True)
@handled
def rules_remove(project_id: int, priority: int) -> None:
    rule_service.remove_rule(project_id, priority)
    click.echo(f"rule #{priority} removed from project {project_id}")


# ---------------------------------------------------------------------------- schedules

SCHEDULE_COLUMNS = [("id", "id"), ("project_name", "project"), ("kind", "kind"), ("detail", "when"),
                    ("next_run_local", "next run (local)"), ("next_run_at", "next run (UTC)"), ("enabled", "enabled")]


@cli.group()
def schedule() -> None:
    """When a project syncs by itself: nightly, weekly, or after each payroll period (in its local time)."""


@schedule.command("set")
@click.argument("project_id", type=int)
@click.option("--nightly", "nightly_at", default=None, metavar="HH:MM", help="every day at this local time")
@click.option("--weekly", "weekly_at", default=None, metavar="DAY@HH:MM", help="e.g. fri@18:00")
@click.option("--payroll", type=click.Choice([k.value for k in PayrollKind]), default=None)
@click.option("--anchor", default=None, help="first day of a payroll period (biweekly needs it)")
@click.option("--at", "at_time", default=None, metavar="HH:MM", help="local time of the payroll run")
@click.option("--grace-days", type=int, default=0, help="days after the period's last day before it runs")
@click.option("--json", "as_json", is_flag=True)
@handled
def schedule_set(project_id: int, nightly_at: str | None, weekly_at: str | None, payroll: str | None,
                 anchor: str | None, at_time: str | None, grace_days: int, as_json: bool) -> None:
    """Set (replace) the schedule of one kind for PROJECT_ID."""
    chosen = [x for x in (nightly_at, weekly_at, payroll) if x]
    if len(chosen) != 1:
        raise InvalidArgument("give exactly one of --nightly HH:MM, --weekly DAY@HH:MM, --payroll KIND --at HH:MM")
    weekday = None
    if nightly_at:
        kind, at = ScheduleKind.nightly, nightly_at
    elif weekly_at:
        weekday, _, at = weekly_at.partition("@")
        if not at:
            raise InvalidArgument(f"--weekly must look like fri@18:00, got {weekly_at!r}")
        kind = ScheduleKind.weekly
    else:
        if not at_time:
            raise InvalidArgument("--payroll needs --at HH:MM (the local time of the run)")
        kind, at = ScheduleKind.payroll, at_time
    view = schedule_service.set_schedule(project_id, kind, at, weekday=weekday, payroll_kind=payroll, anchor=anchor,
                                         grace_days=grace_days)
    data = view.to_dict()
    emit(data, as_json, lambda: click.echo(
        f"project {project_id} ({view.project_name}): {data['kind']} {data['detail']}; next run "
        f"{data['next_run_local']} covering {data['window'][0]} to {data['window'][1]}"))


@schedule.command("list")
@click.option("--project", "project_id", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@handled
def schedule_list(project_id: int | None, as_json: bool) -> None:
    data = [x.to_dict() for x in schedule_service.list_schedules(project_id)]
    emit(data, as_json, lambda: print_table(data, SCHEDULE_COLUMNS, empty="(no schedules)"))


KIND_OPTION = click.option("--kind", type=click.Choice([k.value for k in ScheduleKind]), required=True)


@schedule.command("remove")
@click.argument("project_id", type=int)
@KIND_OPTION
@handled
def schedule_remove(project_id: int, kind: str) -> None:
    schedule_service.remove_schedule(project_id, kind)
    click.echo(f"{kind} schedule removed from project {project_id}")


@schedule.command("pause")
@click.argument("project_id", type=int)
@KIND_OPTION
@handled
def schedule_pause(project_id: int, kind: str) -> None:
    view = schedule_service.pause_schedule(project_id, kind)
    click.echo(f"{kind} schedule of project {project_id} ({view.project_name}) paused")


@schedule.command("resume")
@click.argument("project_id", type=int)
@KIND_OPTION
@handled
def schedule_resume(project_id: int, kind: str) -> None:
    view = schedule_service.resume_schedule(project_id, kind)
    click.echo(f"{kind} schedule of project {project_id} ({view.project_name}) resumed; next run "
               f"{view.next_run_local}")


# ---------------------------------------------------------------------------- sync


def _progress(stage: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        click.echo(f"\r{stage}: {done}/{total}" if total else f"\r{stage}: {done}", err=True, nl=False)


def _end_progress() -> None:
    if sys.stderr.isatty():
        click.echo("", err=True)


@cli.command("sync")
@click.argument("project_id", type=int)
@click.option("--start", default=None, help="first local date, YYYY-MM-DD (default: --end)")
@click.option("--end", default=None, help="last local date, YYYY-MM-DD (default: today in the project's zone)")
@click.option("--dry-run", is_flag=True, help="show what would happen; change nothing")
@click.option("--enqueue", is_flag=True, help="hand the run to the workers instead of running it here")
@click.option("--json", "as_json", is_flag=True)
@handled
def sync(project_id: int, start: str | None, end: str | None, dry_run: bool, enqueue: bool, as_json: bool) -> None:
    """Sync PROJECT_ID for a window of local dates (both included), plus the project's look-back."""
    if enqueue:
        run_id = syncing.enqueue_sync(project_id, start, end, dry_run=dry_run)
        emit({"run_id": run_id, "status": "queued"}, as_json,
             lambda: click.echo(f"run {run_id} queued for project {project_id}"))
        return
    outcome = syncing.sync_window(project_id, start, end, dry_run=dry_run, progress=_progress)
    _end_progress()
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))
    if outcome.status != RunStatus.succeeded:
        sys.exit(1)


def print_outcome(outcome: RunOutcome) -> None:
    r = outcome.report
    if r is None:
        click.echo(f"run {outcome.run_id}: {outcome.status.value} — {outcome.message}")
        return
    verb = "would post" if r.dry_run else "posted"
    click.echo(f"{r.project_name} (Procore project {r.project_id}), {r.window_start} to {r.window_end}"
               + (" — DRY RUN, nothing changed" if r.dry_run else ""))
    if r.preview:
        print_table(r.preview, PREVIEW_COLUMNS)
    click.echo(f"  {verb:<14}{r.posted} entries, {r.hours} hours")
    if not r.dry_run and r.posted == 0 and r.procore_writes == 0:
        click.echo("  nothing new to post: Procore already has every entry of this window")
    for label, value in (("updated", r.updated), ("deleted", r.deleted), ("needs review", r.needs_review),
                         ("failed", r.failed), ("unknown", r.unknown), ("unchanged", r.unchanged),
                         ("after window", r.later)):
        if value:
            click.echo(f"  {label:<14}{value}")
    for reason, n in sorted(r.skipped.items()):
        click.echo(f"  skipped       {n} {reason}")
    for problem in r.malformed_events:
        click.echo(f"  malformed     {problem}")
    click.echo(f"  budget        {r.budget_note}")
    if outcome.message:
        click.echo(f"  note          {outcome.message}")


PREVIEW_COLUMNS = [("technician", "technician"), ("activity", "activity"), ("date", "date"),
                   ("actual_start", "actual in"), ("actual_end", "actual out"), ("rounded_start", "rounded in"),
                   ("rounded_end", "rounded out"), ("hours", "hours"), ("rule", "rule"),
                   ("cost_code", "cost code"), ("action", "action"), ("reason", "reason"),
                   ("ledger_status", "ledger")]


@cli.command("events")
@click.argument("project_id", type=int)
@click.option("--start", default=None)
@click.option("--end", default=None)
@click.option("--json", "as_json", is_flag=True)
@handled
def events(project_id: int, start: str | None, end: str | None, as_json: bool) -> None:
    """Preview: technician, activity, actual and rounded times, date, hours, rule, warnings, ledger status."""
    outcome = syncing.preview_events(project_id, start, end)
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))


@cli.command("sync-events")
@click.argument("project_id", type=int)
@click.option("--event", "event_ids", type=int, multiple=True, required=True, help="clock event id (repeat)")
@click.option("--cost-code-id", type=int, required=True)
@click.option("--line-item-type-id", type=int, required=True)
@click.option("--start", default=None, help="where to look for the events (default: the look-back)")
@click.option("--end", default=None)
@click.option("--json", "as_json", is_flag=True)
@handled
def sync_events(project_id: int, event_ids: tuple[int, ...], cost_code_id: int, line_item_type_id: int,
                start: str | None, end: str | None, as_json: bool) -> None:
    """The manual flow: post the chosen clock events with one cost code and cost type."""
    outcome = syncing.sync_selected(project_id, event_ids, cost_code_id, line_item_type_id, start, end)
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))
    if outcome.status != RunStatus.succeeded:
        sys.exit(1)


@cli.command("ledger")
@click.argument("project_id", type=int)
@click.option("--status", type=click.Choice([s.value for s in LedgerStatus]), default=None)
@click.option("--limit", type=int, default=500)
@click.option("--json", "as_json", is_flag=True)
@handled
def ledger(project_id: int, status: str | None, limit: int, as_json: bool) -> None:
    """The ledger rows of PROJECT_ID: what stsync posted, skipped, or holds for review, and why."""
    data = [r.to_dict() for r in history.list_ledger(project_id, status=status, limit=limit)]
    emit(data, as_json, lambda: print_table(data, LEDGER_COLUMNS))


LEDGER_COLUMNS = [("source_key", "source"), ("technician", "technician"), ("date", "date"), ("hours", "hours"),
                  ("cost_code", "cost code"), ("status", "status"), ("reason", "reason"),
                  ("procore_entry_id", "Procore id"), ("detail", "detail")]


@cli.command("runs")
@click.option("--project", "project_id", type=int, default=None)
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
@handled
def runs(project_id: int | None, limit: int, as_json: bool) -> None:
    """Recent sync runs: trigger, window, status, counts and duration."""
    data = [r.to_dict() for r in history.list_runs(project_id, limit)]
    emit(data, as_json, lambda: print_table(data, RUN_COLUMNS))


RUN_COLUMNS = [("id", "run"), ("project_name", "project"), ("trigger", "trigger"), ("window", "window"),
               ("status", "status"), ("posted", "posted"), ("hours", "hours"), ("skipped", "skipped"),
               ("failed", "failed"), ("needs_review", "review"), ("duration_s", "secs"), ("error", "note")]


@cli.command("retry")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def retry(project_id: int, as_json: bool) -> None:
    """Send the failed entries of PROJECT_ID again (after fixing what Procore refused), and look up unknown ones."""
    outcome = syncing.retry_failed(project_id)
    if outcome is None:
        emit({"retried": 0}, as_json, lambda: click.echo(f"project {project_id} has nothing to retry"))
        return
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))
    if outcome.status != RunStatus.succeeded:
        sys.exit(1)


def main() -> None:
    cli(prog_name="stsync")


if __name__ == "__main__":
    main()
