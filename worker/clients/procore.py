"""Procore API client (procore.md Part A, P-1..P-14).

Tokens (P-2): client credentials by default; a user's refresh token where a person authorised the connection.
An access token is renewed five minutes before it expires and once on a 401, always under the token store's lock:
the store is re-read there, and if another worker has renewed meanwhile its token is used, so a connection is never
refreshed twice at once. Refresh tokens rotate and the old one dies at once, so the new pair is saved through the
store before it is used. A refresh token that Procore refuses, or one rotated by a refresh whose answer was lost,
needs a person: NeedsReauthorization says what to run.

Every /rest call sends `Procore-Company-Id` (P-3), takes one call from the shared rate budget first and reports the
X-Rate-Limit-* headers to it afterwards (P-9), where each answer is also counted by status for the metrics
(worker/clients/metrics.py). Lists follow `Link: rel="next"` (P-10) and are generators.

A connection made by a person starts with `authorize_url` and `exchange_authorization_code` (P-13); the tokens they
give are stored and refreshed like any other. Webhook hooks and triggers (P-14) are registered through the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from worker.clients.errors import (
    ApiError,
    BulkRouteRefused,
    BulkValidationFailed,
    CredentialsRejected,
    EntryLocked,
    EntryRefused,
    MalformedResponse,
    NeedsReauthorization,
    NotFound,
    OutcomeUnknown,
)
from worker.clients.http import ApiSession, Auth, Call, expect, expect_items, json_or_none, map_status
from worker.clients.ratelimit import RateBudget

SERVICE = "procore"
REFRESH_EARLY = timedelta(minutes=5)
DEFAULT_TOKEN_LIFETIME_S = 5400
BULK_MAX = 100
PER_PAGE = 1000  # ask for big pages; Link rel="next" says whether there are more, whatever size they came in
REST = "/rest/v1.0"
TOKEN_PATH = "/oauth/token"
AUTHORIZE_PATH = "/oauth/authorize"
HOOKS = f"{REST}/webhooks/hooks"
WEBHOOK_API_VERSION = "v2"
WEBHOOK_NAMESPACE = "stsync"
WEBHOOK_EVENTS = ("create", "update", "delete")


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: datetime  # UTC

    def fresh(self, now: datetime) -> bool:
        """Usable for a while yet: renewed REFRESH_EARLY before it expires (P-2)."""
        return bool(self.access_token) and self.expires_at - now > REFRESH_EARLY


@dataclass(frozen=True)
class RateLimitInfo:
    """The X-Rate-Limit-* headers of the last /rest answer (P-9): the tighter of Procore's two windows."""

    limit: int
    remaining: int
    reset: int  # unix seconds


class TokenStore(Protocol):
    """Where a connection's Procore tokens live (encrypted in the database in production)."""

    def load(self) -> TokenSet | None: ...

    def locked(self) -> AbstractContextManager[TokenSet | None]:
        """Hold the connection's lock (so that two workers never refresh at once) and yield the freshest
        tokens, re-read under it."""
        ...

    def save(self, tokens: TokenSet) -> None:
        """Store access and refresh token together, in one transaction."""
        ...


class MemoryTokenStore:
    """A TokenStore in memory, for tests and one-off commands."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self.tokens = tokens
        self._lock = threading.RLock()

    def load(self) -> TokenSet | None:
        return self.tokens

    @contextmanager
    def locked(self) -> Iterator[TokenSet | None]:
        with self._lock:
            yield self.tokens

    def save(self, tokens: TokenSet) -> None:
        self.tokens = tokens


class ProcoreClient:
    """One Procore company, through one OAuth client."""

    def __init__(
        self,
        api_url: str,
        login_url: str,
        company_id: int,
        *,
        client_id: str,
        client_secret: str,
        token_store: TokenStore,
        rate_budget: RateBudget | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 5,
    ) -> None:
        self.company_id = int(company_id)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_store = token_store
        self.rate_budget = rate_budget
        self.clock = clock
        self.last_rate_limit: RateLimitInfo | None = None
        self._tokens: TokenSet | None = None
        self.api = ApiSession(
            SERVICE, api_url, timeout=timeout, session=session, sleep=sleep, clock=clock,
            max_attempts=max_attempts, map_error=_map_error,
            before_request=rate_budget.acquire if rate_budget is not None else None,
            after_response=self._after_response,
        )
        # The login host has no rate-limit headers and no company header: a session of its own over one pool.
        self.login_api = ApiSession(SERVICE, login_url, timeout=timeout, session=self.api.http, sleep=sleep,
                                    clock=clock, max_attempts=max_attempts, map_error=self._map_token_error)
        self.api.add_secrets(client_secret)
        self.login_api.add_secrets(client_secret)
        self._auth = Auth(self._auth_headers, self._renew)
        self._refused: NeedsReauthorization | None = None

    # ------------------------------------------------------------------ tokens (P-2)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._access_token()}"}

    def _access_token(self) -> str:
        """A token good for five more minutes at least: the one in hand, the store's, or a new one."""
        if self._tokens is None:
            self._tokens = self.token_store.load()
        if self._tokens is None or not self._tokens.fresh(self._now()):
            self._refresh(rejected=None)
        assert self._tokens is not None
        return self._tokens.access_token

    def _renew(self, rejected: Mapping[str, str]) -> None:
        self._refresh(rejected=rejected.get("Authorization", "").removeprefix("Bearer "))

    def _refresh(self, rejected: str | None) -> None:
        """New tokens, unless another worker renewed them while we waited for the lock: then theirs. Once a grant
        says the connection must be authorised again, this client's other threads say so too without asking."""
        with self.token_store.locked() as current:
            if self._refused is not None:  # another thread of this client was refused while this one waited
                raise self._refused
            if current is not None and current.fresh(self._now()) and current.access_token != rejected:
                self._tokens = current
                return
            try:
                tokens = self._grant(current.refresh_token if current is not None else None)
            except NeedsReauthorization as refused:
                self._refused = refused
                raise
            # Saved before use: a rotated refresh token that is only in memory dies with this process.
            self.token_store.save(tokens)
            self._tokens = tokens

    def _grant(self, refresh_token: str | None) -> TokenSet:
        call = self.login_api.call("POST", TOKEN_PATH)
        form = {"client_id": self.client_id, "client_secret": self.client_secret}
        if refresh_token is None:
            # Asking twice only gives a second token: safe to repeat like a read.
            response = self.login_api.request(call, TOKEN_PATH,
                                              data={**form, "grant_type": "client_credentials"}, repeatable=True)
            return self._token_set(response, call, None)
        self.login_api.add_secrets(refresh_token)
        refresh_form = {**form, "grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            response = self.login_api.request(call, TOKEN_PATH, data=refresh_form, repeatable=False)
        except OutcomeUnknown as lost:
            # The old refresh token may have rotated with the lost answer. Asking once more with it is harmless:
            # either the first request never arrived and this one works, or Procore refuses it (invalid_grant).
            try:
                response = self.login_api.request(call, TOKEN_PATH, data=refresh_form, repeatable=False)
            except OutcomeUnknown:
                raise self._reauthorize(call, "the answer to the token refresh was lost twice, so the rotated "
                                              "refresh token is unknown") from lost
            except NeedsReauthorization as refused:
                raise self._reauthorize(call, "the answer to an earlier token refresh was lost and Procore has "
                                              f"refused the refresh token since ({refused.details})") from lost
        return self._token_set(response, call, refresh_token)

    def _token_set(self, response: requests.Response, call: Call, old_refresh: str | None) -> TokenSet:
        tokens = _read_tokens(self.login_api, response, call, old_refresh, self._now())
        self.api.add_secrets(tokens.access_token, tokens.refresh_token)
        return tokens

    def _map_token_error(self, call: Call, response: requests.Response, message: str) -> ApiError:
        body = json_or_none(response)
        if isinstance(body, dict) and body.get("error") == "invalid_grant":
            return self._reauthorize(call, f"Procore refused the stored refresh token ({message})", response,
                                     details=message)
        if response.status_code in (400, 401):
            return call.fail(CredentialsRejected, f"{message or 'the client was refused'}; check the client id "
                                                  "and secret of the Procore connection", response, details=body)
        return map_status(call, response, message)

    def _reauthorize(self, call: Call, why: str, response: requests.Response | None = None,
                     details: Any = None) -> NeedsReauthorization:
        advice = (f"{why}. A Procore user must authorise the connection again; then run `stsync connect procore "
                  f"--company-id {self.company_id} --client-id ... --client-secret ... --refresh-token NEW`")
        return call.fail(NeedsReauthorization, advice, response, details=details)

    # ------------------------------------------------------------------ calls

    def _after_response(self, response: requests.Response) -> None:
        self._observe_rate_limit(response)
        if self.rate_budget is not None:
            self.rate_budget.record_response(self.company_id, response.status_code)

    def _observe_rate_limit(self, response: requests.Response) -> None:
        headers = response.headers
        try:
            info = RateLimitInfo(int(headers["X-Rate-Limit-Limit"]), int(headers["X-Rate-Limit-Remaining"]),
                                 int(headers["X-Rate-Limit-Reset"]))
        except (KeyError, ValueError):
            return
        self.last_rate_limit = info
        if self.rate_budget is not None:
            self.rate_budget.observe(info.limit, info.remaining, info.reset)

    def _rest(self, call: Call, path: str, *, params: Any = None, json: Any = None,
              map_error: Callable[[Call, requests.Response, str], ApiError] | None = None) -> requests.Response:
        return self.api.request(call, path, params=params, json=json, auth=self._auth, map_error=map_error,
                                headers={"Procore-Company-Id": str(self.company_id)})

    def _object(self, endpoint: str, path: str, params: Any = None) -> dict[str, Any]:
        call = self.api.call("GET", endpoint)
        return self.api.json(self._rest(call, path, params=params), call, dict)

    def _written(self, call: Call, response: requests.Response, kind: type | tuple[type, ...]) -> Any:
        """The body of a 2xx answer to a write. Unreadable, it says nothing about what was created: the outcome
        is unknown and must be looked up, not assumed."""
        try:
            return self.api.json(response, call, kind)
        except MalformedResponse as exc:
            raise call.fail(OutcomeUnknown, f"{exc.message}; the write may or may not have been applied",
                            response) from exc

    def _pages(self, endpoint: str, path: str, params: Iterable[tuple[str, Any]] = ()) -> Iterator[dict[str, Any]]:
        """Every item of a list, following `Link: rel="next"` (P-10); never assumes a page size."""
        call = self.api.call("GET", endpoint)
        query: list[tuple[str, Any]] | None = [*params, ("per_page", PER_PAGE)]
        url = path
        while True:
            response = self._rest(call, url, params=query)
            items = self.api.json(response, call, list)
            yield from expect_items(items, "the list", call, response)
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                return
            next_url = self._on_our_host(next_url)
            if next_url == response.url:
                raise call.fail(MalformedResponse, "the Link rel=\"next\" points at the page just read", response)
            url, query = next_url, None  # the link carries the whole query

    def _on_our_host(self, url: str) -> str:
        """A next link on another host keeps its path and query but goes to ours: the token is for our host."""
        ours = urlsplit(self.api.base_url)
        link = urlsplit(url)
        if (link.scheme, link.netloc) == (ours.scheme, ours.netloc):
            return url
        return urlunsplit((ours.scheme, ours.netloc, link.path, link.query, ""))

    # ------------------------------------------------------------------ reads (P-4)

    def get_project(self, project_id: int) -> dict[str, Any]:
        """`id, name, address, city, state_code, zip, time_zone, tz_name, active, company{...}`."""
        return self._object(f"{REST}/projects/{{id}}", f"{REST}/projects/{project_id}",
                            {"company_id": self.company_id})

    def projects(self) -> Iterator[dict[str, Any]]:
        """The company's active projects: `id, name, display_name, project_number, city, state_code, ...`."""
        return self._pages(f"{REST}/projects", f"{REST}/projects", [("company_id", self.company_id)])

    def company_configuration(self) -> dict[str, Any]:
        """Includes `projects_timecard_in_out_enabled`: projects that record start/stop times."""
        return self._object(f"{REST}/company_configuration", f"{REST}/company_configuration",
                            {"company_id": self.company_id})

    def rounding_configuration(self) -> dict[str, Any] | None:
        """`{id, company_id, time_increment, rule}`, or None when the company has no rounding rule (404)."""
        try:
            return self._object(f"{REST}/companies/{{cid}}/rounding_configuration",
                                f"{REST}/companies/{self.company_id}/rounding_configuration")
        except NotFound:
            return None

    def project_tools(self, project_id: int) -> list[dict[str, Any]]:
        """`[{id, engine_name, title, is_active}]`; the Timesheets tool is the one titled "Timesheets"."""
        return list(self._pages(f"{REST}/projects/{{id}}/tools", f"{REST}/projects/{project_id}/tools"))

    def cost_codes(self, project_id: int) -> Iterator[dict[str, Any]]:
        """`{id, code, full_code, name, budgeted, line_item_types[]}` of a project."""
        return self._pages(f"{REST}/cost_codes", f"{REST}/cost_codes", [("project_id", project_id)])

    def line_item_types(self) -> Iterator[dict[str, Any]]:
        """The company's cost types `{id, name, code, base_type}`."""
        return self._pages(f"{REST}/line_item_types", f"{REST}/line_item_types", [("company_id", self.company_id)])

    def people(self, employees_only: bool = True) -> Iterator[dict[str, Any]]:
        """`{id, first_name, last_name, is_employee, employee_id, user_id}`; a timecard's party_id is `id`."""
        params = [("filters[is_employee]", "true")] if employees_only else []
        return self._pages(f"{REST}/companies/{{cid}}/people", f"{REST}/companies/{self.company_id}/people", params)

    def time_types(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """Timecard time types of a project, or of the company."""
        if project_id is not None:
            return list(self._pages(f"{REST}/timecard_time_types", f"{REST}/timecard_time_types",
                                    [("project_id", project_id)]))
        return list(self._pages(f"{REST}/companies/{{cid}}/timecard_time_types",
                                f"{REST}/companies/{self.company_id}/timecard_time_types"))

    # ------------------------------------------------------------------ timecard entries (P-5..P-7)

    def bulk_create_entries(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create up to 100 entries at once, all or nothing (P-5). Returns the created entries in request order.
        Raises BulkValidationFailed (nothing created; `index_errors` by request position) or OutcomeUnknown (the
        request went out and no usable answer came back: look the entries up by origin_id, never resend blind)."""
        if not 0 < len(entries) <= BULK_MAX:
            raise ValueError(f"a bulk create takes 1 to {BULK_MAX} entries, got {len(entries)}; send them in "
                             f"chunks of at most {BULK_MAX}")
        call = self.api.call("POST", f"{REST}/companies/{{cid}}/timesheets")
        response = self._rest(call, f"{REST}/companies/{self.company_id}/timesheets",
                              json={"timecard_entries": [dict(e) for e in entries]}, map_error=_map_bulk_error)
        body = self._written(call, response, (list, dict))
        created = body.get("timecard_entries") if isinstance(body, dict) else body
        if not isinstance(created, list) or len(created) != len(entries) or not all(
            isinstance(item, dict) and _same_origin(sent, item) for sent, item in zip(entries, created, strict=True)
        ):
            raise call.fail(OutcomeUnknown, f"the answer does not list the {len(entries)} entries sent, in order; "
                                            "they may or may not have been created", response)
        return created

    def create_entry(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Create one entry through the company form (P-5, 201): the route to fall back on when the bulk route is
        refused. `entry` is what a bulk call takes, `project_id` included. Same rate budget and retries as the bulk
        call: sent again only when the answer proves nothing was created. Returns the entry as Procore answered it.
        Raises ValidationFailed (400/422: nothing created) or OutcomeUnknown (look it up by origin_id)."""
        fields = dict(entry)
        if fields.get("project_id") is None:
            raise ValueError("a timecard entry needs its project_id")
        project_id = fields.pop("project_id")
        call = self.api.call("POST", f"{REST}/companies/{{cid}}/timecard_entries")
        response = self._rest(call, f"{REST}/companies/{self.company_id}/timecard_entries",
                              json={"project_id": project_id, "timecard_entry": fields})
        return self._written(call, response, dict)

    def list_entries(self, start_date: date | str, end_date: date | str, party_ids: Iterable[int] | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Company timecard entries of a date range (both included), of every project, optionally of some people
        (P-6), streamed page by page, a thousand a page: how an unknown outcome is resolved (by `origin_id`) and
        how entries are compared with what was sent. Each entry is as Procore answered it."""
        params: list[tuple[str, Any]] = [("start_date", _day(start_date)), ("end_date", _day(end_date))]
        params += [("filters[party_id][]", int(p)) for p in party_ids or ()]
        return self._pages(f"{REST}/companies/{{cid}}/timecard_entries",
                           f"{REST}/companies/{self.company_id}/timecard_entries", params)

    def get_entry(self, project_id: int, entry_id: int) -> dict[str, Any]:
        """One entry as Procore holds it (NotFound once deleted): how a refused change is told apart."""
        return self._object(f"{REST}/projects/{{pid}}/timecard_entries/{{id}}",
                            f"{REST}/projects/{project_id}/timecard_entries/{entry_id}")

    def update_entry(self, project_id: int, entry_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH (P-7); returns the entry as Procore answered it. EntryLocked when Procore says the entry is
        approved or completed, EntryRefused for any other 403 or 422."""
        call = self.api.call("PATCH", f"{REST}/projects/{{pid}}/timecard_entries/{{id}}")
        response = self._rest(call, f"{REST}/projects/{project_id}/timecard_entries/{entry_id}",
                              json={"timecard_entry": dict(fields)}, map_error=_map_entry_write_error)
        return self.api.json(response, call, dict)

    def delete_entry(self, project_id: int, entry_id: int) -> None:
        """DELETE (P-7); EntryLocked or EntryRefused as for a PATCH. A 404 after an attempt that got no answer
        means that attempt deleted it: done."""
        call = self.api.call("DELETE", f"{REST}/projects/{{pid}}/timecard_entries/{{id}}")
        self._rest(call, f"{REST}/projects/{project_id}/timecard_entries/{entry_id}",
                   map_error=_map_entry_write_error)

    # ------------------------------------------------------------------ webhooks (P-14)

    def create_hook(self, destination_url: str, destination_headers: Mapping[str, str],
                    project_id: int | None = None, namespace: str = WEBHOOK_NAMESPACE) -> dict[str, Any]:
        """Register a hook of the company (or of one project) delivering to `destination_url` with our
        `destination_headers` (the secret the receiver checks). Returns Procore's hook, with its `id`. A lost
        answer is OutcomeUnknown: find the hook with `list_hooks` before creating another."""
        self._keep_secret(destination_headers)
        call = self.api.call("POST", HOOKS)
        hook = {"api_version": WEBHOOK_API_VERSION, "namespace": namespace, "destination_url": destination_url,
                "destination_headers": dict(destination_headers)}
        response = self._rest(call, HOOKS, json={**self._scope(project_id), "hook": hook})
        return self._written(call, response, dict)

    def list_hooks(self, project_id: int | None = None) -> list[dict[str, Any]]:
        return list(self._pages(HOOKS, HOOKS, self._scope(project_id).items()))

    def update_hook(self, hook_id: int, *, destination_url: str | None = None,
                    destination_headers: Mapping[str, str] | None = None,
                    project_id: int | None = None) -> dict[str, Any]:
        """Change where a hook delivers or what it sends (a new secret, say); what is not given stays."""
        hook: dict[str, Any] = {"api_version": WEBHOOK_API_VERSION}
        if destination_url is not None:
            hook["destination_url"] = destination_url
        if destination_headers is not None:
            self._keep_secret(destination_headers)
            hook["destination_headers"] = dict(destination_headers)
        call = self.api.call("PATCH", f"{HOOKS}/{{id}}")
        response = self._rest(call, f"{HOOKS}/{int(hook_id)}", json={**self._scope(project_id), "hook": hook})
        return self.api.json(response, call, dict)

    def delete_hook(self, hook_id: int, project_id: int | None = None) -> None:
        call = self.api.call("DELETE", f"{HOOKS}/{{id}}")
        self._rest(call, f"{HOOKS}/{int(hook_id)}", params=self._scope(project_id))

    def create_trigger(self, hook_id: int, event_type: str, resource_name: str = "Timecard Entries",
                       project_id: int | None = None) -> dict[str, Any]:
        """Have the hook called when a `resource_name` is created, updated or deleted (`event_type`)."""
        if event_type not in WEBHOOK_EVENTS:
            raise ValueError(f"a trigger's event type is one of {', '.join(WEBHOOK_EVENTS)}, not {event_type!r}")
        call = self.api.call("POST", f"{HOOKS}/{{id}}/triggers")
        response = self._rest(call, f"{HOOKS}/{int(hook_id)}/triggers", json={
            **self._scope(project_id), "api_version": WEBHOOK_API_VERSION,
            "trigger": {"resource_name": resource_name, "event_type": event_type}})
        return self._written(call, response, dict)

    def list_triggers(self, hook_id: int, project_id: int | None = None) -> list[dict[str, Any]]:
        return list(self._pages(f"{HOOKS}/{{id}}/triggers", f"{HOOKS}/{int(hook_id)}/triggers",
                                self._scope(project_id).items()))

    def delete_trigger(self, hook_id: int, trigger_id: int, project_id: int | None = None) -> None:
        call = self.api.call("DELETE", f"{HOOKS}/{{id}}/triggers/{{trigger_id}}")
        self._rest(call, f"{HOOKS}/{int(hook_id)}/triggers/{int(trigger_id)}", params=self._scope(project_id))

    def _scope(self, project_id: int | None) -> dict[str, int]:
        """Hooks and triggers belong to one project, or to the company."""
        return {"project_id": int(project_id)} if project_id is not None else {"company_id": self.company_id}

    def _keep_secret(self, headers: Mapping[str, str]) -> None:
        """The delivery headers carry the receiver's secret: never in an error message, whole or as its last
        word (`Bearer <secret>`)."""
        for value in headers.values():
            self.api.add_secrets(value, value.split()[-1] if value.split() else None)


# ---------------------------------------------------------------------- connecting as a person (P-13)


def authorize_url(login_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    """Where to send a person who connects stsync to Procore. Procore sends them back to `redirect_uri` with
    `code` and `state`; the caller checks that `state` is the one it issued before exchanging the code."""
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                       "state": state})
    return f"{login_url.rstrip('/')}{AUTHORIZE_PATH}?{query}"


def exchange_authorization_code(
    login_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    *,
    timeout: float = 30.0,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> TokenSet:
    """The tokens for the `code` of an authorize redirect (P-13), to be saved through the connection's TokenStore;
    from then on the refresh token is used and rotated like any other. A code is used once and lives ten minutes,
    so it is never sent twice: NeedsReauthorization when Procore refuses it, CredentialsRejected when it refuses
    the client, OutcomeUnknown when the answer was lost (the code is spent either way: connect again)."""
    login = ApiSession(SERVICE, login_url, timeout=timeout, session=session, sleep=sleep, clock=clock,
                       map_error=_map_code_error)
    login.add_secrets(client_secret, code)
    call = login.call("POST", TOKEN_PATH)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "client_secret": client_secret}
    response = login.request(call, TOKEN_PATH, data=form, repeatable=False)
    return _read_tokens(login, response, call, None, datetime.fromtimestamp(clock(), UTC))


def _map_code_error(call: Call, response: requests.Response, message: str) -> ApiError:
    body = json_or_none(response)
    if isinstance(body, dict) and body.get("error") == "invalid_grant":
        return call.fail(NeedsReauthorization, f"Procore refused the authorization code ({message}); a code works "
                                               "once and for ten minutes: connect to Procore again", response,
                         details=message)
    if response.status_code in (400, 401):
        return call.fail(CredentialsRejected, f"{message or 'the client was refused'}; check the client id and "
                                              "secret of the Procore app", response, details=body)
    return map_status(call, response, message)


def _read_tokens(login: ApiSession, response: requests.Response, call: Call, old_refresh: str | None,
                 now: datetime) -> TokenSet:
    """The TokenSet of a token answer; its tokens become secrets of `login` at once."""
    body = login.json(response, call, dict, "the token answer")
    access = expect(body.get("access_token"), str, "access_token", call, response)
    expires_in = body.get("expires_in")
    lifetime = expires_in if isinstance(expires_in, int) and not isinstance(expires_in, bool) \
        else DEFAULT_TOKEN_LIFETIME_S
    refresh = body.get("refresh_token")
    # A client-credentials answer has no refresh token; a refresh answer rotates it (else the old one stays).
    new_refresh = refresh if isinstance(refresh, str) and refresh else old_refresh
    login.add_secrets(access, new_refresh)
    return TokenSet(access, new_refresh, now + timedelta(seconds=lifetime))


# ---------------------------------------------------------------------- error mapping


def _map_error(call: Call, response: requests.Response, message: str) -> ApiError:
    """Procore's 4xx answers with Procore's own words, whatever the body's shape (P-3, P-11)."""
    if response.status_code == 401:
        return call.fail(CredentialsRejected, f"{message or 'the access token was refused'} (even right after "
                                              "a new token was fetched)", response)
    return map_status(call, response, message)


def _map_bulk_error(call: Call, response: requests.Response, message: str) -> ApiError:
    """A 422 refuses the entries (P-5); a 403 or 404 refuses the route, and so does a 400, since we never send
    more than BULK_MAX: Procore's own cap is smaller (P-12)."""
    status = response.status_code
    body = json_or_none(response)
    if status in (400, 403, 404):
        return call.fail(BulkRouteRefused, message or f"status {status} without a message", response, details=body)
    if status == 422:
        return call.fail(BulkValidationFailed, message or "the entries were refused", response, details=body,
                         index_errors=_index_errors(body))
    return _map_error(call, response, message)


def _map_entry_write_error(call: Call, response: requests.Response, message: str) -> ApiError:
    """A PATCH or DELETE of an entry refused with 403 or 422 (P-7, P-12): EntryLocked when Procore's words say
    the entry is locked, EntryRefused otherwise."""
    status = response.status_code
    if status in (403, 422):
        refused = EntryLocked if _locked(message) else EntryRefused
        return call.fail(refused, message or f"status {status} without a message", response,
                         details=json_or_none(response))
    return _map_error(call, response, message)


def _locked(message: str) -> bool:
    """Procore's words for an approved or completed entry (P-7)."""
    text = message.lower()
    return any(words in text for words in ("cannot be modified", "cannot be deleted", "locked"))


def _index_errors(body: Any) -> dict[int, dict[str, list[str]]]:
    """Per-index errors of a bulk 422 (`{"errors": [{"index", "errors"}]}`); none for any other shape."""
    found: dict[int, dict[str, list[str]]] = {}
    errors = body.get("errors") if isinstance(body, dict) else body
    if not isinstance(errors, list):
        return found
    for item in errors:
        index = item.get("index") if isinstance(item, dict) else None
        if isinstance(index, int) and not isinstance(index, bool):
            fields = item.get("errors")
            if isinstance(fields, dict):
                found[index] = {str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
                                for k, v in fields.items()}
            else:
                found[index] = {"base": [str(fields)]}
    return found


def _same_origin(sent: Mapping[str, Any], created: Mapping[str, Any]) -> bool:
    """The created entry answers the one sent at its position (origin_id may come back as int or string)."""
    if sent.get("origin_id") is None or "origin_id" not in created:
        return True
    return str(sent["origin_id"]) == str(created["origin_id"])


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else date.fromisoformat(value).isoformat()
