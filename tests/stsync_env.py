"""Driving stsync the way an operator does, against the emulators: connect, link, add rules, sync."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from worker.settings import reset_settings


@dataclass
class Stsync:
    """The `stsync` command run in-process, with the environment pointing at the emulators and the test database."""

    world: dict[str, Any]
    emulator: Any

    @property
    def h(self) -> dict[str, Any]:
        return self.world["handles"]

    def __call__(self, *args: str, ok: bool = True, input: str | None = None) -> Result:  # noqa: A002 - click's name
        """Run `stsync ARGS`; `input` is what a person types at its prompts."""
        from worker.cli import cli

        result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
        if ok and result.exit_code != 0:
            raise AssertionError(f"stsync {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}")
        return result

    def json(self, *args: str, ok: bool = True) -> Any:
        result = self(*args, "--json", ok=ok)
        return json.loads(result.stdout)

    def connect(self) -> None:
        self("connect", "procore", "--company-id", self.h["procore_company_id"], "--client-id",
             self.h["procore_client_id"], "--client-secret", self.h["procore_client_secret"])
        self("connect", "servicetrade", "--username", self.h["st_username"], "--password", self.h["st_password"])

    def link(self, project_id: int, job_type: str = "service_call") -> dict[str, Any]:
        return self.json("project", "link", project_id, "--job-type", job_type)

    def labor(self, project_id: int, index: int = 0) -> dict[str, int]:
        return self.h["labor_cost_codes"][str(project_id)][index]

    def add_default_rule(self, project_id: int) -> None:
        code = self.labor(project_id)
        self("rules", "add", project_id, "--cost-code-id", code["cost_code_id"], "--line-item-type-id",
             code["line_item_type_id"])

    def sync(self, project_id: int, start: date, end: date, *extra: str, ok: bool = True) -> dict[str, Any]:
        return self.json("sync", project_id, "--start", start.isoformat(), "--end", end.isoformat(), *extra, ok=ok)


def point_at_emulator(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    monkeypatch.setenv("SERVICETRADE_API_URL", emulator.st_url)
    monkeypatch.setenv("PROCORE_API_URL", emulator.procore_url)
    monkeypatch.setenv("PROCORE_LOGIN_URL", emulator.procore_url)
    reset_settings()


def write_calls(requests_summary: dict[str, Any], service: str = "procore") -> int:
    return sum(
        r["count"] for r in requests_summary["by_route"]
        if r["service"] == service and r["method"] in ("POST", "PATCH", "PUT", "DELETE")
        and not r["route"].startswith("/oauth")
    )


@pytest.fixture(autouse=True)
def leave_the_database_empty(request: pytest.FixtureRequest) -> Iterator[None]:
    """Commands commit; a module that imports this empties the test database after each of its tests too, so a
    later test that reads whole tables (re-encrypting every stored secret, say) finds only its own rows."""
    url = request.getfixturevalue("db_url") if "db_url" in request.fixturenames else None
    yield
    if url is not None:
        from worker.db import get_engine
        from worker.models import Base

        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with get_engine(url).begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
