"""Connections (admin): ServiceTrade by username and password; Procore by client credentials, or by "Connect
to Procore": the authorization-code grant (P-13), with a `state` issued here and checked when Procore sends
the person back."""

from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from worker import service
from worker.clients.procore import authorize_url
from worker.crypto import decrypt, encrypt
from worker.service import webhooks
from worker.settings import get_settings
from worker.store.connections import NoConnection
from worker.web.auth import require_admin
from worker.web.calls import attempt
from worker.web.forms import ProcoreForm, ServiceTradeForm, WebhooksForm

bp = Blueprint("connections", __name__, url_prefix="/connections")
bp.before_request(require_admin)

PENDING = "procore_authorization"


@bp.route("/")
def index() -> ResponseReturnValue:
    return _page(ServiceTradeForm(), ProcoreForm())


@bp.route("/servicetrade", methods=["POST"])
def servicetrade() -> ResponseReturnValue:
    form = ServiceTradeForm()
    if not form.validate_on_submit():
        return _page(form, ProcoreForm(formdata=None), 400)
    connected = attempt(
        service.connect_servicetrade, username=form.username.data, password=form.password.data
    )
    if connected is None:
        return _page(form, ProcoreForm(formdata=None), 400)
    flash(
        f"ServiceTrade connected: {connected.company_name or 'company ' + str(connected.company_id)}, "
        f"signed in as {connected.user_name or form.username.data}",
        "ok",
    )
    return redirect(url_for("connections.index"))


@bp.route("/procore", methods=["POST"])
def procore() -> ResponseReturnValue:
    form = ProcoreForm()
    if not form.validate_on_submit():
        return _page(ServiceTradeForm(formdata=None), form, 400)
    company_id, client_id, client_secret = (
        form.company_id.data,
        form.client_id.data or "",
        form.client_secret.data or "",
    )
    if form.authorize.data:
        return _send_to_procore(company_id, client_id, client_secret)
    connected = attempt(service.connect_procore, company_id, client_id, client_secret)
    if connected is None:
        return _page(ServiceTradeForm(formdata=None), form, 400)
    _flash_procore(connected)
    return redirect(url_for("connections.index"))


@bp.route("/webhooks", methods=["POST"])
def register_webhooks() -> ResponseReturnValue:
    """Register (or update) a sender's webhook so changes arrive between scheduled runs (which stay the backstop)."""
    form = WebhooksForm()
    if not form.validate_on_submit():
        return _page(ServiceTradeForm(formdata=None), ProcoreForm(formdata=None), 400, form)
    register = webhooks.register_procore if form.procore.data else webhooks.register_servicetrade
    registered = attempt(register, form.url.data or "")
    if registered is None:
        return _page(ServiceTradeForm(formdata=None), ProcoreForm(formdata=None), 400, form)
    flash(f"{registered.source} webhook {registered.action}: it delivers to {registered.url} "
          f"({', '.join(registered.events)})", "ok")
    return redirect(url_for("connections.index"))


@bp.route("/procore/callback")
def procore_callback() -> ResponseReturnValue:
    """Where Procore sends the person back with `code` and `state` (or `error`)."""
    pending = session.pop(PENDING, None)
    state = request.args.get("state", "")
    if not pending or not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
        flash(
            "this answer from Procore does not belong to a connection started here (its state differs): "
            "click Connect to Procore again",
            "error",
        )
        return redirect(url_for("connections.index"))
    if "error" in request.args:
        flash(f"Procore did not connect: {request.args['error'].replace('_', ' ')}", "error")
        return redirect(url_for("connections.index"))
    connected = attempt(
        service.connect_procore_with_code,
        int(pending["company_id"]),
        str(pending["client_id"]),
        decrypt(str(pending["client_secret"])),
        request.args.get("code", ""),
        _callback_url(),
    )
    if connected is not None:
        _flash_procore(connected)
    return redirect(url_for("connections.index"))


def _send_to_procore(company_id: int, client_id: str, client_secret: str) -> ResponseReturnValue:
    state = secrets.token_urlsafe(32)
    # The secret rides in the signed cookie until the callback, encrypted: signed is not secret.
    session[PENDING] = {
        "state": state,
        "company_id": company_id,
        "client_id": client_id,
        "client_secret": encrypt(client_secret),
    }
    return redirect(authorize_url(get_settings().procore_login_url, client_id, _callback_url(), state))


def _callback_url() -> str:
    return url_for("connections.procore_callback", _external=True)


def _flash_procore(connected: service.ProcoreConnected) -> None:
    flash(f"Procore company {connected.company_id} connected with {connected.grant}", "ok")


def _page(st_form: ServiceTradeForm, procore_form: ProcoreForm, status: int = 200,
          hooks_form: WebhooksForm | None = None) -> ResponseReturnValue:
    hooks_form = hooks_form or WebhooksForm(formdata=None, url=request.host_url.rstrip("/"))
    return render_template("connections.html", st_form=st_form, procore_form=procore_form, hooks_form=hooks_form,
                           hooks=_hook_statuses()), status


def _hook_statuses() -> list[webhooks.HookStatus] | None:
    """None until both systems are connected (the page says so instead of an error)."""
    try:
        return webhooks.status()
    except NoConnection:
        return None
