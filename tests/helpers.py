"""Helpers shared by test modules, so that no test module imports another: the sync window most tests use, the
entries Procore (the emulator) holds, the ledger as stored and the exactly-once check; a scripted HTTP server and
recorders for the client tests; the emulators driven with plain `requests`."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from emulators.world import generate_world
from worker.clients.procore import MemoryTokenStore, ProcoreClient
from worker.db import session_scope
from worker.enums import LedgerStatus
from worker.models import LedgerEntry
from worker.sync.identity import parse_origin

from .stsync_env import Stsync

START, END = date(2026, 3, 2), date(2026, 3, 15)


def live_entries(emulator: Any, project_id: int | None = None) -> list[dict[str, Any]]:
    """The timecard entries Procore holds and nobody deleted, of one project or all."""
    entries = [e for e in emulator.admin.procore_entries() if not e.get("deleted_at")]
    if project_id is not None:
        entries = [e for e in entries if entry_project(e) == project_id]
    return entries


def entry_project(entry: dict[str, Any]) -> int:
    project = entry.get("project")
    return int(project["id"]) if isinstance(project, dict) else int(entry["project_id"])


def source_key_of(entry: dict[str, Any]) -> str:
    """The source key an entry of ours was posted for (its identity, DESIGN §3 step 10)."""
    origin = parse_origin(entry)
    assert origin is not None, f"entry {entry.get('id')} carries no stsync identity: {entry.get('origin_data')!r}"
    return origin.source_key


def ledger(status: LedgerStatus | None = None) -> list[LedgerEntry]:
    """The ledger rows as stored (detached, readable after the session closed), optionally of one status."""
    with session_scope() as s:
        query = select(LedgerEntry)
        if status is not None:
            query = query.where(LedgerEntry.status == status)
        rows = list(s.scalars(query))
        s.expunge_all()
    return rows


def assert_exactly_once(emulator: Any, project_id: int) -> None:
    """Procore holds each entry of the project once, and each is a posted ledger row with its id, date and hours."""
    entries = live_entries(emulator, project_id)
    origins = Counter(source_key_of(e) for e in entries)
    assert [o for o, n in origins.items() if n > 1] == [], "duplicate entries in Procore"
    posted = {r.source_key: r for r in ledger(status=LedgerStatus.posted)}
    mine = {o for o in origins if o in posted}
    assert mine == set(origins), "Procore holds entries the ledger does not know as posted"
    for e in entries:
        row = posted[source_key_of(e)]
        assert int(e["id"]) == row.procore_entry_id
        assert e["date"] == row.work_date.isoformat()
        if row.payload.get("hours") is not None:
            assert Decimal(str(e["hours"])) == row.hours


def first_project(stsync: Stsync) -> int:
    """The first project of the world, linked, with one rule to its first Labor cost code."""
    pid = stsync.h["project_ids"][0]
    stsync.link(pid)
    stsync.add_default_rule(pid)
    return pid


# ------------------------------------------------------------------------------------------------ the stub


class Stub:
    """An HTTP server that answers each request with the next scripted action and records what it received."""

    def __init__(self) -> None:
        self.actions: deque[tuple[Any, ...]] = deque()
        self.received: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                stub.received.append({"method": self.command, "path": parts.path, "query": parse_qs(parts.query),
                                      "headers": dict(self.headers), "body": body})
                action = stub.actions.popleft() if stub.actions else ("answer", 599, {}, b"no scripted answer")
                if action[0] == "drop":
                    time.sleep(action[1])
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                _, status, headers, payload = action
                self.send_response(status)
                for name, value in {"Content-Length": str(len(payload)), "x-request-id": f"req-{len(stub.received)}",
                                    **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def answer(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> Stub:
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        ctype = {"Content-Type": "application/json"} if raw is None and body is not None else {}
        self.actions.append(("answer", status, {**ctype, **(headers or {})}, payload))
        return self

    def drop(self, after_s: float = 0.0) -> Stub:
        """Read the request, then close the connection without a byte of answer."""
        self.actions.append(("drop", after_s))
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


class Recorder(requests.Session):
    """A requests.Session that keeps every request it sends (before sending, so a lost answer is still seen)
    and every answer it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.answers: list[requests.Response] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        response = super().send(request, **kwargs)
        self.answers.append(response)
        return response

    def form(self, path_end: str) -> list[dict[str, list[str]]]:
        """The form bodies sent to a path."""
        return [parse_qs(r.body if isinstance(r.body, str) else (r.body or b"").decode())
                for r in self.sent if urlsplit(r.url).path.endswith(path_end)]


class Sleeps(list):
    """The injected sleep: records each wait instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ------------------------------------------------------------------------------------------------ the Procore client

DAY = date(2026, 3, 2)


def procore_client(emulator: Any, h: dict, *, store: MemoryTokenStore | None = None, sleeps: Sleeps | None = None,
           **kw: Any) -> ProcoreClient:
    """A Procore client of the emulator's company; its waits are recorded, not slept."""
    kw.setdefault("sleep", sleeps if sleeps is not None else Sleeps())
    return ProcoreClient(kw.pop("api_url", emulator.procore_url), kw.pop("login_url", emulator.procore_url),
                         kw.pop("company_id", h["procore_company_id"]), client_id=h["procore_client_id"],
                         client_secret=kw.pop("client_secret", h["procore_client_secret"]),
                         token_store=store if store is not None else MemoryTokenStore(), **kw)


def counted(emulator: Any, *, route: str = "", method: str | None = None, status: int | None = None) -> int:
    return sum(r["count"] for r in emulator.admin.requests()["by_route"]
               if r["service"] == "procore" and r["route"].startswith(route)
               and (method is None or r["method"] == method) and (status is None or r["status"] == status))


def procore_entry(h: dict, n: int = 0, **over: Any) -> dict:
    pid = h["project_ids"][0]
    code = h["labor_cost_codes"][str(pid)][0]
    party = next(t["party_id"] for t in h["technicians"] if t["expect"] == "ok")
    return {"project_id": pid, "party_id": party, "date": (DAY + timedelta(days=n % 5)).isoformat(),
            "hours": "7.25", "cost_code_id": code["cost_code_id"], "line_item_type_id": code["line_item_type_id"],
            "origin_id": 5000 + n, "origin_data": f"src-{n}:hash", **over}


class SpyBudget:
    """A rate budget that only records what the client told it."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def acquire(self) -> None:
        self.events.append(("acquire",))

    def observe(self, limit: int, remaining: int, reset_epoch: int) -> None:
        self.events.append(("observe", limit, remaining, reset_epoch))

    def record_response(self, company_id: int, status: int) -> None:
        self.events.append(("response", company_id, status))


# ------------------------------------------------------------------------------------------------ the emulators, plain requests

WORLD = generate_world(seed=1)  # the default world, seed 1


def st_login(emu, h) -> requests.Session:
    s = requests.Session()
    r = s.post(f"{emu.st_url}/auth", json={"username": h["st_username"], "password": h["st_password"]})
    assert r.status_code == 200, r.text
    return s


def st_job(emu, s: requests.Session, h, project_index: int = 0) -> dict:
    """Customer, location and job for a Procore project, as the project's linking step creates them."""
    pid = str(h["project_ids"][project_index])
    address = {"street": "350 Jay Street", "city": "Brooklyn", "state": "NY", "postalCode": "11201"}
    company = s.post(f"{emu.st_url}/company", json={"name": f"Summit {pid}", "customer": True, "address": address,
                                                    "externalIds": {"procore": pid}}).json()["data"]
    location = s.post(f"{emu.st_url}/location", json={"name": f"Site {pid}", "companyId": company["id"],
                                                      "address": address, "externalIds": {"procore": pid}}).json()
    r = s.post(f"{emu.st_url}/job", json={"locationId": location["data"]["id"], "vendorId": h["st_vendor_company_id"],
                                          "customerId": company["id"], "type": "service_call", "name": "Labor",
                                          "externalIds": {"procore": pid}})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def st_pages(s: requests.Session, url: str, key: str, **params) -> list[dict]:
    items, page = [], 1
    while True:
        data = s.get(url, params={**params, "page": page}).json()["data"]
        items += data[key]
        if page >= data["totalPages"]:
            return items
        page += 1


def procore_session(emu, h) -> requests.Session:
    token = requests.post(f"{emu.procore_url}/oauth/token", data={
        "grant_type": "client_credentials", "client_id": h["procore_client_id"],
        "client_secret": h["procore_client_secret"]}).json()
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {token['access_token']}",
                      "Procore-Company-Id": str(h["procore_company_id"])})
    return s


def emulator_entry(h, project_index: int = 0, tech: int = 0, day: str = "2026-03-02", **fields) -> dict:
    pid = h["project_ids"][project_index]
    code = h["labor_cost_codes"][str(pid)][0]
    return {"project_id": pid, "party_id": h["technicians"][tech]["party_id"], "date": day, "hours": "7.25",
            "cost_code_id": code["cost_code_id"], "line_item_type_id": code["line_item_type_id"], **fields}


def bulk_url(emu, h) -> str:
    return f"{emu.procore_url}/rest/v1.0/companies/{h['procore_company_id']}/timesheets"
