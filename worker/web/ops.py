"""What operators and Prometheus read: /healthz (the process answers), /readyz (database, Redis, beat) and
/metrics (behind its own token: it shows counts by project)."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from flask import Blueprint, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue

from worker.health import health_redis_url, readiness
from worker.metrics import render_metrics
from worker.settings import get_settings
from worker.web.auth import public

bp = Blueprint("ops", __name__)


@bp.route("/healthz")
@public
def healthz() -> ResponseReturnValue:
    return jsonify({"ok": True})


@bp.route("/readyz")
@public
def readyz() -> ResponseReturnValue:
    settings = get_settings()
    report = readiness(settings.database_url, health_redis_url(settings), datetime.now(UTC))
    return jsonify(report), 200 if report["ready"] else 503


@bp.route("/metrics")
@public
def metrics() -> ResponseReturnValue:
    """404 when no METRICS_TOKEN is configured (nothing is exported), 401 without the right bearer token."""
    token = get_settings().metrics_token
    if token is None:
        abort(404)
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return Response("a bearer token is required\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = render_metrics()
    return Response(body, 200, {"Content-Type": content_type})
