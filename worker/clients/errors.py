"""Typed errors of both API clients. Every message names the service, the method, the endpoint, the status, the
remote message and the remote request id; none carries a credential."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        *,
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
        self.endpoint = endpoint
        self.status = status
        self.message = message
        self.request_id = request_id
        self.details = details
        where = f"{service} {method} {endpoint}"
        status_text = f" answered {status}" if status is not None else ""
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{where}{status_text}: {message}{rid}")


class CredentialsRejected(ApiError):
    """The username/password, client id/secret or refresh token was refused."""


class NotFound(ApiError):
    pass


class ValidationFailed(ApiError):
    """400/422: the request was refused as invalid; nothing was created."""


class BulkValidationFailed(ValidationFailed):
    """An all-or-nothing bulk create refused: `index_errors` maps request positions to field errors (P-5)."""

    def __init__(self, *, index_errors: dict[int, dict[str, list[str]]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index_errors = index_errors or {}


class EntryLocked(ValidationFailed):
    """An approved or completed timecard entry can't be changed (P-7)."""


class RateLimited(ApiError):
    def __init__(self, *, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_after_s = retry_after_s


class TransientError(ApiError):
    """5xx or a connection failure on a call that is safe to repeat."""

    def __init__(self, *, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(ApiError):
    """A write was sent and no answer came back (lost response, reset, timeout, 500/502/504 on a write).

    Whether it took effect must be found out by reading, never by sending it again blind.
    """


class MalformedResponse(ApiError):
    """The answer was not what the API promises: HTML from a proxy, an empty body, wrong types."""


class NeedsReauthorization(ApiError):
    """The stored Procore refresh token is dead: a person must authorise the connection again."""


class DeferRun(Exception):
    """A wait of a minute or more is needed: the run ends `deferred` and the dispatcher picks it up later."""

    def __init__(self, wait_s: float, reason: str) -> None:
        self.wait_s = wait_s
        self.reason = reason
        super().__init__(f"{reason}; deferring the run by {wait_s:.0f} s")
