"""The console's doors: every page but sign-in needs a signed-in user (walked over the whole URL map), every
POST needs its CSRF token, admin pages refuse payroll users, wrong passwords are throttled, and the session
cookie is HttpOnly, SameSite=Lax and Secure when asked. Flask's test client against a real PostgreSQL and
Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from worker.health import record_beat_tick
from worker.service import users
from worker.settings import reset_settings
from worker.web.app import create_app

ADMIN = ("admin@example.com", "correct horse battery")
PAYROLL = ("payroll@example.com", "payroll staple 2026")
# The only views open without signing in: sign-in itself, static files, health checks, and routes that prove
# their caller by a token of their own (/metrics, the webhook receivers).
MAY_BE_PUBLIC = {"auth.sign_in", "static", "ops.healthz", "ops.readyz", "ops.metrics", "hooks.servicetrade",
                 "hooks.procore"}
ADMIN_BLUEPRINTS = ("connections.", "rules.", "schedules.", "users.")
# A value for each kind of URL argument, so that every rule of the URL map can be built.
SAMPLE_ARGS = {
    "project_id": 562950240831334,
    "run_id": 1,
    "user_id": 1,
    "priority": 1,
    "kind": "nightly",
    "action": "pause",
    "filename": "console.css",
}


@pytest.fixture
def app(db_url: str, redis_url: str) -> Iterator[Flask]:
    users.add_user(*ADMIN, role="admin")
    users.add_user(*PAYROLL, role="payroll")
    yield create_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(client: FlaskClient, path: str = "/sign-in") -> str:
    return token_on(client.get(path).get_data(as_text=True), path)


def token_on(page: str, path: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: FlaskClient, email: str, password: str) -> Any:
    return client.post(
        "/sign-in", data={"email": email, "password": password, "csrf_token": csrf_token(client)}
    )


def url_of(app: Flask, rule: Rule) -> str:
    with app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **{arg: SAMPLE_ARGS[arg] for arg in rule.arguments})


def rules_of(app: Flask, method: str) -> list[Rule]:
    """The rules answering `method` that need a signed-in user."""
    return [r for r in app.url_map.iter_rules()
            if method in (r.methods or set()) and r.endpoint not in public_endpoints(app)]


def public_endpoints(app: Flask) -> set[str]:
    return {"static"} | {name for name, view in app.view_functions.items() if getattr(view, "public", False)}


def test_only_sign_in_health_and_token_guarded_routes_are_public(app: Flask) -> None:
    assert {"auth.sign_in", "ops.healthz", "ops.readyz", "ops.metrics"} <= public_endpoints(app) <= MAY_BE_PUBLIC


def test_every_page_but_the_public_ones_sends_an_anonymous_visitor_to_sign_in(
    app: Flask, client: FlaskClient
) -> None:
    walked = 0
    for rule in rules_of(app, "GET"):
        url = url_of(app, rule)
        response = client.get(url)
        assert response.status_code == 302, (
            f"GET {url} answered {response.status_code} to an anonymous visitor"
        )
        assert response.location.startswith("/sign-in?next="), f"GET {url} went to {response.location}"
        walked += 1
    assert walked >= 14


def test_every_post_refuses_an_anonymous_visitor_even_with_a_csrf_token(
    app: Flask, client: FlaskClient
) -> None:
    token = csrf_token(client)
    for rule in rules_of(app, "POST"):
        url = url_of(app, rule)
        response = client.post(url, data={"csrf_token": token})
        assert response.status_code == 302 and response.location == "/sign-in", (
            f"POST {url}: {response.status_code}"
        )


def test_every_post_without_a_csrf_token_is_refused(app: Flask, client: FlaskClient) -> None:
    assert sign_in(client, *ADMIN).status_code == 302
    for rule in rules_of(app, "POST"):
        url = url_of(app, rule)
        response = client.post(
            url, data={"email": "x@example.com", "password": "whatever-long", "role": "admin"}
        )
        assert response.status_code == 400, f"POST {url} without a CSRF token answered {response.status_code}"
        assert "CSRF" in response.get_data(as_text=True)
    assert [u.email for u in users.list_users()] == [ADMIN[0], PAYROLL[0]]


def test_sign_in_without_a_csrf_token_is_refused(client: FlaskClient) -> None:
    response = client.post("/sign-in", data={"email": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 400
    assert client.get("/projects/").status_code == 302


def test_a_payroll_user_is_refused_every_admin_page_and_form(app: Flask, client: FlaskClient) -> None:
    assert sign_in(client, *PAYROLL).status_code == 302
    token = csrf_token(client, "/runs")
    admin_rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith(ADMIN_BLUEPRINTS)]
    assert len(admin_rules) >= 10
    for rule in admin_rules:
        url = url_of(app, rule)
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            response = client.open(
                url, method=method, data={"csrf_token": token} if method == "POST" else None
            )
            assert response.status_code == 403, f"{method} {url} answered {response.status_code} to payroll"
            assert "this page is for admins" in response.get_data(as_text=True)
    assert [u.email for u in users.list_users()] == [ADMIN[0], PAYROLL[0]]


def test_a_payroll_user_sees_no_admin_links(client: FlaskClient) -> None:
    sign_in(client, *PAYROLL)
    page = client.get("/runs").get_data(as_text=True)
    assert "Runs" in page and "Technicians" in page
    assert "/connections/" not in page and "/users/" not in page


def test_an_admin_reaches_the_users_page_and_adds_a_payroll_user(client: FlaskClient) -> None:
    sign_in(client, *ADMIN)
    token = csrf_token(client, "/users/")
    response = client.post(
        "/users/",
        data={
            "email": "New.Person@Example.com",
            "password": "long enough pw",
            "role": "payroll",
            "csrf_token": token,
        },
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "new.person@example.com can sign in now, as payroll" in response.get_data(as_text=True)
    client.post("/sign-out", data={"csrf_token": csrf_token(client, "/users/")})
    assert sign_in(client, "new.person@example.com", "long enough pw").status_code == 302


def test_a_short_password_is_refused_with_its_reason(client: FlaskClient) -> None:
    sign_in(client, *ADMIN)
    response = client.post(
        "/users/",
        data={
            "email": "a@example.com",
            "password": "short",
            "role": "payroll",
            "csrf_token": csrf_token(client, "/users/"),
        },
    )
    assert response.status_code == 400
    assert "at least 10 characters" in response.get_data(as_text=True)


def test_a_wrong_password_is_refused_without_saying_whether_the_email_exists(client: FlaskClient) -> None:
    wrong = sign_in(client, ADMIN[0], "not the password")
    unknown = sign_in(client, "nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "wrong email or password" in wrong.get_data(as_text=True)
    assert "wrong email or password" in unknown.get_data(as_text=True)
    assert client.get("/projects/").status_code == 302


def test_sign_in_is_throttled_after_five_wrong_passwords_even_for_the_right_one(client: FlaskClient) -> None:
    for _ in range(users.MAX_FAILURES_PER_EMAIL):
        assert sign_in(client, ADMIN[0], "guess guess guess").status_code == 401
    throttled = sign_in(client, ADMIN[0], ADMIN[1])
    assert throttled.status_code == 429
    assert "too many wrong passwords: try again in 15 minutes" in throttled.get_data(as_text=True)
    assert client.get("/projects/").status_code == 302
    # Another email from the same address is not locked out by someone else's guesses.
    assert sign_in(client, *PAYROLL).status_code == 302


def test_the_throttle_forgets_the_failures_after_its_window(client: FlaskClient, redis_url: str) -> None:
    for _ in range(users.MAX_FAILURES_PER_EMAIL):
        sign_in(client, ADMIN[0], "guess guess guess")
    redis.Redis.from_url(redis_url).flushdb()  # what the keys' fifteen-minute expiry does
    assert sign_in(client, *ADMIN).status_code == 302


def test_sign_in_returns_to_the_page_asked_for_on_this_site_only(client: FlaskClient) -> None:
    assert client.get("/runs?project_id=5").location == "/sign-in?next=/runs?project_id%3D5"
    token = csrf_token(client)
    back = client.post(
        "/sign-in?next=/runs?project_id%3D5",
        data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
    )
    assert back.location == "/runs?project_id=5"
    client.post("/sign-out", data={"csrf_token": csrf_token(client, "/runs")})
    away = client.post(
        "/sign-in?next=//evil.example/x",
        data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": csrf_token(client)},
    )
    assert away.location == "/"


def test_the_session_cookie_is_httponly_and_samesite_lax_and_signing_out_ends_it(client: FlaskClient) -> None:
    response = sign_in(client, *ADMIN)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/runs").status_code == 200
    client.post("/sign-out", data={"csrf_token": csrf_token(client, "/runs")})
    assert client.get("/runs").status_code == 302


def test_the_session_cookie_is_secure_when_web_secure_cookies_is_set(
    db_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_SECURE_COOKIES", "true")
    reset_settings()
    users.add_user(*ADMIN, role="admin")
    client = create_app().test_client()
    token = token_on(client.get("/sign-in", base_url="https://localhost").get_data(as_text=True), "/sign-in")
    response = client.post(
        "/sign-in",
        data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/sign-in"},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_removed_user_is_signed_out_at_their_next_request(client: FlaskClient) -> None:
    sign_in(client, *PAYROLL)
    assert client.get("/runs").status_code == 200
    payroll = next(u for u in users.list_users() if u.email == PAYROLL[0])
    users.remove_user(payroll.id)
    assert client.get("/runs").status_code == 302


def test_pages_load_nothing_from_elsewhere_and_are_never_framed(client: FlaskClient) -> None:
    response = client.get("/sign-in")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "form-action 'self' https://login.procore.com" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_healthz_answers_without_signing_in(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"ok": True}


def test_readyz_says_what_is_missing_and_is_ready_after_a_beat_tick(
    client: FlaskClient, redis_url: str
) -> None:
    from datetime import UTC, datetime

    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert "beat has never ticked" in not_ready.json["checks"]["beat"]["reason"]
    record_beat_tick(redis.Redis.from_url(redis_url), datetime.now(UTC))
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["ready"] is True


def test_metrics_is_not_there_without_a_token_configured(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 404


def test_metrics_needs_its_bearer_token(db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", "scrape-me-please")
    reset_settings()
    client = create_app().test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert b"stsync_" in response.data
