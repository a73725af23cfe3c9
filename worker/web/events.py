"""Clock events, the heart of the console: a project's clock events for a window with the rounding rule on
top, ticked and synced to Procore with one cost code and one cost type (the manual flow), and a whole window
queued for the workers."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from wtforms.fields.choices import SelectChoice

from worker.enums import RunTrigger
from worker.service import syncing
from worker.web.calls import attempt
from worker.web.forms import SyncEntriesForm, WindowForm

bp = Blueprint("events", __name__, url_prefix="/projects/<int:project_id>")

@bp.route("/events")
def index(project_id: int) -> ResponseReturnValue:
    # Without dates the service opens on the current payroll period, or the last 7 days.
    start, end = request.args.get("start") or None, request.args.get("end") or None
    view = attempt(syncing.clock_events, project_id, start, end)
    if view is None:
        return redirect(url_for("projects.show", project_id=project_id))
    form = SyncEntriesForm(formdata=None, start=view.window.start, end=view.window.end)
    form.cost_code.choices = [SelectChoice(c.id, c.label) for c in view.cost_codes]
    form.cost_type.choices = [SelectChoice(t.id, t.label) for t in view.cost_types]
    return render_template("events.html", view=view, form=form, project_id=project_id)


@bp.route("/events/sync", methods=["POST"])
def sync_entries(project_id: int) -> ResponseReturnValue:
    form = SyncEntriesForm()
    window = {"start": request.form.get("start") or None, "end": request.form.get("end") or None}
    ticked = request.form.getlist("event")
    if not form.validate_on_submit() or not ticked:
        flash("tick at least one clock event, then pick a cost code and a cost type", "error")
        return redirect(url_for("events.index", project_id=project_id, **window))
    outcome = attempt(
        syncing.sync_selected,
        project_id,
        ticked,
        form.cost_code.data,
        form.cost_type.data,
        trigger=RunTrigger.console,
        **window,
    )
    if outcome is None:
        return redirect(url_for("events.index", project_id=project_id, **window))
    return render_template(
        "events_result.html", outcome=outcome, report=outcome.report, project_id=project_id, window=window
    )


@bp.route("/sync", methods=["POST"])
def sync_window(project_id: int) -> ResponseReturnValue:
    """A whole window goes to the workers; the run's page follows its progress instead of a frozen page."""
    form = WindowForm()
    if not form.validate_on_submit():
        flash("the window needs dates as YYYY-MM-DD", "error")
        return redirect(url_for("projects.show", project_id=project_id))
    run_id = attempt(
        syncing.enqueue_sync, project_id, form.start.data, form.end.data, trigger=RunTrigger.console
    )
    if run_id is None:
        return redirect(url_for("projects.show", project_id=project_id))
    return redirect(url_for("runs.show", run_id=run_id))
