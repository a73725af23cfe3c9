"""Calling the service from a view: the errors a person can act on (a wrong input, a project not linked yet,
Procore or ServiceTrade saying no) become a message on the page; anything else is a bug and stays a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import flash

from worker.clients.errors import ApiError
from worker.db import ProjectBusy
from worker.inputs import InvalidArgument
from worker.projects import LinkRefused
from worker.settings import MissingSecretKey
from worker.store.connections import NoConnection
from worker.sync.context import ProjectProblem

P = ParamSpec("P")
T = TypeVar("T")

EXPECTED = (
    InvalidArgument,
    LookupError,
    ApiError,
    LinkRefused,
    NoConnection,
    ProjectBusy,
    MissingSecretKey,
    ProjectProblem,
)


def attempt(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """The call's result, or None after flashing the reason it was refused."""
    went_through, result = _call(call, *args, **kwargs)
    return result if went_through else None


def succeeded(call: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> bool:
    """For a call that returns nothing: whether it went through (the reason is flashed when it did not)."""
    return _call(call, *args, **kwargs)[0]


def _call(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[bool, T | None]:
    try:
        return True, call(*args, **kwargs)
    except KeyError:
        raise  # a missing key is a bug, not a record a person can fix
    except EXPECTED as refused:
        flash(str(refused), "error")
        return False, None
