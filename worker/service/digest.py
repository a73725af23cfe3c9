"""The daily digest of a company (DESIGN §11): what a payroll admin must fix before payroll, and what was posted.

One digest per connection (a Procore company): technicians skipped for a missing or invalid Employee ID, by name,
with the hours waiting on them and what to fix; entries Procore refused, with its message; entries waiting for
review; scheduled projects with no sync in a day; and the hours posted on the digest's day per project and cost
code. `build_digest` reads it, `Digest.as_text()` / `as_html()` show it, `send_digest` mails it, and `send_all`
(run by beat every few minutes) mails each company's digest once a day, at the company's digest time.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import redis
import structlog
from sqlalchemy.orm import Session

from worker.connections import procore_client
from worker.db import session_scope
from worker.enums import LedgerStatus, SkipReason
from worker.health import REDIS_TIMEOUT_S, health_redis_url
from worker.inputs import InvalidArgument
from worker.mail import MailError, compose, send_mail
from worker.models import Connection
from worker.projects import cost_code_label
from worker.settings import get_settings
from worker.store import reports
from worker.store.connections import get_connection
from worker.store.reports import ProblemEntry, ProjectSync, SkippedTechnician

log = structlog.get_logger("stsync.digest")

STALE_AFTER = timedelta(days=1)
NAMES_TIMEOUT_S = 10.0  # per Procore call for cost code names
# Lines per section in the text and HTML; the counts above them stay whole.
SHOWN_PER_SECTION = 100
# "Sent" marks live in Redis for a few days: long enough that no restart sends a day twice.
SENT_KEY = "stsync:digest:sent:{connection_id}:{day}"
SENT_TTL_S = 4 * 86400
SMTP_URL_MISSING = "SMTP_URL is not set: set it to smtp://user:password@host:port to mail digests"
WHAT_TO_FIX = {
    SkipReason.no_employee_id: "add their Procore Employee ID to their user in ServiceTrade",
    SkipReason.invalid_employee_id: "correct their Procore Employee ID in ServiceTrade so it matches a Procore "
                                    "employee",
}


@dataclass(frozen=True)
class StaleProject:
    """A scheduled project with no sync that ran to its end in the last day."""

    name: str
    project_id: int
    last_success: datetime | None


@dataclass(frozen=True)
class PostedLine:
    """Hours posted to one project and cost code on the digest's day."""

    project: str
    project_id: int
    cost_code_id: int | None
    cost_code: str  # its label when a name is known, else `cost code <id>`
    entries: int
    hours: Decimal


@dataclass(frozen=True)
class Digest:
    connection_id: int
    company_id: int
    company_name: str
    day: date  # the day "posted yesterday" covers, in the company's zone
    time_zone: str
    made_at: datetime
    skipped_technicians: tuple[SkippedTechnician, ...] = ()
    failed: tuple[ProblemEntry, ...] = ()
    needs_review: tuple[ProblemEntry, ...] = ()
    stale_projects: tuple[StaleProject, ...] = ()
    posted: tuple[PostedLine, ...] = ()

    @property
    def has_problems(self) -> bool:
        return bool(self.skipped_technicians or self.failed or self.needs_review or self.stale_projects)

    @property
    def posted_hours(self) -> Decimal:
        return sum((line.hours for line in self.posted), Decimal(0))

    @property
    def subject(self) -> str:
        return f"stsync digest for {self.company_name}, {_day(self.day)}: {self.summary()}"

    def summary(self) -> str:
        """The problems in one line, or that there are none."""
        parts = [
            _count(len(self.skipped_technicians), "technician skipped", "technicians skipped"),
            _count(len(self.failed), "entry refused by Procore", "entries refused by Procore"),
            _count(len(self.needs_review), "entry to review", "entries to review"),
            _count(len(self.stale_projects), "project not synced", "projects not synced"),
        ]
        problems = [part for part in parts if part]
        posted = f"{_hours(self.posted_hours)} posted"
        return ", ".join([*problems, posted]) if problems else f"nothing to fix, {posted}"

    def as_text(self) -> str:
        return "\n".join(_text_lines(self)) + "\n"

    def as_html(self) -> str:
        """The digest as an HTML fragment (headings, paragraphs, tables), for a page or a mail to wrap."""
        return _html(self)


@dataclass(frozen=True)
class DigestSent:
    """What `send_all` did for one company."""

    connection_id: int
    company_name: str
    day: date
    recipients: tuple[str, ...]
    error: str | None = None

    @property
    def sent(self) -> bool:
        return bool(self.recipients) and self.error is None


@dataclass(frozen=True)
class DueDigest:
    connection_id: int
    company_name: str
    day: date


def build_digest(
    connection_id: int | None = None, *, company_id: int | None = None, day: date | None = None,
    now: datetime | None = None, cost_code_names: Mapping[int, str] | None = None, look_up_names: bool = False,
    database_url: str | None = None,
) -> Digest:
    """The digest of one connection, chosen by its id or its Procore company id (the only one when neither is
    given). `day` is the day whose posted hours it lists (default: yesterday in the company's zone); the problems
    are those standing at `now`. The ledger keeps cost code ids only: `cost_code_names` gives labels the caller
    knows, and `look_up_names` reads the rest from Procore (what it cannot read shows as the id)."""
    now = now or datetime.now(UTC)
    with session_scope(database_url) as s:
        conn = _connection(s, connection_id, company_id)
        digest = _build(s, conn, day=day, now=now)
        names = dict(cost_code_names or {})
        if look_up_names:
            names = {**procore_cost_code_names(conn, {line.project_id for line in digest.posted}), **names}
    return replace(digest, posted=tuple(replace(line, cost_code=_cost_code_text(line.cost_code_id, names))
                                        for line in digest.posted))


def company_digests(*, now: datetime | None = None, database_url: str | None = None) -> list[Digest]:
    """Every connected company's digest, by company id (the console's home page); cost codes by id."""
    with session_scope(database_url) as s:
        ids = [conn.id for conn in reports.digest_connections(s)]
    return [build_digest(connection_id, now=now, database_url=database_url) for connection_id in ids]


def procore_cost_code_names(conn: Connection, project_ids: Iterable[int]) -> dict[int, str]:
    """Labels of the projects' cost codes as Procore names them (`01-100 General Conditions Labor`). Names are a
    nicety: on the first project whose cost codes cannot be read the rest are not tried (a Procore that does not
    answer would only make the digest late), and the digest shows ids."""
    if conn.procore_needs_reauth:
        log.warning("digest.cost_code_names_unread", company=conn.procore_company_id,
                    error=f"the connection must be re-authorised: {conn.procore_needs_reauth}")
        return {}
    settings = get_settings()
    procore = procore_client(conn, settings.model_copy(update={"http_timeout_s": NAMES_TIMEOUT_S}))
    names: dict[int, str] = {}
    for project_id in sorted(project_ids):
        try:
            names.update({int(code["id"]): cost_code_label(code) for code in procore.cost_codes(project_id)})
        except Exception as exc:  # noqa: BLE001 - whatever Procore does, the digest goes out
            log.warning("digest.cost_code_names_unread", company=conn.procore_company_id, project_id=project_id,
                        error=f"{type(exc).__name__}: {exc}")
            break
    return names


@dataclass(frozen=True)
class DigestSettings:
    company_name: str
    recipients: tuple[str, ...]
    local_time: str  # HH:MM
    time_zone: str | None  # None: the zone most of the company's projects use


def set_digest(
    recipients: Sequence[str] | str | None = None, *, at: str | None = None, time_zone: str | None = None,
    company_id: int | None = None,
) -> DigestSettings:
    """Who gets a company's daily digest, and when (local time in a zone); what is not given stays as it was."""
    addresses = _addresses(recipients) if recipients is not None else None
    local = _local_time(at) if at is not None else None
    if time_zone is not None:
        try:
            ZoneInfo(time_zone)
        except (ValueError, KeyError) as exc:
            raise InvalidArgument(f"time zone {time_zone!r} is not a known zone, e.g. America/Denver") from exc
    with session_scope() as s:
        conn = get_connection(s, company_id)
        if addresses is not None:
            conn.digest_recipients = ", ".join(addresses)
        if local is not None:
            conn.digest_local_time = local
        if time_zone is not None:
            conn.digest_time_zone = time_zone
        return DigestSettings(reports.company_name(conn), tuple(reports.digest_recipients(conn)),
                              reports.digest_local_time(conn).strftime("%H:%M"), conn.digest_time_zone)


def _addresses(recipients: Sequence[str] | str) -> list[str]:
    given = recipients.split(",") if isinstance(recipients, str) else list(recipients)
    addresses = [a.strip() for a in given if a.strip()]
    for address in addresses:
        if "@" not in address or " " in address or len(address) > 254:
            raise InvalidArgument(f"{address!r} is not an email address")
    return addresses


def _local_time(at: str) -> time:
    try:
        return time.fromisoformat(at)
    except ValueError:
        raise InvalidArgument(f"the digest time must be a local time as HH:MM, got {at!r}") from None


def send_now(
    connection_id: int | None = None, *, company_id: int | None = None, recipients: Sequence[str] | None = None,
    day: date | None = None, now: datetime | None = None, smtp_url: str | None = None, look_up_names: bool = True,
    database_url: str | None = None,
) -> DigestSent:
    """Mail one company's digest at once, whatever the time (`stsync digest --send`), to `recipients` or the
    connection's own; cost codes by their Procore names unless `look_up_names` is off. It does not count as the
    day's digest: the scheduled one still goes out."""
    digest = build_digest(connection_id, company_id=company_id, day=day, now=now, look_up_names=look_up_names,
                          database_url=database_url)
    to = tuple(recipients) if recipients else _recipients_of(digest.connection_id, None, database_url)
    url = _smtp_url(smtp_url)
    if not to:
        return _not_sent(digest, to, "the company has no digest recipients: say whom to send it to")
    if url is None:
        return _not_sent(digest, to, SMTP_URL_MISSING)
    try:
        send_digest(digest, to, url)
    except MailError as exc:
        return _not_sent(digest, to, str(exc))
    return DigestSent(digest.connection_id, digest.company_name, digest.day, to)


def send_digest(digest: Digest, recipients: Sequence[str], smtp_url: str, *, sender: str | None = None) -> None:
    """Mail the digest to the recipients (plain text and HTML) from DIGEST_FROM; MailError when it was not sent."""
    if not recipients:
        raise MailError(f"the digest of {digest.company_name} has no recipients")
    page = f"<!DOCTYPE html>\n<html><body>\n{digest.as_html()}</body></html>\n"
    message = compose(sender=sender or get_settings().digest_from, recipients=recipients, subject=digest.subject,
                      text=digest.as_text(), html=page)
    send_mail(smtp_url, message)


def digests_due(now: datetime, client: redis.Redis, *, database_url: str | None = None) -> list[DueDigest]:
    """Connections whose digest time has come today in their zone and whose digest for yesterday was not sent."""
    due: list[DueDigest] = []
    with session_scope(database_url) as s:
        for conn in reports.digest_connections(s):
            zone = ZoneInfo(reports.digest_time_zone(conn, reports.project_syncs(s, conn.id)))
            local = now.astimezone(zone)
            if local.time() < reports.digest_local_time(conn):
                continue
            day = local.date() - timedelta(days=1)
            if not client.exists(_sent_key(conn.id, day)):
                due.append(DueDigest(conn.id, reports.company_name(conn), day))
    return due


def send_all(
    now: datetime | None = None, *, recipients: Mapping[int, Sequence[str]] | None = None,
    smtp_url: str | None = None, redis_url: str | None = None, look_up_names: bool = True,
    database_url: str | None = None,
) -> list[DigestSent]:
    """Send each company's digest that is due, once a day, with cost codes by their Procore names unless
    `look_up_names` is off. `recipients` (by connection id) stands in for the connection's stored recipients.
    A digest is marked sent in Redis before it is sent (so two beats never send it twice) and unmarked when
    sending fails, so the next call tries again; one company's failure does not stop the others."""
    now = now or datetime.now(UTC)
    url = _smtp_url(smtp_url)
    client = redis.Redis.from_url(redis_url or health_redis_url(get_settings()), socket_timeout=REDIS_TIMEOUT_S,
                                  socket_connect_timeout=REDIS_TIMEOUT_S)
    with client:
        results = []
        for due in digests_due(now, client, database_url=database_url):
            to = _recipients_of(due.connection_id, recipients, database_url)
            if not to:
                log.info("digest.no_recipients", company=due.company_name, day=str(due.day))
                results.append(DigestSent(due.connection_id, due.company_name, due.day, ()))
                continue
            digest = build_digest(due.connection_id, day=due.day, now=now, look_up_names=look_up_names,
                                  database_url=database_url)
            results.append(_send_once(client, digest, to, url))
        return results


def _send_once(client: redis.Redis, digest: Digest, to: tuple[str, ...], smtp_url: str | None) -> DigestSent:
    if smtp_url is None:
        return _not_sent(digest, to, SMTP_URL_MISSING)
    key = _sent_key(digest.connection_id, digest.day)
    if not client.set(key, digest.made_at.isoformat(), nx=True, ex=SENT_TTL_S):
        return _not_sent(digest, to, "another process is sending this digest")
    try:
        send_digest(digest, to, smtp_url)
    except MailError as exc:
        client.delete(key)
        return _not_sent(digest, to, str(exc))
    log.info("digest.sent", company=digest.company_name, day=str(digest.day), recipients=len(to))
    return DigestSent(digest.connection_id, digest.company_name, digest.day, to)


def _not_sent(digest: Digest, to: tuple[str, ...], error: str) -> DigestSent:
    log.warning("digest.not_sent", company=digest.company_name, day=str(digest.day), error=error)
    return DigestSent(digest.connection_id, digest.company_name, digest.day, to, error)


def _sent_key(connection_id: int, day: date) -> str:
    return SENT_KEY.format(connection_id=connection_id, day=day.isoformat())


def _recipients_of(connection_id: int, given: Mapping[int, Sequence[str]] | None,
                   database_url: str | None) -> tuple[str, ...]:
    if given is not None and connection_id in given:
        return tuple(given[connection_id])
    with session_scope(database_url) as s:
        return tuple(reports.digest_recipients(_connection(s, connection_id)))


def _smtp_url(given: str | None) -> str | None:
    configured = get_settings().smtp_url
    return given or (configured.get_secret_value() if configured else None)


def _connection(s: Session, connection_id: int | None, company_id: int | None = None) -> Connection:
    if connection_id is None:
        return get_connection(s, company_id)
    found = reports.digest_connections(s, connection_id)
    if not found:
        raise LookupError(f"connection {connection_id} does not exist")
    return found[0]


def _build(s: Session, conn: Connection, *, day: date | None, now: datetime) -> Digest:
    projects = reports.project_syncs(s, conn.id)
    zone_name = reports.digest_time_zone(conn, projects)
    zone = ZoneInfo(zone_name)
    day = day or now.astimezone(zone).date() - timedelta(days=1)
    start = datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return Digest(
        connection_id=conn.id, company_id=conn.procore_company_id, company_name=reports.company_name(conn), day=day,
        time_zone=zone_name, made_at=now,
        skipped_technicians=tuple(reports.skipped_technicians(s, conn.id)),
        failed=tuple(reports.problem_entries(s, conn.id, LedgerStatus.failed)),
        needs_review=tuple(reports.problem_entries(s, conn.id, LedgerStatus.needs_review)),
        stale_projects=tuple(stale_projects(projects, now)),
        posted=tuple(PostedLine(p.project, p.project_id, p.cost_code_id, _cost_code_text(p.cost_code_id, {}),
                                p.entries, p.hours) for p in reports.posted_hours(s, conn.id, start, end)),
    )


def stale_projects(projects: Iterable[ProjectSync], now: datetime) -> list[StaleProject]:
    """Scheduled projects whose last sync to its end is more than a day old; one that never had one, once it has
    been scheduled for a day."""
    return [StaleProject(p.name, p.project_id, p.last_success) for p in projects
            if p.active and now - p.counted_from > STALE_AFTER]


def _cost_code_text(cost_code_id: int | None, names: Mapping[int, str]) -> str:
    if cost_code_id is None:
        return "no cost code"
    return names.get(cost_code_id) or f"cost code {cost_code_id}"


# ---------------------------------------------------------------------------- words


@dataclass(frozen=True)
class _Section:
    """One part of the digest: a table for the HTML, the same rows as sentences for the text."""

    title: str
    lead: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    sentence: Callable[..., str]  # the cells of a row as a line of the text
    after: str = ""


def _sections(d: Digest) -> list[_Section]:
    zone = ZoneInfo(d.time_zone)
    sections = []
    if d.skipped_technicians:
        sections.append(_Section(
            "Technicians skipped for their Employee ID",
            "Their hours are not in Procore until their Employee ID is fixed; the next sync posts them.",
            ("Technician", "Hours waiting", "Entries", "Days", "Projects", "What to fix"),
            [(t.name, _hours(t.hours), _count(t.entries, "entry", "entries"), _span(t.first_day, t.last_day),
              ", ".join(t.projects), _fix(t)) for t in d.skipped_technicians],
            lambda name, hours, entries, days, projects, fix:
                f"{name}: {hours} waiting ({entries}, {days}; {projects}). To fix: {fix}"))
    if d.failed:
        sections.append(_Section(
            "Entries Procore refused", "In Procore's words; fix the cause, then retry the project's failed entries.",
            ("Technician", "Date", "Hours", "Project", "Procore said"), _problem_rows(d.failed),
            lambda name, day, hours, project, message: f"{name}, {day}, {hours}, {project}: {message}",
            "Retry with `stsync retry <Procore project id>` or from the project's ledger page."))
    if d.needs_review:
        sections.append(_Section(
            "Entries waiting for review",
            "The punches changed after the entry was approved in Procore (or someone edited it there); stsync "
            "leaves it alone until a person decides.",
            ("Technician", "Date", "Hours", "Project", "Why"), _problem_rows(d.needs_review),
            lambda name, day, hours, project, why: f"{name}, {day}, {hours}, {project}: {why}"))
    if d.stale_projects:
        sections.append(_Section(
            "Projects not synced in a day", "Each has a schedule, but no sync ran to its end in the last 24 hours.",
            ("Project", "Last sync"), [(p.name, _last_sync(p, zone)) for p in d.stale_projects],
            lambda name, last: f"{name}: {last}"))
    entries = sum(line.entries for line in d.posted)
    sections.append(_Section(
        f"Posted on {_day(d.day)}",
        f"{_hours(d.posted_hours)} in {_count(entries, 'entry', 'entries') or '0 entries'} sent to Procore that day.",
        ("Project", "Cost code", "Hours", "Entries"),
        [(line.project, line.cost_code, _hours(line.hours), _count(line.entries, "entry", "entries"))
         for line in d.posted],
        lambda project, code, hours, entries: f"{project}, {code}: {hours} in {entries}"))
    return sections


def _problem_rows(entries: Sequence[ProblemEntry]) -> list[tuple[str, ...]]:
    return [(e.technician, _day(e.work_date), _hours(e.hours), e.project, e.message) for e in entries]


def _text_lines(d: Digest) -> list[str]:
    zone = ZoneInfo(d.time_zone)
    lines = [f"stsync daily digest for {_company(d)}",
             f"Made {_moment(d.made_at, zone)}", "", _sentence(d.summary())]
    for section in _sections(d):
        lines += ["", section.title, "-" * len(section.title), section.lead]
        lines += ["  " + section.sentence(*row) for row in section.rows[:SHOWN_PER_SECTION]]
        if len(section.rows) > SHOWN_PER_SECTION:
            lines.append(f"  ... and {len(section.rows) - SHOWN_PER_SECTION} more")
        if section.after:
            lines.append(section.after)
    return lines


def _html(d: Digest) -> str:
    e = html.escape
    parts = [f"<h2>stsync daily digest for {e(_company(d))}</h2>",
             f"<p>Made {e(_moment(d.made_at, ZoneInfo(d.time_zone)))}.</p>",
             f"<p><strong>{e(_sentence(d.summary()))}</strong></p>"]
    for section in _sections(d):
        parts += [f"<h3>{e(section.title)}</h3>", f"<p>{e(section.lead)}</p>"]
        if section.rows:
            head = "".join(f"<th>{e(h)}</th>" for h in section.header)
            body = "".join("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
                           for row in section.rows[:SHOWN_PER_SECTION])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if len(section.rows) > SHOWN_PER_SECTION:
            parts.append(f"<p>... and {len(section.rows) - SHOWN_PER_SECTION} more</p>")
        if section.after:
            parts.append(f"<p>{e(section.after)}</p>")
    return "\n".join(parts) + "\n"


def _company(d: Digest) -> str:
    """The company's name, with its Procore id unless the name already is just that."""
    generic = f"Procore company {d.company_id}"
    return d.company_name if d.company_name == generic else f"{d.company_name} ({generic})"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _fix(t: SkippedTechnician) -> str:
    return t.what_to_fix or f"{t.name}: {WHAT_TO_FIX[t.reason]}"


def _last_sync(p: StaleProject, zone: ZoneInfo) -> str:
    return f"last synced {_moment(p.last_success, zone)}" if p.last_success else "never synced"


def _count(n: int, one: str, many: str) -> str:
    return "" if n == 0 else f"{n} {one if n == 1 else many}"


def _hours(hours: Decimal | None) -> str:
    return "? h" if hours is None else f"{hours:.2f} h"


def _day(day: date | None) -> str:
    return "no date" if day is None else f"{day:%a} {day.day} {day:%b %Y}"


def _span(first: date | None, last: date | None) -> str:
    return _day(first) if first == last else f"{_day(first)} to {_day(last)}"


def _moment(at: datetime, zone: ZoneInfo) -> str:
    local = at.astimezone(zone)
    return f"{_day(local.date())} {local:%H:%M %Z}"

