"""ServiceTrade webhooks (servicetrade.md ST-10, Part B §9): `/api/webhook` in the API's envelope, and one message
per webhook for each batch of changes it subscribed to (clock events created, updated or deleted through the admin
API; jobs created through the API or edited through the admin API).
"""

from __future__ import annotations

import uuid
from typing import Any

from emulators.common import now
from emulators.server import Request, Response
from emulators.servicetrade import URI, Change, Invalid, Missing, ServiceTrade, envelope, json_object
from emulators.webhooks import SERVICETRADE_RETRIES, Dispatcher

ACTIONS = ("created", "updated", "deleted")
# Part B §9: the numeric codes seen for entity types; the strings are accepted too.
ENTITY_CODES = {3: "job", 4: "user", 5: "company", 11: "location", 16: "appointment", 22: "contact"}
ENTITY_TYPES = frozenset({*ENTITY_CODES.values(), "clockevent", "invoice", "quote", "attachment", "deficiency"})
ENTITY_PATHS = {"clockevent": "clockevent", "job": "job"}
UPDATABLE = frozenset({"enabled", "includeChangesets", "entityEvents"})


class ServiceTradeWebhooks:
    """Adds the webhook routes to `st` and listens to its changes."""

    def __init__(self, st: ServiceTrade, dispatcher: Dispatcher):
        self.st = st
        self.dispatcher = dispatcher
        self.hooks: dict[int, dict[str, Any]] = {}
        add = st.add_route
        add("POST", "/api/webhook", self.create)
        add("GET", "/api/webhook", lambda req: st.page(req, list(self.hooks.values()), "webhooks", "webhook", _render))
        add("GET", "/api/webhook/{id}", lambda req: envelope(_render(self._hook(req))))
        add("PUT", "/api/webhook/{id}", self.update)
        add("DELETE", "/api/webhook/{id}", self.delete)
        st.on_change = self.changed

    def create(self, req: Request) -> Response:
        body = json_object(req)
        url = body.get("hookUrl")
        errors = {} if isinstance(url, str) and url.startswith(("http://", "https://")) else {
            "hookUrl": "Hook URL must be an http(s) URL"}
        fields = _settings(body, errors)
        ts = now()
        hook = {"id": self.st.ids.next(), "hookUrl": url, "enabled": True, "includeChangesets": False,
                "entityEvents": None, **fields, "confirmed": True, "created": ts, "updated": ts}
        self.hooks[hook["id"]] = hook
        return envelope(_render(hook))

    def update(self, req: Request) -> Response:
        hook = self._hook(req)
        body = json_object(req)
        errors = {"hookUrl": "The hook URL can't be changed: delete the webhook and create a new one"} \
            if "hookUrl" in body and body["hookUrl"] != hook["hookUrl"] else {}
        hook.update(_settings(body, errors), updated=max(now(), hook["updated"] + 1))
        return envelope(_render(hook))

    def delete(self, req: Request) -> Response:
        del self.hooks[self._hook(req)["id"]]
        return Response.empty(204)

    def changed(self, changes: list[Change]) -> None:
        """Every enabled webhook gets one message holding the changes it subscribed to (none: no message)."""
        if not self.hooks:
            return
        ts = now()
        for hook in self.hooks.values():
            items = [_item(c, ts, hook["includeChangesets"]) for c in changes
                     if hook["enabled"] and _subscribed(hook, c)]
            if items:
                message = {"messageId": str(uuid.uuid4()), "timestamp": str(ts), "data": items}
                self.dispatcher.send("servicetrade", hook["id"], hook["hookUrl"], {}, message, SERVICETRADE_RETRIES)

    def _hook(self, req: Request) -> dict[str, Any]:
        try:
            return self.hooks[int(req.params["id"])]
        except (KeyError, ValueError):
            raise Missing from None


def _settings(body: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """`enabled`, `includeChangesets` and `entityEvents` from a create or update body; raises Invalid."""
    fields = {k: body[k] for k in UPDATABLE if k in body}
    for key in ("enabled", "includeChangesets"):
        if key in fields and not isinstance(fields[key], bool):
            errors[key] = f"{key} must be true or false"
    events = fields.get("entityEvents")
    if events is not None:
        if not isinstance(events, list) or not all(_entity_event_ok(e) for e in events):
            errors["entityEvents"] = ("entityEvents must be a list of {entityType, events: [created, updated, "
                                      f"deleted]}} with entityType one of {sorted(ENTITY_TYPES)} or a numeric code")
        else:
            fields["entityEvents"] = [{"entityType": e["entityType"], "events": list(_actions(e))} for e in events]
    if errors:
        raise Invalid(errors)
    return fields


def _entity_event_ok(raw: Any) -> bool:
    return (isinstance(raw, dict) and _entity_type(raw.get("entityType")) is not None
            and isinstance(_actions(raw), list) and all(a in ACTIONS for a in _actions(raw)))


def _actions(raw: dict[str, Any]) -> Any:
    """The actions of one subscription: `events` (ST-10) or `actions` (seen in integrators' code)."""
    return raw.get("events", raw.get("actions", list(ACTIONS)))


def _entity_type(raw: Any) -> str | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return ENTITY_CODES.get(raw)
    return raw if raw in ENTITY_TYPES else None


def _subscribed(hook: dict[str, Any], change: Change) -> bool:
    if hook["entityEvents"] is None:  # null subscribes to everything
        return True
    return any(_entity_type(e["entityType"]) == change.entity_type and change.action in e["events"]
               for e in hook["entityEvents"])


def _item(change: Change, ts: int, with_changeset: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "action": change.action, "timestamp": ts, "userId": change.user_id,
        "entity": {"type": change.entity_type, "id": change.entity_id,
                   "uri": f"{URI}/{ENTITY_PATHS[change.entity_type]}/{change.entity_id}"}}
    if with_changeset and change.action == "updated":
        item["changeset"] = change.changeset
    return item


def _render(hook: dict[str, Any]) -> dict[str, Any]:
    return {**hook, "uri": f"{URI}/webhook/{hook['id']}"}
