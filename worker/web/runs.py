"""What stsync did: recent runs (problems first), one run's progress while it works, and a project's ledger
filtered by status, technician and date, with a retry of the failed entries."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from worker.enums import FINISHED_RUN_STATUSES, LedgerStatus
from worker.service import history, syncing, webhooks
from worker.web.calls import attempt
from worker.web.forms import ConfirmForm

bp = Blueprint("runs", __name__)

RECENT_RUNS = 100
RECENT_DELIVERIES = 50
REFRESH_S = 2


@bp.route("/runs")
def index() -> ResponseReturnValue:
    project_id = request.args.get("project_id", type=int)
    runs = attempt(history.list_runs, project_id, RECENT_RUNS, problems_first=True) or []
    deliveries = attempt(webhooks.recent_deliveries, RECENT_DELIVERIES) if project_id is None else None
    return render_template("runs.html", runs=runs, project_id=project_id, deliveries=deliveries)


@bp.route("/runs/<int:run_id>")
def show(run_id: int) -> ResponseReturnValue:
    """A run's status and counts; the page reloads itself until the run has finished."""
    run = attempt(history.get_run, run_id)
    if run is None:
        abort(404, f"there is no run {run_id}")
    finished = run.status in FINISHED_RUN_STATUSES
    return render_template("run.html", run=run, finished=finished, refresh_s=None if finished else REFRESH_S)


@bp.route("/projects/<int:project_id>/ledger")
def ledger(project_id: int) -> ResponseReturnValue:
    filters = {name: request.args.get(name) or None for name in ("status", "technician", "start", "end")}
    rows = attempt(history.list_ledger, project_id, **filters)
    return render_template(
        "ledger.html",
        rows=rows or [],
        filters=filters,
        project_id=project_id,
        statuses=[s.value for s in LedgerStatus],
        retry=ConfirmForm(),
        failed=sum(1 for r in rows or [] if r.status is LedgerStatus.failed),
    )


@bp.route("/projects/<int:project_id>/retry", methods=["POST"])
def retry(project_id: int) -> ResponseReturnValue:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    outcome = attempt(syncing.retry_failed, project_id)
    if outcome is not None:
        return redirect(url_for("runs.show", run_id=outcome.run_id))
    flash("nothing to retry: no failed or unknown entries on this project", "ok")
    return redirect(url_for("runs.ledger", project_id=project_id))
