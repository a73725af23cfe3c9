"""The HTTP layer both clients share: one session, one retry policy (DESIGN §4), one log line per call.

Retry policy, in one place:
- connection failures before the request was sent, 429, and 503 are retried for every method: nothing was done;
- 500/502/504, resets and timeouts after sending are retried for reads and for PATCH/DELETE (repeating them is
  harmless), but a POST that met them raises OutcomeUnknown: it may have been created, so it is looked up, never
  sent again blind;
- waits follow Retry-After (seconds or an HTTP date) or X-Rate-Limit-Reset, else jittered exponential backoff;
  a wait of a minute or more raises DeferRun instead of sleeping.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import structlog
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from worker.clients.errors import (
    DeferRun,
    MalformedResponse,
    OutcomeUnknown,
    RateLimited,
    TransientError,
)

log = structlog.get_logger("stsync.http")

MAX_WAIT_S = 60.0
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Unauthorized(Exception):
    """A 401: the client decides whether to log in again (once) and repeat."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__("401")
        self.response = response


def retry_after_seconds(response: requests.Response, clock: Callable[[], float] = time.time) -> float | None:
    """How long the server asks us to wait: Retry-After (seconds or HTTP date), else X-Rate-Limit-Reset."""
    value = response.headers.get("Retry-After")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - clock())
        except (TypeError, ValueError):
            pass
    reset = response.headers.get("X-Rate-Limit-Reset")
    if response.status_code == 429 and reset and reset.strip().isdigit():
        return max(0.0, int(reset) - clock())
    return None


class ApiSession:
    """A requests.Session bound to one API's base URL, with the retry policy and call logging."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        before_request: Callable[[], None] | None = None,
        after_response: Callable[[requests.Response], None] | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.timeout = (min(10.0, timeout), timeout)
        self.http = session or requests.Session()
        if session is None:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
            self.http.mount("http://", adapter)
            self.http.mount("https://", adapter)
        self.sleep = sleep
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.before_request = before_request
        self.after_response = after_response

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str | None = None,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send with retries. Returns 2xx responses and those in `ok_statuses`; raises Unauthorized on 401 and
        typed errors otherwise (the caller maps the remaining 4xx with `raise_for`)."""
        endpoint = endpoint or path.split("?")[0]
        method = method.upper()
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            retry=retry_if_exception(_retryable),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, path, endpoint, params, json, data, headers, auth, ok_statuses)
        except RateLimited as exc:
            # Still limited after the in-process attempts: let the dispatcher come back later.
            raise DeferRun(max(exc.retry_after_s or 0.0, MAX_WAIT_S), str(exc)) from exc

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after_s", None)
        backoff = min(30.0, self.backoff_base_s * 2 ** (state.attempt_number - 1))
        wait = max(asked or 0.0, backoff * (0.5 + random.random()))
        return wait

    def _attempt(
        self,
        method: str,
        path: str,
        endpoint: str,
        params: Any,
        json: Any,
        data: Any,
        headers: Any,
        auth: Any,
        ok_statuses: tuple[int, ...],
    ) -> requests.Response:
        if self.before_request is not None:
            self.before_request()
        started = time.monotonic()
        try:
            response = self.http.request(
                method, self.url(path), params=params, json=json, data=data, headers=headers, auth=auth,
                timeout=self.timeout,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._log(method, endpoint, None, started, None, error=type(exc).__name__)
            raise self._connection_error(method, endpoint, exc) from exc
        request_id = response.headers.get("x-request-id") or response.headers.get("X-Request-Id")
        self._log(method, endpoint, response.status_code, started, request_id)
        if self.after_response is not None:
            self.after_response(response)
        status = response.status_code
        if 200 <= status < 300 or status in ok_statuses:
            return response
        if status == 401:
            raise Unauthorized(response)
        common = {"service": self.service, "method": method, "endpoint": endpoint, "status": status,
                  "request_id": request_id}
        if status == 429:
            wait = retry_after_seconds(response, self.clock)
            if wait is not None and wait >= MAX_WAIT_S:
                raise DeferRun(wait, f"{self.service} rate limit on {method} {endpoint}")
            raise RateLimited(message=remote_message(response) or "rate limited", retry_after_s=wait, **common)
        if status == 503:
            wait = retry_after_seconds(response, self.clock)
            if wait is not None and wait >= MAX_WAIT_S:
                raise DeferRun(wait, f"{self.service} is under load ({method} {endpoint} answered 503)")
            raise TransientError(message=remote_message(response) or "service unavailable", retry_after_s=wait,
                                 **common)
        if status >= 500:
            message = remote_message(response) or "server error"
            if method not in IDEMPOTENT:
                raise OutcomeUnknown(message=f"{message}; the write may or may not have been applied", **common)
            raise TransientError(message=message, **common)
        return response

    def _connection_error(self, method: str, endpoint: str, exc: Exception) -> Exception:
        common = {"service": self.service, "method": method, "endpoint": endpoint, "status": None}
        before_sending = isinstance(exc, requests.ConnectTimeout) or (
            isinstance(exc, requests.ConnectionError) and "NewConnectionError" in repr(exc)
        )
        if method not in IDEMPOTENT and not before_sending:
            return OutcomeUnknown(
                message=f"no answer ({type(exc).__name__}); the write may or may not have been applied", **common
            )
        return TransientError(message=f"connection failed ({type(exc).__name__})", **common)

    def _log(
        self, method: str, endpoint: str, status: int | None, started: float, request_id: str | None,
        error: str | None = None,
    ) -> None:
        log.info(
            "http.call", service=self.service, method=method, path=endpoint, status=status,
            duration_ms=round((time.monotonic() - started) * 1000, 1), request_id=request_id,
            **({"error": error} if error else {}),
        )


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RateLimited | TransientError)


def remote_message(response: requests.Response) -> str:
    """The server's own words, whatever shape the body has (JSON string/dict/list, plain text, HTML)."""
    text = response.text or ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if body is not None:
        return _flatten(body)[:1000]
    if "<html" in text[:500].lower():
        return f"an HTML page instead of JSON (status {response.status_code}, probably from a proxy)"
    return text.strip()[:500]


def _flatten(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return "; ".join(_flatten(b) for b in body)
    if isinstance(body, dict):
        for key in ("errors", "error_description", "error", "message", "messages"):
            if key in body and body[key]:
                return _flatten(body[key])
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in body.items())
    return str(body)


def parse_json(response: requests.Response, service: str, method: str, endpoint: str) -> Any:
    """The JSON body, or MalformedResponse naming the endpoint and what was wrong."""
    common = {"service": service, "method": method, "endpoint": endpoint, "status": response.status_code,
              "request_id": response.headers.get("x-request-id")}
    if not response.content:
        raise MalformedResponse(message="the body was empty where JSON was expected", **common)
    try:
        return response.json()
    except ValueError:
        snippet = response.text[:80].replace("\n", " ")
        kind = "an HTML page" if "<html" in response.text[:500].lower() else "text that is not JSON"
        raise MalformedResponse(message=f"the body was {kind} ({snippet!r})", **common) from None


def expect(value: Any, kind: type | tuple[type, ...], what: str, service: str, method: str, endpoint: str,
           status: int | None = None) -> Any:
    """A field of the body, checked for its type: a wrong shape is a MalformedResponse, not a KeyError later."""
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MalformedResponse(
            service=service, method=method, endpoint=endpoint, status=status,
            message=f"{what} should be {names}, got {type(value).__name__}",
        )
    return value
