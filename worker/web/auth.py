"""Who is signed in: the sign-in and sign-out pages, the check every request passes (a signed-in user on every
page but sign-in), and the admin-only check of the admin pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from worker.service import users
from worker.web.forms import SignInForm

bp = Blueprint("auth", __name__)

View = TypeVar("View", bound=Callable[..., Any])
ALWAYS_PUBLIC = frozenset({"static"})


def public(view: View) -> View:
    """Mark a view as open to anyone: sign-in, health checks, and routes with their own token."""
    view.public = True  # type: ignore[attr-defined]
    return view


def require_signed_in_user() -> ResponseReturnValue | None:
    """Every request but those to public views needs a signed-in user; others go to sign-in and come back."""
    endpoint = request.endpoint
    view = current_app.view_functions.get(endpoint) if endpoint else None
    if view is None or endpoint in ALWAYS_PUBLIC or getattr(view, "public", False):
        return None
    user_id = session.get("user_id")
    user = users.get_user(user_id) if isinstance(user_id, int) else None
    if user is None:
        session.pop("user_id", None)  # removed since they signed in
        wanted = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.sign_in", next=wanted))
    g.user = user
    return None


def require_admin() -> None:
    """Before every view of an admin blueprint (connections, rules, schedules, users)."""
    user = g.get("user")
    if user is None or not user.is_admin:
        abort(
            403, "this page is for admins: ask an admin of stsync to make the change, or to make you an admin"
        )


def user_context() -> dict[str, Any]:
    return {"user": g.get("user")}


@bp.route("/sign-in", methods=["GET", "POST"])
@public
def sign_in() -> ResponseReturnValue:
    form = SignInForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = users.sign_in(
                form.email.data or "", form.password.data or "", client=request.remote_addr or "-"
            )
        except users.SignInThrottled as refused:
            form.password.errors.append(str(refused))
            status = 429
        except users.SignInRefused as refused:
            form.password.errors.append(str(refused))
            status = 401
        else:
            # A new session on sign-in: nothing set before it (by anyone) survives into the signed-in one.
            session.clear()
            session["user_id"] = user.id
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
    return render_template("sign_in.html", form=form), status


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("auth.sign_in"))


def _safe_next(wanted: str | None) -> str:
    """Back to the page asked for, on this site only."""
    if wanted and wanted.startswith("/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return url_for("home")
