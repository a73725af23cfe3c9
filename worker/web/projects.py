"""Projects: the company's projects with their link state, and a project's page: what blocks a sync (each
named, with where to fix it in Procore), linking it to a ServiceTrade job, and the chart of hours posted."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from worker import service
from worker.enums import LedgerStatus
from worker.inputs import parse_day
from worker.projects import job_url
from worker.service import history
from worker.web.calls import attempt
from worker.web.chart import hours_chart
from worker.web.forms import LinkForm, WindowForm

bp = Blueprint("projects", __name__, url_prefix="/projects")

CHART_ROWS = 20_000


@bp.route("/")
def index() -> ResponseReturnValue:
    """The company's Procore projects with their link state; a project can also be opened by its Procore id."""
    wanted = request.args.get("project_id", "").strip()
    if wanted:
        if wanted.isdigit():
            return redirect(url_for("projects.show", project_id=int(wanted)))
        flash(f"a Procore project ID is a number, got {wanted!r}", "error")
    projects = attempt(service.list_projects)
    return render_template("projects.html", projects=projects or [])


@bp.route("/<int:project_id>")
def show(project_id: int) -> ResponseReturnValue:
    check = attempt(service.check_project, project_id)
    if check is None:
        return render_template("project_missing.html", project_id=project_id), 404
    detail = _linked(project_id)
    chart = None
    if detail is not None:
        start, end = _day("start"), _day("end")
        posted = (
            attempt(
                history.list_ledger,
                project_id,
                status=LedgerStatus.posted,
                start=start,
                end=end,
                limit=CHART_ROWS,
            )
            or []
        )
        chart = hours_chart(posted, start, end)
    return render_template(
        "project.html",
        check=check,
        detail=detail,
        chart=chart,
        link_form=LinkForm(),
        window_form=WindowForm(formdata=None),
        job_url=job_url(detail.st_job_id) if detail and detail.st_job_id else None,
    )


@bp.route("/<int:project_id>/link", methods=["POST"])
def link(project_id: int) -> ResponseReturnValue:
    form = LinkForm()
    if not form.validate_on_submit():
        abort(400)
    linked = attempt(service.link_project, project_id, form.job_type.data or "")
    if linked is not None:
        job = f"ServiceTrade job {linked.job_number or linked.job_id}"
        flash(
            f"{linked.project_name} is linked to {job}"
            if not linked.already_linked
            else f"{linked.project_name} was already linked to {job}",
            "ok",
        )
    return redirect(url_for("projects.show", project_id=project_id))


def _linked(project_id: int) -> service.ProjectDetail | None:
    """The stored link; None while the project is not linked, which the page says in its own words."""
    try:
        return service.show_project(project_id)
    except LookupError:
        return None


def _day(name: str) -> date | None:
    value = request.args.get(name) or None
    try:
        return parse_day(value, name)
    except ValueError as wrong:
        flash(str(wrong), "error")
        return None
