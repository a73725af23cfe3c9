"""The console's Flask app and the gunicorn server that `stsync web` starts.

    gunicorn 'worker.web.app:create_app()' --bind 127.0.0.1:8000
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect
from gunicorn.app.base import BaseApplication
from werkzeug.exceptions import HTTPException

from worker.logging import configure_logging
from worker.settings import Settings, get_settings
from worker.web import (
    auth,
    connections,
    events,
    home,
    ops,
    projects,
    rules,
    runs,
    schedules,
    technicians,
    users,
)
from worker.web.display import FILTERS
from worker.web.hooks import bp as hooks_bp

SESSION_HOURS = 12
# A whole-window sync runs on the workers; the manual flow of a few hundred entries runs in the request.
REQUEST_TIMEOUT_S = 300

BLUEPRINTS = (
    auth.bp,
    ops.bp,
    connections.bp,
    projects.bp,
    events.bp,
    rules.bp,
    schedules.bp,
    runs.bp,
    technicians.bp,
    users.bp,
)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=session_key(settings),
        SESSION_COOKIE_NAME="stsync_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web_secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        # One policy for every unsafe method (STYLE: "CSRF is checked for every unsafe method by one policy").
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        WTF_CSRF_SSL_STRICT=settings.web_secure_cookies,
    )
    CSRFProtect(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.register_blueprint(hooks_bp)
    app.before_request(auth.require_signed_in_user)
    app.context_processor(auth.user_context)
    app.jinja_env.filters.update(FILTERS)
    app.add_url_rule("/", "home", home.index)
    app.register_error_handler(HTTPException, _error_page)
    headers = security_headers(settings)
    app.after_request(lambda response: _with_headers(response, headers))
    return app


def _error_page(error: HTTPException) -> ResponseReturnValue:
    """A refusal (400, 403, 404, ...) in the console's own layout, saying why; the webhook receivers and the
    operators' routes answer as they are."""
    if request.blueprint in ("hooks", "ops") or error.code is None or error.code >= 500:
        return error
    return render_template("error.html", error=error), error.code


def security_headers(settings: Settings) -> dict[str, str]:
    """Nothing loaded from elsewhere, no inline script or style, never framed; forms post here, or (Connect to
    Procore) go on to Procore's login, which the browser checks as a form's destination too."""
    login = urlsplit(settings.procore_login_url)
    policy = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
              f"frame-ancestors 'none'; base-uri 'none'; form-action 'self' {login.scheme}://{login.netloc}")
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin"}


def _with_headers(response: Response, headers: dict[str, str]) -> Response:
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response


def session_key(settings: Settings) -> bytes:
    """The key that signs session cookies, derived from the credentials key so there is one secret to keep; a
    key rotation signs everyone out, which is what a rotation is for."""
    return hmac.new(settings.secret_key().encode(), b"stsync web session cookies", hashlib.sha256).digest()


def serve(bind: str | None = None, *, workers: int = 2, threads: int = 4) -> None:
    """Serve the console with gunicorn on `bind` (default WEB_BIND, 127.0.0.1:8000) until stopped."""
    configure_logging()
    options = {
        "bind": bind or get_settings().web_bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": REQUEST_TIMEOUT_S,
        "accesslog": "-",
    }
    _Gunicorn(options).run()


class _Gunicorn(BaseApplication):  # type: ignore[misc] - gunicorn ships no type hints
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app()
