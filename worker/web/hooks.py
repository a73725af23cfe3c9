"""The two webhook receivers (DESIGN §10): each reads the body (never more than the limit and a byte), hands it to
one service call and answers at once. They prove the sender by the token in the URL (ServiceTrade) or the bearer
secret (Procore), so they need no signed-in user and no CSRF token."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue

from worker.service import webhooks
from worker.settings import get_settings
from worker.web.auth import public

bp = Blueprint("hooks", __name__, url_prefix="/hooks")


def _exempt_from_csrf(state: BlueprintSetupState) -> None:
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)


bp.record_once(_exempt_from_csrf)


@bp.post("/servicetrade/<token>")
@public
def servicetrade(token: str) -> ResponseReturnValue:
    return _answer(webhooks.receive_servicetrade(token, _body(), declared_length=request.content_length))


@bp.post("/procore")
@public
def procore() -> ResponseReturnValue:
    return _answer(webhooks.receive_procore(request.headers.get("Authorization"), _body(),
                                            declared_length=request.content_length))


def _body() -> bytes:
    """At most one byte more than the limit: enough to tell a body too large without holding all of it."""
    return request.stream.read(get_settings().webhook_max_body_bytes + 1)


def _answer(receipt: webhooks.Receipt) -> ResponseReturnValue:
    return jsonify(receipt.body), receipt.status
