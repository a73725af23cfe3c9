"""The clock events page, the heart of the console, through Flask's test client against the emulators: the
rounding rule in words, red unselectable rows for technicians without a valid Employee ID, ticked events posted
with the chosen cost code (and only those), a second subset with a second cost code, and the result page."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from worker import service
from worker.service import users
from worker.web.app import create_app

from .helpers import live_entries, source_key_of
from .stsync_env import point_at_emulator

ADMIN = ("payroll.lead@example.com", "clock events password")
WINDOW = {"start": "2026-03-02", "end": "2026-03-08"}


@dataclass(frozen=True)
class Row:
    css: str
    source_key: str
    event_id: str
    disabled: bool
    cells: list[str]

    @property
    def technician(self) -> str:
        return self.cells[1]


@pytest.fixture
def app(
    world: dict[str, Any], emulator: Any, db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    point_at_emulator(monkeypatch, emulator)
    users.add_user(*ADMIN, role="payroll")
    h = world["handles"]
    service.connect_procore(h["procore_company_id"], h["procore_client_id"], h["procore_client_secret"])
    service.connect_servicetrade(username=h["st_username"], password=h["st_password"])
    yield create_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    token = csrf_token(client.get("/sign-in").get_data(as_text=True))
    assert (
        client.post(
            "/sign-in", data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": token}
        ).status_code
        == 302
    )
    return client


@pytest.fixture
def project_id(world: dict[str, Any], app: Flask) -> int:
    """The start/stop project (entries carry their rounded times), linked."""
    pid = world["handles"]["start_stop_project_ids"][0]
    service.link_project(pid, "service_call")
    return pid


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def rows_of(page: str) -> list[Row]:
    table = page[page.index('<table class="events">') : page.index("</table>")]
    rows = []
    for attrs, body in re.findall(r"<tr([^>]*data-source-key[^>]*)>(.*?)</tr>", table, re.S):
        box = re.search(r'<input type="checkbox" name="event" value="(\d+)"[^>]*>', body, re.S)
        assert box, f"a row without its checkbox: {body[:200]}"
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)
        ]
        rows.append(
            Row(
                re.search(r'class="([^"]*)"', attrs).group(1),
                re.search(r'data-source-key="([^"]+)"', attrs).group(1),
                box.group(1),
                "disabled" in box.group(0),
                cells,
            )
        )
    return rows


def option_label(page: str, name: str, value: int) -> str:
    select = page[page.index(f'name="{name}"') :]
    found = re.search(rf'<option[^>]*value="{value}"[^>]*>([^<]+)</option>', select)
    assert found, f"{value} is not offered in {name}"
    return html.unescape(found.group(1))


def sync(
    client: FlaskClient, project_id: int, page: str, event_ids: list[str], cost_code: int, cost_type: int
) -> str:
    response = client.post(
        f"/projects/{project_id}/events/sync",
        data={
            "event": event_ids,
            "cost_code": cost_code,
            "cost_type": cost_type,
            **WINDOW,
            "csrf_token": csrf_token(page),
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def local_hm(instant: str, zone: ZoneInfo) -> str:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(zone).strftime("%H:%M")


def text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_the_page_names_the_rounding_rule_and_reds_out_technicians_without_an_employee_id(
    client: FlaskClient,
    project_id: int,
) -> None:
    page = client.get(f"/projects/{project_id}/events?start={WINDOW['start']}&end={WINDOW['end']}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Company rounding rule: rounded to the nearest 15 minutes" in text(body)
    assert "count toward the Labor budget at once" in text(body)
    rows = rows_of(body)
    assert len(rows) > 20
    red = [r for r in rows if "problem" in r.css]
    assert {r.technician.split(" ⚠")[0] for r in red} >= {"James Johansson", "Aisha Kowalski"}
    assert all(r.disabled for r in red)
    assert all("no valid Employee ID" in r.technician for r in red)
    assert all("Fix on the technicians page" in r.cells[9] for r in red)
    assert not any(r.disabled for r in rows if "problem" not in r.css and "not synced" in r.cells[9])
    # By the piece's rounded start (a piece after midnight starts at 00:00), or the punch for a break.
    order = [
        (r.technician.split(" ⚠")[0], r.cells[2].split()[-1], r.cells[6] if r.cells[6] != "–" else r.cells[4])
        for r in rows
    ]
    assert order == sorted(order), "not sorted by technician, date and time"
    assert 'href="/technicians/"' in body


def test_three_ticked_events_post_with_the_chosen_cost_code_and_nothing_else(
    client: FlaskClient,
    project_id: int,
    world: dict[str, Any],
    emulator: Any,
) -> None:
    page = client.get(f"/projects/{project_id}/events?start={WINDOW['start']}&end={WINDOW['end']}").get_data(
        as_text=True
    )
    code = world["handles"]["labor_cost_codes"][str(project_id)][1]
    label = option_label(page, "cost_code", code["cost_code_id"])
    ticked = [r for r in rows_of(page) if not r.disabled][:3]
    result = sync(
        client,
        project_id,
        page,
        [r.event_id for r in ticked],
        code["cost_code_id"],
        code["line_item_type_id"],
    )
    assert "3 entries posted" in text(result)
    assert "count toward the Labor budget at once" in text(result)
    for row in ticked:
        assert row.technician in text(result)
    entries = live_entries(emulator, project_id)
    assert sorted(source_key_of(e) for e in entries) == sorted(r.source_key for r in ticked)
    zone = ZoneInfo(world["handles"]["project_zones"][str(project_id)])
    shown = {r.source_key: (r.cells[6], r.cells[7], r.cells[8]) for r in ticked}
    for entry in entries:
        landed = (
            local_hm(entry["time_in"], zone),
            local_hm(entry["time_out"], zone),
            f"{Decimal(entry['hours']):.2f}",
        )
        assert landed == shown[source_key_of(entry)], "Procore holds other times than the rounded ones shown"
    assert {int(e["cost_code_id"] if "cost_code_id" in e else e["cost_code"]["id"]) for e in entries} == {
        code["cost_code_id"]
    }
    after = client.get(f"/projects/{project_id}/events?start={WINDOW['start']}&end={WINDOW['end']}").get_data(
        as_text=True
    )
    posted = {r.source_key: r for r in rows_of(after)}
    for row in ticked:
        assert label in posted[row.source_key].cells[10]


def test_a_second_subset_goes_to_a_second_cost_code_and_the_first_stays_where_it_was(
    client: FlaskClient,
    project_id: int,
    world: dict[str, Any],
    emulator: Any,
) -> None:
    codes = world["handles"]["labor_cost_codes"][str(project_id)]
    url = f"/projects/{project_id}/events?start={WINDOW['start']}&end={WINDOW['end']}"
    page = client.get(url).get_data(as_text=True)
    first = [r for r in rows_of(page) if not r.disabled][:3]
    sync(
        client,
        project_id,
        page,
        [r.event_id for r in first],
        codes[0]["cost_code_id"],
        codes[0]["line_item_type_id"],
    )
    page = client.get(url).get_data(as_text=True)
    second = [
        r for r in rows_of(page) if not r.disabled and r.source_key not in {f.source_key for f in first}
    ][:2]
    result = sync(
        client,
        project_id,
        page,
        [r.event_id for r in second],
        codes[1]["cost_code_id"],
        codes[1]["line_item_type_id"],
    )
    assert "2 entries posted" in text(result)
    by_key = {source_key_of(e): e for e in live_entries(emulator, project_id)}
    assert len(by_key) == 5
    again = rows_of(client.get(url).get_data(as_text=True))
    labels = {r.source_key: r.cells[10] for r in again}
    first_label = option_label(page, "cost_code", codes[0]["cost_code_id"])
    second_label = option_label(page, "cost_code", codes[1]["cost_code_id"])
    assert all(first_label in labels[r.source_key] for r in first)
    assert all(second_label in labels[r.source_key] for r in second)


def test_syncing_with_nothing_ticked_is_refused_with_what_to_do(
    client: FlaskClient, project_id: int, world: dict[str, Any], emulator: Any
) -> None:
    page = client.get(f"/projects/{project_id}/events?start={WINDOW['start']}&end={WINDOW['end']}").get_data(
        as_text=True
    )
    code = world["handles"]["labor_cost_codes"][str(project_id)][0]
    response = client.post(
        f"/projects/{project_id}/events/sync",
        data={
            "cost_code": code["cost_code_id"],
            "cost_type": code["line_item_type_id"],
            **WINDOW,
            "csrf_token": csrf_token(page),
        },
        follow_redirects=True,
    )
    assert "tick at least one clock event" in text(response.get_data(as_text=True))
    assert live_entries(emulator, project_id) == []


def test_without_dates_the_page_shows_the_last_week(client: FlaskClient, project_id: int) -> None:
    page = text(client.get(f"/projects/{project_id}/events").get_data(as_text=True))
    today = datetime.now(UTC).date()
    assert re.search(rf"from \w+ {today - timedelta(days=6)} to \w+ (\d{{4}}-\d\d-\d\d)", page), page[:800]


def test_an_unlinked_project_sends_the_admin_to_its_page(client: FlaskClient, world: dict[str, Any]) -> None:
    pid = world["handles"]["project_ids"][0]
    response = client.get(f"/projects/{pid}/events", follow_redirects=True)
    assert "is not linked yet" in text(response.get_data(as_text=True))
    assert "No ServiceTrade job was found for this project" in text(response.get_data(as_text=True))
