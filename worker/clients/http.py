"""The HTTP layer both clients share: one requests.Session per base URL, timeouts, one log line per call, the
mapping of answers to typed errors, defensive JSON parsing, and the retry policy (DESIGN §4) in this one place.

Retry policy:
- A request that never left (connection refused, connect timeout) is repeated whatever its method.
- 429 and 500/502/503/504 are repeated with jittered exponential backoff, honouring Retry-After (seconds or an
  HTTP date) and, on a 429, X-Rate-Limit-Reset. A wait of a minute or more is never slept: DeferRun instead.
- A write (POST) is repeated only when the answer proves nothing was done: 429, or 503 with Retry-After. A 500,
  502 or 504, a 503 without Retry-After, or no answer after the request went out (reset, remote disconnect, read
  timeout) raises OutcomeUnknown: the caller looks the write up instead of sending it again blind.
- PATCH and DELETE are idempotent here and are repeated like reads; a DELETE that answers 404 after an earlier
  attempt got no answer has been done by that attempt.
- A 401 is not retried here: when the call carries an `Auth`, it renews the credentials once and the call is made
  again; a second 401 goes to the client's error mapping.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from html import unescape
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import structlog
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.exceptions import NewConnectionError

from worker.clients.errors import (
    ApiError,
    CredentialsRejected,
    DeferRun,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    TransientError,
    ValidationFailed,
)

log = structlog.get_logger("stsync.http")

MAX_WAIT_S = 60.0  # DESIGN §4: a longer wait ends the run `deferred` instead of holding a worker
MAX_BACKOFF_S = 30.0
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
REDACTED = "[REDACTED]"

E = TypeVar("E", bound=ApiError)


@dataclass(frozen=True)
class Call:
    """One API operation as errors and log lines name it: `endpoint` is the path template, never a query string."""

    service: str
    method: str
    endpoint: str

    def fail(self, cls: type[E], message: str, response: requests.Response | None = None, **extra: Any) -> E:
        status = response.status_code if response is not None else None
        return cls(self.service, self.method, self.endpoint, status, message, request_id_of(response), **extra)


@dataclass(frozen=True)
class Auth:
    """How a client authenticates a call: `headers()` gives the credentials to send (obtaining them first if
    needed); `renew(rejected)` is called once after a 401 with the headers that were refused."""

    headers: Callable[[], Mapping[str, str]]
    renew: Callable[[Mapping[str, str]], None]


ErrorMapper = Callable[[Call, requests.Response, str], ApiError]


def map_status(call: Call, response: requests.Response, message: str) -> ApiError:
    """The default mapping of a 4xx answer (other than 429) to a typed error."""
    status = response.status_code
    message = message or f"status {status} without a message"
    if status == 401:
        return call.fail(CredentialsRejected, message, response)
    if status == 404:
        return call.fail(NotFound, message, response)
    if status in (400, 409, 422):
        return call.fail(ValidationFailed, message, response, details=json_or_none(response))
    return call.fail(ApiError, message, response, details=json_or_none(response))


class _Unauthorized(Exception):
    """A 401 on a call whose credentials may be renewed once."""

    def __init__(self, sent: Mapping[str, str]) -> None:
        super().__init__("401")
        self.sent = sent


class ApiSession:
    """A requests.Session bound to one base URL, with the retry policy, call logging and error mapping."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        timeout: float | tuple[float, float] = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        map_error: ErrorMapper = map_status,
        before_request: Callable[[], None] | None = None,
        after_response: Callable[[requests.Response], None] | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        # (connect, read): a host that doesn't answer the handshake is known to be down long before a slow read.
        self.timeout = timeout if isinstance(timeout, tuple) else (min(10.0, float(timeout)), float(timeout))
        self.http = session or _new_session()
        self.sleep = sleep
        self.clock = clock
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.map_error = map_error
        self.before_request = before_request
        self.after_response = after_response
        self._secrets: set[str] = set()

    # ------------------------------------------------------------------ helpers for the clients

    def call(self, method: str, endpoint: str) -> Call:
        return Call(self.service, method.upper(), endpoint)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def add_secrets(self, *values: str | None) -> None:
        """Values that must never appear in an error message, even when the server echoes them back."""
        self._secrets.update(v for v in values if v and len(v) >= 4)

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def json(self, response: requests.Response, call: Call, kind: type | tuple[type, ...] | None = None,
             what: str = "the body") -> Any:
        """The JSON body, or MalformedResponse naming the endpoint and what was wrong with it."""
        if not response.content.strip():
            raise call.fail(MalformedResponse, f"{what} was empty where JSON was expected", response)
        try:
            body = response.json()
        except ValueError:
            raise call.fail(MalformedResponse, f"{what} was {describe_non_json(response, self.scrub)}, not JSON",
                            response) from None
        return body if kind is None else expect(body, kind, what, call, response)

    # ------------------------------------------------------------------ the call

    def request(
        self,
        call: Call,
        path: str,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        map_error: ErrorMapper | None = None,
        repeatable: bool | None = None,
    ) -> requests.Response:
        """Send `call` to `path` with the retry policy; returns the 2xx response (or a DELETE's late 404).

        `repeatable` overrides what the method says about sending the request twice (a token request, say, is
        harmless to repeat although it is a POST)."""
        repeatable = call.method in REPEATABLE_METHODS if repeatable is None else repeatable
        send = _Send(call, path, params, json, data, headers, auth, map_error or self.map_error, repeatable)
        try:
            return self._with_retries(send)
        except _Unauthorized as exc:
            assert auth is not None
            # ST-2 / P-2: new credentials once, then the same call again; a second 401 is the mapper's to name.
            auth.renew(exc.sent)
            send.may_renew = False
            return self._with_retries(send)

    def _with_retries(self, send: _Send) -> requests.Response:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            retry=retry_if_exception(_worth_another_try),
            wait=self._wait,
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._attempt(send, attempt.retry_state.attempt_number)
        except RateLimited as exc:
            # Still limited after every in-process attempt: the window is spent; let the dispatcher come back.
            raise DeferRun(max(exc.retry_after_s or 0.0, MAX_WAIT_S),
                           f"{exc}; still rate limited after {self.max_attempts} attempts") from exc
        except TransientError as exc:
            # Tried max_attempts times already: a call around this one (a token fetched for another request) must
            # not try it all again, or five attempts become twenty-five and a person waits most of a minute.
            exc.retries_spent = True
            raise
        return response

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        backoff = min(MAX_BACKOFF_S, self.backoff_base_s * 2 ** (state.attempt_number - 1))
        jittered = backoff * random.uniform(0.5, 1.5)
        asked = getattr(exc, "retry_after_s", None)
        return max(asked, jittered) if asked is not None else jittered

    def _attempt(self, send: _Send, attempt: int) -> requests.Response:
        call = send.call
        sent = dict(send.headers or {})
        if send.auth is not None:
            sent.update(send.auth.headers())
        if self.before_request is not None:
            try:
                self.before_request()
            except DeferRun as exc:
                raise DeferRun(exc.wait_s, f"{call.service} {call.method} {call.endpoint}: {exc.reason}") from exc
        started = time.monotonic()
        try:
            response = self.http.request(
                call.method, self.url(send.path), params=send.params, json=send.json, data=send.data,
                headers=sent, timeout=self.timeout,
            )
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            self._log(call, attempt, started, None, None, error=type(exc).__name__)
            raise self._transport_error(call, exc, send.repeatable) from exc
        self._log(call, attempt, started, response.status_code, request_id_of(response))
        if self.after_response is not None:
            self.after_response(response)
        return self._judge(send, attempt, response, sent)

    def _judge(self, send: _Send, attempt: int, response: requests.Response,
               sent: Mapping[str, str]) -> requests.Response:
        call, status = send.call, response.status_code
        if 200 <= status < 300:
            return response
        if status == 401 and send.auth is not None and send.may_renew:
            raise _Unauthorized(sent)
        if status == 404 and call.method == "DELETE" and attempt > 1:
            log.info("http.delete_already_done", service=call.service, path=call.endpoint, attempt=attempt)
            return response
        message = remote_message(response, self.scrub)
        if status == 429:
            wait = requested_wait(response, self.clock)
            if wait is not None and wait >= MAX_WAIT_S:
                raise DeferRun(wait, f"{call.service} {call.method} {call.endpoint} answered 429 "
                                     f"({message or 'rate limited'}); the limit resets in {wait:.0f} s")
            raise call.fail(RateLimited, message or "rate limited", response, retry_after_s=wait)
        if status >= 500:
            wait = requested_wait(response, self.clock)
            # A 503 that names a time to come back is the server refusing work it has not started.
            refused_unprocessed = status == 503 and wait is not None
            if not send.repeatable and not refused_unprocessed:
                raise call.fail(OutcomeUnknown, f"{message or 'server error'}; the write may or may not have "
                                                "been applied", response)
            if wait is not None and wait >= MAX_WAIT_S:
                raise DeferRun(wait, f"{call.service} {call.method} {call.endpoint} answered {status} "
                                     f"({message or 'unavailable'}) and asks to come back in {wait:.0f} s")
            raise call.fail(TransientError, message or "server error", response, retry_after_s=wait)
        raise send.map_error(call, response, message)

    def _transport_error(self, call: Call, exc: Exception, repeatable: bool) -> ApiError:
        # The host is named: a person reading "could not connect" needs to know which address was tried.
        host = urlsplit(self.base_url).netloc
        if _never_sent(exc):
            return call.fail(TransientError, f"could not connect to {host} ({type(exc).__name__})")
        what = f"{_describe_transport(exc)} ({host})"
        if repeatable:
            return call.fail(TransientError, what)
        return call.fail(OutcomeUnknown, f"{what} after the request was sent; the write may or may not have "
                                         "been applied")

    def _log(self, call: Call, attempt: int, started: float, status: int | None, request_id: str | None,
             error: str | None = None) -> None:
        log.info(
            "http.call", service=call.service, method=call.method, path=call.endpoint, status=status,
            duration_ms=round((time.monotonic() - started) * 1000, 1), request_id=request_id, attempt=attempt,
            **({"error": error} if error else {}),
        )

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ApiError):
            log.warning("http.retry", service=exc.service, method=exc.method, path=exc.endpoint, status=exc.status,
                        attempt=state.attempt_number,
                        wait_s=round(state.next_action.sleep, 2) if state.next_action else None)


def _worth_another_try(exc: BaseException) -> bool:
    return isinstance(exc, RateLimited | TransientError) and not getattr(exc, "retries_spent", False)


@dataclass
class _Send:
    call: Call
    path: str
    params: Any
    json: Any
    data: Any
    headers: Mapping[str, str] | None
    auth: Auth | None
    map_error: ErrorMapper
    repeatable: bool
    may_renew: bool = True


def _new_session() -> requests.Session:
    session = requests.Session()
    # No retries below us: urllib3 repeating a POST on its own would defeat the policy above.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _never_sent(exc: Exception) -> bool:
    """True when the connection was never made, so the server cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, NewConnectionError) or isinstance(getattr(inner, "reason", None), NewConnectionError)


def _describe_transport(exc: Exception) -> str:
    if isinstance(exc, requests.ReadTimeout):
        return "no answer within the read timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut off"
    text = repr(exc)
    if "RemoteDisconnected" in text:
        return "the server closed the connection without answering"
    if "ConnectionReset" in text or "Connection reset" in text:
        return "the connection was reset"
    return f"the connection failed ({type(exc).__name__})"


def request_id_of(response: requests.Response | None) -> str | None:
    if response is None:
        return None
    return response.headers.get("x-request-id")


def requested_wait(response: requests.Response, clock: Callable[[], float] = time.time) -> float | None:
    """How long the server asks us to wait: Retry-After (seconds or an HTTP date) and, on a 429,
    X-Rate-Limit-Reset (unix seconds, P-9). When both are given the longer wait wins."""
    waits: list[float] = []
    retry_after = (response.headers.get("Retry-After") or "").strip()
    if retry_after:
        try:
            waits.append(max(0.0, float(retry_after)))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                waits.append(max(0.0, when.timestamp() - clock()))
    reset = (response.headers.get("X-Rate-Limit-Reset") or "").strip()
    if response.status_code == 429 and reset:
        with contextlib.suppress(ValueError):
            waits.append(max(0.0, float(reset) - clock()))
    return max(waits) if waits else None


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def remote_message(response: requests.Response, scrub: Callable[[str], str] = lambda s: s) -> str:
    """The server's own words, whatever shape the body has: JSON string, object or list, plain text, HTML."""
    body = json_or_none(response)
    if body is not None:
        text = flatten_message(body)
    elif response.content.strip():
        text = describe_non_json(response, scrub) if _looks_like_html(response) else response.text.strip()
    else:
        text = ""
    return scrub(" ".join(text.split()))[:1000]


def flatten_message(body: Any) -> str:
    """One line from an error body: ServiceTrade `messages.error`, Procore `errors` (string, field map or
    per-index list), OAuth `error`/`error_description`, or any other JSON."""
    if body is None:
        return ""
    if isinstance(body, str):
        return body.strip()
    if isinstance(body, list):
        return "; ".join(filter(None, (flatten_message(item) for item in body)))
    if not isinstance(body, dict):
        return str(body)
    if "index" in body and "errors" in body:
        return f"entry {body['index']}: {flatten_message(body['errors'])}"
    if body.get("error_description"):  # OAuth: {"error": code, "error_description": words}
        return ": ".join(str(p) for p in (body.get("error"), body["error_description"]) if p)
    messages = body.get("messages")
    if isinstance(messages, dict) and (messages.get("error") or messages.get("validation")):
        return flatten_message(messages.get("error")) or flatten_message(messages.get("validation"))
    for key in ("errors", "message", "error"):
        if body.get(key):
            return flatten_message(body[key])
    return "; ".join(f"{k}: {flatten_message(v)}" for k, v in body.items() if v not in (None, "", [], {}))


def _looks_like_html(response: requests.Response) -> bool:
    return "html" in (response.headers.get("Content-Type") or "").lower() or "<html" in response.text[:500].lower()


def describe_non_json(response: requests.Response, scrub: Callable[[str], str] = lambda s: s) -> str:
    if _looks_like_html(response):
        title = re.search(r"<title>(.*?)</title>", response.text, re.IGNORECASE | re.DOTALL)
        named = f" titled {unescape(title.group(1)).strip()!r}" if title else ""
        return f"an HTML page{named} (probably from a proxy)"
    snippet = scrub(" ".join(response.text[:60].split()))
    return f"text ({snippet!r})"


def expect(value: Any, kind: type | tuple[type, ...], what: str, call: Call,
           response: requests.Response | None = None) -> Any:
    """`value` checked for its type: a wrong shape is a MalformedResponse now, not a KeyError somewhere later."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(_type_name(k) for k in kinds)
        raise call.fail(MalformedResponse, f"{what} should be {names}, got {_type_name(type(value))}", response)
    return value


def expect_items(items: Collection[Any], what: str, call: Call, response: requests.Response | None = None
                 ) -> Collection[dict[str, Any]]:
    """Every item of a list is an object."""
    for item in items:
        expect(item, dict, f"an item of {what}", call, response)
    return items


def _type_name(kind: type) -> str:
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
            bool: "true/false", type(None): "null"}.get(kind, kind.__name__)
