"""Typed errors of both API clients.

Every message names the service, the method, the endpoint (a path template without its query string), the status,
the remote message and the remote request id. No message carries a credential: the clients never put one in, and
the HTTP layer scrubs the secrets it knows from whatever the server echoed back.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A call to ServiceTrade or Procore that did not give the answer asked for."""

    def __init__(
        self,
        service: str,
        method: str,
        endpoint: str,
        status: int | None,
        message: str,
        request_id: str | None = None,
        details: Any = None,
    ) -> None:
        self.service = service
        self.method = method
        # A query string may carry secrets (tokens, signed urls): an endpoint is a path, never more.
        self.endpoint = endpoint.split("?", 1)[0]
        self.status = status
        self.message = message
        self.request_id = request_id
        self.details = details
        answered = f" answered {status}" if status is not None else ""
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{service} {method} {self.endpoint}{answered}: {message}{rid}")


class CredentialsRejected(ApiError):
    """The username/password, client id/secret or access token was refused (ServiceTrade 403 at /auth,
    OAuth invalid_client, a second 401 right after logging in again)."""


class NotFound(ApiError):
    """404: an unknown id, or (Procore, P-11) something the token is not allowed to see."""


class ValidationFailed(ApiError):
    """400/422: the request was refused as invalid and nothing was created. `details` holds the remote
    field errors (ServiceTrade `messages.validation`, Procore's `errors`)."""


class BulkValidationFailed(ValidationFailed):
    """An all-or-nothing bulk create was refused (P-5): `index_errors` maps request positions to field errors.
    Empty when Procore gave no per-index detail."""

    def __init__(self, *args: Any, index_errors: dict[int, dict[str, list[str]]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index_errors = index_errors or {}


class BulkRouteRefused(ApiError):
    """Procore refused the bulk route itself (P-12): 403 or 404 on `companies/{cid}/timesheets`, or 400 (a cap on
    the number of entries smaller than ours). Nothing was created; the entries may be sent one by one instead."""


class EntryRefused(ApiError):
    """A PATCH or DELETE of a timecard entry was refused with 403 or 422. `status` and `message` are Procore's: read
    the entry back to tell a locked (approved or completed) entry from another refusal."""


class EntryLocked(EntryRefused, ValidationFailed):
    """An approved or completed timecard entry can't be changed or deleted (P-7): Procore's message says so."""


class RateLimited(ApiError):
    """429. `retry_after_s` is the wait the server asked for (Retry-After or X-Rate-Limit-Reset), if any."""

    def __init__(self, *args: Any, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s


class TransientError(ApiError):
    """5xx, or a connection failure, on a call that is safe to repeat; still failing after the retries."""

    def __init__(self, *args: Any, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(ApiError):
    """A write was sent and no usable answer came back (lost response, reset, timeout after sending, 500/502/504,
    an unreadable 2xx body). Whether it took effect must be found out by reading, never by sending it again blind.
    """


class MalformedResponse(ApiError):
    """The answer was not what the API promises: HTML from a proxy, an empty body, wrong types. The message says
    what was wrong."""


class NeedsReauthorization(ApiError):
    """The stored Procore refresh token is dead (rejected, or rotated by a refresh whose answer was lost): a Procore
    user must authorise the connection again. The message says how."""


class DeferRun(Exception):
    """A wait of a minute or more is needed: the run ends `deferred` and the dispatcher picks it up later, instead of
    a worker sleeping. `reason` names the service, method and endpoint that asked for the wait."""

    def __init__(self, wait_s: float, reason: str) -> None:
        self.wait_s = wait_s
        self.reason = reason
        super().__init__(f"{reason}; deferring the run by {wait_s:.0f} s")
