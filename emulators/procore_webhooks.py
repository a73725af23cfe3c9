"""Procore webhooks (procore.md P-14, Part B §16): hooks and their triggers under `/rest/v1.0/webhooks/hooks`, and a
v2 payload to every hook whose trigger matches a change of a timecard entry.

A hook belongs to the company or to one project (`company_id` or `project_id`, in the query or the body); a
company hook hears about entries of all its projects, a project hook about that project's only.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any

from emulators.procore import BASE, Failure, Procore, Source, Unprocessable, json_object
from emulators.server import Request, Response
from emulators.webhooks import PROCORE_RETRIES, Dispatcher, ulid

HOOKS = f"{BASE}/webhooks/hooks"
RESOURCE_NAME = "Timecard Entries"
EVENT_TYPES = ("create", "update", "delete")
PAYLOAD_VERSIONS = (None, "v2", "v2.0")
NAMESPACE = re.compile(r"^[a-z0-9-]+$")


class ProcoreWebhooks:
    """Adds the webhook routes to `procore` and listens to its timecard entry changes."""

    def __init__(self, procore: Procore, dispatcher: Dispatcher):
        self.procore = procore
        self.dispatcher = dispatcher
        self.hooks: dict[int, dict[str, Any]] = {}
        self.triggers: dict[int, dict[str, Any]] = {}
        self.hook_ids = itertools.count(4_210_000_001)
        self.trigger_ids = itertools.count(7_310_000_001)
        self.event_ids = itertools.count(91_000_000_001)
        add = procore.add_route
        add("GET", HOOKS, self.list_hooks)
        add("POST", HOOKS, self.create_hook)
        add("GET", f"{HOOKS}/{{id}}", lambda req: Response.json(200, _hook(self._hook(req))))
        add("PATCH", f"{HOOKS}/{{id}}", self.update_hook)
        add("DELETE", f"{HOOKS}/{{id}}", self.delete_hook)
        add("GET", f"{HOOKS}/{{id}}/triggers", self.list_triggers)
        add("POST", f"{HOOKS}/{{id}}/triggers", self.create_trigger)
        add("DELETE", f"{HOOKS}/{{id}}/triggers/{{trigger_id}}", self.delete_trigger)
        procore.on_entry_change = self.entry_changed

    # -- hooks ---------------------------------------------------------------------------------------------------
    def list_hooks(self, req: Request) -> Response:
        company_id, project_id = self._scope(req, {})
        found = [h for h in self.hooks.values() if (h["company_id"], h["project_id"]) == (company_id, project_id)]
        return self.procore.paginate(req, found, _hook)

    def create_hook(self, req: Request) -> Response:
        body = json_object(req)
        company_id, project_id = self._scope(req, body)
        fields = _hook_fields(body.get("hook"), partial=False)
        stamp = _now()
        hook = {"id": next(self.hook_ids), "company_id": company_id, "project_id": project_id,
                "namespace": None, "destination_headers": {}, **fields, "created_at": stamp, "updated_at": stamp}
        self.hooks[hook["id"]] = hook
        return Response.json(201, _hook(hook))

    def update_hook(self, req: Request) -> Response:
        hook = self._hook(req)
        hook.update(_hook_fields(json_object(req).get("hook"), partial=True), updated_at=_now())
        return Response.json(200, _hook(hook))

    def delete_hook(self, req: Request) -> Response:
        hook = self._hook(req)
        del self.hooks[hook["id"]]
        for trigger_id in [t["id"] for t in self.triggers.values() if t["hook_id"] == hook["id"]]:
            del self.triggers[trigger_id]
        return Response.empty(204)

    # -- triggers ------------------------------------------------------------------------------------------------
    def list_triggers(self, req: Request) -> Response:
        hook = self._hook(req)
        return self.procore.paginate(req, [t for t in self.triggers.values() if t["hook_id"] == hook["id"]], dict)

    def create_trigger(self, req: Request) -> Response:
        hook = self._hook(req)
        raw = json_object(req).get("trigger")
        if not isinstance(raw, dict):
            raise Failure(400, "param is missing or the value is empty: trigger")
        errs: dict[str, list[str]] = {}
        if raw.get("resource_name") != RESOURCE_NAME:
            errs["resource_name"] = [f"is not a resource this emulator sends; use {RESOURCE_NAME!r}"]
        if raw.get("event_type") not in EVENT_TYPES:
            errs["event_type"] = [f"must be one of {', '.join(EVENT_TYPES)}"]
        elif any(t["hook_id"] == hook["id"] and t["event_type"] == raw["event_type"]
                 for t in self.triggers.values()):
            errs["event_type"] = ["has already been taken"]
        if errs:
            raise Unprocessable(errs)
        trigger = {"id": next(self.trigger_ids), "hook_id": hook["id"], "api_version": "v2",
                   "resource_name": RESOURCE_NAME, "event_type": raw["event_type"], "created_at": _now()}
        self.triggers[trigger["id"]] = trigger
        return Response.json(201, dict(trigger))

    def delete_trigger(self, req: Request) -> Response:
        hook = self._hook(req)
        trigger = self.triggers.get(_int(req.params["trigger_id"]) or 0)
        if trigger is None or trigger["hook_id"] != hook["id"]:
            raise Failure(404, "Trigger not found")
        del self.triggers[trigger["id"]]
        return Response.empty(204)

    # -- deliveries ----------------------------------------------------------------------------------------------
    def entry_changed(self, event_type: str, entry: dict[str, Any], source: Source) -> None:
        """One v2 payload (one event id and ulid) to every hook with a trigger for this change."""
        if not self.hooks:  # the common case, and the cheap one: bulk loads of thousands of entries
            return
        company_id, project_id = entry["company_id"], entry["project_id"]
        triggered = {t["hook_id"] for t in self.triggers.values() if t["event_type"] == event_type}
        targets = [h for h in self.hooks.values() if h["id"] in triggered and h["company_id"] == company_id
                   and h["project_id"] in (None, project_id)]
        if not targets:
            return
        payload = {
            "id": next(self.event_ids), "ulid": ulid(), "timestamp": _now(microseconds=True),
            "metadata": {"source_user_id": source.user_id, "source_project_id": project_id,
                         "source_operation_id": None, "source_company_id": company_id,
                         "source_application_id": source.application_id},
            "user_id": source.user_id, "company_id": company_id, "project_id": project_id, "api_version": "v2.0",
            "event_type": event_type, "resource_name": RESOURCE_NAME, "resource_id": entry["id"],
        }
        for hook in targets:
            self.dispatcher.send("procore", hook["id"], hook["destination_url"], dict(hook["destination_headers"]),
                                 payload, PROCORE_RETRIES)

    # -- helpers -------------------------------------------------------------------------------------------------
    def _scope(self, req: Request, body: dict[str, Any]) -> tuple[int, int | None]:
        """(company, project or None) named by `project_id` or `company_id`, from the query or the body."""
        company_id = req.context["company_id"]
        raw_project = req.arg("project_id") or body.get("project_id")
        if raw_project not in (None, ""):
            project = self.procore.projects.get(_int(raw_project) or 0)
            if project is None or project["company_id"] != company_id:
                raise Failure(404, "Project not found")
            return company_id, project["id"]
        raw_company = req.arg("company_id") or body.get("company_id")
        if raw_company in (None, ""):
            raise Failure(400, "company_id or project_id is required")
        if _int(raw_company) != company_id:
            raise Failure(404, "Company not found")
        return company_id, None

    def _hook(self, req: Request) -> dict[str, Any]:
        """The hook of the path, which must be the company's and, when a project is named, that project's."""
        hook = self.hooks.get(_int(req.params["id"]) or 0)
        body = json_object(req) if req.method in ("PATCH", "POST") else {}
        company_id, project_id = self._scope(req, body)
        if hook is None or hook["company_id"] != company_id or (project_id is not None
                                                                 and hook["project_id"] != project_id):
            raise Failure(404, "Hook not found")
        return hook


def _hook_fields(raw: Any, *, partial: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Failure(400, "param is missing or the value is empty: hook")
    errs: dict[str, list[str]] = {}
    fields: dict[str, Any] = {}
    if "destination_url" in raw or not partial:
        url = raw.get("destination_url")
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            errs["destination_url"] = ["must be an http(s) URL"]
        fields["destination_url"] = url
    if "destination_headers" in raw:
        headers = raw["destination_headers"] or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            errs["destination_headers"] = ["must be an object of header names to strings"]
        fields["destination_headers"] = headers
    if raw.get("namespace") is not None:
        if not isinstance(raw["namespace"], str) or not NAMESPACE.match(raw["namespace"]):
            errs["namespace"] = ["may hold only a-z, 0-9 and -"]
        fields["namespace"] = raw["namespace"]
    for key in ("api_version", "payload_version"):
        if raw.get(key) not in PAYLOAD_VERSIONS:
            errs[key] = ["v2 is the only version this emulator sends"]
    if errs:
        raise Unprocessable(errs)
    return fields


def _hook(h: dict[str, Any]) -> dict[str, Any]:
    return {"id": h["id"], "api_version": "v2", "payload_version": "v2.0", "namespace": h["namespace"],
            "destination_url": h["destination_url"], "destination_headers": dict(h["destination_headers"]),
            "company_id": h["company_id"], "project_id": h["project_id"], "created_at": h["created_at"],
            "updated_at": h["updated_at"]}


def _int(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _now(*, microseconds: bool = False) -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if microseconds else "%Y-%m-%dT%H:%M:%SZ")
