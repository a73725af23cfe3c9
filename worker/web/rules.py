"""Cost code rules of a project (admin): listed in the order they are tried, added with the project's budgeted
Labor cost codes and Labor cost types chosen by name, removed."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from wtforms.fields.choices import SelectChoice

from worker import service
from worker.projects import ProjectCheck, cost_code_label
from worker.web.auth import require_admin
from worker.web.calls import attempt, succeeded
from worker.web.forms import ConfirmForm, RuleForm

bp = Blueprint("rules", __name__, url_prefix="/projects/<int:project_id>/rules")
bp.before_request(require_admin)


@bp.route("/")
def index(project_id: int) -> ResponseReturnValue:
    return _page(project_id, RuleForm(formdata=None))


@bp.route("/", methods=["POST"])
def add(project_id: int) -> ResponseReturnValue:
    form = RuleForm()
    if not form.validate_on_submit():
        return _page(project_id, form, 400)
    added = attempt(
        service.add_rule,
        project_id,
        form.cost_code.data,
        form.cost_type.data,
        activity=form.activity.data or None,
        st_user_id=int(form.technician.data) if form.technician.data else None,
        weekdays=form.weekdays.data or None,
        start_between=form.start_between.data or None,
        billable=form.billable.data,
        description=form.description.data or None,
    )
    if added is None:
        return _page(project_id, form, 400)
    flash(f"rule #{added.priority} added: {added.cost_code}, {added.cost_type}", "ok")
    return redirect(url_for("rules.index", project_id=project_id))


@bp.route("/<int:priority>/remove", methods=["POST"])
def remove(project_id: int, priority: int) -> ResponseReturnValue:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if succeeded(service.remove_rule, project_id, priority):
        flash(f"rule #{priority} removed", "ok")
    return redirect(url_for("rules.index", project_id=project_id))


def _page(project_id: int, form: RuleForm, status: int = 200) -> ResponseReturnValue:
    check = attempt(service.check_project, project_id)
    rules = attempt(service.list_rules, project_id) or []
    if check is not None:
        _choices(form, check)
    return render_template(
        "rules.html", project_id=project_id, check=check, rules=rules, form=form, confirm=ConfirmForm()
    ), status


def _choices(form: RuleForm, check: ProjectCheck) -> None:
    form.cost_code.choices = [SelectChoice(cid, cost_code_label(c)) for cid, c in check.codes.usable.items()]
    form.cost_type.choices = [
        SelectChoice(tid, str(t.get("name"))) for tid, t in check.codes.labor_line_item_types.items()
    ]
    form.technician.choices = [SelectChoice("", "any technician")] + [
        SelectChoice(str(t.st_user_id), t.name) for t in check.technicians
    ]
