"""Connecting stsync to a Procore company and a ServiceTrade account. Credentials are checked against the API
before anything is stored, stored encrypted, and registered for redaction before the first call can log them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from worker.clients.errors import NeedsReauthorization
from worker.clients.procore import MemoryTokenStore, ProcoreClient, TokenSet, exchange_authorization_code
from worker.clients.servicetrade import ServiceTradeClient
from worker.connections import EXPIRED_AT, procore_client, servicetrade_client
from worker.crypto import reencrypt_all
from worker.db import session_scope
from worker.inputs import InvalidArgument, positive_id
from worker.logging import register_secret
from worker.models import Connection
from worker.settings import get_settings
from worker.store import connections as connection_store


@dataclass(frozen=True)
class ProcoreConnected:
    company_id: int
    grant: str  # "client credentials" or "a user's refresh token"
    start_stop_projects: int  # projects of the company that record start/stop times


@dataclass(frozen=True)
class ServiceTradeConnected:
    company_id: int
    company_name: str | None
    user_name: str | None
    auth_kind: str  # "session" (username and password) or "oauth"


def connect_procore(
    company_id: int, client_id: str, client_secret: str, refresh_token: str | None = None,
) -> ProcoreConnected:
    """Check the credentials by reading the company's configuration, then store them and the tokens they got."""
    company_id = positive_id(company_id, "company_id")
    settings = get_settings()
    settings.secret_key()  # no key, nothing stored: say so before calling Procore
    for secret in (client_secret, refresh_token):
        register_secret(secret)
    initial = TokenSet("", refresh_token, EXPIRED_AT) if refresh_token else None
    tokens = MemoryTokenStore(initial)
    client = ProcoreClient(
        settings.procore_api_url, settings.procore_login_url, company_id,
        client_id=client_id, client_secret=client_secret, token_store=tokens, timeout=settings.http_timeout_s,
    )
    config = client.company_configuration()
    got = tokens.load()
    with session_scope() as s:
        connection_store.save_procore(
            s, company_id, client_id, client_secret,
            access_token=got.access_token if got else None,
            refresh_token=got.refresh_token if got else None,
            expires_at=got.expires_at if got else None,
        )
    return ProcoreConnected(
        company_id=company_id,
        grant="a user's refresh token" if refresh_token else "client credentials",
        start_stop_projects=len(config.get("projects_timecard_in_out_enabled") or []),
    )


def connect_procore_with_code(
    company_id: int, client_id: str, client_secret: str, code: str, redirect_uri: str,
) -> ProcoreConnected:
    """"Connect to Procore": the code a Procore user's approval sent back is exchanged for tokens (P-13), and the
    connection is stored with that user's refresh token, checked against the API first."""
    settings = get_settings()
    tokens = exchange_authorization_code(settings.procore_login_url, client_id, client_secret, code, redirect_uri,
                                         timeout=settings.http_timeout_s)
    return connect_procore(company_id, client_id, client_secret, refresh_token=tokens.refresh_token)


def connect_servicetrade(
    *, username: str | None = None, password: str | None = None, client_id: str | None = None,
    client_secret: str | None = None, company_id: int | None = None,
) -> ServiceTradeConnected:
    """Sign in with a username and password, or an OAuth client, then store them on the Procore company's
    connection (the only one, unless `company_id` says which)."""
    settings = get_settings()
    settings.secret_key()
    for secret in (password, client_secret):
        register_secret(secret)
    if client_id or client_secret:
        if not (client_id and client_secret):
            raise InvalidArgument("--client-id and --client-secret go together")
        client = ServiceTradeClient(settings.servicetrade_api_url, client_id=client_id, client_secret=client_secret,
                                    timeout=settings.http_timeout_s)
        kind, username, password = "oauth", None, None
    else:
        if not (username and password):
            raise InvalidArgument("give --username and --password (or --client-id and --client-secret for OAuth)")
        client = ServiceTradeClient(settings.servicetrade_api_url, username=username, password=password,
                                    timeout=settings.http_timeout_s)
        kind, client_id, client_secret = "session", None, None
    me = client.whoami()
    with session_scope() as s:
        conn = connection_store.get_connection(s, company_id)
        connection_store.save_servicetrade(
            s, conn, auth_kind=kind, username=username, password=password, client_id=client_id,
            client_secret=client_secret, session_token=client.session_token,
            vendor_company_id=int(me["company_id"]),
        )
    return ServiceTradeConnected(int(me["company_id"]), me.get("company_name"), me.get("name"), kind)


def clients_of(s: Session) -> tuple[Connection, ProcoreClient, ServiceTradeClient]:
    """The stored connection and both its API clients."""
    conn, procore = procore_of(s)
    return conn, procore, servicetrade_client(conn)


def procore_of(s: Session) -> tuple[Connection, ProcoreClient]:
    """The stored connection and its Procore client; a connection that must be re-authorised says so first."""
    conn = connection_store.get_connection(s)
    if conn.procore_needs_reauth:
        raise NeedsReauthorization("procore", "-", "stored connection", None, conn.procore_needs_reauth)
    return conn, procore_client(conn)


def rotate_key() -> int:
    """Re-encrypt every stored secret under the newest key (the first of STSYNC_SECRET_KEYS) and commit; returns
    how many secrets were rewritten. A secret no configured key opens leaves every row as it was."""
    get_settings().secret_key()
    with session_scope() as s:
        return reencrypt_all(s)
