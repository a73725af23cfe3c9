"""`stsync web` serves the console with gunicorn: the same `serve(bind)` the command calls, in its own process,
answering over real HTTP on the address it was given."""

from __future__ import annotations

import os
import sys

import requests

from . import processes
from .conftest import TEST_SECRET_KEY


def test_serve_runs_gunicorn_on_the_bind_address_and_the_console_answers(db_url: str, redis_url: str) -> None:
    port = processes.free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "STSYNC_SECRET_KEY": TEST_SECRET_KEY}
    server = processes.Proc(
        "web", [sys.executable, "-c", f"from worker.web.app import serve; serve('127.0.0.1:{port}')"], env
    ).start()
    try:
        server.wait_for(rf"Listening at: http://127\.0\.0\.1:{port}", timeout=60)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/healthz", timeout=10).json() == {"ok": True}
        page = requests.get(f"{base}/projects/", allow_redirects=False, timeout=10)
        assert page.status_code == 302 and page.headers["Location"].startswith("/sign-in")
        sign_in = requests.get(f"{base}/sign-in", timeout=10)
        assert sign_in.status_code == 200 and "Sign in to stsync" in sign_in.text
        assert "HttpOnly" in sign_in.headers["Set-Cookie"]
    finally:
        server.stop()
    assert "Booting worker" in server.output()
