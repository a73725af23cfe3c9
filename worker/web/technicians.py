"""Technicians: each one's Procore Employee ID, the Procore person it resolves to, or what to fix."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from worker import service
from worker.web.calls import attempt

bp = Blueprint("technicians", __name__, url_prefix="/technicians")


@bp.route("/")
def index() -> ResponseReturnValue:
    technicians = attempt(service.list_technicians)
    return render_template("technicians.html", technicians=technicians or [])
