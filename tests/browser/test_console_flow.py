"""The office admin's whole flow in a real browser (Chromium), against the emulators: sign in, connect both
systems (Procore by "Connect to Procore"), a project's missing zip named, another project linked with its job
number shown, its clock events with the rounding rule and a red, unselectable technician, three events synced
with one cost code and two more with a second, checked in the Procore emulator."""

from __future__ import annotations

import os
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Locator, Page, expect

from ..helpers import live_entries, source_key_of
from .conftest import Console, Pages

# Written again with UPDATE_README_SCREENSHOT=1, so that an ordinary test run leaves the repository as it was.
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console-clock-events.png"


def sign_in(page: Page, console: Console) -> None:
    page.goto(f"{console.url}/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("Email").fill(console.email)
    page.get_by_label("Password").fill(console.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def connect_both(pages: Pages, console: Console, handles: dict[str, Any]) -> None:
    page = pages.page
    page.get_by_role("main").get_by_role("link", name="Connections").click()
    page.get_by_label("Procore company ID").fill(str(handles["procore_company_id"]))
    page.get_by_label("Client ID of the Procore app").fill(handles["procore_client_id"])
    page.get_by_label("Client secret of the Procore app").fill(handles["procore_client_secret"])
    pages.snap("connections")
    page.get_by_role("button", name="Connect to Procore").click()
    expect(page.get_by_role("button", name="Approve")).to_be_visible()
    pages.snap("procore-consent")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Procore company {handles['procore_company_id']} connected with a user's refresh token"
    )
    page.get_by_label("ServiceTrade username").fill(handles["st_username"])
    page.get_by_label("ServiceTrade password").fill(handles["st_password"])
    page.get_by_role("button", name="Sign in to ServiceTrade").click()
    expect(page.get_by_role("status")).to_contain_text("ServiceTrade connected")
    pages.snap("connected")


def nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def open_project(page: Page, project_id: int) -> None:
    """From the list of the company's projects, by its name."""
    nav(page, "Projects").click()
    page.locator(f'table a[href="/projects/{project_id}"]').first.click()
    expect(page.get_by_role("heading", name="Before you begin")).to_be_visible()


def tick(page: Page, count: int, skip: set[str]) -> dict[str, tuple[str, str, str]]:
    """Tick the first `count` selectable rows not in `skip`; their source keys with the rounded in, out and hours
    the table shows."""
    ticked: dict[str, tuple[str, str, str]] = {}
    for row in page.locator("table.events tbody tr").all():
        key = row.get_attribute("data-source-key") or ""
        box = row.locator("input[name=event]")
        if key in skip or box.is_disabled():
            continue
        box.check()
        ticked[key] = cells(row, 6, 7, 8)
        if len(ticked) == count:
            break
    assert len(ticked) == count, f"only {len(ticked)} rows could be ticked"
    return ticked


def cells(row: Locator, *indexes: int) -> tuple[str, ...]:
    return tuple(row.locator("td").nth(i).inner_text().strip() for i in indexes)


def landed(emulator: Any, project_id: int, zone: ZoneInfo) -> dict[str, tuple[str, str, str, int]]:
    """What Procore holds for the project: per source key, the local times, hours and cost code."""
    def hm(instant: str) -> str:
        return datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(zone).strftime("%H:%M")

    return {source_key_of(e): (hm(e["time_in"]), hm(e["time_out"]), f"{Decimal(e['hours']):.2f}",
                               int(e["cost_code"]["id"]))
            for e in live_entries(emulator, project_id)}


def sync_ticked(pages: Pages, cost_code: str, expected: int) -> None:
    page = pages.page
    page.get_by_label("Cost code").select_option(label=cost_code)
    page.get_by_label("Cost type").select_option(label="Labor")
    page.get_by_role("button", name="Sync Entries to Procore").click()
    expect(page.get_by_role("heading", name=re.compile("Sync result"))).to_be_visible(timeout=60_000)
    expect(page.locator("main")).to_contain_text(f"{expected} entr{'y' if expected == 1 else 'ies'} posted")
    expect(page.locator("main")).to_contain_text("count toward the Labor budget at once")
    assert page.locator("main table tbody tr").count() == expected
    pages.snap(f"sync-result-{expected}")


def test_office_admin_walks_the_whole_manual_flow(
    pages: Pages,
    console: Console,
    world: dict[str, Any],
    emulator: Any,
) -> None:
    handles = world["handles"]
    page = pages.page
    sign_in(page, console)
    expect(page.locator("main")).to_contain_text("Nothing is connected yet")
    connect_both(pages, console, handles)

    no_zip, linked = handles["project_ids"][0], handles["project_ids"][1]
    emulator.admin.patch_project(no_zip, zip="")
    nav(page, "Projects").click()
    expect(page.locator("table")).to_contain_text("not linked")
    pages.snap("projects")
    open_project(page, no_zip)
    expect(page.locator("ul.blockers")).to_contain_text(
        "the project has no zip: fill in its zip in Procore's project admin"
    )
    expect(page.get_by_text("No ServiceTrade job was found for this project.")).to_be_visible()
    expect(page.get_by_role("button", name="Sync project to ServiceTrade")).to_be_disabled()
    pages.snap("project-blocked")

    open_project(page, linked)
    expect(page.get_by_text("Nothing blocks a sync of this project.")).to_be_visible()
    page.get_by_label("Job type").select_option("service_call")
    page.get_by_role("button", name="Sync project to ServiceTrade").click()
    job = page.locator("a.job-number")
    expect(job).to_have_text(re.compile(r"#\d+"))
    expect(page.get_by_role("status")).to_contain_text(
        f"is linked to ServiceTrade job {job.inner_text()[1:]}"
    )
    assert re.search(r"/job/\d+$", job.get_attribute("href") or "")
    pages.snap("project-linked")

    page.get_by_role("link", name="Open the clock events").click()
    expect(page.get_by_role("heading", name=re.compile("Clock events"))).to_be_visible()
    page.get_by_label("From").fill("2026-03-02")
    page.get_by_label("To").fill("2026-03-06")
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("p.rule")).to_contain_text("Company rounding rule: rounded to the nearest 15 minutes")
    red = page.locator("table.events tbody tr.problem", has_text="James Johansson").first
    expect(red).to_contain_text("no valid Employee ID")
    expect(red).to_contain_text("has no Procore Employee ID")
    expect(red.get_by_role("link", name="Fix on the technicians page")).to_be_visible()
    expect(red.locator("input[name=event]")).to_be_disabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, "the events table scrolls sideways"
    pages.snap("clock-events")
    if os.environ.get("UPDATE_README_SCREENSHOT"):
        page.screenshot(path=str(README_SCREENSHOT), clip={"x": 0, "y": 0, "width": 1280, "height": 900})

    boxes = page.locator("table.events input[name=event]")
    page.get_by_label("Select all clock events").check()
    assert page.locator("table.events input[name=event]:checked").count() == boxes.count() - page.locator(
        "table.events input[name=event]:disabled").count() > 0
    page.get_by_label("Select all clock events").uncheck()
    assert page.locator("table.events input[name=event]:checked").count() == 0

    zone = ZoneInfo(handles["project_zones"][str(linked)])
    codes = handles["labor_cost_codes"][str(linked)]
    first = tick(page, 3, skip=set())
    sync_ticked(pages, "01-100 General Conditions Labor", 3)
    in_procore = landed(emulator, linked, zone)
    assert set(in_procore) == set(first), "Procore holds other entries than the three ticked"
    for key, (time_in, time_out, hours) in first.items():
        assert in_procore[key][:3] == (time_in, time_out, hours), "not the rounded times the table showed"
    assert {v[3] for v in in_procore.values()} == {codes[0]["cost_code_id"]}

    page.get_by_role("link", name="Back to the clock events").click()
    expect(page.locator("table.events")).to_contain_text("01-100 General Conditions Labor")
    second = tick(page, 2, skip=set(first))
    sync_ticked(pages, "26-050 Electrical Labor", 2)
    in_procore = landed(emulator, linked, zone)
    assert set(in_procore) == set(first) | set(second)
    assert {in_procore[k][3] for k in second} == {codes[1]["cost_code_id"]}
    assert {in_procore[k][3] for k in first} == {codes[0]["cost_code_id"]}, "an entry moved to another code"

    page.get_by_role("link", name="Back to the clock events").click()
    for key in first:
        expect(page.locator(f'tr[data-source-key="{key}"]')).to_contain_text("01-100 General Conditions Labor")
    for key in second:
        row = page.locator(f'tr[data-source-key="{key}"]')
        expect(row).to_contain_text("26-050 Electrical Labor")
        expect(row.locator("input[name=event]")).to_be_disabled()
    pages.snap("clock-events-after")
