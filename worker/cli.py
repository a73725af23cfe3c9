"""The `stsync` command (DESIGN §7): options, prompts and printing around one `worker.service` call per command.
Tables for people, JSON for programs, non-zero exit on failure."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from typing import Any

import click
import structlog
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Prompt
from rich.table import Table

from worker.clients.errors import ApiError, CredentialsRejected, NeedsReauthorization
from worker.config import ConfigExists, database_problem, init_config, prepare_database_folder
from worker.crypto import SecretKeyMismatch
from worker.db import ProjectBusy
from worker.enums import RULE_ACTIVITIES, LedgerStatus, PayrollKind, RunStatus, ScheduleKind
from worker.inputs import InvalidArgument, positive_id
from worker.logging import configure_logging, mask_url
from worker.projects import LinkRefused
from worker.service import connections as connection_service
from worker.service import history, syncing
from worker.service import projects as project_service
from worker.service import rules as rule_service
from worker.service import schedules as schedule_service
from worker.service.syncing import ClockEventsView, EventRow
from worker.settings import MissingSecretKey, get_settings
from worker.store.connections import NoConnection
from worker.sync.runner import RunOutcome

EXPECTED = (
    ApiError, NoConnection, MissingSecretKey, SecretKeyMismatch, LinkRefused, LookupError, InvalidArgument,
    ValueError, ProjectBusy, NeedsReauthorization, ConfigExists,
)
# Commands that work before the database is set up: they are how it gets set up.
NO_DATABASE_NEEDED = {"init", "upgrade"}
NARROW = 120  # columns of a table written to a pipe or file; a terminal uses its own width
WIDE = 400


class IdType(click.ParamType):
    """A Procore or ServiceTrade id where the command line reads it, checked by `worker.inputs`: beyond bigint,
    zero or negative is a usage error that names the option."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return positive_id(value, param.name if param and param.name else "id")
        except InvalidArgument as exc:
            self.fail(str(exc), param, ctx)


ID = IdType()


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures become one clear message and exit status 1, never a traceback; wrong input
    (`InvalidArgument`) included. A database that is missing or not migrated is said in one line first."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        context = click.get_current_context()
        # Every log line of the command, the HTTP client's included, says which command it came from.
        with structlog.contextvars.bound_contextvars(command=context.command_path):
            try:
                if context.info_name not in NO_DATABASE_NEEDED:
                    problem = database_problem()
                    if problem:
                        _fail(problem)
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


def console(*, wide: bool = False, err: bool = False) -> Console:
    """Rich on the stream the command writes to now (tests swap it): colours on a terminal only, plain text
    `NARROW` columns wide elsewhere, `WIDE` for `--wide`."""
    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty()
    width = WIDE if wide else (None if tty else NARROW)
    return Console(file=stream, highlight=False, width=width, no_color=not tty, emoji=False, soft_wrap=False)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], empty: str = "(none)", *,
                wide: bool = False, row_style: Callable[[dict[str, Any]], str | None] | None = None,
                wrap: Iterable[str] | None = None) -> None:
    """Rows as a table; only the columns named in `wrap` (default: all) fold when the table is too wide."""
    out = console(wide=wide)
    if not rows:
        out.print(empty)
        return
    tty = out.is_terminal
    folding = set(wrap) if wrap is not None else {key for key, _ in columns}
    table = Table(box=box.SIMPLE_HEAD if tty else None, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="bold" if tty else "")
    for key, title in columns:
        table.add_column(title, overflow="fold", no_wrap=key not in folding)
    for r in rows:
        table.add_row(*(_cell(r.get(key)) for key, _ in columns), style=row_style(r) if row_style else None)
    out.print(table)


def say(text: str, style: str | None = None) -> None:
    """One line of prose: never cut into a table's width (a terminal wraps it at word ends itself)."""
    console().print(text, style=style, markup=False, soft_wrap=True)


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
    try:
        configure_logging()
    except ValueError as exc:  # LOG_LEVEL=LOUD: say which setting, not a traceback
        _fail(f"LOG_LEVEL or LOG_FORMAT is not valid: {exc}")


# ---------------------------------------------------------------------------- init


@cli.command("init")
@click.option("--database-url", default=None,
              help="where stsync keeps its data (default: SQLite in your user data folder)")
@handled
def init(database_url: str | None) -> None:
    """Write the config file (a new secret key and the database URL); every command reads it."""
    done = init_config(database_url)
    click.echo(f"wrote {done.path} with a new secret key (keep a copy: it decrypts the stored credentials)")
    click.echo(f"database: {mask_url(done.database_url)}")
    click.echo("next: stsync db upgrade, then stsync connect procore ... and stsync connect servicetrade ...")


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@handled
def db_upgrade() -> None:
    """Migrate the database (DATABASE_URL) to the latest schema."""
    from worker.migrate import upgrade

    url = get_settings().database_url
    prepare_database_folder(url)
    upgrade(url)
    click.echo(f"database at {mask_url(url)} is at the latest schema")


# ---------------------------------------------------------------------------- connect


@cli.group()
def connect() -> None:
    """Store the credentials of Procore and ServiceTrade (encrypted), after checking them against the APIs."""


@connect.command("procore")
@click.option("--company-id", type=ID, required=True, help="Procore company id")
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
@click.option("--company-id", type=ID, default=None, help="Procore company of the connection, when several")
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


# ---------------------------------------------------------------------------- projects


@cli.command("projects")
@click.option("--json", "as_json", is_flag=True)
@handled
def projects(as_json: bool) -> None:
    """The company's Procore projects by name, and which are linked to a ServiceTrade job."""
    found = project_service.list_projects()
    data = [p.to_dict() for p in found]
    rows = [{**d, "link": f"linked: job #{d['st_job_number']}" if d["linked"] else "not linked"} for d in data]
    emit(data, as_json, lambda: print_table(rows, [("project_id", "project id"), ("name", "project"),
                                                   ("number", "number"), ("city", "city"), ("link", "ServiceTrade")],
                                            empty="(the company has no active Procore projects)"))


@cli.group()
def project() -> None:
    """Link Procore projects to ServiceTrade and check them."""


@project.command("check")
@click.argument("project_id", type=ID)
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
    say(f"Procore project {d['project_id']}: {d['name']}")
    say(f"  time zone      {d['time_zone']}")
    say(f"  entry mode     {'start/stop times' if d['entry_mode'] == 'start_stop' else 'total hours'}")
    say(f"  Timesheets     {'active' if d['timesheets_active'] else 'off'}: {d['approval']}")
    say(f"  rounding       {d['rounding']}")
    if d["link"]:
        say(f"  ServiceTrade   job #{d['link']['job_number']} ({d['link']['job_type']}) {d['link']['url']}")
    else:
        say("  ServiceTrade   not linked yet")
    say("Labor cost codes:")
    print_table(d["labor_cost_codes"], [("label", "cost code"), ("id", "id")], empty="  (none usable)")
    if d["unusable_cost_codes"]:
        say("Cost codes that can't take labor:")
        print_table(d["unusable_cost_codes"], [("label", "cost code"), ("why", "why"), ("id", "id")])
    if d["technicians"]:
        say("Technicians:")
        print_table(d["technicians"], TECHNICIAN_COLUMNS, row_style=_flagged)
    for b in d["blockers"]:
        say(f"BLOCKS SYNC: {b}", "bold red")
    in_the_table = [t["warning"] for t in d["technicians"] if t.get("warning")]
    for w in d["warnings"]:
        if not any(w.startswith(said) for said in in_the_table):  # a technician's fix is in the table already
            say(f"warning: {w}", "yellow")
    say("ready to sync" if d["ok"] else "not ready: fix the items marked BLOCKS SYNC", None if d["ok"] else "red")


TECHNICIAN_COLUMNS = [("name", "technician"), ("employee_id", "employee id"), ("status", "status"),
                      ("warning", "what to fix")]


def _flagged(row: dict[str, Any]) -> str | None:
    return "red" if row.get("status") not in (None, "ok") else None


@project.command("link")
@click.argument("project_id", type=ID)
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
            say(f"{result.project_name} (Procore project {project_id}) is already linked to ServiceTrade "
                f"job #{result.job_number}: {data['job_url']}")
        else:
            made = ", ".join(result.created) or "nothing (all found from an earlier attempt)"
            say(f"Linked {result.project_name} (Procore project {project_id}) to ServiceTrade job "
                f"#{result.job_number} ({data['job_url']}); created: {made}.")

    emit(data, as_json, show)


@project.command("show")
@click.argument("project_id", type=ID)
@click.option("--json", "as_json", is_flag=True)
@handled
def project_show(project_id: int, as_json: bool) -> None:
    """The stored link of PROJECT_ID: job, zone, mode, rules, schedules, ledger totals."""
    data = project_service.show_project(project_id).to_dict()

    def show() -> None:
        for key, label in PROJECT_FIELDS:
            say(f"  {label:<20}{_cell(data[key])}")
        say("Rules:")
        print_table(data["rules"], RULE_COLUMNS)
        say("Schedules:")
        print_table(data["schedules"], SCHEDULE_COLUMNS)
        say("Ledger: " + (", ".join(f"{k} {v}" for k, v in sorted(data["ledger"].items())) or "empty"))

    emit(data, as_json, show)


PROJECT_FIELDS = [("name", "name"), ("time_zone", "time zone"), ("entry_mode", "entry mode"),
                  ("timesheets_active", "Timesheets tool"), ("lookback_days", "look-back (days)"),
                  ("split_mode", "split at"), ("job_type", "job type"), ("st_job_number", "ServiceTrade job #")]


@cli.command("technicians")
@click.option("--json", "as_json", is_flag=True)
@handled
def technicians(as_json: bool) -> None:
    """Each ServiceTrade technician, their Procore Employee ID and the person it resolves to, or what to fix."""
    data = [t.to_dict() for t in project_service.list_technicians()]
    emit(data, as_json, lambda: print_table(data, TECHNICIAN_COLUMNS, row_style=_flagged))


# ---------------------------------------------------------------------------- rules

RULE_COLUMNS = [("priority", "#"), ("activity", "activity"), ("technician", "technician"),
                ("weekdays", "weekdays"), ("start_window", "start between"), ("cost_code", "cost code"),
                ("cost_type", "cost type"), ("billable", "billable"), ("description", "description")]
COST_CODE_HELP = "cost code by its code (01-100) or id"
COST_TYPE_HELP = "cost type by its name (Labor) or id"


@cli.group()
def rules() -> None:
    """Ordered cost code rules of a project: first match wins."""


@rules.command("add")
@click.argument("project_id", type=ID)
@click.option("--cost-code", "--cost-code-id", "cost_code", required=True, help=COST_CODE_HELP)
@click.option("--cost-type", "--line-item-type-id", "cost_type", default="Labor", show_default=True,
              help=COST_TYPE_HELP)
@click.option("--activity", type=click.Choice([a.value for a in RULE_ACTIVITIES]), default=None)
@click.option("--technician", "st_user_id", type=ID, default=None, help="ServiceTrade user id")
@click.option("--weekdays", default=None, help="mon,tue,...")
@click.option("--start-between", default=None, help="HH:MM-HH:MM local; may wrap midnight (18:00-05:00)")
@click.option("--time-type-id", type=ID, default=None, help="Procore timecard time type")
@click.option("--billable/--not-billable", default=False)
@click.option("--description", default=None)
@click.option("--priority", type=int, default=None, help="1 is tried first; default: after the last rule")
@handled
def rules_add(project_id: int, cost_code: str, cost_type: str, activity: str | None,
              st_user_id: int | None, weekdays: str | None, start_between: str | None, time_type_id: int | None,
              billable: bool, description: str | None, priority: int | None) -> None:
    """Add a rule to PROJECT_ID; only a budgeted Labor cost code and a Labor cost type are accepted."""
    rule = rule_service.add_rule(
        project_id, project_service.resolve_cost_code(project_id, cost_code),
        project_service.resolve_cost_type(cost_type), activity=activity, st_user_id=st_user_id, weekdays=weekdays,
        start_between=start_between, time_type_id=time_type_id, billable=billable, description=description,
        priority=priority)
    say(f"rule #{rule.priority} added to project {project_id}: {rule.cost_code}, {rule.cost_type}")


@rules.command("list")
@click.argument("project_id", type=ID)
@click.option("--json", "as_json", is_flag=True)
@handled
def rules_list(project_id: int, as_json: bool) -> None:
    """The rules of PROJECT_ID in the order they are tried, cost codes by name."""
    data = [r.to_dict() for r in rule_service.list_rules(project_id)]
    emit(data, as_json, lambda: print_table(data, RULE_COLUMNS, empty="(no rules: every interval is unmapped)"))


@rules.command("remove")
@click.argument("project_id", type=ID)
@click.option("--priority", type=int, required=True)
@handled
def rules_remove(project_id: int, priority: int) -> None:
    rule_service.remove_rule(project_id, priority)
    say(f"rule #{priority} removed from project {project_id}")


# ---------------------------------------------------------------------------- schedules

SCHEDULE_COLUMNS = [("id", "id"), ("project_name", "project"), ("kind", "kind"), ("detail", "when"),
                    ("next_run_local", "next run (local)"), ("enabled", "enabled")]


@cli.group()
def schedule() -> None:
    """When a project syncs by itself: nightly, weekly, or after each payroll period (in its local time)."""


@schedule.command("set")
@click.argument("project_id", type=ID)
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
@click.option("--project", "project_id", type=ID, default=None)
@click.option("--json", "as_json", is_flag=True)
@handled
def schedule_list(project_id: int | None, as_json: bool) -> None:
    data = [x.to_dict() for x in schedule_service.list_schedules(project_id)]
    emit(data, as_json, lambda: print_table(data, SCHEDULE_COLUMNS, empty="(no schedules)"))


KIND_OPTION = click.option("--kind", type=click.Choice([k.value for k in ScheduleKind]), required=True)


@schedule.command("remove")
@click.argument("project_id", type=ID)
@KIND_OPTION
@handled
def schedule_remove(project_id: int, kind: str) -> None:
    schedule_service.remove_schedule(project_id, kind)
    click.echo(f"{kind} schedule removed from project {project_id}")


@schedule.command("pause")
@click.argument("project_id", type=ID)
@KIND_OPTION
@handled
def schedule_pause(project_id: int, kind: str) -> None:
    view = schedule_service.pause_schedule(project_id, kind)
    click.echo(f"{kind} schedule of project {project_id} ({view.project_name}) paused")


@schedule.command("resume")
@click.argument("project_id", type=ID)
@KIND_OPTION
@handled
def schedule_resume(project_id: int, kind: str) -> None:
    view = schedule_service.resume_schedule(project_id, kind)
    click.echo(f"{kind} schedule of project {project_id} ({view.project_name}) resumed; next run "
               f"{view.next_run_local}")


# ---------------------------------------------------------------------------- sync


class ProgressShown:
    """What a long sync reports as it goes: a bar on a terminal, a JSON line per step (at most one a second)
    elsewhere, so a log collector sees progress too."""

    def __init__(self) -> None:
        self.out = console(err=True)
        self.bar: Progress | None = None
        self.tasks: dict[str, Any] = {}
        self.last: tuple[str, float] = ("", 0.0)

    def __enter__(self) -> ProgressShown:
        if self.out.is_terminal:
            self.bar = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.out, transient=True)
            self.bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total or None)
            self.bar.update(self.tasks[stage], completed=done, total=total or None)
            return
        now = time.monotonic()
        if stage != self.last[0] or now - self.last[1] >= 1 or (total and done >= total):
            self.last = (stage, now)
            click.echo(json.dumps({"progress": stage, "done": done, "total": total or None}), err=True)


@cli.command("sync")
@click.argument("project_id", type=ID)
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
             lambda: say(f"run {run_id} queued for project {project_id}"))
        return
    with ProgressShown() as progress:
        outcome = syncing.sync_window(project_id, start, end, dry_run=dry_run, progress=progress)
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))
    if outcome.status != RunStatus.succeeded:
        sys.exit(1)


def print_outcome(outcome: RunOutcome) -> None:
    r = outcome.report
    if r is None:
        say(f"run {outcome.run_id}: {outcome.status.value}: {outcome.message}",
            "red" if outcome.status != RunStatus.succeeded else None)
        return
    verb = "would post" if r.dry_run else "posted"
    say(f"{r.project_name} (Procore project {r.project_id}), {r.window_start} to {r.window_end}"
        + (": DRY RUN, nothing changed" if r.dry_run else ""))
    say(f"  {verb:<14}{r.posted} entries, {r.hours} hours")
    if r.posted_before_window:
        say(f"  of which      {r.posted_before_window} entries ({r.hours_before_window} hours) are dated before "
            f"{r.window_start}: the look-back re-checks the {r.lookback_days} days before the window for late "
            "clock-outs and edits")
    problems = r.problem_lines()
    if not r.dry_run and r.posted == 0 and r.procore_writes == 0 and not problems:
        say("  nothing new to post: Procore already has every entry of this window")
    for label, value in (("updated", r.updated), ("deleted", r.deleted), ("needs review", r.needs_review),
                         ("failed", r.failed), ("unknown", r.unknown), ("unchanged", r.unchanged),
                         ("after window", r.later)):
        if value:
            say(f"  {label:<14}{value}")
    for reason, n in sorted(r.skipped.items()):
        say(f"  skipped       {n} {syncing.SKIP_WORDS.get(reason, reason)} ({reason})")
    for line in problems:
        say(f"  {line}", "red")
    say(f"  budget        {r.budget_note}")
    if outcome.message and not any(line in outcome.message for line in problems):
        say(f"  note          {outcome.message}")


# The events table: fits 120 columns; `--wide` adds the clock event id, the source key and full cost code names.
EVENT_COLUMNS = [("number", "#"), ("technician", "technician"), ("day", "date"), ("activity", "activity"),
                 ("actual", "actual"), ("rounded", "rounded"), ("hours", "hours"), ("code", "cost code"),
                 ("status", "status"), ("clock_event_id", "event id")]
WIDE_EVENT_COLUMNS = [*EVENT_COLUMNS[:2], ("date", "date"), *EVENT_COLUMNS[3:7], ("cost_code", "cost code"),
                      ("status", "status"),
                      ("clock_event_id", "event id"), ("source_key", "source key")]


@cli.command("events")
@click.argument("project_id", type=ID)
@click.option("--start", default=None, help="first local date, YYYY-MM-DD (default: --end)")
@click.option("--end", default=None, help="last local date (default: today in the project's zone)")
@click.option("--wide", is_flag=True, help="every column, however wide")
@click.option("--json", "as_json", is_flag=True)
@handled
def events(project_id: int, start: str | None, end: str | None, wide: bool, as_json: bool) -> None:
    """The clock events of a window, numbered, with actual and rounded times and what stsync did with each."""
    view = syncing.clock_events(project_id, start, end)
    emit(view.to_dict(), as_json, lambda: print_events(view, wide=wide))


def print_events(view: ClockEventsView, *, wide: bool = False, rows: Sequence[EventRow] | None = None) -> None:
    say(f"{view.project_name} (Procore project {view.project_id}), {view.window.start} to {view.window.end}")
    say(f"Rounding: {view.rounding}")
    say(f"Entries: {view.approval}")
    shown = list(view.rows if rows is None else rows)
    print_table([_event_cells(r) for r in shown], WIDE_EVENT_COLUMNS if wide else EVENT_COLUMNS,
                empty="(no clock events in this window)", wide=wide, wrap=() if wide else ("technician", "status"),
                row_style=lambda r: "red" if not r["technician_ok"] else None)
    flagged = {r.technician: r.technician_problem for r in shown if not r.technician_ok}
    for name, problem in sorted(flagged.items(), key=lambda x: x[0] or ""):
        say(f"flagged: {name}: {problem or 'no usable Procore Employee ID'} (left out until fixed)", "red")
    if view.lookback_rechecked:
        say(f"also re-checked: {view.lookback_rechecked} entries of the {view.lookback_days} days before "
            f"{view.window.start} (edits and deletions there are synced too)")
    for hand in view.hand_entries:
        say(f"typed into Procore by hand: {hand.technician} on {hand.date}, {hand.hours or '?'} hours "
            "(stsync leaves it alone; check it is not the same work)", "yellow")
    for line in view.problems:
        say(line, "red")


def _event_cells(r: EventRow) -> dict[str, Any]:
    return {**r.to_dict(), "actual": _span(r.actual_in, r.actual_out), "rounded": _span(r.rounded_in, r.rounded_out),
            "code": (r.cost_code or "").split(" ", 1)[0] or None, "day": r.date.strftime("%m-%d") if r.date else None}


def _span(start: str | None, end: str | None) -> str:
    return f"{start or '?'}-{end or '?'}"


@cli.command("sync-events")
@click.argument("project_id", type=ID)
@click.option("--row", "row_numbers", type=int, multiple=True, help="row number of `stsync events` (repeat)")
@click.option("--technician", "technician_names", multiple=True, help="every postable row of this technician")
@click.option("--all", "all_rows", is_flag=True, help="every postable row of the window")
@click.option("--event", "event_ids", type=ID, multiple=True, help="clock event id (repeat)")
@click.option("--cost-code", "--cost-code-id", "cost_code", default=None, help=COST_CODE_HELP)
@click.option("--cost-type", "--line-item-type-id", "cost_type", default=None,
              help=COST_TYPE_HELP + " (default: the only Labor cost type)")
@click.option("--start", default=None, help="first local date of the events table (default: --end)")
@click.option("--end", default=None, help="last local date (default: today in the project's zone)")
@click.option("--json", "as_json", is_flag=True)
@handled
def sync_events(project_id: int, row_numbers: tuple[int, ...], technician_names: tuple[str, ...], all_rows: bool,
                event_ids: tuple[int, ...], cost_code: str | None, cost_type: str | None, start: str | None,
                end: str | None, as_json: bool) -> None:
    """The manual flow: post chosen clock events of PROJECT_ID with one cost code. Choose rows of `stsync events`
    (same --start/--end), a technician, all, or event ids; on a terminal, without a choice, it asks."""
    ask = interactive() and not as_json
    view = None
    if row_numbers or technician_names or all_rows or not event_ids or not (cost_code and cost_type):
        view = syncing.clock_events(project_id, start, end)
    chosen = list(event_ids)
    if view is not None:
        rows = pick_rows(view, row_numbers, technician_names, all_rows)
        if not rows and not event_ids:
            if not ask:
                raise InvalidArgument("choose events with --row N (see `stsync events`), --technician NAME, --all "
                                      "or --event ID")
            rows = ask_rows(view)
        chosen += [r.clock_event_id for r in rows if r.clock_event_id is not None]
    cost_code_id = _cost_code(project_id, cost_code, view, ask)
    cost_type_id = _cost_type(cost_type, view, ask)
    outcome = syncing.sync_selected(project_id, list(dict.fromkeys(chosen)), cost_code_id, cost_type_id, start, end)
    emit(outcome.to_dict(), as_json, lambda: print_manual(outcome))
    if outcome.status != RunStatus.succeeded:
        sys.exit(1)


def interactive() -> bool:
    """A person at a terminal, who can be asked."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def pick_rows(view: ClockEventsView, numbers: Iterable[int], technicians: Iterable[str], every: bool) -> list[EventRow]:
    """Rows by number, by technician (part of the name) or all postable ones; a row that can't be posted is
    refused by number and name, with its status."""
    by_number = {r.number: r for r in view.rows}
    picked: list[EventRow] = []
    for n in numbers:
        row = by_number.get(n)
        if row is None:
            span = f"rows 1-{len(view.rows)}" if view.rows else "no rows"
            raise InvalidArgument(f"--row {n} is not in the events table of {view.window.start} to "
                                  f"{view.window.end} ({span}); use the same --start and --end as `stsync events`")
        if not row.selectable:
            raise InvalidArgument(f"--row {n} ({row.technician} on {row.date}) can't be posted: {row.status}")
        picked.append(row)
    for name in technicians:
        theirs = [r for r in view.rows if name.lower() in (r.technician or "").lower()]
        postable = [r for r in theirs if r.selectable]
        if not postable:
            why = "no rows" if not theirs else "no row that can be posted"
            raise InvalidArgument(f"--technician {name!r} has {why} in {view.window.start} to {view.window.end}")
        picked += postable
    if every:
        picked += [r for r in view.rows if r.selectable]
        if not picked:
            raise InvalidArgument(f"no row of {view.window.start} to {view.window.end} can be posted")
    return list({r.number: r for r in picked}.values())


def ask_rows(view: ClockEventsView) -> list[EventRow]:
    postable = [r for r in view.rows if r.selectable]
    if not postable:
        raise InvalidArgument(f"no row of {view.window.start} to {view.window.end} can be posted")
    print_events(view)
    answer = Prompt.ask("Rows to post (e.g. 1,3,5-7 or all)", console=console())
    numbers = {r.number for r in postable} if answer.strip().lower() == "all" else _numbers(answer)
    return pick_rows(view, sorted(numbers), (), False)


def _numbers(text: str) -> set[int]:
    found: set[int] = set()
    for part in text.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise InvalidArgument(f"rows must look like 1,3,5-7 or all, got {text!r}")
        found.update(range(int(first), int(last or first) + 1))
    return found


def _cost_code(project_id: int, given: str | None, view: ClockEventsView | None, ask: bool) -> int:
    if given:
        return project_service.resolve_cost_code(project_id, given)
    choices = view.cost_codes if view is not None else []
    listed = "\n".join(f"  {c.label}" for c in choices) or "  (none: the project has no budgeted Labor cost code)"
    if not ask or not choices:
        raise InvalidArgument(f"give --cost-code (by its code, e.g. 01-100). Labor cost codes:\n{listed}")
    say("Labor cost codes:")
    for n, c in enumerate(choices, start=1):
        say(f"  {n}. {c.label}")
    picked = Prompt.ask("Cost code", choices=[str(n) for n in range(1, len(choices) + 1)], console=console())
    return choices[int(picked) - 1].id


def _cost_type(given: str | None, view: ClockEventsView | None, ask: bool) -> int:
    if given:
        return project_service.resolve_cost_type(given)
    choices = view.cost_types if view is not None else []
    if len(choices) == 1:
        return choices[0].id
    names = ", ".join(c.label for c in choices) or "(none)"
    if not ask or not choices:
        raise InvalidArgument(f"give --cost-type (by its name). Labor cost types: {names}")
    picked = Prompt.ask("Cost type", choices=[c.label for c in choices], console=console())
    return next(c.id for c in choices if c.label == picked)


def print_manual(outcome: RunOutcome) -> None:
    """Each chosen entry by technician, day and hours: posted, or why not."""
    r = outcome.report
    if r is None or not r.entries:
        print_outcome(outcome)
        return
    say(f"{r.project_name} (Procore project {r.project_id}): {r.posted} posted, {r.hours} hours")
    for e in r.entries:
        status = e["status"].replace("_", " ")
        why = f": {e['message']}" if e.get("message") else ""
        say(f"  {status:<8}{e['technician']} on {e['date']}, {e['hours'] or '?'} hours, "
            f"{e.get('cost_code') or 'cost code ' + str(e.get('cost_code_id'))}{why}",
            None if e["status"] == LedgerStatus.posted.value else "red")
    for line in r.problem_lines():
        say(f"  {line}", "red")
    say(f"  budget  {r.budget_note}")


# ---------------------------------------------------------------------------- history


class ListByDefault(click.Group):
    """A group whose first word may be a project id: `stsync ledger 456 ...` is `stsync ledger show 456 ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@cli.group("ledger", cls=ListByDefault)
def ledger() -> None:
    """What stsync posted, skipped or holds for review (`stsync ledger PROJECT_ID`), and rebuilding it."""


@ledger.command("show")
@click.argument("project_id", type=ID)
@click.option("--status", type=click.Choice([s.value for s in LedgerStatus]), default=None)
@click.option("--technician", default=None, help="part of a technician's name")
@click.option("--start", default=None, help="first work date, YYYY-MM-DD")
@click.option("--end", default=None, help="last work date, YYYY-MM-DD")
@click.option("--limit", type=int, default=500)
@click.option("--wide", is_flag=True, help="every column, however wide")
@click.option("--json", "as_json", is_flag=True)
@handled
def ledger_show(project_id: int, status: str | None, technician: str | None, start: str | None, end: str | None,
                limit: int, wide: bool, as_json: bool) -> None:
    """The ledger rows of PROJECT_ID: what stsync posted, skipped, or holds for review, and why."""
    data = [r.to_dict() for r in history.list_ledger(project_id, status=status, technician=technician, start=start,
                                                      end=end, limit=limit)]
    emit(data, as_json, lambda: print_table(data, WIDE_LEDGER_COLUMNS if wide else LEDGER_COLUMNS, wide=wide,
                                            wrap=("technician", "cost_code", "detail")))


@ledger.command("rebuild")
@click.argument("project_id", type=ID)
@click.option("--start", required=True, help="first local date, YYYY-MM-DD")
@click.option("--end", required=True, help="last local date, YYYY-MM-DD")
@click.option("--json", "as_json", is_flag=True)
@handled
def ledger_rebuild(project_id: int, start: str, end: str, as_json: bool) -> None:
    """Rebuild the ledger of a window from Procore and ServiceTrade (after a lost or restored database); nothing
    is sent to Procore."""
    done = syncing.rebuild_ledger(project_id, start, end)

    def show() -> None:
        say(f"{done.project_name} (Procore project {done.project_id}), {done.window.start} to {done.window.end}: "
            "ledger rebuilt from Procore, nothing sent")
        say(f"  adopted                {done.adopted} entries found in Procore")
        say(f"  changed in Procore     {done.changed_in_procore} (marked failed, named in `stsync ledger`)")
        say(f"  not stsync's           {done.unmatched_in_procore} entries in Procore match no clock event")
        say(f"  not in Procore yet     {done.not_in_procore} (the next sync posts them)")

    emit(done.to_dict(), as_json, show)


LEDGER_COLUMNS = [("technician", "technician"), ("date", "date"), ("activity", "activity"), ("hours", "hours"),
                  ("cost_code", "cost code"), ("status", "status"), ("detail", "detail")]
WIDE_LEDGER_COLUMNS = [("source_key", "source"), *LEDGER_COLUMNS[:6], ("reason", "reason"), ("detail", "detail"),
                       ("cost_type", "cost type"), ("procore_entry_id", "Procore id"),
                       ("approval_status", "approval")]


@cli.command("runs")
@click.option("--project", "project_id", type=ID, default=None)
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
@handled
def runs(project_id: int | None, limit: int, as_json: bool) -> None:
    """Recent sync runs: trigger, window, status, counts and duration."""
    data = [r.to_dict() for r in history.list_runs(project_id, limit)]
    emit(data, as_json, lambda: print_table(data, RUN_COLUMNS, empty="(no runs yet)", wrap=("project_name", "error"),
                                            row_style=lambda r: "red" if r["error"] else None))


RUN_COLUMNS = [("id", "run"), ("project_name", "project"), ("trigger", "trigger"), ("window", "window"),
               ("status", "status"), ("posted", "posted"), ("hours", "hours"), ("skipped", "skipped"),
               ("failed", "failed"), ("duration_s", "secs"), ("error", "note")]


@cli.command("retry")
@click.argument("project_id", type=ID)
@click.option("--json", "as_json", is_flag=True)
@handled
def retry(project_id: int, as_json: bool) -> None:
    """Send the failed entries of PROJECT_ID again (after fixing what Procore refused), and look up unknown ones."""
    outcome = syncing.retry_failed(project_id)
    if outcome is None:
        emit({"retried": 0}, as_json, lambda: say(f"project {project_id} has nothing to retry"))
        return
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))
    if outcome.status != RunStatus.succeeded:
        sys.exit(1)


# ---------------------------------------------------------------------------- keys, console, users, digests


@cli.command("rotate-key")
@handled
def rotate_key() -> None:
    """Re-encrypt every stored secret with the newest key of STSYNC_SECRET_KEYS (then drop the old key)."""
    n = connection_service.rotate_key()
    say(f"{n} stored secret(s) re-encrypted with the newest key; the older keys can be removed from "
        "STSYNC_SECRET_KEYS now")


@cli.command("web")
@click.option("--bind", default=None, help="host:port (default WEB_BIND, 127.0.0.1:8000)")
@handled
def web(bind: str | None) -> None:
    """Serve the web console (gunicorn) until stopped."""
    from worker.web.app import serve

    serve(_bind(bind) if bind else None)


def _bind(text: str) -> str:
    """host:port, checked before gunicorn starts (its own refusal is a page of traceback)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"--bind must look like 127.0.0.1:8000 (host:port, port 1-65535), got {text!r}")
    return text


@cli.group()
def user() -> None:
    """People who sign in to the web console."""


@user.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "payroll"]), required=True,
              help="admin: everything; payroll: projects, events, syncs, runs, the ledger")
@click.option("--password", envvar="STSYNC_USER_PASSWORD", prompt=True, hide_input=True, confirmation_prompt=True,
              help="asked for (hidden) when not in STSYNC_USER_PASSWORD")
@handled
def user_add(email: str, role: str, password: str) -> None:
    """Add a console user (or give an existing one a new password and role)."""
    from worker.service.users import add_user

    added = add_user(email, password, role)
    say(f"{added.email} can sign in to the console as {added.role}")


@cli.command("digest")
@click.option("--print", "print_it", is_flag=True, help="show the digest here")
@click.option("--send", is_flag=True, help="mail it now to the company's recipients (or --to)")
@click.option("--to", "recipients", multiple=True, help="an address to send it to (repeat)")
@click.option("--company-id", type=ID, default=None, help="the Procore company, when several are connected")
@handled
def digest(print_it: bool, send: bool, recipients: tuple[str, ...], company_id: int | None) -> None:
    """The daily digest: yesterday's posted hours and what needs a person."""
    from worker.service import digest as digest_service

    if print_it == send:
        raise InvalidArgument("give exactly one of --print and --send")
    if print_it:
        click.echo(digest_service.build_digest(company_id=company_id, look_up_names=True).as_text())
        return
    sent = digest_service.send_now(company_id=company_id, recipients=recipients or None)
    if not sent.sent:
        _fail(f"the digest of {sent.company_name} was not sent: {sent.error}")
    say(f"digest of {sent.company_name} for {sent.day} sent to {', '.join(sent.recipients)}")


@cli.command("digest-settings")
@click.option("--to", "recipients", default=None, help="who gets the daily digest: comma-separated addresses")
@click.option("--at", "at_time", default=None, metavar="HH:MM", help="local time it goes out (default 07:00)")
@click.option("--zone", default=None, help="its time zone, e.g. America/Denver (default: most projects' zone)")
@click.option("--company-id", type=ID, default=None, help="the Procore company, when several are connected")
@handled
def digest_settings(recipients: str | None, at_time: str | None, zone: str | None, company_id: int | None) -> None:
    """Who gets a company's daily digest, and when; shows them when nothing is given."""
    from worker.service import digest as digest_service

    saved = digest_service.set_digest(recipients, at=at_time, time_zone=zone, company_id=company_id)
    to = ", ".join(saved.recipients) or "nobody yet (give --to)"
    say(f"the daily digest of {saved.company_name} goes to {to} at {saved.local_time}"
        + (f" ({saved.time_zone})" if saved.time_zone else " (the zone most of its projects use)"))


@cli.group()
def webhooks() -> None:
    """Changes pushed by ServiceTrade and Procore to the console, so syncs start within a minute."""


@webhooks.command("register")
@click.argument("source", type=click.Choice(["servicetrade", "procore"]))
@click.option("--url", required=True, help="the console's public https URL")
@click.option("--company-id", type=ID, default=None)
@handled
def webhooks_register(source: str, url: str, company_id: int | None) -> None:
    """Create (or update) our webhook at SOURCE, delivering to the console at URL."""
    from worker.service import webhooks as webhook_service

    register = webhook_service.register_servicetrade if source == "servicetrade" else webhook_service.register_procore
    done = register(url, company_id=company_id)
    say(f"{source} webhook {done.hook_id} {done.action}: delivers {', '.join(done.events)} to {done.url}")


@webhooks.command("status")
@click.option("--company-id", type=ID, default=None)
@click.option("--json", "as_json", is_flag=True)
@handled
def webhooks_status(company_id: int | None, as_json: bool) -> None:
    """Whether each webhook is registered, its last delivery and deliveries by outcome."""
    from worker.service import webhooks as webhook_service

    data = [h.to_dict() for h in webhook_service.status(company_id)]
    rows = [{**d, "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(d["outcomes"].items())) or "none"}
            for d in data]
    emit(data, as_json, lambda: print_table(rows, [("source", "source"), ("registered", "registered"),
                                                   ("detail", "detail"), ("last_received_at", "last delivery"),
                                                   ("outcomes", "deliveries")]))


def main() -> None:
    cli(prog_name="stsync")


if __name__ == "__main__":
    main()
