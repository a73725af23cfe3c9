"""The ServiceTrade API as this project relies on it (servicetrade.md Part A, ST-1..ST-8), mounted under `/api`,
with the variants of ST-9 (`Config.variant`).

State: logins, OAuth clients, users, companies, locations, jobs and clock events, plus the world's
`clock_event_plans` that become real events when a job for that Procore project is created. Every batch of clock
event and job changes is told to `on_change`, where `servicetrade_webhooks` listens.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from emulators.common import (
    IdGenerator,
    client_credentials,
    fault_response,
    jwt_like,
    now,
    page_count,
    random_token,
)
from emulators.server import Config, FaultRule, Request, Response, Router

ACTIVITIES = ("onsite", "enroute", "offsite", "onbreak")
EVENT_TYPES = ("clockIn", "clockOut")
SOURCES = ("mobile", "ivr", "web")
EVENT_FIELDS = frozenset({"job_id", "user_id", "eventType", "activity", "eventTime", "source", "appointment_id"})
JOB_TYPES = frozenset({
    "unknown", "repair", "construction", "upgrade", "service_call", "urgent_service_call", "priority_service_call",
    "emergency_service_call", "cleaning", "inspection", "priority_inspection", "reinspection", "survey",
    "preventative_maintenance", "quality_assurance", "inspection_repair", "delivery", "pickup", "exchange", "sales",
    "installation", "warranty", "training", "testing", "administrative", "replacement", "design", "hookup",
})
JOB_STATUSES = frozenset({"new", "canceled", "bidding", "scheduled", "completed", "pending_invoice",
                          "sending_invoice", "closed"})
SESSIONS_PER_USER = 20  # ServiceTrade keeps a few sessions per user and drops the oldest beyond that
TOKEN_TTL_S = 86400
URI = "https://api.servicetrade.com/api"
# (default limit, max limit) per list; servicetrade.md §2 and ST-5
LIMITS = {"clock": (100, 1000), "job": (2000, 2000), "location": (10, 5000), "company": (100, 1000),
          "user": (100, 1000), "webhook": (100, 1000)}
JOB_FIELDS = frozenset({"name", "customName", "type", "status", "description", "customerPo", "externalIds"})
# Clock event fields as a changeset names them.
EVENT_CHANGE_NAMES = {"job_id": "jobId", "user_id": "userId", "appointment_id": "appointmentId"}
_BEYOND_ANY_ID = 2**63


@dataclass(frozen=True)
class Change:
    """One entity created, updated or deleted, as a webhook message item tells it (ST-10)."""

    action: str
    entity_type: str  # "clockevent" | "job"
    entity_id: int
    user_id: int | None
    changeset: list[dict[str, Any]] = field(default_factory=list)


class Invalid(Exception):
    """400 with `messages.validation` {field: message}."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


class Missing(Exception):
    """404 for an unknown id."""


def envelope(data: Any) -> Response:
    return Response.json(200, {"data": data})


def error(status: int, message: str, data: Any = None) -> Response:
    return Response.json(status, {"messages": {"error": [message]}, "data": data})


class ServiceTrade:
    name = "servicetrade"

    def __init__(self, world: dict[str, Any], config: Config):
        self.config = config
        self.ids = IdGenerator(int(world.get("id_seed", 1)))
        self.vendor_company_id = world.get("vendor_company_id")
        self.logins = {lg["username"]: lg for lg in world.get("logins", [])}
        self.oauth_clients = {c["client_id"]: c for c in world.get("oauth_clients", [])}
        self.users: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.locations: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.events: dict[int, dict[str, Any]] = {}
        self.events_by_job: dict[int, list[tuple[int, int]]] = {}
        self.sessions: dict[str, int] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, list[dict[str, Any]]] = {
            str(k): list(v) for k, v in (world.get("clock_event_plans") or {}).items()
        }
        ts = now()
        for u in world.get("users", []):
            self.users[int(u["id"])] = {
                "id": int(u["id"]), "firstName": u.get("firstName", ""), "lastName": u.get("lastName", ""),
                "email": u.get("email"), "status": u.get("status", "active"),
                "timezone": u.get("timezone", "America/New_York"), "isTech": bool(u.get("isTech", False)),
                "externalIds": dict(u.get("externalIds") or {}),
            }
        for c in world.get("companies", []):
            self.companies[int(c["id"])] = self._new_company(int(c["id"]), c, ts)
        for loc in world.get("locations", []):
            self.locations[int(loc["id"])] = self._new_location(int(loc["id"]), loc, ts)
        for j in world.get("jobs", []):
            self.jobs[int(j["id"])] = self._new_job(int(j["id"]), int(j["number"]), j, ts)
        self.next_job_number = max((j["number"] for j in self.jobs.values()), default=10000) + 1
        for e in world.get("clock_events", []):
            self._store_event(int(e["id"]), e, ts)
        for index in self.events_by_job.values():
            index.sort()
        self.ids.reserve([*self.users, *self.companies, *self.locations, *self.jobs, *self.events])

        # Who changes things through the admin API: the account's own API user (the office).
        self.office_user_id: int | None = next(iter(self.logins.values()), {}).get("user_id")
        # Told of every batch of changes (the webhooks listen here).
        self.on_change: Callable[[list[Change]], None] = lambda changes: None

        self.router = Router()
        add = self.add_route
        add("POST", "/api/auth", self.login)
        add("GET", "/api/auth", self.session_info)
        add("DELETE", "/api/auth", self.logout)
        for prefix in ("/api", ""):  # the Python SDK posts without /api (servicetrade.md §1b)
            add("POST", f"{prefix}/oauth2/token", self.oauth_token)
            add("POST", f"{prefix}/oauth2/revoke", self.oauth_revoke)
        add("GET", "/api/oauth2/userinfo", self.userinfo)
        add("GET", "/api/clock", self.list_clock)
        add("GET", "/api/job/{id}/clockevent", self.job_clock_summary)
        add("GET", "/api/user", self.list_users)
        add("GET", "/api/user/{id}", lambda req: envelope(self.render_user(self._get(self.users, req))))
        add("GET", "/api/company", self.list_companies)
        add("POST", "/api/company", self.create_company)
        add("GET", "/api/company/{id}", lambda req: envelope(self.render_company(self._get(self.companies, req))))
        add("GET", "/api/location", self.list_locations)
        add("POST", "/api/location", self.create_location)
        add("GET", "/api/location/{id}",
            lambda req: envelope(self.render_location(self._get(self.locations, req))))
        add("GET", "/api/job", self.list_jobs)
        add("POST", "/api/job", self.create_job)
        add("GET", "/api/job/{id}", lambda req: envelope(self.render_job(self._get(self.jobs, req))))

    PUBLIC_ROUTES = frozenset({"/api/auth", "/api/oauth2/token", "/oauth2/token", "/api/oauth2/revoke",
                               "/oauth2/revoke"})

    def add_route(self, method: str, template: str, handler: Callable[[Request], Response]) -> None:
        """A route whose handler may raise Invalid (400 with validation messages) or Missing (404)."""
        def run(req: Request) -> Response:
            try:
                return handler(req)
            except Invalid as exc:
                return Response.json(400, {"messages": {"error": list(exc.errors.values()),
                                                        "validation": exc.errors}, "data": None})
            except Missing:
                return error(404, "Not found")

        self.router.add(method, template, run)

    # -- Service protocol --------------------------------------------------------------------------------------
    def guard(self, req: Request) -> Response | None:
        if req.route in self.PUBLIC_ROUTES or self.caller(req) is not None:
            return None
        return Response.empty(401)  # ST-2: an unknown or expired session gets 401 with an empty body

    def finish(self, req: Request, resp: Response) -> None:
        """ServiceTrade adds nothing beyond the x-request-id every response gets."""

    def not_found(self, req: Request) -> Response:
        return error(404, "Not found")

    def bad_request(self, req: Request, message: str) -> Response:
        return error(400, message)

    def expire_caller(self, req: Request) -> None:
        self.sessions.pop(_session_cookie(req) or "", None)
        self.access_tokens.pop(req.bearer() or "", None)

    def fault_response(self, kind: str, rule: FaultRule, req: Request) -> Response:
        return fault_response(kind, rule, json_error=lambda status, msg: error(status, msg))

    # -- auth --------------------------------------------------------------------------------------------------
    def caller(self, req: Request) -> int | None:
        token = req.bearer()
        if token:
            rec = self.access_tokens.get(token)
            if rec and rec["exp"] > now():
                return rec["user_id"]
            return None
        return self.sessions.get(_session_cookie(req) or "")

    def expire_all(self) -> int:
        n = len(self.sessions) + len(self.access_tokens)
        self.sessions.clear()
        self.access_tokens.clear()
        return n

    def _auth_data(self, token: str, user_id: int) -> dict[str, Any]:
        user = self.users[user_id]
        return {"authenticated": True, "authToken": token,
                "user": {**self.render_user(user), "company": self._vendor_ref()}}

    def _vendor_ref(self) -> dict[str, Any] | None:
        vendor = self.companies.get(self.vendor_company_id or 0)
        return {"id": vendor["id"], "name": vendor["name"]} if vendor else None

    def login(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            body = {}
        missing = {k: f"{k.capitalize()} is required" for k in ("username", "password") if not body.get(k)}
        if missing:
            raise Invalid(missing)
        login = self.logins.get(str(body["username"]))
        if login is None or login["password"] != body["password"] or login["user_id"] not in self.users:
            return Response.json(403, {"messages": {"error": ["Invalid credentials provided"]}})
        token = random_token(26)
        user_id = login["user_id"]
        mine = [t for t, u in self.sessions.items() if u == user_id]
        for old in mine[: max(0, len(mine) - SESSIONS_PER_USER + 1)]:
            del self.sessions[old]
        self.sessions[token] = user_id
        resp = envelope(self._auth_data(token, user_id))
        resp.headers.append(("Set-Cookie", f"PHPSESSID={token}; path=/; HttpOnly"))
        return resp

    def session_info(self, req: Request) -> Response:
        token = _session_cookie(req) or ""
        user_id = self.sessions.get(token)
        if user_id is None:
            return error(404, "No active session found for given auth token",
                         data={"authenticated": False, "authToken": None})
        return self._identity(self._auth_data(token, user_id))

    def logout(self, req: Request) -> Response:
        # Logging out of a session that is already gone is still a logout: 204 either way.
        self.sessions.pop(_session_cookie(req) or "", None)
        return Response.empty(204)

    def oauth_token(self, req: Request) -> Response:
        form = req.form()
        grant = form.get("grant_type")
        client_id, secret = client_credentials(req, form)
        if grant == "client_credentials":
            client = self.oauth_clients.get(client_id or "")
            if client is None or client["client_secret"] != secret:
                return _oauth_error(401, "invalid_client", "Client authentication failed.")
            return self._issue(client)
        if grant == "refresh_token":
            rec = self.refresh_tokens.get(form.get("refresh_token") or "")
            if rec is None or (client_id and client_id != rec["client_id"]):
                return _oauth_error(400, "invalid_grant", "The refresh token is invalid, expired or revoked.")
            client = self.oauth_clients[rec["client_id"]]
            if secret is not None and secret != client["client_secret"]:
                return _oauth_error(401, "invalid_client", "Client authentication failed.")
            del self.refresh_tokens[form["refresh_token"]]  # rotation: the old refresh token dies now
            return self._issue(client)
        if not grant:
            return _oauth_error(400, "invalid_request", "grant_type is required.")
        return _oauth_error(400, "unsupported_grant_type", f"Grant type {grant!r} is not supported.")

    def _issue(self, client: dict[str, Any]) -> Response:
        exp = now() + TOKEN_TTL_S
        access = jwt_like({"sub": str(client["user_id"]), "client_id": client["client_id"], "iat": now(),
                           "exp": exp})
        refresh = random_token(40)
        self.access_tokens[access] = {"user_id": client["user_id"], "client_id": client["client_id"], "exp": exp}
        self.refresh_tokens[refresh] = {"user_id": client["user_id"], "client_id": client["client_id"]}
        return Response.json(200, {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_TTL_S,
                                   "refresh_token": refresh})

    def oauth_revoke(self, req: Request) -> Response:
        form = req.form()
        for token in (form.get("token"), form.get("refresh_token")):
            if token:
                self.access_tokens.pop(token, None)
                self.refresh_tokens.pop(token, None)
        return Response.json(200, {})

    def userinfo(self, req: Request) -> Response:
        user_id = self.caller(req)
        assert user_id is not None  # guard() let the request through
        rec = self.access_tokens.get(req.bearer() or "") or {}
        user = self.users[user_id]
        return self._identity({"userId": user_id, "clientId": rec.get("client_id"), "name": _full_name(user),
                               "company": self._vendor_ref(), "timezone": user["timezone"],
                               "status": user["status"]})

    def _identity(self, data: dict[str, Any]) -> Response:
        """Who the caller is (GET /auth, GET /oauth2/userinfo): in the envelope, or bare under `userinfo_bare`."""
        if self.config.variant(self.name, "userinfo_bare"):
            return Response.json(200, data)
        return envelope(data)

    # -- clock events --------------------------------------------------------------------------------------------
    def _store_event(self, event_id: int, raw: dict[str, Any], ts: int) -> dict[str, Any]:
        event = {
            "id": event_id, "job_id": int(raw["job_id"]), "user_id": int(raw["user_id"]),
            "eventType": raw["eventType"], "activity": raw["activity"], "eventTime": int(raw["eventTime"]),
            "source": raw.get("source") or "mobile", "appointment_id": raw.get("appointment_id"),
            "created": int(raw.get("created", ts)), "updated": int(raw.get("updated", ts)),
        }
        self.events[event_id] = event
        self.events_by_job.setdefault(event["job_id"], []).append((event["eventTime"], event_id))
        return event

    def add_events(self, raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Validate then create clock events (admin). Raises ValueError naming the bad event."""
        for i, raw in enumerate(raws):
            _check_event(raw, f"events[{i}]", self.jobs, self.users)
        ts = now()
        created = [self._store_event(self.ids.next(), raw, ts) for raw in raws]
        for job_id in {e["job_id"] for e in created}:
            self.events_by_job[job_id].sort()
        self.on_change([_event_created(e) for e in created])
        return [self.render_event(e) for e in created]

    def edit_event(self, event_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        event = self.events.get(event_id)
        if event is None:
            raise KeyError(f"no clock event {event_id}")
        unknown = set(fields) - EVENT_FIELDS
        if unknown:
            raise ValueError(f"clock events can't patch {sorted(unknown)}")
        merged = {**event, **fields}
        _check_event(merged, f"clock event {event_id}", self.jobs, self.users)
        self._unindex(event)
        for key in ("job_id", "user_id", "eventTime"):
            merged[key] = int(merged[key])
        merged["updated"] = max(now(), event["updated"] + 1)
        changeset = _changeset(event, merged, EVENT_FIELDS, EVENT_CHANGE_NAMES)
        event.update({k: merged[k] for k in event})
        bisect.insort(self.events_by_job.setdefault(event["job_id"], []), (event["eventTime"], event_id))
        self.on_change([Change("updated", "clockevent", event_id, self.office_user_id, changeset)])
        return self.render_event(event)

    def delete_event(self, event_id: int) -> None:
        event = self.events.pop(event_id, None)
        if event is None:
            raise KeyError(f"no clock event {event_id}")
        self._unindex(event)
        self.on_change([Change("deleted", "clockevent", event_id, self.office_user_id)])

    def _unindex(self, event: dict[str, Any]) -> None:
        index = self.events_by_job[event["job_id"]]
        del index[bisect.bisect_left(index, (event["eventTime"], event["id"]))]

    def render_event(self, e: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(e["user_id"])
        job = self.jobs.get(e["job_id"])
        return {
            "id": e["id"], "eventTime": e["eventTime"], "eventType": e["eventType"], "activity": e["activity"],
            "source": e["source"], "user": {"id": e["user_id"], "name": _full_name(user) if user else None},
            "job": {"id": e["job_id"], "number": job["number"] if job else None},
            "appointment": {"id": e["appointment_id"]} if e["appointment_id"] is not None else None,
            "created": e["created"], "updated": e["updated"],
        }

    def list_clock(self, req: Request) -> Response:
        job_id = _int_arg(req, "jobId")
        start, end = _int_arg(req, "startTime"), _int_arg(req, "endTime")
        user_ids = set(_int_list(req, "userIds"))
        if (single := _int_arg(req, "userId")) is not None:
            user_ids.add(single)
        activities = _choice_list(req, "activity", ACTIVITIES)
        sources = _choice_list(req, "source", SOURCES)
        bounds = {name: _int_arg(req, name) for name in
                  ("updatedAfter", "updatedBefore", "createdAfter", "createdBefore")}
        if job_id is not None:
            index = self.events_by_job.get(job_id, [])
            lo = bisect.bisect_left(index, (start, 0)) if start is not None else 0
            hi = bisect.bisect_right(index, (end, _BEYOND_ANY_ID)) if end is not None else len(index)
            candidates: Iterable[dict[str, Any]] = (self.events[eid] for _, eid in index[lo:hi])
        else:
            candidates = sorted(
                (e for e in self.events.values()
                 if (start is None or e["eventTime"] >= start) and (end is None or e["eventTime"] <= end)),
                key=lambda e: (e["eventTime"], e["id"]))
        lo_up, hi_up = bounds["updatedAfter"], bounds["updatedBefore"]
        lo_cr, hi_cr = bounds["createdAfter"], bounds["createdBefore"]
        matched = [
            e for e in candidates
            if (not user_ids or e["user_id"] in user_ids)
            and (not activities or e["activity"] in activities)
            and (not sources or e["source"] in sources)
            and (lo_up is None or e["updated"] >= lo_up) and (hi_up is None or e["updated"] <= hi_up)
            and (lo_cr is None or e["created"] >= lo_cr) and (hi_cr is None or e["created"] <= hi_cr)
        ]
        return self.page(req, matched, "events", "clock", self.render_event)

    def job_clock_summary(self, req: Request) -> Response:
        job = self._get(self.jobs, req)
        totals = dict.fromkeys(ACTIVITIES, 0)
        pairs: list[dict[str, Any]] = []
        open_: dict[tuple[int, str], dict[str, Any]] = {}
        for _, eid in self.events_by_job.get(job["id"], []):
            e = self.events[eid]
            key = (e["user_id"], e["activity"])
            if e["eventType"] == "clockIn":
                if key in open_:  # a second clockIn without a clockOut leaves the first one open
                    pairs.append({"start": self.render_event(open_[key]), "end": None, "elapsedTime": 0})
                open_[key] = e
            elif key in open_:
                start = open_.pop(key)
                elapsed = e["eventTime"] - start["eventTime"]
                totals[e["activity"]] = totals.get(e["activity"], 0) + elapsed
                pairs.append({"start": self.render_event(start), "end": self.render_event(e),
                              "elapsedTime": elapsed})
        pairs += [{"start": self.render_event(s), "end": None, "elapsedTime": 0} for s in open_.values()]
        pairs.sort(key=lambda p: (p["start"]["eventTime"], p["start"]["id"]))
        return envelope({"activityTime": totals, "pairedEvents": pairs})

    def attach_plan(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """Technicians already working on the project: their punches appear on the job the moment it exists.
        Returns the events created."""
        plan = self.plans.pop(str((job["externalIds"] or {}).get("procore")), None)
        if not plan:
            return []
        ts = now()
        created = [self._store_event(self.ids.next(), {**raw, "job_id": job["id"]}, ts) for raw in plan]
        self.events_by_job[job["id"]].sort()
        return created

    # -- users ---------------------------------------------------------------------------------------------------
    def render_user(self, u: dict[str, Any]) -> dict[str, Any]:
        return {"id": u["id"], "firstName": u["firstName"], "lastName": u["lastName"], "name": _full_name(u),
                "email": u["email"], "status": u["status"], "timezone": u["timezone"],
                "externalIds": dict(u["externalIds"])}

    def list_users(self, req: Request) -> Response:
        is_tech = _bool_arg(req, "isTech")
        statuses = _choice_list(req, "status", ("active", "inactive", "pending"))
        users = [u for u in self.users.values()
                 if (is_tech is None or u["isTech"] == is_tech) and (not statuses or u["status"] in statuses)]
        return self.page(req, users, "users", "user", self.render_user)

    def patch_user(self, user_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id}")
        unknown = set(fields) - {"firstName", "lastName", "email", "status", "timezone", "isTech", "externalIds"}
        if unknown:
            raise ValueError(f"users can't patch {sorted(unknown)}")
        if "externalIds" in fields and not isinstance(fields["externalIds"], dict):
            raise ValueError("externalIds must be an object")
        user.update(fields)
        return self.render_user(user)

    # -- companies / locations / jobs ------------------------------------------------------------------------------
    def _new_company(self, cid: int, body: dict[str, Any], ts: int) -> dict[str, Any]:
        return {"id": cid, "name": str(body["name"]), "status": body.get("status", "active"),
                "customer": bool(body.get("customer", False)), "vendor": bool(body.get("vendor", False)),
                "refNumber": body.get("refNumber"), "phoneNumber": body.get("phoneNumber"),
                "address": _address(body), "externalIds": dict(body.get("externalIds") or {}),
                "created": ts, "updated": ts}

    def render_company(self, c: dict[str, Any]) -> dict[str, Any]:
        return {**c, "uri": f"{URI}/company/{c['id']}"}

    def list_companies(self, req: Request) -> Response:
        name = (req.arg("name") or "").lower()
        statuses = _status_filter(req, "active")
        is_customer, is_vendor = _bool_arg(req, "isCustomer"), _bool_arg(req, "isVendor")
        found = [c for c in self.companies.values()
                 if name in c["name"].lower() and (statuses is None or c["status"] in statuses)
                 and (is_customer is None or c["customer"] == is_customer)
                 and (is_vendor is None or c["vendor"] == is_vendor)]
        return self.page(req, found, "companies", "company", self.render_company)

    def create_company(self, req: Request) -> Response:
        body = json_object(req)
        errors = {}
        if not str(body.get("name") or "").strip():
            errors["name"] = "Name is required"
        errors.update(_external_id_errors(body, self.companies.values(), "company"))
        if errors:
            raise Invalid(errors)
        company = self._new_company(self.ids.next(), body, now())
        self.companies[company["id"]] = company
        return envelope(self.render_company(company))

    def _new_location(self, lid: int, body: dict[str, Any], ts: int) -> dict[str, Any]:
        return {"id": lid, "name": str(body["name"]), "companyId": int(body["companyId"]),
                "status": body.get("status", "active"), "refNumber": body.get("refNumber"),
                "storeNumber": body.get("storeNumber"), "phoneNumber": body.get("phoneNumber"),
                "email": body.get("email"), "lat": body.get("lat"), "lon": body.get("lon"),
                "address": _address(body), "externalIds": dict(body.get("externalIds") or {}),
                "created": ts, "updated": ts}

    def render_location(self, loc: dict[str, Any]) -> dict[str, Any]:
        company = self.companies.get(loc["companyId"])
        ref = {"id": company["id"], "name": company["name"], "status": company["status"],
               "uri": f"{URI}/company/{company['id']}"} if company else None
        out = {k: v for k, v in loc.items() if k != "companyId"}
        return {**out, "uri": f"{URI}/location/{loc['id']}", "company": ref}

    def list_locations(self, req: Request) -> Response:
        company_ids = set(_int_list(req, "companyId"))
        name = (req.arg("name") or "").lower()
        is_customer = _bool_arg(req, "isCustomer")
        is_customer = True if is_customer is None else is_customer  # ServiceTrade's default (§6)
        statuses = _status_filter(req, None)
        found = []
        for loc in self.locations.values():
            company = self.companies.get(loc["companyId"])
            if ((not company_ids or loc["companyId"] in company_ids)
                    and (name in loc["name"].lower() or name in str(loc["storeNumber"] or "").lower())
                    and bool(company and company["customer"]) == is_customer
                    and (statuses is None or loc["status"] in statuses)):
                found.append(loc)
        return self.page(req, found, "locations", "location", self.render_location)

    def create_location(self, req: Request) -> Response:
        body = json_object(req)
        errors = {}
        if not str(body.get("name") or "").strip():
            errors["name"] = "Name is required"
        company_id = _body_int(body, "companyId")
        if company_id is None:
            errors["companyId"] = "Company is required"
        elif company_id not in self.companies:
            errors["companyId"] = f"Company {body['companyId']} not found"
        address = _address(body)
        missing = [k for k in ("street", "city", "state", "postalCode") if not str(address.get(k) or "").strip()]
        if missing:
            errors["address"] = f"Address is incomplete: {', '.join(missing)} required"
        errors.update(_external_id_errors(body, self.locations.values(), "location"))
        if errors:
            raise Invalid(errors)
        location = self._new_location(self.ids.next(), {**body, "companyId": company_id}, now())
        self.locations[location["id"]] = location
        return envelope(self.render_location(location))

    def _new_job(self, jid: int, number: int, body: dict[str, Any], ts: int) -> dict[str, Any]:
        return {"id": jid, "number": number, "name": body.get("name"), "customName": body.get("customName"),
                "type": body["type"], "status": body.get("status", "new"), "description": body.get("description"),
                "customerPo": body.get("customerPo"), "locationId": int(body["locationId"]),
                "vendorId": int(body["vendorId"]), "customerId": int(body["customerId"]),
                "externalIds": dict(body.get("externalIds") or {}), "created": ts, "updated": ts}

    def render_job(self, j: dict[str, Any]) -> dict[str, Any]:
        def ref(company_id: int) -> dict[str, Any] | None:
            c = self.companies.get(company_id)
            return {"id": c["id"], "name": c["name"], "status": c["status"]} if c else None

        loc = self.locations.get(j["locationId"])
        location = {"id": loc["id"], "name": loc["name"], "refNumber": loc["refNumber"], "status": loc["status"],
                    "address": loc["address"]} if loc else None
        out = {k: v for k, v in j.items() if k not in ("locationId", "vendorId", "customerId")}
        return {**out, "uri": f"{URI}/job/{j['id']}", "refNumber": None,
                "displayStatus": j["status"].replace("_", " ").title(),
                "vendor": ref(j["vendorId"]), "customer": ref(j["customerId"]), "location": location}

    def list_jobs(self, req: Request) -> Response:
        numbers = set(_int_list(req, "number"))
        # Without a status ServiceTrade lists scheduled jobs only; `all` is everything but canceled (§2, §5).
        statuses = _status_filter(req, None if numbers else "scheduled", JOB_STATUSES - {"canceled"})
        filters = {field: set(_int_list(req, arg)) for field, arg in
                   (("locationId", "locationId"), ("vendorId", "vendorId"), ("customerId", "customerId"))}
        types = set((req.arg("type") or "").split(",")) - {""}
        found = [j for j in self.jobs.values()
                 if (statuses is None or j["status"] in statuses) and (not numbers or j["number"] in numbers)
                 and (not types or j["type"] in types)
                 and all(not wanted or j[f] in wanted for f, wanted in filters.items())]
        return self.page(req, found, "jobs", "job", self.render_job)

    def create_job(self, req: Request) -> Response:
        body = json_object(req)
        errors = {}
        location_id = _body_int(body, "locationId")
        if location_id is None:
            errors["locationId"] = "Location is required"
        elif location_id not in self.locations:
            errors["locationId"] = f"Location {body['locationId']} not found"
        vendor_id = _body_int(body, "vendorId")
        if vendor_id is None:
            errors["vendorId"] = "Vendor is required"
        elif vendor_id not in self.companies:
            errors["vendorId"] = f"Vendor {body['vendorId']} not found"
        customer_id = _body_int(body, "customerId")
        if body.get("customerId") is not None and (customer_id is None or customer_id not in self.companies):
            errors["customerId"] = f"Customer {body['customerId']} not found"
        if not body.get("type"):
            errors["type"] = "Type is required"
        elif body["type"] not in JOB_TYPES:
            errors["type"] = f"Type '{body['type']}' is not a valid job type"
        if body.get("status") is not None and body["status"] not in JOB_STATUSES:
            errors["status"] = f"Status '{body['status']}' is not a valid job status"
        errors.update(_external_id_errors(body, self.jobs.values(), "job"))
        if errors:
            raise Invalid(errors)
        location = self.locations[location_id]  # type: ignore[index]
        job = self._new_job(self.ids.next(), self.next_job_number, {
            **body, "locationId": location_id, "vendorId": vendor_id,
            "customerId": customer_id if customer_id is not None else location["companyId"],
            "name": body.get("name") or location["name"], "customName": body.get("name"),
        }, now())
        self.next_job_number += 1
        self.jobs[job["id"]] = job
        planned = self.attach_plan(job)
        self.on_change([Change("created", "job", job["id"], self.caller(req)), *map(_event_created, planned)])
        return envelope(self.render_job(job))

    def patch_job(self, job_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """A person edits a job in ServiceTrade (admin)."""
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        unknown = set(fields) - JOB_FIELDS
        if unknown:
            raise ValueError(f"jobs can't patch {sorted(unknown)}")
        if "type" in fields and fields["type"] not in JOB_TYPES:
            raise ValueError(f"type must be one of {sorted(JOB_TYPES)}")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise ValueError(f"status must be one of {sorted(JOB_STATUSES)}")
        if "externalIds" in fields and not isinstance(fields["externalIds"], dict):
            raise ValueError("externalIds must be an object")
        changeset = _changeset(job, {**job, **fields}, JOB_FIELDS, {})
        job.update(fields, updated=max(now(), job["updated"] + 1))
        self.on_change([Change("updated", "job", job_id, self.office_user_id, changeset)])
        return self.render_job(job)

    # -- admin view ------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        events = sorted(self.events.values(), key=lambda e: (e["eventTime"], e["id"]))
        return {
            "companies": [self.render_company(c) for c in self.companies.values()],
            "locations": [self.render_location(loc) for loc in self.locations.values()],
            "jobs": [self.render_job(j) for j in self.jobs.values()],
            "clock_events": [self.render_event(e) for e in events],
            "users": [{**self.render_user(u), "isTech": u["isTech"]} for u in self.users.values()],
        }

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _get(self, table: dict[int, dict[str, Any]], req: Request) -> dict[str, Any]:
        try:
            return table[int(req.params["id"])]
        except (KeyError, ValueError):
            raise Missing from None

    def page(self, req: Request, items: list[dict[str, Any]], key: str, kind: str,
              render: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        default_limit, max_limit = LIMITS[kind]
        page = _int_arg(req, "page")
        limit = _int_arg(req, "limit")
        errors = {}
        if page is not None and page < 1:
            errors["page"] = "Page must be 1 or greater"
        if limit is not None and limit < 1:
            errors["limit"] = "Limit must be 1 or greater"
        if errors:
            raise Invalid(errors)
        page = page or 1
        size = min(limit or default_limit, max_limit, self.config["st_max_page_size"] or max_limit)
        chunk = items[(page - 1) * size: page * size]
        if self.config.variant(self.name, "paging_loose"):
            # What the official SDK copes with (ST-9): no totalPages, the page as a string, no list when empty.
            return envelope({"page": str(page), **({key: [render(x) for x in chunk]} if chunk else {})})
        return envelope({"totalPages": page_count(len(items), size), "page": page, key: [render(x) for x in chunk]})


# ---------------------------------------------------------------------------------------------------- helpers

def _event_created(event: dict[str, Any]) -> Change:
    """A punch is made by its technician."""
    return Change("created", "clockevent", event["id"], event["user_id"])


def _changeset(old: dict[str, Any], new: dict[str, Any], fields: Iterable[str],
               names: dict[str, str]) -> list[dict[str, Any]]:
    return [{"field": names.get(f, f), "oldValue": old.get(f), "newValue": new.get(f)}
            for f in sorted(fields) if old.get(f) != new.get(f)]


def _session_cookie(req: Request) -> str | None:
    for part in (req.headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "PHPSESSID" and value:
            return value
    return None


def _oauth_error(status: int, code: str, description: str) -> Response:
    return Response.json(status, {"error": code, "error_description": description})


def _full_name(user: dict[str, Any]) -> str:
    return f"{user['firstName']} {user['lastName']}".strip()


def _int_arg(req: Request, name: str) -> int | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid({name: f"{name} must be an integer"}) from None


def _int_list(req: Request, name: str) -> list[int]:
    raw = req.arg(name) or ""
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise Invalid({name: f"{name} must be a comma-separated list of integers"}) from None


def _choice_list(req: Request, name: str, allowed: Iterable[str]) -> set[str]:
    values = {x.strip() for x in (req.arg(name) or "").split(",") if x.strip()}
    bad = values - set(allowed)
    if bad:
        raise Invalid({name: f"{name} must be one of {', '.join(allowed)}"})
    return values


def _status_filter(req: Request, default: str | None, all_means: frozenset[str] | None = None) -> set[str] | None:
    """The statuses asked for (csv, else `default`); None = any. `status=all` gives `all_means`."""
    raw = req.arg("status") or default
    statuses = {x.strip() for x in raw.split(",") if x.strip()} if raw else None
    if statuses is not None and "all" in statuses:
        return set(all_means) if all_means is not None else None
    return statuses


def _bool_arg(req: Request, name: str) -> bool | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise Invalid({name: f"{name} must be true or false"})


def json_object(req: Request) -> dict[str, Any]:
    """The request body, which must be a JSON object (400 with validation messages otherwise)."""
    body = req.json()
    if not isinstance(body, dict):
        raise Invalid({"body": "Request body must be a JSON object"})
    return body


def _body_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _address(body: dict[str, Any]) -> dict[str, Any]:
    """`address{}` wins over the `addressStreet`-style aliases (servicetrade.md §6)."""
    address = body.get("address")
    if isinstance(address, dict):
        return {k: address.get(k) for k in ("street", "city", "state", "postalCode")}
    return {"street": body.get("addressStreet"), "city": body.get("addressCity"),
            "state": body.get("addressState"), "postalCode": body.get("addressPostalCode")}


def _external_id_errors(body: dict[str, Any], existing: Iterable[dict[str, Any]], kind: str) -> dict[str, str]:
    ext = body.get("externalIds")
    if ext is None:
        return {}
    if not isinstance(ext, dict) or not all(isinstance(v, str | int) for v in ext.values()):
        return {"externalIds": "External IDs must be an object of system name to id"}
    for other in existing:
        for system, value in ext.items():
            if value != "" and system in other["externalIds"] and str(other["externalIds"][system]) == str(value):
                return {"externalIds": f"External ID {system}={value} is already used by {kind} {other['id']}"}
    return {}


def _check_event(raw: dict[str, Any], what: str, jobs: dict[int, Any], users: dict[int, Any]) -> None:
    for key in ("job_id", "user_id", "eventTime"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what}: {key} must be an integer")
    if raw["job_id"] not in jobs:
        raise ValueError(f"{what}: no job {raw['job_id']}")
    if raw["user_id"] not in users:
        raise ValueError(f"{what}: no user {raw['user_id']}")
    if raw.get("activity") not in ACTIVITIES:
        raise ValueError(f"{what}: activity must be one of {ACTIVITIES}")
    if raw.get("eventType") not in EVENT_TYPES:
        raise ValueError(f"{what}: eventType must be one of {EVENT_TYPES}")
    if raw.get("source") is not None and raw["source"] not in SOURCES:
        raise ValueError(f"{what}: source must be one of {SOURCES}")
