"""The admin's other pages in a real browser: a rule added with its cost code picked by name, a schedule set
and paused, the technicians with what to fix, a run and the ledger with its filters, the project's chart, and a
payroll user who sees none of the admin pages."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from worker import service
from worker.service import users

from .conftest import Console, Pages
from .test_console_flow import nav, sign_in


def connect_and_link(world: dict[str, Any], project_id: int) -> None:
    h = world["handles"]
    service.connect_procore(h["procore_company_id"], h["procore_client_id"], h["procore_client_secret"])
    service.connect_servicetrade(username=h["st_username"], password=h["st_password"])
    service.link_project(project_id, "service_call")


def test_rules_schedules_runs_ledger_and_technicians(pages: Pages, console: Console, world: dict[str, Any]) -> None:
    project_id = world["handles"]["project_ids"][0]
    connect_and_link(world, project_id)
    page = pages.page
    sign_in(page, console)

    page.goto(f"{console.url}/projects/{project_id}/rules/")
    page.get_by_label("Cost code").select_option(label="01-100 General Conditions Labor")
    page.get_by_label("Activity").select_option("onsite")
    page.get_by_label("Weekdays (e.g. mon-fri or sat,sun; empty: every day)").fill("mon-fri")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_role("status")).to_contain_text("rule #1 added: 01-100 General Conditions Labor")
    expect(page.locator("table")).to_contain_text("onsite, any technician, mon,tue,wed,thu,fri")
    pages.snap("rules")

    page.goto(f"{console.url}/projects/{project_id}/schedules")
    page.get_by_label("Kind").select_option("payroll")
    page.get_by_label("At (local time, HH:MM)").fill("06:00")
    page.get_by_label("Payroll period (payroll)").select_option("biweekly")
    page.get_by_label("First day of a period (biweekly)").fill("2026-03-02")
    page.get_by_label("Grace days after the period").fill("1")
    page.get_by_role("button", name="Set schedule").click()
    expect(page.get_by_role("status")).to_contain_text("payroll schedule set (biweekly at 06:00, anchor 2026-03-02")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_contain_text("payroll schedule paused")
    pages.snap("schedules")

    outcome = service.syncing.sync_window(project_id, "2026-03-02", "2026-03-08")
    nav(page, "Home").click()
    expect(page.locator("main")).to_contain_text("4 technicians skipped")
    expect(page.locator("main table").first).to_contain_text("James Johansson")
    pages.snap("home")
    nav(page, "Runs").click()
    expect(page.locator("table").first).to_contain_text("completed with problems")
    pages.snap("runs")
    page.get_by_role("link", name=str(outcome.run_id), exact=True).click()
    expect(page.locator("dl.facts")).to_contain_text("no employee id")
    pages.snap("run")

    page.goto(f"{console.url}/projects/{project_id}/ledger")
    page.get_by_label("Status").select_option("skipped")
    page.get_by_label("Technician (part of the name)").fill("johansson")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table")).to_contain_text("James Johansson")
    expect(page.locator("table")).not_to_contain_text("Marcus Tanaka")
    pages.snap("ledger")

    page.goto(f"{console.url}/projects/{project_id}?start=2026-03-02&end=2026-03-08")
    expect(page.locator("figure.chart")).to_contain_text("01-100 General Conditions Labor")
    assert page.locator("figure.chart svg rect").count() >= 5
    pages.snap("project-chart")

    nav(page, "Technicians").click()
    row = page.locator("tr", has_text="Keiko Johansson")
    expect(row).to_contain_text("matches no Procore person")
    expect(row).to_have_class(re.compile("problem"))
    pages.snap("technicians")


def test_a_payroll_user_sees_no_admin_page(pages: Pages, console: Console, world: dict[str, Any]) -> None:
    users.add_user("payroll@example.com", "payroll user password", role="payroll")
    page = pages.page
    sign_in(page, Console(console.url, "payroll@example.com", "payroll user password"))
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Connections")
    response = page.goto(f"{console.url}/connections/")
    assert response is not None and response.status == 403
    expect(page.locator("body")).to_contain_text("this page is for admins")
    pages.snap("forbidden")
