"""ServiceTrade API client (servicetrade.md Part A, ST-1..ST-10).

Session login is the default: POST /auth, then `Cookie: PHPSESSID=<authToken>` on every call; a 401 (empty body)
means log in once more and repeat the call. OAuth2 is the alternative when the connection has a client id and
secret: a Bearer token from POST /oauth2/token (client credentials; the refresh token it comes with is used to renew
it), renewed once on a 401. Either way `on_session` hears every new token so the caller can store it encrypted.
Lists are generators that read page 1, then the other pages PAGE_READERS at a time, and give the items out in the
server's order until `page == totalPages`, whatever size the pages are.

Answers are read as ServiceTrade's official SDK reads them (ST-9): the identity call with or without its `data`
envelope, pages without `totalPages` read one by one until an empty one (a short page is not the last when the
server caps page sizes), numbers sent as strings as numbers, a list missing from `data` as empty. Each of these is logged once per client, the first time it is met.
Webhooks (ST-10) are registered through the client; their wire shape stays in here.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
import structlog

from worker.clients.errors import ApiError, CredentialsRejected, MalformedResponse, NotFound, ValidationFailed
from worker.clients.http import ApiSession, Auth, Call, expect, expect_items, json_or_none

SERVICE = "servicetrade"
# OAuth tokens are renewed this long before they expire, as ServiceTrade's own SDKs do.
TOKEN_EARLY_S = 300
PAGE_LIMIT = 1000  # ask for big pages; the server may still answer smaller ones (ST-3)
# Pages of one list read at once. ServiceTrade publishes no rate limit, only that it keeps a limited number of
# sessions per user: the pages share the client's one session, and a few requests in flight keep the load modest.
PAGE_READERS = 4
AUTH_ENDPOINTS = frozenset({"/auth", "/oauth2/token"})

log = structlog.get_logger("stsync.servicetrade")


class ServiceTradeClient:
    """ServiceTrade over session login (default) or OAuth2 client credentials."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        session_token: str | None = None,
        on_session: Callable[[str | None], None] | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 5,
    ) -> None:
        if not (username and password) and not (client_id and client_secret):
            raise ValueError("ServiceTrade needs a username and password, or an OAuth client id and secret")
        self.oauth = not (username and password)
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.on_session = on_session
        self.clock = clock
        self.api = ApiSession(SERVICE, base_url, timeout=timeout, session=session, sleep=sleep, clock=clock,
                              max_attempts=max_attempts, map_error=_map_error)
        self.api.add_secrets(password, client_secret, session_token)
        self.session_token = session_token
        # A stored OAuth token is a JWT whose `exp` says when to renew it; a session has no known end.
        self._expires_at = (_jwt_expiry(session_token) or math.inf) if session_token else 0.0
        self._refresh_token: str | None = None
        self._me: dict[str, Any] | None = None
        self._auth = Auth(self._auth_headers, self._renew)
        # Pages read side by side may find the session missing or expired together: one of them logs in, the
        # others see the new credentials (reentrant: logging in sets the token under it).
        self._auth_lock = threading.RLock()
        self._readings_seen: set[str] = set()

    # ------------------------------------------------------------------ auth (ST-2)

    def login(self) -> dict[str, Any]:
        """Start a session (or, for OAuth, fetch a token). Returns the `/auth` data (`authToken`, `user`) for a
        session, or `whoami()` for OAuth."""
        if self.oauth:
            self._new_access_token()
            return self.whoami()
        call = self.api.call("POST", "/auth")
        # Logging in twice only makes a second session, so a login whose answer was lost may be sent again.
        response = self.api.request(call, "/auth", json={"username": self.username, "password": self.password},
                                    repeatable=True)
        data = expect(self._data(response, call), dict, "data", call, response)
        token = expect(data.get("authToken"), str, "data.authToken", call, response)
        user = expect(data.get("user"), dict, "data.user", call, response)
        self._me = self._me_from_user(user, call, response)
        self._set_token(token, math.inf)
        return data

    def logout(self) -> None:
        """End the session (DELETE /auth) or revoke the OAuth token; `on_session` hears None."""
        if self.session_token is None:
            return
        if self.oauth:
            call = self.api.call("POST", "/oauth2/revoke")
            self.api.request(call, "/oauth2/revoke", data={"token": self.session_token, "client_id": self.client_id,
                                                           "client_secret": self.client_secret}, repeatable=True)
        else:
            call = self.api.call("DELETE", "/auth")
            self.api.request(call, "/auth", headers=self._credentials())
        self._refresh_token = None
        self._set_token(None, 0.0)

    def whoami(self) -> dict[str, Any]:
        """The API user and the account's own vendor company: `{user_id, name, company_id, company_name}`."""
        if self._me is not None:
            return self._me
        if self.oauth:
            call = self.api.call("GET", "/oauth2/userinfo")
            response = self.api.request(call, "/oauth2/userinfo", auth=self._auth)
            data = self._identity(response, call, "userId")
            company = expect(data.get("company"), dict, "data.company", call, response)
            self._me = {"user_id": data.get("userId"), "name": data.get("name"),
                        "company_id": self._number(company.get("id"), "data.company.id", call, response),
                        "company_name": company.get("name")}
        elif self.session_token is None:
            self.login()
        else:
            call = self.api.call("GET", "/auth")
            try:
                response = self.api.request(call, "/auth", headers=self._credentials())
            except NotFound:  # GET /auth answers 404 for a session that has died: start a new one
                self.login()
            else:
                data = self._identity(response, call, "user")
                self._me = self._me_from_user(expect(data.get("user"), dict, "data.user", call, response), call,
                                              response)
        assert self._me is not None
        return self._me

    def _credentials(self) -> dict[str, str]:
        if self.session_token is None:
            return {}
        if self.oauth:
            return {"Authorization": f"Bearer {self.session_token}"}
        return {"Cookie": f"PHPSESSID={self.session_token}"}

    def _auth_headers(self) -> Mapping[str, str]:
        with self._auth_lock:
            if self.session_token is None or self.clock() >= self._expires_at - TOKEN_EARLY_S:
                if self.oauth:
                    self._new_access_token()
                else:
                    self.login()
            return self._credentials()

    def _renew(self, rejected: Mapping[str, str]) -> None:
        """After a 401: the session expired or the token was dropped. Log in (or fetch a token) again, unless
        the credentials have already changed since that call was sent."""
        with self._auth_lock:
            current = self._credentials()
            if current and any(rejected.get(name) != value for name, value in current.items()):
                return
            if self.oauth:
                self._new_access_token()
            else:
                self.login()

    def _set_token(self, token: str | None, expires_at: float) -> None:
        self.api.add_secrets(token)
        self.session_token = token
        self._expires_at = expires_at
        if self.on_session is not None:
            self.on_session(token)

    def _new_access_token(self) -> None:
        body = None
        if self._refresh_token:
            try:
                body = self._token_request({"grant_type": "refresh_token", "refresh_token": self._refresh_token})
            except CredentialsRejected:
                body = None  # rotated away or expired: the client credentials still work
        if body is None:
            body = self._token_request({"grant_type": "client_credentials"})
        call = self.api.call("POST", "/oauth2/token")
        access = expect(body.get("access_token"), str, "access_token", call)
        refresh = body.get("refresh_token")
        self._refresh_token = refresh if isinstance(refresh, str) and refresh else None
        self.api.add_secrets(self._refresh_token)
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) \
            else 3600.0
        self._set_token(access, _jwt_expiry(access) or self.clock() + lifetime)

    def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        call = self.api.call("POST", "/oauth2/token")
        form = {**form, "client_id": self.client_id or "", "client_secret": self.client_secret or ""}
        # A repeated token request at worst leaves one unused token behind.
        response = self.api.request(call, "/oauth2/token", data=form, repeatable=True)
        return self.api.json(response, call, dict, "the token answer")

    # ------------------------------------------------------------------ calls (ST-3)

    def _call(self, method: str, path: str, endpoint: str | None = None, *,
              params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        call = self.api.call(method, endpoint or path)
        response = self.api.request(call, path, params=params, json=json, auth=self._auth)
        return self._data(response, call)

    def _object(self, method: str, path: str, endpoint: str | None = None, *, json: Any = None) -> dict[str, Any]:
        call = self.api.call(method, endpoint or path)
        response = self.api.request(call, path, json=json, auth=self._auth)
        return expect(self._data(response, call), dict, "data", call, response)

    def _data(self, response: requests.Response, call: Call) -> Any:
        """`data` of the envelope `{"messages"?, "data"}`; None for an empty 204."""
        if response.status_code == 204 or (call.method == "DELETE" and not response.content.strip()):
            return None
        body = self.api.json(response, call, dict, "the response envelope")
        if "data" not in body:
            raise call.fail(MalformedResponse, "the response envelope has no 'data'", response)
        return body["data"]

    def _identity(self, response: requests.Response, call: Call, marker: str) -> dict[str, Any]:
        """The identity answer's `data`, or the body itself when it comes without the envelope but carries
        `marker` (ST-9)."""
        body = self.api.json(response, call, dict, "the response envelope")
        if "data" not in body and marker in body:
            self._reading("identity_without_envelope", call)
            return body
        return expect(self._data(response, call), dict, "data", call, response)

    def _pages(self, path: str, plural: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a list, in the server's order: a generator, so a long list is never held whole.

        Page 1 says how many pages there are (`totalPages`, ST-3); the others are read PAGE_READERS at a time and
        given out in order, until a page answers `page >= totalPages` (each page's own count is believed, as a
        list that grows while it is read says so on its later pages). No page size is assumed: the server may
        answer fewer items than `limit`. A page without `totalPages` (ST-9) leaves the end unknown, and a short
        page proves nothing when the server caps pages below `limit`: those are read one after the other until
        a page comes back empty (one request more than the items need)."""
        call = self.api.call("GET", path)
        query = {k: _param(v) for k, v in params.items() if v is not None}
        query.setdefault("limit", PAGE_LIMIT)
        read = _PageReader(self, call, path, plural, query)
        items, total = read(1)
        yield from items
        if total is None:
            yield from self._pages_until_empty(read, bool(items))
        elif total > 1:
            yield from self._pages_side_by_side(read, total)

    @staticmethod
    def _pages_until_empty(read: _PageReader, more: bool) -> Iterator[dict[str, Any]]:
        page = 1
        while more:
            page += 1
            items, _ = read(page)
            yield from items
            more = bool(items)

    @staticmethod
    def _pages_side_by_side(read: _PageReader, total: int) -> Iterator[dict[str, Any]]:
        """Pages 2.. of a list whose page 1 said `total`, PAGE_READERS requests in flight at most."""
        pending: deque[tuple[int, Future[tuple[list[dict[str, Any]], int | None]]]] = deque()
        asked = 1
        pool = ThreadPoolExecutor(PAGE_READERS, thread_name_prefix="servicetrade-page")
        try:
            while True:
                while len(pending) < PAGE_READERS and asked < total:
                    asked += 1
                    # In this thread's context, so that its requests log with the run they belong to.
                    pending.append((asked, pool.submit(contextvars.copy_context().run, read, asked)))
                if not pending:
                    return
                page, future = pending.popleft()
                items, said = future.result()
                yield from items
                if said is None:  # this page no longer says: an empty one ends the list (ST-9)
                    said = page + 1 if items else page
                if page >= said:
                    return
                total = said
        finally:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True)

    def _page(self, call: Call, path: str, plural: str, query: Mapping[str, Any], page: int
              ) -> tuple[list[dict[str, Any]], int | None]:
        """One page's items and its `totalPages` (None when it has none, ST-9)."""
        response = self.api.request(call, path, params={**query, "page": page}, auth=self._auth)
        data = expect(self._data(response, call), dict, "data", call, response)
        items = self._page_items(data, plural, call, response)
        answered = self._number(data.get("page"), "data.page", call, response, optional=True)
        if answered is not None and answered != page:
            # A server that ignores `page` would, without totalPages, be read for ever.
            raise call.fail(MalformedResponse, f"page {page} was asked and page {answered} came back", response)
        total = self._number(data.get("totalPages"), "data.totalPages", call, response, optional=True)
        if total is None:
            self._reading("pages_without_total", call)
        return items, total

    def _page_items(self, data: Mapping[str, Any], plural: str, call: Call, response: requests.Response
                    ) -> list[dict[str, Any]]:
        items = data.get(plural)
        if items is None:
            self._reading("missing_list", call, field=f"data.{plural}")
            return []
        expect(items, list, f"data.{plural}", call, response)
        return list(expect_items(items, f"data.{plural}", call, response))

    def _number(self, value: Any, what: str, call: Call, response: requests.Response, *, optional: bool = False
                ) -> int | None:
        """An integer the client relies on; a string of digits is one too (ST-9)."""
        if value is None and optional:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            self._reading("numbers_as_strings", call, field=what)
            return int(value)
        return expect(value, int, what, call, response)

    def _reading(self, kind: str, call: Call, **detail: Any) -> None:
        """Log, the first time per client, that an answer was read the lenient way of ST-9."""
        if kind in self._readings_seen:
            return
        self._readings_seen.add(kind)
        log.warning("servicetrade.lenient_reading", reading=kind, method=call.method, path=call.endpoint, **detail)

    def _me_from_user(self, user: Mapping[str, Any], call: Call, response: requests.Response) -> dict[str, Any]:
        company = expect(user.get("company"), dict, "data.user.company", call, response)
        return {"user_id": user.get("id"), "name": user.get("name"),
                "company_id": self._number(company.get("id"), "data.user.company.id", call, response),
                "company_name": company.get("name")}

    # ------------------------------------------------------------------ clock events and users (ST-5, ST-6)

    def clock_events(
        self,
        *,
        job_id: int | None = None,
        user_id: int | None = None,
        user_ids: list[int] | None = None,
        activity: str | None = None,
        start_time: int | datetime | None = None,
        end_time: int | datetime | None = None,
        updated_after: int | datetime | None = None,
        limit: int = PAGE_LIMIT,
    ) -> Iterator[dict[str, Any]]:
        """Clock punches (ST-5), sorted by eventTime then id, streamed page by page. Times are unix seconds (or
        aware datetimes); `start_time`/`end_time` bound eventTime and, like `updated_after`, are inclusive."""
        params = {
            "jobId": job_id, "userId": user_id, "userIds": ",".join(map(str, user_ids)) if user_ids else None,
            "activity": activity, "startTime": _epoch(start_time), "endTime": _epoch(end_time),
            "updatedAfter": _epoch(updated_after), "limit": limit,
        }
        return self._pages("/clock", "events", params)

    def technicians(self) -> Iterator[dict[str, Any]]:
        """Users who are technicians (ST-6); the Procore Employee ID is `externalIds.procore`."""
        return self.users(isTech=True)

    def users(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """`GET /user` with ServiceTrade's own filter names (`isTech=True`, `status="active"`)."""
        return self._pages("/user", "users", filters)

    def job_clock_summary(self, job_id: int) -> dict[str, Any]:
        """`{activityTime, pairedEvents}` of one job (ST-5): a cross-check, not an incremental pull."""
        return self._object("GET", f"/job/{job_id}/clockevent", "/job/{id}/clockevent")

    # ------------------------------------------------------------------ customer side of a project (ST-7)

    def create_company(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._object("POST", "/company", json=dict(body))

    def list_companies(self, *, name: str | None = None) -> Iterator[dict[str, Any]]:
        return self._pages("/company", "companies", {"name": name})

    def create_location(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._object("POST", "/location", json=dict(body))

    def list_locations(self, *, company_id: int | None = None) -> Iterator[dict[str, Any]]:
        return self._pages("/location", "locations", {"companyId": company_id})

    def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`data` of the new job, with `id` and `number`."""
        return self._object("POST", "/job", json=dict(body))

    def list_jobs(self, *, location_id: int | None = None, status: str = "all") -> Iterator[dict[str, Any]]:
        """Jobs of a location; `status="all"` because ServiceTrade lists only scheduled jobs without one."""
        return self._pages("/job", "jobs", {"locationId": location_id, "status": status})

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self._object("GET", f"/job/{job_id}", "/job/{id}")

    # ------------------------------------------------------------------ webhooks (ST-10)

    def create_webhook(self, hook_url: str, entity_events: Mapping[str | int, Sequence[str]],
                       include_changesets: bool = True) -> dict[str, Any]:
        """Subscribe `hook_url` (which carries the receiver's secret: ServiceTrade signs nothing) to the events of
        each entity type, e.g. `{"clockevent": ["created", "updated", "deleted"]}`. Needs account-admin rights.
        Returns `{id, hookUrl, enabled, confirmed, ...}`. A lost answer is OutcomeUnknown: look for the hook with
        `list_webhooks` before creating another, since every hook receives every message."""
        self.api.add_secrets(hook_url)
        body = {"hookUrl": hook_url, "enabled": True, "includeChangesets": include_changesets,
                "entityEvents": _entity_events(entity_events)}
        return self._object("POST", "/webhook", json=body)

    def list_webhooks(self) -> list[dict[str, Any]]:
        return list(self._pages("/webhook", "webhooks", {}))

    def update_webhook(self, webhook_id: int, *, enabled: bool | None = None, include_changesets: bool | None = None,
                       entity_events: Mapping[str | int, Sequence[str]] | None = None) -> dict[str, Any]:
        """Change what a hook receives; what is not given stays. The URL can't change: delete and create anew."""
        body: dict[str, Any] = {}
        if enabled is not None:
            body["enabled"] = enabled
        if include_changesets is not None:
            body["includeChangesets"] = include_changesets
        if entity_events is not None:
            body["entityEvents"] = _entity_events(entity_events)
        return self._object("PUT", f"/webhook/{int(webhook_id)}", "/webhook/{id}", json=body)

    def delete_webhook(self, webhook_id: int) -> None:
        """Unsubscribe a hook. The body is not read: ServiceTrade answers a DELETE with 204 or with `{}`."""
        call = self.api.call("DELETE", "/webhook/{id}")
        self.api.request(call, f"/webhook/{int(webhook_id)}", auth=self._auth)


@dataclass(frozen=True)
class _PageReader:
    """Reads page N of one list (the same call, path and query every time); safe to call from several threads."""

    client: ServiceTradeClient
    call: Call
    path: str
    plural: str
    query: Mapping[str, Any]

    def __call__(self, page: int) -> tuple[list[dict[str, Any]], int | None]:
        return self.client._page(self.call, self.path, self.plural, self.query, page)


def _map_error(call: Call, response: requests.Response, message: str) -> ApiError:
    """ST-3 / ST-8: 400 with `messages.validation`, 403 for bad credentials, 404 for unknown ids."""
    body = json_or_none(response)
    messages = body.get("messages") if isinstance(body, dict) else None
    validation = messages.get("validation") if isinstance(messages, dict) else None
    status = response.status_code
    if call.endpoint in AUTH_ENDPOINTS and status in (400, 401, 403):
        return call.fail(CredentialsRejected, message or "the credentials were refused", response,
                         details=validation or body)
    if status == 401:
        return call.fail(CredentialsRejected, message or "refused again right after logging in anew", response)
    if status in (400, 409, 422):
        return call.fail(ValidationFailed, message or "the request was refused", response,
                         details=validation if isinstance(validation, dict) else {})
    if status == 404:
        return call.fail(NotFound, message or "not found", response)
    return call.fail(ApiError, message or f"status {status} without a message", response, details=body)


def _entity_events(entity_events: Mapping[str | int, Sequence[str]]) -> list[dict[str, Any]]:
    return [{"entityType": entity, "events": list(events)} for entity, events in entity_events.items()]


def _param(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def _epoch(value: int | datetime | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        raise ValueError(f"a naive datetime ({value}) is ambiguous; give an aware one or unix seconds")
    return int(value.timestamp())


def _jwt_expiry(token: str | None) -> float | None:
    """The `exp` claim of a JWT access token (ST-2), if the token is one."""
    parts = (token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
