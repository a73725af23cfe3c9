"""Users of the console (admin): list, add, remove."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from worker.service import users
from worker.web.auth import require_admin
from worker.web.calls import attempt, succeeded
from worker.web.forms import ConfirmForm, UserForm

bp = Blueprint("users", __name__, url_prefix="/users")
bp.before_request(require_admin)


@bp.route("/")
def index() -> ResponseReturnValue:
    return _page(UserForm())


@bp.route("/", methods=["POST"])
def add() -> ResponseReturnValue:
    form = UserForm()
    if not form.validate_on_submit():
        return _page(form, 400)
    added = attempt(users.add_user, form.email.data or "", form.password.data or "", form.role.data)
    if added is None:
        return _page(form, 400)
    flash(f"{added.email} can sign in now, as {added.role.value}", "ok")
    return redirect(url_for("users.index"))


@bp.route("/<int:user_id>/remove", methods=["POST"])
def remove(user_id: int) -> ResponseReturnValue:
    if user_id == g.user.id:
        flash("you can't remove yourself: ask another admin", "error")
        return redirect(url_for("users.index"))
    if succeeded(users.remove_user, user_id):
        flash("user removed", "ok")
    return redirect(url_for("users.index"))


def _page(form: UserForm, status: int = 200) -> ResponseReturnValue:
    return render_template("users.html", users=users.list_users(), form=form, confirm=ConfirmForm()), status
