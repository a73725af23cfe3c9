"""E-mail over SMTP, for the daily digest: one message, plain text with an optional HTML alternative.

SMTP_URL says where: `smtp://[user:password@]host[:port]` (port 25; STARTTLS whenever the server offers it, with
the certificate checked) or `smtps://[user:password@]host[:port]` (port 465, TLS from the first byte). A password
is never sent over a connection that is not encrypted.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from worker.logging import register_secret

TIMEOUT_S = 30.0
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


class MailError(RuntimeError):
    """The message could not be sent; says to which server and why, never with its password."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None

    def __str__(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpServer:
    """The server an SMTP_URL names; a ValueError says what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, got {parts.scheme or 'no scheme'}://")
    if not parts.hostname:
        raise ValueError("SMTP_URL names no host: write it as smtp://user:password@host:port")
    password = unquote(parts.password) if parts.password else None
    register_secret(password)
    return SmtpServer(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], parts.scheme == "smtps",
                      unquote(parts.username) if parts.username else None, password)


def compose(*, sender: str, recipients: Sequence[str], subject: str, text: str,
            html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def send_mail(smtp_url: str, message: EmailMessage, *, timeout: float = TIMEOUT_S) -> None:
    """Send one composed message to every address in its To header. MailError when the server cannot be reached,
    refuses the login, or refuses any recipient."""
    server = parse_smtp_url(smtp_url)
    try:
        with _connect(server, timeout) as smtp:
            refused = smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"sending {message['Subject']!r} through {server} failed: {_reason(exc)}") from exc
    if refused:
        raise MailError(f"{server} refused {', '.join(sorted(refused))}; the other recipients got the message")


def _connect(server: SmtpServer, timeout: float) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if server.implicit_tls:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        smtp.ehlo()
        encrypted = server.implicit_tls
        if not encrypted and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
            encrypted = True
        if server.username:
            if not encrypted:
                raise MailError(f"{server} offers no STARTTLS, and the password in SMTP_URL is never sent in the "
                                "clear: use smtps:// or a server that offers STARTTLS")
            smtp.login(server.username, server.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"the server answered {exc.smtp_code} {message}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"every recipient was refused ({', '.join(sorted(exc.recipients))})"
    return f"{type(exc).__name__}: {exc}"
