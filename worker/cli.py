"""The `stsync` command (DESIGN §7): tables for people, JSON for programs, non-zero exit on failure."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schedules.nextrun import next_run
from schedules.periods import Period
from worker.clients.errors import ApiError, CredentialsRejected, NeedsReauthorization
from worker.clients.procore import MemoryTokenStore, ProcoreClient, TokenSet
from worker.clients.servicetrade import ServiceTradeClient
from worker.connections import NoConnection, get_connection, procore_client, servicetrade_client
from worker.crypto import SecretKeyMismatch
from worker.db import ProjectBusy, session_scope
from worker.enums import LedgerStatus, PayrollKind, RunStatus, RunTrigger
from worker.logging import configure_logging, register_secret
from worker.models import Connection, CostCodeRule, LedgerEntry, ProjectLink, SyncRun
from worker.projects import LinkRefused, check_project, link_project, technician_dict
from worker.settings import MissingSecretKey, get_settings
from worker.sync.pipeline import Selection
from worker.sync.rules import parse_weekdays, parse_window
from worker.sync.runner import RunOutcome, create_run, execute_run, find_link, parse_day

EXPECTED = (
    ApiError, NoConnection, MissingSecretKey, SecretKeyMismatch, LinkRefused, LookupError, ValueError,
    ProjectBusy, NeedsReauthorization,
)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures become one clear message and exit status 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
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
@click.option("--client-secret", required=True)
@click.option("--refresh-token", default=None, help="for a connection that a Procore user authorised")
@handled
def connect_procore(company_id: int, client_id: str, client_secret: str, refresh_token: str | None) -> None:
    settings = get_settings()
    settings.secret_key()
    for secret in (client_secret, refresh_token):
        register_secret(secret)
    initial = TokenSet("", refresh_token, datetime(1970, 1, 1, tzinfo=UTC)) if refresh_token else None
    store = MemoryTokenStore(initial)
    client = ProcoreClient(
        settings.procore_api_url, settings.procore_login_url, company_id,
        client_id=client_id, client_secret=client_secret, token_store=store, timeout=settings.http_timeout_s,
    )
    config = client.company_configuration()
    tokens = store.load()
    with session_scope() as s:
        conn = s.scalars(select(Connection).where(Connection.procore_company_id == company_id)).one_or_none()
        if conn is None:
            conn = Connection(procore_company_id=company_id)
            s.add(conn)
        conn.procore_client_id = client_id
        conn.procore_client_secret = client_secret
        conn.procore_access_token = tokens.access_token if tokens else None
        conn.procore_refresh_token = tokens.refresh_token if tokens else None
        conn.procore_token_expires_at = tokens.expires_at if tokens else None
        conn.procore_needs_reauth = None
    grant = "a user's refresh token" if refresh_token else "client credentials"
    in_out = len(config.get("projects_timecard_in_out_enabled") or [])
    click.echo(f"Procore company {company_id} connected with {grant} ({in_out} project(s) record start/stop times).")


@connect.command("servicetrade")
@click.option("--username", default=None)
@click.option("--password", default=None)
@click.option("--client-id", default=None, help="OAuth client id (instead of username/password)")
@click.option("--client-secret", default=None)
@click.option("--company-id", type=int, default=None, help="Procore company of the connection, when several")
@handled
def connect_servicetrade(
    username: str | None, password: str | None, client_id: str | None, client_secret: str | None,
    company_id: int | None,
) -> None:
    settings = get_settings()
    settings.secret_key()
    for secret in (password, client_secret):
        register_secret(secret)
    if client_id or client_secret:
        if not (client_id and client_secret):
            raise ValueError("--client-id and --client-secret go together")
        client = ServiceTradeClient(settings.servicetrade_api_url, client_id=client_id, client_secret=client_secret,
                                    timeout=settings.http_timeout_s)
        kind = "oauth"
    else:
        if not (username and password):
            raise ValueError("give --username and --password (or --client-id and --client-secret for OAuth)")
        client = ServiceTradeClient(settings.servicetrade_api_url, username=username, password=password,
                                    timeout=settings.http_timeout_s)
        kind = "session"
    me = client.whoami()
    with session_scope() as s:
        conn = get_connection(s, company_id)
        conn.st_auth_kind = kind
        conn.st_username, conn.st_password = (username, password) if kind == "session" else (None, None)
        conn.st_client_id, conn.st_client_secret = (client_id, client_secret) if kind == "oauth" else (None, None)
        conn.st_session_token = client.session_token
        conn.st_vendor_company_id = int(me["company_id"])
    click.echo(f"ServiceTrade account {me.get('company_name')} ({me['company_id']}) connected as {me.get('name')}.")


# ---------------------------------------------------------------------------- project


@cli.group()
def project() -> None:
    """Link Procore projects to ServiceTrade and check them."""


def _clients(s: Session, need_st: bool = True) -> tuple[Connection, ProcoreClient, ServiceTradeClient | None]:
    conn = get_connection(s)
    if conn.procore_needs_reauth:
        raise NeedsReauthorization("procore", "-", "stored connection", None, conn.procore_needs_reauth)
    return conn, procore_client(conn), servicetrade_client(conn) if need_st else None


@project.command("check")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def project_check(project_id: int, as_json: bool) -> None:
    """Everything that would stop a sync of PROJECT_ID, each named; exit 1 when something blocks."""
    with session_scope() as s:
        conn, procore, st = _clients(s)
        link = s.scalars(select(ProjectLink).where(ProjectLink.procore_project_id == project_id)).one_or_none()
        result = check_project(procore, st, project_id, link=link)
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
    with session_scope() as s:
        conn, procore, st = _clients(s)
        result = link_project(s, conn, procore, st, project_id, job_type, lookback_days=lookback_days,
                              split_mode=split_mode)
    data = result.to_dict()

    def show() -> None:
        if result.already_linked:
            click.echo(f"Procore project {project_id} is already linked to ServiceTrade job #{result.job_number}: "
                       f"{data['job_url']}")
        else:
            made = ", ".join(result.created) or "nothing (all found from an earlier attempt)"
            click.echo(f"Linked Procore project {project_id} to ServiceTrade job #{result.job_number} "
                       f"({data['job_url']}); created: {made}.")

    emit(data, as_json, show)


@project.command("show")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def project_show(project_id: int, as_json: bool) -> None:
    """The stored link of PROJECT_ID: job, zone, mode, rules, schedules, ledger totals."""
    from worker.models import Schedule

    with session_scope() as s:
        link = find_link(s, project_id)
        counts = dict(s.execute(select(LedgerEntry.status, func.count()).where(
            LedgerEntry.project_link_id == link.id).group_by(LedgerEntry.status)).all())
        schedules = s.scalars(select(Schedule).where(Schedule.project_link_id == link.id)).all()
        data = {
            "project_id": project_id, "name": link.name, "time_zone": link.time_zone,
            "entry_mode": link.entry_mode.value, "timesheets_active": link.timesheets_active,
            "lookback_days": link.lookback_days, "split_mode": link.split_mode.value, "job_type": link.job_type,
            "st_job_id": link.st_job_id, "st_job_number": link.st_job_number,
            "rules": [_rule_dict(r) for r in link.rules],
            "schedules": [_schedule_dict(x, link.time_zone) for x in schedules],
            "ledger": {str(k.value if hasattr(k, "value") else k): v for k, v in counts.items()},
        }

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
    from worker.store.technicians import store_technicians
    from worker.sync.context import fetch_technicians

    with session_scope() as s:
        conn, procore, st = _clients(s)
        resolved = fetch_technicians(st, procore)
        store_technicians(s, conn.id, resolved, datetime.now(UTC))
    data = [technician_dict(t) for t in resolved]
    emit(data, as_json, lambda: print_table(data, [
        ("st_user_id", "ServiceTrade id"), ("name", "technician"), ("employee_id", "employee id"),
        ("party_id", "Procore person"), ("status", "status"), ("warning", "what to fix")]))


# ---------------------------------------------------------------------------- rules

RULE_COLUMNS = [("priority", "priority"), ("activity", "activity"), ("st_user_id", "technician"),
                ("weekdays", "weekdays"), ("start_window", "start between"), ("cost_code_id", "cost code"),
                ("line_item_type_id", "cost type"), ("timecard_time_type_id", "time type"), ("billable", "billable"),
                ("description", "description")]


def _rule_dict(r: CostCodeRule) -> dict[str, Any]:
    return {"id": r.id, "priority": r.priority, "activity": r.activity, "st_user_id": r.st_user_id,
            "weekdays": r.weekdays, "start_window": r.start_window, "cost_code_id": r.cost_code_id,
            "line_item_type_id": r.line_item_type_id, "timecard_time_type_id": r.timecard_time_type_id,
            "billable": r.billable, "description": r.description}


@cli.group()
def rules() -> None:
    """Ordered cost code rules of a project: first match wins."""


@rules.command("add")
@click.argument("project_id", type=int)
@click.option("--cost-code-id", type=int, required=True)
@click.option("--line-item-type-id", type=int, required=True)
@click.option("--activity", type=click.Choice(["onsite", "enroute", "offsite"]), default=None)
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
    from worker.sync.context import labor_codes

    if weekdays:
        weekdays = _weekday_text(parse_weekdays(weekdays))
    if start_between:
        parse_window(start_between)
    with session_scope() as s:
        link = find_link(s, project_id)
        _conn, procore, _st = _clients(s, need_st=False)
        codes = labor_codes(procore.cost_codes(project_id), procore.line_item_types())
        valid = "\n".join(
            f"  cost code {cid} {c.get('full_code') or c.get('code')} {c.get('name')}" for cid, c in codes.usable.items()
        ) or "  (none: the project has no budgeted Labor cost code)"
        types = "\n".join(f"  cost type {tid} {t.get('name')}" for tid, t in codes.labor_line_item_types.items())
        if cost_code_id not in codes.usable:
            why = codes.unusable.get(cost_code_id, (None, "not a cost code of this project"))[1]
            raise ValueError(f"cost code {cost_code_id} can't take labor hours ({why}). Valid choices:\n{valid}")
        if line_item_type_id not in codes.labor_line_item_types:
            raise ValueError(f"cost type {line_item_type_id} is not a Labor cost type. Valid choices:\n{types}")
        taken = {r.priority for r in link.rules}
        if priority is None:
            priority = max(taken, default=0) + 1
        elif priority in taken:
            raise ValueError(f"priority {priority} is taken on project {project_id}; remove that rule or pick another")
        rule = CostCodeRule(project_link_id=link.id, priority=priority, activity=activity, st_user_id=st_user_id,
                            weekdays=weekdays, start_window=start_between, cost_code_id=cost_code_id,
                            line_item_type_id=line_item_type_id, timecard_time_type_id=time_type_id,
                            billable=billable, description=description)
        s.add(rule)
    click.echo(f"rule #{priority} added to project {project_id}")


def _weekday_text(days: Iterable[int]) -> str:
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    return ",".join(names[d] for d in sorted(days))


@rules.command("list")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def rules_list(project_id: int, as_json: bool) -> None:
    with session_scope() as s:
        data = [_rule_dict(r) for r in find_link(s, project_id).rules]
    emit(data, as_json, lambda: print_table(data, RULE_COLUMNS, empty="(no rules: every interval is unmapped)"))


@rules.command("remove")
@click.argument("project_id", type=int)
@click.option("--priority", type=int, required=True)
@handled
def rules_remove(project_id: int, priority: int) -> None:
    with session_scope() as s:
        link = find_link(s, project_id)
        rule = next((r for r in link.rules if r.priority == priority), None)
        if rule is None:
            raise LookupError(f"project {project_id} has no rule #{priority}")
        s.delete(rule)
    click.echo(f"rule #{priority} removed from project {project_id}")


# ---------------------------------------------------------------------------- schedules

SCHEDULE_COLUMNS = [("id", "id"), ("project_id", "project"), ("kind", "kind"), ("detail", "when"),
                    ("next_run_local", "next run (local)"), ("next_run_at", "next run (UTC)"), ("enabled", "enabled")]


def _schedule_dict(x: Any, zone: str) -> dict[str, Any]:
    detail = x.local_time.strftime("%H:%M")
    if x.kind.value == "weekly":
        detail = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][x.weekday] + "@" + detail
    if x.kind.value == "payroll":
        detail = f"{x.payroll_kind} at {detail}" + (f", anchor {x.anchor_date}" if x.anchor_date else "") + (
            f", +{x.grace_days} day(s) grace" if x.grace_days else "")
    return {"id": x.id, "kind": x.kind.value, "detail": detail, "next_run_at": x.next_run_at,
            "next_run_local": x.next_run_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z"),
            "enabled": x.enabled}


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
    from worker.dispatch import spec_of
    from worker.models import Schedule, ScheduleKind

    chosen = [x for x in (nightly_at, weekly_at, payroll) if x]
    if len(chosen) != 1:
        raise ValueError("give exactly one of --nightly HH:MM, --weekly DAY@HH:MM, --payroll KIND --at HH:MM")
    weekday = None
    if nightly_at:
        kind, at = ScheduleKind.nightly, _hhmm(nightly_at, "--nightly")
    elif weekly_at:
        day, _, hm = weekly_at.partition("@")
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        if day.lower()[:3] not in days or not hm:
            raise ValueError(f"--weekly must look like fri@18:00, got {weekly_at!r}")
        kind, at, weekday = ScheduleKind.weekly, _hhmm(hm, "--weekly"), days.index(day.lower()[:3])
    else:
        if not at_time:
            raise ValueError("--payroll needs --at HH:MM (the local time of the run)")
        kind, at = ScheduleKind.payroll, _hhmm(at_time, "--at")
    anchor_d = parse_day(anchor, "--anchor")
    if payroll == "biweekly" and anchor_d is None:
        raise ValueError("a biweekly payroll needs --anchor YYYY-MM-DD, the first day of any one period")
    if grace_days < 0:
        raise ValueError("--grace-days can't be negative")
    now = datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, project_id)
        sched = s.scalars(select(Schedule).where(Schedule.project_link_id == link.id,
                                                 Schedule.kind == kind)).one_or_none()
        if sched is None:
            sched = Schedule(project_link_id=link.id, kind=kind, next_run_at=now)
            s.add(sched)
        sched.local_time, sched.weekday, sched.payroll_kind = at, weekday, payroll
        sched.anchor_date, sched.grace_days, sched.enabled = anchor_d, grace_days, True
        occurrence = next_run(spec_of(sched), ZoneInfo(link.time_zone), now)
        sched.next_run_at = occurrence.at_utc
        s.flush()
        data = _schedule_dict(sched, link.time_zone) | {"project_id": project_id,
                                                        "window": [str(occurrence.window.start),
                                                                   str(occurrence.window.end)]}
    emit(data, as_json, lambda: click.echo(
        f"project {project_id}: {data['kind']} {data['detail']}; next run {data['next_run_local']} "
        f"covering {data['window'][0]} to {data['window'][1]}"))


def _hhmm(value: str, name: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a local time as HH:MM, got {value!r}") from None


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
@handled
def schedule_list(as_json: bool) -> None:
    from worker.models import Schedule

    with session_scope() as s:
        data = [
            _schedule_dict(x, link.time_zone) | {"project_id": link.procore_project_id}
            for x, link in s.execute(select(Schedule, ProjectLink).join(ProjectLink).order_by(Schedule.next_run_at))
        ]
    emit(data, as_json, lambda: print_table(data, SCHEDULE_COLUMNS, empty="(no schedules)"))


# ---------------------------------------------------------------------------- sync


def _window(link: ProjectLink, start: str | None, end: str | None, now: datetime) -> Period:
    today = now.astimezone(ZoneInfo(link.time_zone)).date()
    end_d = parse_day(end, "--end") or today
    start_d = parse_day(start, "--start") or end_d
    if start_d > end_d:
        raise ValueError(f"--start {start_d} is after --end {end_d}")
    return Period(start_d, end_d)


def _progress(stage: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        click.echo(f"\r{stage}: {done}/{total}" if total else f"\r{stage}: {done}", err=True, nl=False)


def _run_now(link_id: int, window: Period, trigger: RunTrigger, *, dry_run: bool = False,
             selection: Selection | None = None) -> RunOutcome:
    now = datetime.now(UTC)
    with session_scope() as s:
        link = s.get(ProjectLink, link_id)
        assert link is not None
        run = create_run(s, link, trigger=trigger, window=window, dry_run=dry_run, selection=selection, now=now)
        assert run is not None
        run_id = run.id
    outcome = execute_run(run_id, now=now, progress=_progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    return outcome


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
    now = datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, project_id)
        window = _window(link, start, end, now)
        link_id = link.id
        if enqueue:
            run = create_run(s, link, trigger=RunTrigger.cli, window=window, dry_run=dry_run, now=now)
            assert run is not None
            run.enqueued_at = now
            run_id = run.id
    if enqueue:
        from tasks.sync import run as run_task

        run_task.delay(run_id=run_id)
        emit({"run_id": run_id, "status": "queued"}, as_json,
             lambda: click.echo(f"run {run_id} queued for project {project_id} ({window.start} to {window.end})"))
        return
    outcome = _run_now(link_id, window, RunTrigger.cli, dry_run=dry_run)
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))
    if outcome.status not in (RunStatus.succeeded,):
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
                   ("cost_code_id", "cost code"), ("action", "action"), ("reason", "reason"),
                   ("ledger_status", "ledger")]


@cli.command("events")
@click.argument("project_id", type=int)
@click.option("--start", default=None)
@click.option("--end", default=None)
@click.option("--json", "as_json", is_flag=True)
@handled
def events(project_id: int, start: str | None, end: str | None, as_json: bool) -> None:
    """Preview: technician, activity, actual and rounded times, date, hours, rule, warnings, ledger status."""
    now = datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, project_id)
        window, link_id = _window(link, start, end, now), link.id
    outcome = _run_now(link_id, window, RunTrigger.cli, dry_run=True)
    if outcome.report is not None:
        outcome.report.preview = [
            p for p in outcome.report.preview if p.get("date") and window.start <= date.fromisoformat(p["date"])
            <= window.end
        ]
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
    now = datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, project_id)
        window = _window(link, start, end, now)
        link_id = link.id
    selection = Selection(frozenset(event_ids), cost_code_id, line_item_type_id)
    outcome = _run_now(link_id, window, RunTrigger.manual, selection=selection)
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
    with session_scope() as s:
        link = find_link(s, project_id)
        q = select(LedgerEntry).where(LedgerEntry.project_link_id == link.id)
        if status:
            q = q.where(LedgerEntry.status == LedgerStatus(status))
        rows = s.scalars(q.order_by(LedgerEntry.work_date, LedgerEntry.source_key).limit(limit)).all()
        data = [{
            "id": r.id, "source_key": r.source_key, "technician": r.technician_name, "activity": r.activity,
            "date": r.work_date, "hours": r.hours, "cost_code_id": r.cost_code_id, "status": r.status.value,
            "reason": r.reason, "detail": r.detail, "procore_entry_id": r.procore_entry_id, "manual": r.manual,
        } for r in rows]
    emit(data, as_json, lambda: print_table(data, [
        ("source_key", "source"), ("technician", "technician"), ("date", "date"), ("hours", "hours"),
        ("cost_code_id", "cost code"), ("status", "status"), ("reason", "reason"),
        ("procore_entry_id", "Procore id"), ("detail", "detail")]))


@cli.command("runs")
@click.option("--project", "project_id", type=int, default=None)
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
@handled
def runs(project_id: int | None, limit: int, as_json: bool) -> None:
    """Recent sync runs: trigger, window, status, counts and duration."""
    with session_scope() as s:
        q = select(SyncRun, ProjectLink.procore_project_id).join(ProjectLink)
        if project_id is not None:
            q = q.where(ProjectLink.procore_project_id == project_id)
        data = []
        for run, pid in s.execute(q.order_by(SyncRun.id.desc()).limit(limit)).all():
            counts = run.counts or {}
            duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
            data.append({
                "id": run.id, "project_id": pid, "trigger": run.trigger.value,
                "window": f"{run.window_start}..{run.window_end}",
                "status": run.status.value + (" (dry run)" if run.dry_run else ""),
                "dry_run": run.dry_run, "posted": counts.get("posted"), "hours": counts.get("hours"),
                "skipped": sum((counts.get("skipped") or {}).values()) if counts else None,
                "failed": counts.get("failed"), "needs_review": counts.get("needs_review"),
                "duration_s": round(duration, 1) if duration is not None else None,
                "next_attempt_at": run.next_attempt_at, "error": run.error, "counts": counts,
            })
    emit(data, as_json, lambda: print_table(data, [
        ("id", "run"), ("project_id", "project"), ("trigger", "trigger"), ("window", "window"),
        ("status", "status"), ("posted", "posted"), ("hours", "hours"), ("skipped", "skipped"),
        ("failed", "failed"), ("needs_review", "review"), ("duration_s", "secs"), ("error", "note")]))


@cli.command("retry")
@click.argument("project_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@handled
def retry(project_id: int, as_json: bool) -> None:
    """Send the failed entries of PROJECT_ID again (after fixing what Procore refused), and look up unknown ones."""
    now = datetime.now(UTC)
    with session_scope() as s:
        link = find_link(s, project_id)
        rows = s.scalars(select(LedgerEntry).where(
            LedgerEntry.project_link_id == link.id,
            LedgerEntry.status.in_([LedgerStatus.failed, LedgerStatus.unknown, LedgerStatus.pending]),
            LedgerEntry.manual.is_(False))).all()
        if not rows:
            emit({"retried": 0}, as_json, lambda: click.echo(f"project {project_id} has nothing to retry"))
            return
        for row in rows:
            if row.status == LedgerStatus.failed:
                row.content_hash = None  # forget what was refused so the diff sends it again
        dates = [r.work_date for r in rows if r.work_date] or [now.date()]
        window = Period(min(dates), max(dates))
        link_id = link.id
    outcome = _run_now(link_id, window, RunTrigger.retry)
    emit(outcome.to_dict(), as_json, lambda: print_outcome(outcome))
    if outcome.status != RunStatus.succeeded:
        sys.exit(1)


def main() -> None:
    cli(prog_name="stsync")


if __name__ == "__main__":
    main()

