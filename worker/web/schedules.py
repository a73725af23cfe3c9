"""Schedules (admin): every project's nightly, weekly and payroll-period syncs with their next run in the
project's local time; set, paused, resumed or removed on the project's page."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from worker import service
from worker.web.auth import require_admin
from worker.web.calls import attempt, succeeded
from worker.web.forms import ConfirmForm, ScheduleForm

bp = Blueprint("schedules", __name__)
bp.before_request(require_admin)


@bp.route("/schedules")
def index() -> ResponseReturnValue:
    schedules = attempt(service.list_schedules) or []
    return render_template("schedules.html", schedules=schedules, project_id=None, form=None)


@bp.route("/projects/<int:project_id>/schedules")
def project(project_id: int) -> ResponseReturnValue:
    return _page(project_id, ScheduleForm(formdata=None))


@bp.route("/projects/<int:project_id>/schedules", methods=["POST"])
def set_schedule(project_id: int) -> ResponseReturnValue:
    form = ScheduleForm()
    if not form.validate_on_submit():
        return _page(project_id, form, 400)
    kind = form.kind.data or ""
    saved = attempt(
        service.set_schedule,
        project_id,
        kind,
        form.at.data or "",
        weekday=form.weekday.data if kind == "weekly" else None,
        payroll_kind=form.payroll_kind.data if kind == "payroll" else None,
        anchor=form.anchor.data if kind == "payroll" else None,
        grace_days=form.grace_days.data or 0,
    )
    if saved is None:
        return _page(project_id, form, 400)
    flash(f"{saved.kind.value} schedule set ({saved.detail}); next run {saved.next_run_local}", "ok")
    return redirect(url_for("schedules.project", project_id=project_id))


@bp.route("/projects/<int:project_id>/schedules/<kind>/<any(pause, resume, remove):action>", methods=["POST"])
def change(project_id: int, kind: str, action: str) -> ResponseReturnValue:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    call = {
        "pause": service.pause_schedule,
        "resume": service.resume_schedule,
        "remove": service.remove_schedule,
    }[action]
    if succeeded(call, project_id, kind):
        flash(f"{kind} schedule {'paused' if action == 'pause' else action + 'd'}", "ok")
    return redirect(url_for("schedules.project", project_id=project_id))


def _page(project_id: int, form: ScheduleForm, status: int = 200) -> ResponseReturnValue:
    schedules = attempt(service.list_schedules, project_id) or []
    return render_template("schedules.html", schedules=schedules, project_id=project_id, form=form), status
