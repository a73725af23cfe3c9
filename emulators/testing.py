"""Run the emulators as a subprocess (`EmulatorProcess`) and drive them through the admin API (`AdminClient`).

    with EmulatorProcess(seed=generate_world(seed=1)) as emu:
        requests.post(f"{emu.st_url}/auth", json={...})
        emu.admin.add_faults({"service": "procore", "kind": "lost_response", "count": 1})
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 20.0


class AdminError(RuntimeError):
    """The admin API answered with a non-2xx status."""


class AdminClient:
    """Thin wrapper around `/_admin`; every method raises AdminError on a non-2xx answer."""

    def __init__(self, base_url: str, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.session.request(method, f"{self.base_url}/_admin{path}", json=body, timeout=self.timeout)
        if not resp.ok:
            raise AdminError(f"admin {method} {path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json()

    def reset(self, world: dict[str, Any] | None = None) -> None:
        """Replace all state with `world` ({} = empty); config, faults and request counts go back to defaults."""
        self._call("POST", "/reset", world or {})

    def config(self, **values: Any) -> dict[str, Any]:
        return self._call("POST", "/config", values)

    def set_variants(self, *, procore: list[str] | None = None,
                     servicetrade: list[str] | None = None) -> dict[str, list[str]]:
        """Switch on exactly these variants for each service named (`[]` = none); returns all active variants."""
        body = {k: v for k, v in (("procore", procore), ("servicetrade", servicetrade)) if v is not None}
        return self._call("POST", "/variants", body)

    def variants(self) -> dict[str, list[str]]:
        return self._call("GET", "/variants")

    def add_clock_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call("POST", "/servicetrade/clock_events", {"events": events})["events"]

    def edit_clock_event(self, event_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/servicetrade/clock_events/{event_id}", fields)

    def delete_clock_event(self, event_id: int) -> None:
        self._call("DELETE", f"/servicetrade/clock_events/{event_id}")

    def patch_user(self, user_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/servicetrade/users/{user_id}", fields)

    def st_state(self) -> dict[str, Any]:
        return self._call("GET", "/servicetrade/state")

    def expire_sessions(self) -> int:
        return self._call("POST", "/servicetrade/expire_sessions")["expired"]

    def expire_tokens(self) -> int:
        return self._call("POST", "/procore/expire_tokens")["expired"]

    def procore_entries(self) -> list[dict[str, Any]]:
        return self._call("GET", "/procore/entries")

    def approve_entry(self, entry_id: int, status: str = "approved") -> dict[str, Any]:
        return self._call("POST", f"/procore/entries/{entry_id}/approve", {"approval_status": status})

    def edit_entry(self, entry_id: int, **fields: Any) -> dict[str, Any]:
        """Change an entry as a person in Procore would (locks don't apply); `as_application_id` and
        `as_user_id` say who, for the webhook's metadata."""
        return self._call("PATCH", f"/procore/entries/{entry_id}", fields)

    def delete_entry(self, entry_id: int, **who: Any) -> None:
        self._call("DELETE", f"/procore/entries/{entry_id}", who)

    def patch_job(self, job_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/servicetrade/jobs/{job_id}", fields)

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        return self._call("GET", "/webhooks/deliveries")

    def clear_webhook_deliveries(self) -> None:
        self._call("DELETE", "/webhooks/deliveries")

    def wait_for_deliveries(self, count: int, *, outcome: str | None = None,
                            timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll until at least `count` deliveries (with that outcome, when given) are recorded; returns them all
        (filtered by outcome when given). Raises AdminError when they don't come in time."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in self.webhook_deliveries() if outcome is None or d["outcome"] == outcome]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AdminError(f"{len(found)} of {count} webhook deliveries{f' ({outcome})' if outcome else ''}"
                                 f" within {timeout} s: {found}")
            time.sleep(0.02)

    def patch_company(self, company_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/procore/companies/{company_id}", fields)

    def patch_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/procore/projects/{project_id}", fields)

    def patch_cost_code(self, cost_code_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/procore/cost_codes/{cost_code_id}", fields)

    def patch_person(self, person_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/procore/people/{person_id}", fields)

    def requests(self) -> dict[str, Any]:
        return self._call("GET", "/requests")

    def reset_requests(self) -> None:
        self._call("POST", "/requests/reset")

    def add_faults(self, *rules: dict[str, Any]) -> None:
        self._call("POST", "/faults", {"rules": list(rules)})

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")


class EmulatorProcess:
    """`python -m emulators --port 0` in a subprocess; a context manager. `seed` is a world dict."""

    def __init__(self, seed: dict[str, Any] | None = None, env: dict[str, str] | None = None):
        self.seed = seed
        self.env = env
        self.base_url = ""
        self.st_url = ""
        self.procore_url = ""
        self.admin: AdminClient
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._stderr: IO[bytes] | None = None

    def start(self) -> EmulatorProcess:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="stsync-emulator-")
        cmd = [sys.executable, "-m", "emulators", "--port", "0"]
        if self.seed is not None:
            seed_file = Path(self._tmpdir.name) / "world.json"
            seed_file.write_text(json.dumps(self.seed))
            cmd += ["--seed", str(seed_file)]
        env = {**os.environ, **(self.env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        self._stderr = open(Path(self._tmpdir.name) / "stderr.log", "w+b")  # noqa: SIM115 - lives with the process
        self._proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=self._stderr)
        line = self._first_line(self._proc.stdout)
        if not line.startswith("READY "):
            if self._proc.poll() is None:
                self._proc.terminate()
                self._proc.wait(timeout=10)
            stderr = self._stderr_text
            self.stop()
            raise RuntimeError(f"the emulator did not start (first line {line!r}); stderr:\n{stderr}")
        self.base_url = line.split(" ", 1)[1].strip()
        self.st_url = f"{self.base_url}/api"
        self.procore_url = self.base_url
        self.admin = AdminClient(self.base_url)
        return self

    def _first_line(self, stream: IO[bytes] | None) -> str:
        lines: queue.Queue[bytes] = queue.Queue()
        assert stream is not None
        threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
        try:
            return lines.get(timeout=READY_TIMEOUT_S).decode(errors="replace")
        except queue.Empty:
            return f"(nothing within {READY_TIMEOUT_S:.0f} s)"

    @property
    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
