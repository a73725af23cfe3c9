"""Connections: one Procore company and one ServiceTrade account, with their credentials (encrypted by the model)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.logging import register_secret
from worker.models import Connection


class NoConnection(RuntimeError):
    pass


def get_connection(s: Session, company_id: int | None = None) -> Connection:
    """The connection to use: the one for `company_id`, or the only one there is. Its secrets are registered
    for redaction before anything can log them."""
    query = select(Connection)
    if company_id is not None:
        query = query.where(Connection.procore_company_id == company_id)
    rows = s.scalars(query).all()
    if not rows:
        raise NoConnection(
            "No connection is stored yet. Run `stsync connect procore --company-id ID --client-id X --client-secret Y` "
            "and `stsync connect servicetrade --username U --password P` first."
        )
    if len(rows) > 1:
        ids = ", ".join(str(r.procore_company_id) for r in rows)
        raise NoConnection(f"Several Procore companies are connected ({ids}); say which with --company-id.")
    register_connection_secrets(rows[0])
    return rows[0]


def register_connection_secrets(conn: Connection) -> None:
    for value in (
        conn.procore_client_secret,
        conn.procore_access_token,
        conn.procore_refresh_token,
        conn.st_password,
        conn.st_client_secret,
        conn.st_session_token,
    ):
        register_secret(value)


def save_procore(
    s: Session, company_id: int, client_id: str, client_secret: str, *, access_token: str | None,
    refresh_token: str | None, expires_at: datetime | None,
) -> Connection:
    """Store (or replace) the Procore side of the company's connection; a stored need to re-authorise is cleared."""
    conn = s.scalars(select(Connection).where(Connection.procore_company_id == company_id)).one_or_none()
    if conn is None:
        conn = Connection(procore_company_id=company_id)
        s.add(conn)
    conn.procore_client_id = client_id
    conn.procore_client_secret = client_secret
    conn.procore_access_token = access_token
    conn.procore_refresh_token = refresh_token
    conn.procore_token_expires_at = expires_at
    conn.procore_needs_reauth = None
    s.flush()
    return conn


def save_servicetrade(
    s: Session, conn: Connection, *, auth_kind: str, username: str | None, password: str | None,
    client_id: str | None, client_secret: str | None, session_token: str | None, vendor_company_id: int,
) -> None:
    """Store the ServiceTrade side of a connection: a username and password, or an OAuth client, never both."""
    conn.st_auth_kind = auth_kind
    conn.st_username, conn.st_password = username, password
    conn.st_client_id, conn.st_client_secret = client_id, client_secret
    conn.st_session_token = session_token
    conn.st_vendor_company_id = vendor_company_id
    s.flush()
