"""API clients built from a stored connection, and what the clients hand back (rotated Procore tokens, a new
ServiceTrade session) persisted encrypted, in one transaction, under a row lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.clients.procore import ProcoreClient, TokenSet
from worker.clients.ratelimit import LocalRateBudget, RateBudget, RedisRateBudget
from worker.clients.servicetrade import ServiceTradeClient
from worker.db import session_scope
from worker.logging import register_secret
from worker.models import Connection
from worker.settings import Settings, get_settings
from worker.store.connections import NoConnection, get_connection  # noqa: F401 - tasks/projects.py's import

# An already-expired access time: a stored refresh token alone makes the client refresh before its first call.
EXPIRED_AT = datetime(1970, 1, 1, tzinfo=UTC)


class DbTokenStore:
    """Procore tokens of one connection, stored encrypted; refreshes are serialised by a row lock
    (SELECT ... FOR UPDATE) so two workers never refresh the same connection at once (P-2)."""

    def __init__(self, connection_id: int, database_url: str | None = None) -> None:
        self.connection_id = connection_id
        self.database_url = database_url
        self._held = threading.local()

    def load(self) -> TokenSet | None:
        with session_scope(self.database_url) as session:
            return self._read(session.get(Connection, self.connection_id))

    @contextmanager
    def locked(self) -> Iterator[TokenSet | None]:
        with session_scope(self.database_url) as session:
            row = session.scalars(
                select(Connection).where(Connection.id == self.connection_id).with_for_update()
            ).one()
            self._held.session = session
            try:
                yield self._read(row)
            finally:
                self._held.session = None

    def save(self, tokens: TokenSet) -> None:
        register_secret(tokens.access_token)
        register_secret(tokens.refresh_token)
        held: Session | None = getattr(self._held, "session", None)
        if held is not None:
            self._write(held.get(Connection, self.connection_id), tokens)
            held.flush()
            return
        with session_scope(self.database_url) as session:
            row = session.scalars(
                select(Connection).where(Connection.id == self.connection_id).with_for_update()
            ).one()
            self._write(row, tokens)

    @staticmethod
    def _read(row: Connection | None) -> TokenSet | None:
        if row is None or not row.procore_access_token or row.procore_token_expires_at is None:
            if row is not None and row.procore_refresh_token:
                return TokenSet(access_token="", refresh_token=row.procore_refresh_token, expires_at=EXPIRED_AT)
            return None
        return TokenSet(
            access_token=row.procore_access_token,
            refresh_token=row.procore_refresh_token,
            expires_at=row.procore_token_expires_at,
        )

    @staticmethod
    def _write(row: Connection, tokens: TokenSet) -> None:
        # Both tokens in one write: a rotated refresh token is useless without its access token and vice versa.
        row.procore_access_token = tokens.access_token
        row.procore_refresh_token = tokens.refresh_token
        row.procore_token_expires_at = tokens.expires_at
        row.procore_needs_reauth = None


_local_budgets: dict[int, LocalRateBudget] = {}
IN_FLIGHT_RESERVE = 2


def rate_budget_for(company_id: int, settings: Settings | None = None) -> RateBudget:
    """The Procore rate budget of a company: shared in Redis by every worker, in-process for the SQLite demo. Each
    window keeps IN_FLIGHT_RESERVE calls unused: a run's reads and chunks go out side by side, and the server may
    have counted some of them before we hear of them (with 1, two workers met 429s on 1.8 % of calls under a
    25-per-10-s limit; with 2, none)."""
    settings = settings or get_settings()
    url = settings.rate_budget_url
    if url is None:
        return _local_budgets.setdefault(company_id, LocalRateBudget())
    return RedisRateBudget(url, key=f"stsync:procore-budget:{company_id}", reserve=IN_FLIGHT_RESERVE)


def procore_client(conn: Connection, settings: Settings | None = None) -> ProcoreClient:
    settings = settings or get_settings()
    return ProcoreClient(
        settings.procore_api_url,
        settings.procore_login_url,
        conn.procore_company_id,
        client_id=conn.procore_client_id,
        client_secret=conn.procore_client_secret,
        token_store=DbTokenStore(conn.id, settings.database_url),
        rate_budget=rate_budget_for(conn.procore_company_id, settings),
        timeout=settings.http_timeout_s,
    )


def servicetrade_client(conn: Connection, settings: Settings | None = None) -> ServiceTradeClient:
    settings = settings or get_settings()
    if conn.st_auth_kind is None:
        raise NoConnection(
            "ServiceTrade is not connected yet. Run `stsync connect servicetrade --username U --password P` "
            "(or --client-id/--client-secret for OAuth)."
        )
    connection_id = conn.id
    database_url = settings.database_url

    def persist_session(token: str | None) -> None:
        register_secret(token)
        with session_scope(database_url) as session:
            row = session.get(Connection, connection_id)
            if row is not None:
                row.st_session_token = token

    if conn.st_auth_kind == "oauth":
        credentials = {"client_id": conn.st_client_id, "client_secret": conn.st_client_secret}
    else:
        credentials = {"username": conn.st_username, "password": conn.st_password}
    return ServiceTradeClient(
        settings.servicetrade_api_url,
        **credentials,
        session_token=conn.st_session_token,
        on_session=persist_session,
        timeout=settings.http_timeout_s,
    )
