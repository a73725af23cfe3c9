"""The console's pages against the emulators over real HTTP and a real PostgreSQL: connecting both systems (the
authorization-code grant with its `state` checked included), a project's blockers named, linking, technicians,
rules, schedules, runs and the ledger. Flask's test client, signed in as an admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from worker import service
from worker.app import app as celery_app
from worker.service import users
from worker.web.app import create_app

from .helpers import START
from .stsync_env import point_at_emulator

ADMIN = ("admin@example.com", "correct horse battery")


@pytest.fixture
def app(
    world: dict[str, Any], emulator: Any, db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    point_at_emulator(monkeypatch, emulator)
    users.add_user(*ADMIN, role="admin")
    yield create_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    response = client.post(
        "/sign-in",
        data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": csrf_token(client, "/sign-in")},
    )
    assert response.status_code == 302
    return client


@pytest.fixture
def connected(client: FlaskClient, world: dict[str, Any]) -> FlaskClient:
    h = world["handles"]
    service.connect_procore(h["procore_company_id"], h["procore_client_id"], h["procore_client_secret"])
    service.connect_servicetrade(username=h["st_username"], password=h["st_password"])
    return client


def csrf_token(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def post(client: FlaskClient, path: str, data: dict[str, Any], *, token_from: str) -> Any:
    return client.post(
        path, data={**data, "csrf_token": csrf_token(client, token_from)}, follow_redirects=True
    )


def text(response: Any) -> str:
    """The page as a person reads it: tags dropped, entities and whitespace folded."""
    return text_of(response.get_data(as_text=True))


def text_of(markup: str) -> str:
    body = re.sub(r"<[^>]+>", " ", markup)
    return " ".join(body.replace("&#39;", "'").replace("&amp;", "&").replace("&quot;", '"').split())


def test_both_systems_connect_from_the_connections_page(client: FlaskClient, world: dict[str, Any]) -> None:
    h = world["handles"]
    procore = post(
        client,
        "/connections/procore",
        {
            "company_id": h["procore_company_id"],
            "client_id": h["procore_client_id"],
            "client_secret": h["procore_client_secret"],
            "save": "1",
        },
        token_from="/connections/",
    )
    assert f"Procore company {h['procore_company_id']} connected with client credentials" in text(procore)
    st = post(
        client,
        "/connections/servicetrade",
        {"username": h["st_username"], "password": h["st_password"]},
        token_from="/connections/",
    )
    assert "ServiceTrade connected" in text(st)
    assert "Marcus Tanaka" in text(client.get("/technicians/"))


def test_webhooks_are_registered_from_the_connections_page_and_their_state_shown(connected: FlaskClient) -> None:
    before = text(connected.get("/connections/"))
    assert "servicetrade ⚠ no: not registered" in before and "procore ⚠ no: not registered" in before
    st = post(connected, "/connections/webhooks", {"url": "http://127.0.0.1:8000", "servicetrade": "1"},
              token_from="/connections/")
    assert "servicetrade webhook created: it delivers to http://127.0.0.1:8000/hooks/servicetrade/" in text(st)
    procore = post(connected, "/connections/webhooks", {"url": "http://127.0.0.1:8000", "procore": "1"},
                   token_from="/connections/")
    assert "procore webhook created: it delivers to http://127.0.0.1:8000/hooks/procore" in text(procore)
    after = text(connected.get("/connections/"))
    assert "servicetrade ✓ yes" in after and "procore ✓ yes" in after
    refused = post(connected, "/connections/webhooks", {"url": "http://stsync.example.com", "procore": "1"},
                   token_from="/connections/")
    assert refused.status_code == 400 and "public https address" in text(refused)
    assert "No webhook deliveries yet" in text(connected.get("/runs"))


def test_webhooks_wait_for_both_connections(client: FlaskClient) -> None:
    assert "Connect Procore and ServiceTrade first" in text(client.get("/connections/"))


def test_wrong_servicetrade_credentials_are_refused(client: FlaskClient, world: dict[str, Any]) -> None:
    h = world["handles"]
    service.connect_procore(h["procore_company_id"], h["procore_client_id"], h["procore_client_secret"])
    response = post(
        client,
        "/connections/servicetrade",
        {"username": world["handles"]["st_username"], "password": "not-the-password"},
        token_from="/connections/",
    )
    assert response.status_code == 400
    assert "Problem:" in text(response)
    assert "ServiceTrade connected" not in text(response)


def test_connect_to_procore_by_the_authorization_code_grant(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    h = world["handles"]
    started = client.post(
        "/connections/procore",
        data={
            "company_id": h["procore_company_id"],
            "client_id": h["procore_client_id"],
            "client_secret": h["procore_client_secret"],
            "authorize": "1",
            "csrf_token": csrf_token(client, "/connections/"),
        },
    )
    assert started.status_code == 302
    authorize = urlsplit(started.location)
    assert authorize.path == "/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert (
        query["redirect_uri"] == "http://localhost/connections/procore/callback" and len(query["state"]) >= 32
    )
    consent = requests.get(started.location, timeout=10)
    assert consent.status_code == 200 and "Approve" in consent.text
    approved = requests.post(
        f"{authorize.scheme}://{authorize.netloc}/oauth/authorize",
        data={**query, "decision": "approve"},
        allow_redirects=False,
        timeout=10,
    )
    back = urlsplit(approved.headers["Location"])
    assert back.path == "/connections/procore/callback"
    done = client.get(f"{back.path}?{back.query}", follow_redirects=True)
    assert f"Procore company {h['procore_company_id']} connected with a user's refresh token" in text(done)
    service.connect_servicetrade(username=h["st_username"], password=h["st_password"])
    assert service.check_project(h["project_ids"][0]).project["id"] == h["project_ids"][0]


def test_an_answer_from_procore_with_another_state_is_refused(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    h = world["handles"]
    client.post(
        "/connections/procore",
        data={
            "company_id": h["procore_company_id"],
            "client_id": h["procore_client_id"],
            "client_secret": h["procore_client_secret"],
            "authorize": "1",
            "csrf_token": csrf_token(client, "/connections/"),
        },
    )
    forged = client.get("/connections/procore/callback?code=stolen&state=not-the-one", follow_redirects=True)
    assert "does not belong to a connection started here" in text(forged)
    assert "No connection is stored yet" in text(client.get("/technicians/"))


def test_a_denied_authorization_says_so(client: FlaskClient, world: dict[str, Any]) -> None:
    h = world["handles"]
    started = client.post(
        "/connections/procore",
        data={
            "company_id": h["procore_company_id"],
            "client_id": h["procore_client_id"],
            "client_secret": h["procore_client_secret"],
            "authorize": "1",
            "csrf_token": csrf_token(client, "/connections/"),
        },
    )
    state = parse_qs(urlsplit(started.location).query)["state"][0]
    denied = client.get(
        f"/connections/procore/callback?error=access_denied&state={state}", follow_redirects=True
    )
    assert "Procore did not connect: access denied" in text(denied)


def test_a_project_without_a_zip_names_the_blocker_and_cannot_be_linked(
    connected: FlaskClient,
    world: dict[str, Any],
    emulator: Any,
) -> None:
    project_id = world["handles"]["project_ids"][0]
    emulator.admin.patch_project(project_id, zip="")
    page = connected.get(f"/projects/{project_id}")
    assert page.status_code == 200
    assert "the project has no zip: fill in its zip in Procore's project admin" in text(page)
    assert "No ServiceTrade job was found for this project" in text(page)
    assert re.search(
        r'<input[^>]*disabled[^>]*value="Sync project to ServiceTrade"|'
        r'<input[^>]*value="Sync project to ServiceTrade"[^>]*disabled',
        page.get_data(as_text=True),
    )
    refused = post(
        connected,
        f"/projects/{project_id}/link",
        {"job_type": "service_call"},
        token_from=f"/projects/{project_id}",
    )
    assert "can't be linked yet" in text(refused) and "has no zip" in text(refused)


def test_linking_a_project_shows_its_job_number_as_a_link(
    connected: FlaskClient, world: dict[str, Any]
) -> None:
    project_id = world["handles"]["project_ids"][1]
    linked = post(
        connected,
        f"/projects/{project_id}/link",
        {"job_type": "service_call"},
        token_from=f"/projects/{project_id}",
    )
    detail = service.show_project(project_id)
    assert f"is linked to ServiceTrade job {detail.st_job_number}" in text(linked)
    link = re.search(r'<a href="([^"]+)" class="job-number">#(\d+)</a>', linked.get_data(as_text=True))
    assert link and link.group(2) == str(detail.st_job_number)
    assert link.group(1).endswith(f"/job/{detail.st_job_id}")
    again = post(
        connected,
        f"/projects/{project_id}/link",
        {"job_type": "service_call"},
        token_from=f"/projects/{project_id}",
    )
    assert "was already linked" in text(again)


def test_projects_are_listed_with_their_link_state(connected: FlaskClient, world: dict[str, Any]) -> None:
    linked, unlinked = world["handles"]["project_ids"][:2]
    result = service.link_project(linked, "service_call")
    page = connected.get("/projects/")
    rows = re.findall(r"<tr>(.*?)</tr>", page.get_data(as_text=True), re.S)
    by_project = {pid: text_of(row) for row in rows for pid in (linked, unlinked) if f"/projects/{pid}\"" in row}
    assert f"linked to job #{result.job_number}" in by_project[linked] and "Clock events" in by_project[linked]
    assert "not linked" in by_project[unlinked] and "Check and link" in by_project[unlinked]
    assert len(rows) == len(world["handles"]["project_ids"]) + 1


def test_an_unknown_project_is_a_404_that_says_why(connected: FlaskClient) -> None:
    page = connected.get("/projects/999999")
    assert page.status_code == 404 and "Problem:" in text(page)


def test_technicians_page_names_each_problem(connected: FlaskClient) -> None:
    page = text(connected.get("/technicians/"))
    assert "James Johansson" in page and "Keiko Johansson" in page and "Marcus Tanaka" in page
    assert page.count("no employee id") >= 2


def test_rules_are_added_with_cost_codes_by_name_and_removed(
    connected: FlaskClient, world: dict[str, Any]
) -> None:
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    code = world["handles"]["labor_cost_codes"][str(project_id)][1]
    page = connected.get(f"/projects/{project_id}/rules/")
    label = re.search(
        rf'<option value="{code["cost_code_id"]}">([^<]+)</option>', page.get_data(as_text=True)
    )
    assert label, "the cost code is not offered by name"
    added = post(
        connected,
        f"/projects/{project_id}/rules/",
        {
            "cost_code": code["cost_code_id"],
            "cost_type": code["line_item_type_id"],
            "activity": "enroute",
            "weekdays": "mon-fri",
            "description": "Travel",
        },
        token_from=f"/projects/{project_id}/rules/",
    )
    assert f"rule #1 added: {label.group(1)}" in text(added)
    assert "enroute, any technician, mon,tue,wed,thu,fri" in text(added)
    removed = post(
        connected, f"/projects/{project_id}/rules/1/remove", {}, token_from=f"/projects/{project_id}/rules/"
    )
    assert "rule #1 removed" in text(removed) and "No rules yet" in text(removed)


def test_a_rule_with_a_cost_code_that_takes_no_labor_is_refused_with_the_choices(
    connected: FlaskClient,
    world: dict[str, Any],
) -> None:
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    wrong = world["handles"]["unbudgeted_cost_codes"][str(project_id)][0]
    refused = post(
        connected,
        f"/projects/{project_id}/rules/",
        {"cost_code": wrong["cost_code_id"], "cost_type": wrong["line_item_type_id"]},
        token_from=f"/projects/{project_id}/rules/",
    )
    assert refused.status_code == 400 and "can't take labor hours (not budgeted on the project)" in text(
        refused
    )


def test_schedules_are_set_paused_resumed_and_removed(connected: FlaskClient, world: dict[str, Any]) -> None:
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    page = f"/projects/{project_id}/schedules"
    saved = post(
        connected,
        page,
        {"kind": "weekly", "at": "18:00", "weekday": "fri", "payroll_kind": "weekly", "grace_days": 0},
        token_from=page,
    )
    assert "weekly schedule set (fri@18:00); next run" in text(saved)
    assert re.search(r"\d{4}-\d\d-\d\d 18:00 E[SD]T", text(saved)), (
        "the next run is not in the project's local time"
    )
    paused = post(connected, f"{page}/weekly/pause", {}, token_from=page)
    assert "weekly schedule paused" in text(paused) and "paused" in text(connected.get("/schedules"))
    resumed = post(connected, f"{page}/weekly/resume", {}, token_from=page)
    assert "weekly schedule resumed" in text(resumed)
    removed = post(connected, f"{page}/weekly/remove", {}, token_from=page)
    assert "weekly schedule removed" in text(removed) and "No schedules on this project" in text(removed)


def test_a_payroll_schedule_needs_a_valid_time(connected: FlaskClient, world: dict[str, Any]) -> None:
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    page = f"/projects/{project_id}/schedules"
    refused = post(
        connected,
        page,
        {"kind": "payroll", "at": "25:99", "weekday": "mon", "payroll_kind": "weekly", "grace_days": 1},
        token_from=page,
    )
    assert refused.status_code == 400 and "must be a local time as HH:MM" in text(refused)


def test_runs_ledger_and_chart_after_a_sync(connected: FlaskClient, world: dict[str, Any]) -> None:
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    code = world["handles"]["labor_cost_codes"][str(project_id)][0]
    service.add_rule(project_id, code["cost_code_id"], code["line_item_type_id"])
    outcome = service.syncing.sync_window(project_id, START, START)
    report = outcome.report
    assert report is not None and report.posted > 0
    runs = text(connected.get("/runs"))
    assert f"{report.posted}" in runs and report.project_name in runs
    run_page = connected.get(f"/runs/{outcome.run_id}")
    assert 'http-equiv="refresh"' not in run_page.get_data(as_text=True)
    ledger = text(connected.get(f"/projects/{project_id}/ledger?status=posted"))
    assert "Mon 2026-03-02" in ledger and "posted" in ledger
    skipped = text(connected.get(f"/projects/{project_id}/ledger?status=skipped&technician=johansson"))
    assert "no employee id" in skipped and "Marcus Tanaka" not in skipped
    project = connected.get(f"/projects/{project_id}?start=2026-03-02&end=2026-03-08")
    svg = project.get_data(as_text=True)
    assert "<svg" in svg and "hours posted per day by cost code" in svg
    assert f"{report.hours:.2f} hours posted from Mon 2026-03-02 to Sun 2026-03-08" in text(project)
    assert svg.count("<rect") >= 2


def test_a_failed_entry_is_shown_with_procores_words_and_retried_from_the_ledger(
    connected: FlaskClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.clients.procore import ProcoreClient

    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    code = world["handles"]["labor_cost_codes"][str(project_id)][0]
    service.add_rule(project_id, code["cost_code_id"], code["line_item_type_id"])
    wrong_code = world["handles"]["non_labor_cost_codes"][str(project_id)][0]["cost_code_id"]
    original = ProcoreClient.bulk_create_entries
    refused: list[Any] = []

    def one_entry_refused(self: ProcoreClient, entries: list[dict[str, Any]]) -> Any:
        # One entry (the same one however the chunk is split) goes with a cost code Procore refuses.
        refused[:] = refused or [entries[0]["origin_id"]]
        return original(self, [{**e, "cost_code_id": wrong_code} if e["origin_id"] == refused[0] else e
                               for e in entries])

    monkeypatch.setattr(ProcoreClient, "bulk_create_entries", one_entry_refused)
    service.syncing.sync_window(project_id, START, START)
    monkeypatch.undo()
    ledger = connected.get(f"/projects/{project_id}/ledger?status=failed")
    assert "1 failed entry" in text(ledger) and "procore rejected" in text(ledger) and "cost_code" in text(ledger)
    assert ledger.get_data(as_text=True).count('type="submit" class="">Retry</button>') == 1
    retried = connected.post(f"/projects/{project_id}/retry",
                             data={"csrf_token": csrf_token(connected, f"/projects/{project_id}/ledger")})
    assert retried.status_code == 302 and re.fullmatch(r"/runs/\d+", retried.location)
    run = connected.get(retried.location)
    assert "Succeeded" in text(run) and 'http-equiv="refresh"' not in run.get_data(as_text=True)
    assert "No ledger rows match" in text(connected.get(f"/projects/{project_id}/ledger?status=failed"))


def test_home_shows_the_digest_skipped_technicians_with_their_hours_and_what_was_posted(
    connected: FlaskClient, world: dict[str, Any],
) -> None:
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    code = world["handles"]["labor_cost_codes"][str(project_id)][0]
    service.add_rule(project_id, code["cost_code_id"], code["line_item_type_id"])
    service.syncing.sync_window(project_id, START, START)
    home = connected.get("/")
    assert home.status_code == 200
    page = text(home)
    assert "4 technicians skipped" in page
    assert "James Johansson ⚠ no employee id 5 8.75 Mon 2026-03-02 Jay Street Tower Fit-out" in page
    assert "has no Procore Employee ID; set externalIds.procore on the technician in ServiceTrade" in page
    assert "Keiko Johansson ⚠ invalid employee id" in page


def test_home_before_anything_is_connected_says_where_to_start(client: FlaskClient) -> None:
    page = text(client.get("/"))
    assert "Nothing is connected yet" in page and "Connections" in page


def test_retry_with_nothing_failed_says_so(connected: FlaskClient, world: dict[str, Any]) -> None:
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    done = post(connected, f"/projects/{project_id}/retry", {}, token_from=f"/projects/{project_id}/ledger")
    assert "nothing to retry" in text(done)


def test_a_whole_window_is_queued_and_its_page_follows_the_run(
    connected: FlaskClient,
    world: dict[str, Any],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The message must land in the test Redis, not in a broker someone else's worker reads.
    monkeypatch.setattr(celery_app.conf, "broker_url", redis_url)
    celery_app._pool = None
    project_id = world["handles"]["project_ids"][0]
    service.link_project(project_id, "service_call")
    queued = connected.post(
        f"/projects/{project_id}/sync",
        data={
            "start": "2026-03-02",
            "end": "2026-03-15",
            "csrf_token": csrf_token(connected, f"/projects/{project_id}"),
        },
    )
    assert queued.status_code == 302 and re.fullmatch(r"/runs/\d+", queued.location)
    page = connected.get(queued.location)
    html = page.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="2">' in html
    assert "Queued : waiting for a worker" in text(page)
    assert redis.Redis.from_url(redis_url).llen("sync") == 1
    celery_app._pool = None
