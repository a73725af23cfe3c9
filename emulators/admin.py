"""The `/_admin/...` API (no auth, JSON in and out) that tests, the demo and the benchmarks drive the emulator
with: load a world, change config, edit what the remote systems hold, count requests and inject faults."""

from __future__ import annotations

from typing import Any, cast

from emulators.procore import PERSON_APPLICATION_ID, PERSON_USER_ID, Procore, Source
from emulators.procore_webhooks import ProcoreWebhooks
from emulators.server import Emulator, FaultRule, Request, Response
from emulators.servicetrade import ServiceTrade
from emulators.servicetrade_webhooks import ServiceTradeWebhooks
from emulators.webhooks import Dispatcher


def ok(payload: Any = None) -> Response:
    return Response.json(200, {"ok": True} if payload is None else payload)


class Admin:
    """Owns loading a world into the emulator and the admin routes."""

    def __init__(self, emulator: Emulator):
        self.emu = emulator
        self.dispatcher = Dispatcher(emulator.config)
        add = emulator.admin_router.add
        add("POST", "/_admin/reset", lambda req: self.reset(_body(req)) or ok())
        add("GET", "/_admin/config", lambda req: ok(emulator.config.values))
        add("POST", "/_admin/config", self.update_config)
        add("GET", "/_admin/variants", lambda req: ok(emulator.config["variants"]))
        add("POST", "/_admin/variants", self.set_variants)
        add("POST", "/_admin/servicetrade/clock_events",
            lambda req: ok({"events": self.st.add_events(_list(_body(req), "events"))}))
        add("PATCH", "/_admin/servicetrade/clock_events/{id}",
            lambda req: ok(self.st.edit_event(_id(req), _body(req))))
        add("DELETE", "/_admin/servicetrade/clock_events/{id}",
            lambda req: self.st.delete_event(_id(req)) or ok())
        add("PATCH", "/_admin/servicetrade/users/{id}", lambda req: ok(self.st.patch_user(_id(req), _body(req))))
        add("PATCH", "/_admin/servicetrade/jobs/{id}", lambda req: ok(self.st.patch_job(_id(req), _body(req))))
        add("GET", "/_admin/servicetrade/state", lambda req: ok(self.st.state()))
        add("POST", "/_admin/servicetrade/expire_sessions", lambda req: ok({"expired": self.st.expire_all()}))
        add("POST", "/_admin/procore/expire_tokens", lambda req: ok({"expired": self.procore.expire_all()}))
        add("GET", "/_admin/procore/entries", lambda req: ok(self.procore.all_entries()))
        add("POST", "/_admin/procore/entries/{id}/approve", self.approve_entry)
        add("PATCH", "/_admin/procore/entries/{id}", self.edit_entry)
        add("DELETE", "/_admin/procore/entries/{id}", self.delete_entry)
        add("PATCH", "/_admin/procore/companies/{id}",
            lambda req: ok(self.procore.patch_company(_id(req), _body(req))))
        add("PATCH", "/_admin/procore/projects/{id}",
            lambda req: ok(self.procore.patch_project(_id(req), _body(req))))
        add("PATCH", "/_admin/procore/cost_codes/{id}",
            lambda req: ok(self.procore.patch_cost_code(_id(req), _body(req))))
        add("PATCH", "/_admin/procore/people/{id}", lambda req: ok(self.procore.patch_person(_id(req), _body(req))))
        add("GET", "/_admin/requests", lambda req: ok(emulator.request_counts()))
        add("POST", "/_admin/requests/reset", lambda req: emulator.counts.clear() or ok())
        add("POST", "/_admin/faults", self.add_faults)
        add("DELETE", "/_admin/faults", lambda req: emulator.faults.clear() or ok())
        add("GET", "/_admin/webhooks/deliveries", lambda req: ok(self.dispatcher.deliveries()))
        add("DELETE", "/_admin/webhooks/deliveries", lambda req: self.dispatcher.clear() or ok())

    @property
    def st(self) -> ServiceTrade:
        return cast(ServiceTrade, self.emu.services["servicetrade"])

    @property
    def procore(self) -> Procore:
        return cast(Procore, self.emu.services["procore"])

    def reset(self, world: dict[str, Any]) -> None:
        """Replace everything: both APIs' state from `world`, and config, faults and request counts to defaults."""
        with self.emu.lock:
            self.emu.config.reset()
            st = ServiceTrade(world.get("servicetrade") or {}, self.emu.config)
            procore = Procore(world.get("procore") or {}, self.emu.config)
            ServiceTradeWebhooks(st, self.dispatcher)
            ProcoreWebhooks(procore, self.dispatcher)
            self.emu.services = {"servicetrade": st, "procore": procore}
            self.dispatcher.clear()
            self.emu.faults.clear()
            self.emu.counts.clear()

    def update_config(self, req: Request) -> Response:
        patch = _body(req)
        self.emu.config.update(patch)
        if "procore_rate_limit" in patch:
            self.procore.limiter.reset()  # a new limit starts with fresh windows
        return ok(self.emu.config.values)

    def set_variants(self, req: Request) -> Response:
        """The services named in the body get exactly the variants listed; the others keep theirs."""
        self.emu.config.update({"variants": _body(req)})
        return ok(self.emu.config["variants"])

    def approve_entry(self, req: Request) -> Response:
        body = _body(req)
        return ok(self.procore.set_approval(_id(req), body.get("approval_status", "approved"), _person(body)))

    def edit_entry(self, req: Request) -> Response:
        """A person edits an entry in Procore: entry fields, plus optional `as_application_id`/`as_user_id`."""
        body = _body(req)
        fields = {k: v for k, v in body.items() if k not in ("as_application_id", "as_user_id")}
        return ok(self.procore.edit_entry(_id(req), fields, _person(body)))

    def delete_entry(self, req: Request) -> Response:
        self.procore.remove_entry(_id(req), _person(_body(req)))
        return ok()

    def add_faults(self, req: Request) -> Response:
        rules = [FaultRule.parse(raw) for raw in _list(_body(req), "rules")]
        self.emu.faults.extend(rules)
        return ok({"rules": len(self.emu.faults)})


def _body(req: Request) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise ValueError("the admin API takes a JSON object")
    return body


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key!r} must be a list")
    return value


def _person(body: dict[str, Any]) -> Source:
    """Who acts in Procore's own app: someone other than our API client, unless the body says who."""
    return Source(body.get("as_application_id", PERSON_APPLICATION_ID), body.get("as_user_id", PERSON_USER_ID))


def _id(req: Request) -> int:
    return int(req.params["id"])
