"""Procore API client (procore.md Part A, P-1..P-11).

Tokens: client credentials by default, a user's refresh token where the connection was authorised by a person.
Access tokens are refreshed five minutes early and once on a 401, under the token store's lock, and the new pair is
saved before it is used: refresh tokens rotate and the old one dies at once (P-2).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import requests

from worker.clients.errors import (
    ApiError,
    BulkValidationFailed,
    CredentialsRejected,
    EntryLocked,
    MalformedResponse,
    NeedsReauthorization,
    NotFound,
    OutcomeUnknown,
    ValidationFailed,
)
from worker.clients.http import ApiSession, Unauthorized, expect, parse_json, remote_message
from worker.clients.ratelimit import RateBudget

SERVICE = "procore"
REFRESH_EARLY = timedelta(minutes=5)
BULK_MAX = 100
PER_PAGE = 1000
LOCKED_MESSAGE = "Approved timecard entries cannot be modified"


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: datetime

    def fresh(self, now: datetime) -> bool:
        return bool(self.access_token) and self.expires_at - now > REFRESH_EARLY


@dataclass(frozen=True)
class RateLimitInfo:
    limit: int
    remaining: int
    reset: int


class TokenStore(Protocol):
    def load(self) -> TokenSet | None: ...

    def locked(self) -> Any: ...  # a context manager yielding the freshest TokenSet | None

    def save(self, tokens: TokenSet) -> None: ...


class MemoryTokenStore:
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
        max_attempts: int = 5,
    ) -> None:
        self.company_id = int(company_id)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_store = token_store
        self.rate_budget = rate_budget
        self.last_rate_limit: RateLimitInfo | None = None
        self._tokens: TokenSet | None = None
        self.api = ApiSession(
            SERVICE, api_url, timeout=timeout, session=session, sleep=sleep, max_attempts=max_attempts,
            before_request=rate_budget.acquire if rate_budget is not None else None,
            after_response=self._observe_rate_limit,
        )
        self.login = ApiSession(SERVICE, login_url, timeout=timeout, session=self.api.http, sleep=sleep,
                                max_attempts=max_attempts)

    # ------------------------------------------------------------------ tokens

    def _access_token(self) -> str:
        now = datetime.now(UTC)
        if self._tokens is None:
            self._tokens = self.token_store.load()
        if self._tokens is not None and self._tokens.fresh(now):
            return self._tokens.access_token
        return self._refresh(failed=None)

    def _refresh(self, failed: str | None) -> str:
        """Get a new access token, unless another worker already did while we waited for the lock."""
        with self.token_store.locked() as current:
            now = datetime.now(UTC)
            if current is not None and current.fresh(now) and current.access_token != failed:
                self._tokens = current
                return current.access_token
            refresh_token = current.refresh_token if current is not None else None
            tokens = self._grant(refresh_token)
            self.token_store.save(tokens)
            self._tokens = tokens
            return tokens.access_token

    def _grant(self, refresh_token: str | None) -> TokenSet:
        form = {"client_id": self.client_id, "client_secret": self.client_secret}
        if refresh_token:
            form |= {"grant_type": "refresh_token", "refresh_token": refresh_token}
        else:
            form |= {"grant_type": "client_credentials"}
        try:
            response = self.login.request("POST", "/oauth/token", data=form, ok_statuses=(400, 401))
        except OutcomeUnknown as exc:
            if refresh_token:
                raise NeedsReauthorization(
                    service=SERVICE, method="POST", endpoint="/oauth/token", status=None,
                    message="the answer to the token refresh was lost, so the rotated refresh token is unknown; "
                    "a Procore user must authorise the connection again: run `stsync connect procore --company-id "
                    f"{self.company_id} --client-id ... --client-secret ... --refresh-token NEW`",
                ) from exc
            response = self.login.request("POST", "/oauth/token", data=form, ok_statuses=(400, 401))
        if response.status_code in (400, 401):
            message = remote_message(response)
            common = {"service": SERVICE, "method": "POST", "endpoint": "/oauth/token",
                      "status": response.status_code, "request_id": response.headers.get("x-request-id")}
            if refresh_token:
                raise NeedsReauthorization(
                    message=f"{message}. The stored refresh token is no longer valid; a Procore user must authorise "
                    f"the connection again: run `stsync connect procore --company-id {self.company_id} "
                    "--client-id ... --client-secret ... --refresh-token NEW`",
                    **common,
                )
            raise CredentialsRejected(message=message or "client credentials refused", **common)
        body = expect(parse_json(response, SERVICE, "POST", "/oauth/token"), dict, "the token answer", SERVICE,
                      "POST", "/oauth/token")
        access = expect(body.get("access_token"), str, "access_token", SERVICE, "POST", "/oauth/token")
        expires_in = body.get("expires_in") if isinstance(body.get("expires_in"), int) else 5400
        new_refresh = body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None
        return TokenSet(access, new_refresh,
                        datetime.now(UTC) + timedelta(seconds=expires_in))

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

    # ------------------------------------------------------------------ calls

    def _call(
        self, method: str, path: str, *, endpoint: str, params: Any = None, json: Any = None,
        bulk: bool = False,
    ) -> requests.Response:
        token = self._access_token()
        try:
            response = self._send(method, path, endpoint, params, json, token, bulk)
        except Unauthorized:
            token = self._refresh(failed=token)
            try:
                response = self._send(method, path, endpoint, params, json, token, bulk)
            except Unauthorized as again:
                raise CredentialsRejected(service=SERVICE, method=method, endpoint=endpoint, status=401,
                                          message=remote_message(again.response) or "access token refused",
                                          request_id=again.response.headers.get("x-request-id")) from None
        return response

    def _send(self, method: str, path: str, endpoint: str, params: Any, json: Any, token: str,
              bulk: bool) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "Procore-Company-Id": str(self.company_id)}
        response = self.api.request(method, path, endpoint=endpoint, params=params, json=json, headers=headers,
                                    ok_statuses=(400, 403, 404, 406, 409, 422))
        if response.status_code >= 400:
            self._raise(response, method, endpoint, bulk)
        return response

    def _raise(self, response: requests.Response, method: str, endpoint: str, bulk: bool) -> None:
        message = remote_message(response) or f"status {response.status_code}"
        common = {"service": SERVICE, "method": method, "endpoint": endpoint, "status": response.status_code,
                  "request_id": response.headers.get("x-request-id"), "message": message}
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 404:
            raise NotFound(**common)
        if response.status_code == 422 and LOCKED_MESSAGE in message:
            raise EntryLocked(details=body, **common)
        if response.status_code == 422 and bulk:
            raise BulkValidationFailed(index_errors=_index_errors(body), details=body, **common)
        if response.status_code in (400, 422):
            raise ValidationFailed(details=body, **common)
        raise ApiError(details=body, **common)

    def _json(self, response: requests.Response, method: str, endpoint: str, kind: type | tuple[type, ...]) -> Any:
        return expect(parse_json(response, SERVICE, method, endpoint), kind, "the body", SERVICE, method, endpoint,
                      response.status_code)

    def _get(self, path: str, endpoint: str, params: Any = None, kind: type | tuple[type, ...] = dict) -> Any:
        return self._json(self._call("GET", path, endpoint=endpoint, params=params), "GET", endpoint, kind)

    def _pages(self, path: str, endpoint: str, params: Mapping[str, Any] | list[tuple[str, Any]]) -> Iterator[dict]:
        """Every item of a list, following `Link: rel="next"` (P-10)."""
        query: Any = list(params.items()) if isinstance(params, Mapping) else list(params)
        query.append(("per_page", PER_PAGE))
        next_url: str | None = path
        while next_url is not None:
            response = self._call("GET", next_url, endpoint=endpoint, params=query)
            items = self._json(response, "GET", endpoint, list)
            for item in items:
                if not isinstance(item, dict):
                    raise MalformedResponse(service=SERVICE, method="GET", endpoint=endpoint, status=200,
                                            message=f"a list item is {type(item).__name__}, not an object")
                yield item
            next_url = response.links.get("next", {}).get("url")
            query = None  # the next link carries the query

    # ------------------------------------------------------------------ reads (P-4)

    def get_project(self, project_id: int) -> dict[str, Any]:
        return self._get(f"/rest/v1.0/projects/{project_id}", "/rest/v1.0/projects/{id}",
                         {"company_id": self.company_id})

    def company_configuration(self) -> dict[str, Any]:
        return self._get("/rest/v1.0/company_configuration", "/rest/v1.0/company_configuration",
                         {"company_id": self.company_id})

    def rounding_configuration(self) -> dict[str, Any] | None:
        """The company's rounding rule, or None when none is set (404)."""
        try:
            return self._get(f"/rest/v1.0/companies/{self.company_id}/rounding_configuration",
                             "/rest/v1.0/companies/{cid}/rounding_configuration")
        except NotFound:
            return None

    def project_tools(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._pages(f"/rest/v1.0/projects/{project_id}/tools", "/rest/v1.0/projects/{id}/tools", {}))

    def cost_codes(self, project_id: int) -> Iterator[dict[str, Any]]:
        return self._pages("/rest/v1.0/cost_codes", "/rest/v1.0/cost_codes", {"project_id": project_id})

    def line_item_types(self) -> Iterator[dict[str, Any]]:
        return self._pages("/rest/v1.0/line_item_types", "/rest/v1.0/line_item_types",
                           {"company_id": self.company_id})

    def people(self, *, employees_only: bool = True) -> Iterator[dict[str, Any]]:
        params = {"filters[is_employee]": "true"} if employees_only else {}
        return self._pages(f"/rest/v1.0/companies/{self.company_id}/people", "/rest/v1.0/companies/{cid}/people",
                           params)

    def time_types(self, project_id: int | None = None) -> list[dict[str, Any]]:
        if project_id is not None:
            return list(self._pages("/rest/v1.0/timecard_time_types", "/rest/v1.0/timecard_time_types",
                                    {"project_id": project_id}))
        return list(self._pages(f"/rest/v1.0/companies/{self.company_id}/timecard_time_types",
                                "/rest/v1.0/companies/{cid}/timecard_time_types", {}))

    # ------------------------------------------------------------------ timecard entries (P-5..P-7)

    def bulk_create_entries(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """All or nothing (P-5): the created entries in request order, or BulkValidationFailed with per-index
        errors, or OutcomeUnknown when no answer came."""
        if not 0 < len(entries) <= BULK_MAX:
            raise ValueError(f"a bulk create takes 1 to {BULK_MAX} entries, got {len(entries)}")
        endpoint = "/rest/v1.0/companies/{cid}/timesheets"
        response = self._call("POST", f"/rest/v1.0/companies/{self.company_id}/timesheets", endpoint=endpoint,
                              json={"timecard_entries": entries}, bulk=True)
        body = parse_json(response, SERVICE, "POST", endpoint)
        if isinstance(body, dict) and isinstance(body.get("timecard_entries"), list):
            body = body["timecard_entries"]
        created = expect(body, list, "the created entries", SERVICE, "POST", endpoint, response.status_code)
        for item in created:
            if not isinstance(item, dict) or "id" not in item:
                raise MalformedResponse(service=SERVICE, method="POST", endpoint=endpoint, status=response.status_code,
                                        message="a created entry has no id")
        return created

    def create_entry(self, project_id: int, entry: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = "/rest/v1.0/projects/{pid}/timecard_entries"
        response = self._call("POST", f"/rest/v1.0/projects/{project_id}/timecard_entries", endpoint=endpoint,
                              json={"timecard_entry": dict(entry)})
        return self._json(response, "POST", endpoint, dict)

    def list_entries(self, start_date: date, end_date: date, party_ids: list[int] | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Company timecard entries by date range and parties (P-6): how lost responses are resolved."""
        params: list[tuple[str, Any]] = [("start_date", start_date.isoformat()), ("end_date", end_date.isoformat())]
        params += [("filters[party_id][]", p) for p in party_ids or []]
        return self._pages(f"/rest/v1.0/companies/{self.company_id}/timecard_entries",
                           "/rest/v1.0/companies/{cid}/timecard_entries", params)

    def get_entry(self, project_id: int, entry_id: int) -> dict[str, Any]:
        return self._get(f"/rest/v1.0/projects/{project_id}/timecard_entries/{entry_id}",
                         "/rest/v1.0/projects/{pid}/timecard_entries/{id}")

    def update_entry(self, project_id: int, entry_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = "/rest/v1.0/projects/{pid}/timecard_entries/{id}"
        response = self._call("PATCH", f"/rest/v1.0/projects/{project_id}/timecard_entries/{entry_id}",
                              endpoint=endpoint, json={"timecard_entry": dict(fields)})
        return self._json(response, "PATCH", endpoint, dict)

    def delete_entry(self, project_id: int, entry_id: int) -> None:
        self._call("DELETE", f"/rest/v1.0/projects/{project_id}/timecard_entries/{entry_id}",
                   endpoint="/rest/v1.0/projects/{pid}/timecard_entries/{id}")


def _index_errors(body: Any) -> dict[int, dict[str, list[str]]]:
    """Per-index errors of a bulk 422; anything of another shape yields none (the caller splits the chunk)."""
    found: dict[int, dict[str, list[str]]] = {}
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return found
    for item in errors:
        if isinstance(item, dict) and isinstance(item.get("index"), int):
            fields = item.get("errors")
            found[item["index"]] = fields if isinstance(fields, dict) else {"entry": [str(fields)]}
    return found
