"""Real-browser fixtures: the console served on 127.0.0.1 by werkzeug in a thread (against the emulators and the
test PostgreSQL), Debian's Chromium driven by Playwright, and a screenshot of every page a test walked through,
kept when it fails (or always, with KEEP_SCREENSHOTS=1). A missing Chromium fails the run; nothing skips."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from worker.service import users
from worker.web.app import create_app

from ..stsync_env import point_at_emulator

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER = ("office@example.com", "office admin password")
VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class Console:
    url: str
    email: str
    password: str


@dataclass
class Pages:
    """Every page a test walked through, screenshotted as it went, so that a failure shows where it went wrong."""

    page: Page
    folder: Path
    shots: list[Path] = field(default_factory=list)

    def snap(self, name: str) -> Path:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is not installed: the browser tests drive Debian's Chromium "
            "(`make test` runs scripts/system-deps.sh, which installs it)",
            pytrace=False,
        )
    browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def console(
    world: dict[str, Any], emulator: Any, db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Console]:
    """The console on a free port of 127.0.0.1, with one admin user, until the test ends."""
    point_at_emulator(monkeypatch, emulator)
    users.add_user(*USER, role="admin")
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console", daemon=True)
    thread.start()
    yield Console(f"http://127.0.0.1:{server.server_port}", *USER)
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def pages(
    browser: Browser,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pages]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    walked = Pages(page, tmp_path_factory.mktemp(f"screenshots-{request.node.name}"[:60]))
    yield walked
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        walked.snap("at-failure")
    if (failed is not None and failed.failed) or os.environ.get("KEEP_SCREENSHOTS"):
        print(f"\nscreenshots of each page of {request.node.name}: {walked.folder}")
    else:
        shutil.rmtree(walked.folder, ignore_errors=True)
    context.close()
