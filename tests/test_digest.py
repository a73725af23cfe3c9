"""The daily digest of a company: read from a real PostgreSQL, mailed through a real SMTP server on 127.0.0.1
(aiosmtpd), sent once a day after the company's digest time (marked in a real Redis)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import redis
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session

from tests import helpers, test_metrics
from tests.helpers import END, START, Stub, first_project, ledger
from tests.stsync_env import Stsync
from tests.test_metrics import NOW, add_company, add_project, add_row, add_run
from worker.enums import LedgerStatus, RunStatus
from worker.mail import MailError, compose, parse_smtp_url, send_mail
from worker.models import Connection
from worker.service.digest import build_digest, company_digests, digests_due, send_all, send_digest, send_now
from worker.settings import reset_settings
from worker.store import reports

session = test_metrics.session  # a committing session on the emptied test database, as a fixture
stub = helpers.stub  # a scripted HTTP server, as a fixture
# The companies made here have no Procore behind them: their digests show cost codes by id.
send_due = partial(send_all, look_up_names=False)
send_by_hand = partial(send_now, look_up_names=False)
# NOW is 14:00 UTC on Tuesday 3 March 2026: 08:00 in Chicago (CST), after the default 07:00 digest time.
BEFORE_DIGEST_TIME = datetime(2026, 3, 3, 12, 30, tzinfo=UTC)  # 06:30 in Chicago
PROCORE_SAID = "Cost code 01-200 is not budgeted on this project"
PAYROLL = "payroll@example.com"


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    """A real SMTP server on 127.0.0.1, and the SMTP_URL that reaches it."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{port}"
    controller.stop()


def a_company_with_trouble(s: Session) -> Connection:
    """North Tower synced three hours ago and left problems; South Yard's schedule has not synced for two days."""
    conn = add_company(s)
    north = add_project(s, conn, test_metrics.NORTH, "North Tower", scheduled_at=NOW - timedelta(days=10))
    south = add_project(s, conn, test_metrics.SOUTH, "South Yard", scheduled_at=NOW - timedelta(days=10))
    run = add_run(s, north, RunStatus.completed_with_problems, NOW - timedelta(hours=3))
    add_run(s, south, RunStatus.succeeded, NOW - timedelta(days=2))
    at = NOW - timedelta(hours=3)
    for key, day, hours in (("31:2026-03-02", date(2026, 3, 2), "8.00"), ("32:2026-02-27", date(2026, 2, 27), "4.50")):
        add_row(s, north, key, LedgerStatus.skipped, entered_at=at, run=run, technician="Bo Diaz", st_user_id=31,
                work_date=day, hours=hours, reason="no_employee_id",
                detail="Bo Diaz (ServiceTrade user 31) has no Procore Employee ID; set externalIds.procore on the "
                       "technician in ServiceTrade")
    add_row(s, south, "41:2026-03-02", LedgerStatus.skipped, entered_at=at, technician="Cy Moss", st_user_id=41,
            hours="6.00", reason="invalid_employee_id",
            detail="Cy Moss's Procore Employee ID 'E-9' matches no Procore person; correct it in ServiceTrade")
    add_row(s, north, "51:2026-03-02", LedgerStatus.skipped, entered_at=at, technician="Di Park", st_user_id=51,
            reason="open_interval", detail="clocked in, never out")  # not about an Employee ID: not listed
    add_row(s, north, "21:2026-03-02", LedgerStatus.failed, entered_at=at, run=run, technician="Ann Lee",
            st_user_id=21, hours="7.25", reason="refused", detail=PROCORE_SAID)
    add_row(s, north, "61:2026-02-20", LedgerStatus.needs_review, entered_at=at, technician="Ed Fox", st_user_id=61,
            work_date=date(2026, 2, 20), hours="3.00", reason="changed_after_approval",
            detail="the clock events changed after Procore approved the entry; Procore was left untouched")
    # Posted on Monday 2 March in Chicago: 14:00 and 23:30 CST count; 23:00 the day before and 00:30 after don't.
    for key, posted_at, code in (("71", datetime(2026, 3, 2, 20, 0), 10), ("72", datetime(2026, 3, 3, 5, 30), 10),
                                 ("73", datetime(2026, 3, 2, 21, 0), 11), ("74", datetime(2026, 3, 2, 5, 0), 10),
                                 ("75", datetime(2026, 3, 3, 6, 30), 10)):
        add_row(s, north, f"{key}:2026-03-02", LedgerStatus.posted, entered_at=posted_at.replace(tzinfo=UTC),
                cost_code_id=code, hours="2.00")
    s.commit()
    return conn


def test_the_digest_mail_names_the_skipped_technicians_and_the_failed_entries(
        session: Session, redis_url: str, smtp: tuple[Inbox, str]) -> None:
    inbox, smtp_url = smtp
    conn = a_company_with_trouble(session)

    results = send_due(NOW, recipients={conn.id: [PAYROLL, "office@example.com"]}, smtp_url=smtp_url,
                       redis_url=redis_url)

    assert [(r.company_name, r.day, r.sent, r.error) for r in results] == [
        ("Procore company 4242", date(2026, 3, 2), True, None)]
    [(sender, rcpt, message)] = inbox.messages
    assert sender == "stsync@localhost" and rcpt == [PAYROLL, "office@example.com"]
    assert message["Subject"] == (
        "stsync digest for Procore company 4242, Mon 2 Mar 2026: 2 technicians skipped, 1 entry refused by Procore, "
        "1 entry to review, 1 project not synced, 6.00 h posted")
    text = message.get_body(("plain",)).get_content()
    assert ("Bo Diaz: 12.50 h waiting (2 entries, Fri 27 Feb 2026 to Mon 2 Mar 2026; North Tower). To fix: Bo Diaz "
            "(ServiceTrade user 31) has no Procore Employee ID; set externalIds.procore on the technician in "
            "ServiceTrade") in text
    assert ("Cy Moss: 6.00 h waiting (1 entry, Mon 2 Mar 2026; South Yard). To fix: Cy Moss's Procore Employee ID "
            "'E-9' matches no Procore person; correct it in ServiceTrade") in text
    assert f"Ann Lee, Mon 2 Mar 2026, 7.25 h, North Tower: {PROCORE_SAID}" in text
    assert "Ed Fox, Fri 20 Feb 2026, 3.00 h, North Tower: the clock events changed after" in text
    assert "South Yard: last synced Sun 1 Mar 2026 08:00 CST" in text
    assert "North Tower: last synced" not in text and "North Tower: never synced" not in text
    assert "Di Park" not in text
    html = message.get_body(("html",)).get_content()
    assert html.startswith("<!DOCTYPE html>")
    assert "<td>Bo Diaz</td>" in html and "Cy Moss&#x27;s Procore Employee ID" in html


def test_after_a_real_sync_the_digest_names_skipped_technicians_and_cost_codes_as_procore_does(
        stsync: Stsync, smtp: tuple[Inbox, str]) -> None:
    inbox, smtp_url = smtp
    pid = first_project(stsync)
    assert stsync.sync(pid, START, END)["status"] == "succeeded"
    posted = ledger(LedgerStatus.posted)
    zone = ZoneInfo(stsync.world["handles"]["project_zones"][str(pid)])
    day = posted[0].posted_at.astimezone(zone).date()

    sent = send_now(recipients=[PAYROLL], day=day, smtp_url=smtp_url)

    assert sent.sent, sent.error
    [(_, _, message)] = inbox.messages
    text = message.get_body(("plain",)).get_content()
    skipped = {r.technician_name for r in ledger(LedgerStatus.skipped)
               if r.reason in ("no_employee_id", "invalid_employee_id")}
    assert skipped and all(f"\n  {name}: " in text for name in skipped)
    project = next(p for p in stsync.world["procore"]["projects"] if p["id"] == pid)
    code = next(c for c in project["cost_codes"] if c["id"] == stsync.labor(pid)["cost_code_id"])
    hours = sum(r.hours for r in posted)
    assert (f"{project['name']}, {code['full_code']} {code['name']}: {hours:.2f} h in {len(posted)} entries"
            in text)


def test_a_digest_goes_out_with_cost_code_ids_when_procore_cannot_be_read(
        session: Session, smtp: tuple[Inbox, str], stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, smtp_url = smtp
    a_company_with_trouble(session)
    stub.answer(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
    monkeypatch.setenv("PROCORE_API_URL", stub.url)
    monkeypatch.setenv("PROCORE_LOGIN_URL", stub.url)
    reset_settings()
    sent = send_now(recipients=[PAYROLL], now=NOW, smtp_url=smtp_url)
    assert sent.sent, sent.error
    assert [r["path"] for r in stub.received] == ["/oauth/token"]  # refused once, not tried again
    assert "North Tower, cost code 10: 4.00 h in 2 entries" in inbox.messages[0][2].get_body(("plain",)).get_content()


def test_posted_hours_are_those_of_the_companys_yesterday_per_project_and_cost_code(session: Session) -> None:
    conn = a_company_with_trouble(session)
    digest = build_digest(conn.id, now=NOW, cost_code_names={10: "01-100 General Conditions Labor"})
    assert digest.day == date(2026, 3, 2) and digest.time_zone == "America/Chicago"
    assert [(p.project, p.cost_code, p.entries, str(p.hours)) for p in digest.posted] == [
        ("North Tower", "01-100 General Conditions Labor", 2, "4.00"), ("North Tower", "cost code 11", 1, "2.00")]
    assert "North Tower, 01-100 General Conditions Labor: 4.00 h in 2 entries" in digest.as_text()
    assert "North Tower, cost code 11: 2.00 h in 1 entry" in digest.as_text()
    earlier = build_digest(conn.id, day=date(2026, 3, 1), now=NOW)
    assert [(p.cost_code, p.entries) for p in earlier.posted] == [("cost code 10", 1)]


def test_the_home_page_gets_every_companys_digest(session: Session) -> None:
    a_company_with_trouble(session)
    add_company(session, company_id=777)
    session.commit()
    digests = company_digests(now=NOW)
    assert [(d.company_id, d.has_problems) for d in digests] == [(777, False), (test_metrics.COMPANY, True)]


def test_a_company_with_nothing_wrong_is_told_so(session: Session) -> None:
    conn = add_company(session)
    north = add_project(session, conn, test_metrics.NORTH, "North Tower", scheduled_at=NOW - timedelta(days=3))
    add_run(session, north, RunStatus.succeeded, NOW - timedelta(hours=2))
    # Scheduled an hour ago and not synced yet: it has a day before it counts as not synced.
    add_project(session, conn, test_metrics.SOUTH, "South Yard", scheduled_at=NOW - timedelta(hours=1))
    session.commit()
    digest = build_digest(now=NOW)
    assert not digest.has_problems
    assert digest.stale_projects == () and digest.summary() == "nothing to fix, 0.00 h posted"
    assert digest.as_text().startswith("stsync daily digest for Procore company 4242\nMade Tue 3 Mar 2026 08:00 CST\n")
    assert "Technicians skipped" not in digest.as_text() and "Posted on Mon 2 Mar 2026" in digest.as_text()
    # A fragment the console's home page can show as it is.
    assert digest.as_html().startswith("<h2>stsync daily digest for Procore company 4242</h2>")


def test_a_digest_sent_by_hand_goes_out_at_once_and_the_scheduled_one_still_does(
        session: Session, redis_url: str, smtp: tuple[Inbox, str]) -> None:
    inbox, smtp_url = smtp
    conn = a_company_with_trouble(session)
    sent = send_by_hand(company_id=test_metrics.COMPANY, recipients=[PAYROLL], now=BEFORE_DIGEST_TIME,
                        smtp_url=smtp_url)
    assert sent.sent and sent.day == date(2026, 3, 2)
    assert [rcpt for _, rcpt, _ in inbox.messages] == [[PAYROLL]]
    assert [r.sent for r in send_due(NOW, recipients={conn.id: [PAYROLL]}, smtp_url=smtp_url,
                                     redis_url=redis_url)] == [True]
    assert send_by_hand(conn.id, now=NOW, smtp_url=smtp_url).error == (
        "the company has no digest recipients: say whom to send it to")


def test_each_digest_goes_out_once_a_day_after_the_companys_digest_time(
        session: Session, redis_url: str, smtp: tuple[Inbox, str]) -> None:
    inbox, smtp_url = smtp
    conn = a_company_with_trouble(session)
    to = {conn.id: [PAYROLL]}
    client = redis.Redis.from_url(redis_url)

    assert digests_due(BEFORE_DIGEST_TIME, client) == []
    assert send_due(BEFORE_DIGEST_TIME, recipients=to, smtp_url=smtp_url, redis_url=redis_url) == []
    assert [r.sent for r in send_due(NOW, recipients=to, smtp_url=smtp_url, redis_url=redis_url)] == [True]
    assert send_due(NOW + timedelta(hours=3), recipients=to, smtp_url=smtp_url, redis_url=redis_url) == []
    tomorrow = send_due(NOW + timedelta(days=1), recipients=to, smtp_url=smtp_url, redis_url=redis_url)
    assert [(r.day, r.sent) for r in tomorrow] == [(date(2026, 3, 3), True)]
    assert len(inbox.messages) == 2


def test_a_digest_that_could_not_be_sent_is_tried_again_by_the_next_call(
        session: Session, redis_url: str, smtp: tuple[Inbox, str]) -> None:
    inbox, smtp_url = smtp
    conn = a_company_with_trouble(session)
    to = {conn.id: [PAYROLL]}
    [failed] = send_due(NOW, recipients=to, smtp_url=f"smtp://127.0.0.1:{free_port()}", redis_url=redis_url)
    assert not failed.sent and "Connection refused" in (failed.error or "")
    [again] = send_due(NOW + timedelta(minutes=5), recipients=to, smtp_url=smtp_url, redis_url=redis_url)
    assert again.sent and len(inbox.messages) == 1


def test_a_company_without_recipients_is_not_mailed_and_stays_due(
        session: Session, redis_url: str, smtp: tuple[Inbox, str]) -> None:
    inbox, smtp_url = smtp
    conn = a_company_with_trouble(session)
    [result] = send_due(NOW, smtp_url=smtp_url, redis_url=redis_url)
    assert result.recipients == () and not result.sent and result.error is None and inbox.messages == []
    assert [due.connection_id for due in digests_due(NOW, redis.Redis.from_url(redis_url))] == [conn.id]


def test_without_smtp_url_a_due_digest_says_how_to_set_it(session: Session, redis_url: str) -> None:
    conn = a_company_with_trouble(session)
    [result] = send_due(NOW, recipients={conn.id: [PAYROLL]}, redis_url=redis_url)
    assert not result.sent and result.error.startswith("SMTP_URL is not set")


def test_a_password_is_never_sent_to_a_server_without_tls(smtp: tuple[Inbox, str], session: Session) -> None:
    inbox, smtp_url = smtp
    with_login = smtp_url.replace("smtp://", "smtp://payroll:s3cret%2Fpw@")
    conn = add_company(session)
    session.commit()
    digest = build_digest(conn.id, now=NOW)
    with pytest.raises(MailError, match="offers no STARTTLS") as refused:
        send_digest(digest, [PAYROLL], with_login)
    assert "s3cret" not in str(refused.value) and inbox.messages == []


def test_the_connections_digest_columns_say_who_gets_it_when_and_in_which_zone() -> None:
    stored = SimpleNamespace(procore_company_id=7, procore_company_name="Summit Builders Inc.",
                             digest_recipients=" payroll@example.com, ,office@example.com ",
                             digest_local_time=time(6, 30), digest_time_zone="America/Denver")
    assert reports.digest_recipients(stored) == [PAYROLL, "office@example.com"]
    assert reports.digest_local_time(stored) == time(6, 30)
    assert reports.digest_time_zone(stored, []) == "America/Denver"
    assert reports.company_name(stored) == "Summit Builders Inc."
    bare = SimpleNamespace(procore_company_id=7, procore_company_name=None, digest_recipients=None,
                           digest_local_time=None, digest_time_zone=None)
    assert reports.digest_recipients(bare) == [] and reports.digest_local_time(bare) == time(7, 0)
    assert reports.company_name(bare) == "Procore company 7"


def test_smtp_urls_name_server_port_tls_and_decoded_login() -> None:
    server = parse_smtp_url("smtps://digest%40example.com:p%40ss@mail.example.com")
    assert (server.host, server.port, server.implicit_tls) == ("mail.example.com", 465, True)
    assert (server.username, server.password) == ("digest@example.com", "p@ss")
    assert parse_smtp_url("smtp://relay:2525").port == 2525 and parse_smtp_url("smtp://relay").port == 25
    with pytest.raises(ValueError, match="must start with smtp:// or smtps://"):
        parse_smtp_url("http://relay")


def test_a_refused_recipient_is_an_error_that_names_it() -> None:
    class Refusing(Inbox):
        async def handle_RCPT(self, server, session, envelope, address, options) -> str:
            if address.startswith("nobody"):
                return "550 no such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    inbox = Refusing()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        message = compose(sender="stsync@localhost", recipients=[PAYROLL, "nobody@example.com"], subject="s",
                          text="t")
        with pytest.raises(MailError, match="refused nobody@example.com"):
            send_mail(f"smtp://127.0.0.1:{port}", message)
    finally:
        controller.stop()
    assert [rcpt for _, rcpt, _ in inbox.messages] == [[PAYROLL]]


def test_who_gets_the_digest_and_when_is_set_and_checked(stsync) -> None:
    from worker.inputs import InvalidArgument
    from worker.service.digest import set_digest

    saved = set_digest("payroll@example.com, office@example.com", at="06:30", time_zone="America/Denver")
    assert saved.recipients == ("payroll@example.com", "office@example.com")
    assert (saved.local_time, saved.time_zone) == ("06:30", "America/Denver")
    assert set_digest(at="07:15").recipients == saved.recipients, "what is not given stays"
    with pytest.raises(InvalidArgument, match="not an email address"):
        set_digest("payroll at example dot com")
    with pytest.raises(InvalidArgument, match="HH:MM"):
        set_digest(at="7pm")
    with pytest.raises(InvalidArgument, match="not a known zone"):
        set_digest(time_zone="Mars/Olympus")


def test_the_digest_recipients_are_set_from_the_command_line(stsync) -> None:
    out = stsync("digest-settings", "--to", "payroll@example.com", "--at", "06:45").output
    assert "goes to payroll@example.com at 06:45" in out
    refused = stsync("digest-settings", "--to", "not an address", ok=False)
    assert refused.exit_code == 1 and "is not an email address" in refused.output
