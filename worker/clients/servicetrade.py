"""ServiceTrade API client (servicetrade.md Part A, ST-1..ST-8).

Session login is the default: POST /auth, then `Cookie: PHPSESSID=<token>` on every call; a 401 (empty body) means
log in once more and repeat. OAuth2 client credentials are the alternative. Lists are generators over `totalPages`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from worker.clients.errors import ApiError, CredentialsRejected, MalformedResponse, NotFound, ValidationFailed
from worker.clients.http import ApiSession, Unauthorized, expect, parse_json, remote_message

SERVICE = "servicetrade"
TOKEN_EARLY_S = 300


class ServiceTradeClient:
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
        max_attempts: int = 5,
    ) -> None:
        if not (username and password) and not (client_id and client_secret):
            raise ValueError("ServiceTrade needs a username and password, or an OAuth client id and secret")
        self.oauth = bool(client_id and client_secret) and not (username and password)
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.session_token = session_token
        self.on_session = on_session
        self._token_expires_at = 0.0 if session_token is None else float("inf")
        self._me: dict[str, Any] | None = None
        self.api = ApiSession(SERVICE, base_url, timeout=timeout, session=session, sleep=sleep,
                              max_attempts=max_attempts)

    # ------------------------------------------------------------------ auth

    def login(self) -> dict[str, Any]:
        """Session login (ST-2); returns `data` with `user` and its `company`."""
        if self.oauth:
            self._fetch_token()
            return self.whoami()
        response = self.api.request("POST", "/auth", json={"username": self.username, "password": self.password},
                                    ok_statuses=(400, 403))
        if response.status_code in (400, 403):
            raise CredentialsRejected(service=SERVICE, method="POST", endpoint="/auth", status=response.status_code,
                                      message=remote_message(response) or "login refused",
                                      request_id=response.headers.get("x-request-id"))
        data = self._data(response, "POST", "/auth")
        token = expect(data.get("authToken"), str, "data.authToken", SERVICE, "POST", "/auth")
        user = data.get("user")
        if isinstance(user, dict):
            self._me = _me_from_user(user)
        self._set_token(token, float("inf"))
        return data

    def logout(self) -> None:
        if self.session_token and not self.oauth:
            self.api.request("DELETE", "/auth", headers=self._headers(), ok_statuses=(404,))
        self._set_token(None, 0.0)

    def whoami(self) -> dict[str, Any]:
        """The API user and the account's own vendor company (`user.company.id`, ST-2)."""
        if self._me is not None:
            return self._me
        if self.oauth:
            data = self._get("/oauth2/userinfo")
            company = expect(data.get("company"), dict, "data.company", SERVICE, "GET", "/oauth2/userinfo")
            self._me = {"user_id": data.get("userId"), "name": data.get("name"), "company_id": company.get("id"),
                        "company_name": company.get("name")}
            return self._me
        if self.session_token is None:
            self.login()
        else:
            try:
                data = self._get("/auth")
            except NotFound:  # GET /auth answers 404 for a session that died: log in afresh
                self.session_token = None
                self.login()
            else:
                user = expect(data.get("user"), dict, "data.user", SERVICE, "GET", "/auth")
                self._me = _me_from_user(user)
        assert self._me is not None
        return self._me

    def _set_token(self, token: str | None, expires_at: float) -> None:
        self.session_token = token
        self._token_expires_at = expires_at
        if self.on_session is not None:
            self.on_session(token)

    def _fetch_token(self) -> None:
        response = self.api.request(
            "POST", "/oauth2/token", endpoint="/oauth2/token", ok_statuses=(400, 401),
            data={"grant_type": "client_credentials", "client_id": self.client_id,
                  "client_secret": self.client_secret},
        )
        if response.status_code in (400, 401):
            raise CredentialsRejected(service=SERVICE, method="POST", endpoint="/oauth2/token",
                                      status=response.status_code, message=remote_message(response),
                                      request_id=response.headers.get("x-request-id"))
        body = expect(parse_json(response, SERVICE, "POST", "/oauth2/token"), dict, "the token answer", SERVICE,
                      "POST", "/oauth2/token")
        token = expect(body.get("access_token"), str, "access_token", SERVICE, "POST", "/oauth2/token")
        expires_in = body.get("expires_in") if isinstance(body.get("expires_in"), int) else 3600
        self._set_token(token, time.time() + expires_in)

    def _ensure_auth(self) -> None:
        if self.session_token is None or time.time() >= self._token_expires_at - TOKEN_EARLY_S:
            if self.oauth:
                self._fetch_token()
            else:
                self.login()

    def _headers(self) -> dict[str, str]:
        if self.session_token is None:
            return {}
        if self.oauth:
            return {"Authorization": f"Bearer {self.session_token}"}
        return {"Cookie": f"PHPSESSID={self.session_token}"}

    # ------------------------------------------------------------------ calls

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, endpoint: str | None = None) -> Any:
        endpoint = endpoint or path
        self._ensure_auth()
        try:
            response = self._send(method, path, params, json, endpoint)
        except Unauthorized:
            # Sessions may expire at any time (ST-2): log in again, once, and repeat the call.
            self.session_token = None
            self._ensure_auth()
            try:
                response = self._send(method, path, params, json, endpoint)
            except Unauthorized as again:
                raise CredentialsRejected(service=SERVICE, method=method, endpoint=endpoint, status=401,
                                          message="the session was refused again right after logging in",
                                          request_id=again.response.headers.get("x-request-id")) from None
        return self._data(response, method, endpoint)

    def _send(self, method: str, path: str, params: Any, json: Any, endpoint: str) -> requests.Response:
        response = self.api.request(method, path, endpoint=endpoint, params=params, json=json,
                                    headers=self._headers(), ok_statuses=(400, 403, 404, 409))
        if response.status_code >= 400:
            self._raise(response, method, endpoint)
        return response

    def _raise(self, response: requests.Response, method: str, endpoint: str) -> None:
        common = {"service": SERVICE, "method": method, "endpoint": endpoint, "status": response.status_code,
                  "request_id": response.headers.get("x-request-id"), "message": remote_message(response)}
        details = None
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("messages"), dict):
                details = body["messages"].get("validation")
        except ValueError:
            pass
        if response.status_code == 400:
            raise ValidationFailed(details=details, **common)
        if response.status_code == 404:
            raise NotFound(**common)
        raise ApiError(details=details, **common)

    def _data(self, response: requests.Response, method: str, endpoint: str) -> Any:
        if response.status_code == 204 or (method == "DELETE" and not response.content):
            return None
        body = expect(parse_json(response, SERVICE, method, endpoint), dict, "the response envelope", SERVICE,
                      method, endpoint, response.status_code)
        if "data" not in body:
            raise MalformedResponse(service=SERVICE, method=method, endpoint=endpoint, status=response.status_code,
                                    message="the envelope has no 'data'")
        return body["data"]

    def _get(self, path: str, params: Mapping[str, Any] | None = None, endpoint: str | None = None) -> Any:
        return self._call("GET", path, params=params, endpoint=endpoint)

    def _pages(self, path: str, plural: str, params: Mapping[str, Any], limit: int | None = None) -> Iterator[dict]:
        """Every item of a list, page by page until `page == totalPages` (ST-3). Never assumes a page size."""
        page = 1
        while True:
            query = {k: v for k, v in params.items() if v is not None}
            query["page"] = page
            if limit is not None:
                query["limit"] = limit
            data = expect(self._get(path, query), dict, "data", SERVICE, "GET", path)
            items = expect(data.get(plural), list, f"data.{plural}", SERVICE, "GET", path)
            total = expect(data.get("totalPages"), int, "data.totalPages", SERVICE, "GET", path)
            for item in items:
                if not isinstance(item, dict):
                    raise MalformedResponse(service=SERVICE, method="GET", endpoint=path, status=200,
                                            message=f"an item of data.{plural} is {type(item).__name__}, not an object")
                yield item
            if page >= total:
                return
            page += 1

    # ------------------------------------------------------------------ resources

    def clock_events(
        self,
        *,
        job_id: int | None = None,
        user_id: int | None = None,
        user_ids: list[int] | None = None,
        activity: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        updated_after: int | None = None,
        limit: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Clock punches (ST-5), sorted by eventTime then id, streamed page by page."""
        params = {
            "jobId": job_id, "userId": user_id, "userIds": ",".join(map(str, user_ids)) if user_ids else None,
            "activity": activity, "startTime": start_time, "endTime": end_time, "updatedAfter": updated_after,
        }
        return self._pages("/clock", "events", params, limit)

    def technicians(self) -> Iterator[dict[str, Any]]:
        return self.users(isTech="true")

    def users(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self._pages("/user", "users", filters, 1000)

    def job_clock_summary(self, job_id: int) -> dict[str, Any]:
        return self._get(f"/job/{job_id}/clockevent", endpoint="/job/{id}/clockevent")

    def create_company(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/company", json=dict(body))

    def list_companies(self, *, name: str | None = None) -> Iterator[dict[str, Any]]:
        return self._pages("/company", "companies", {"name": name}, 1000)

    def create_location(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/location", json=dict(body))

    def list_locations(self, *, company_id: int | None = None) -> Iterator[dict[str, Any]]:
        return self._pages("/location", "locations", {"companyId": company_id}, 1000)

    def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/job", json=dict(body))

    def list_jobs(self, *, location_id: int | None = None, status: str = "all") -> Iterator[dict[str, Any]]:
        return self._pages("/job", "jobs", {"locationId": location_id, "status": status}, 1000)

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self._get(f"/job/{job_id}", endpoint="/job/{id}")


def _me_from_user(user: Mapping[str, Any]) -> dict[str, Any]:
    company = user.get("company") if isinstance(user.get("company"), dict) else {}
    return {"user_id": user.get("id"), "name": user.get("name"), "company_id": company.get("id"),
            "company_name": company.get("name")}
