"""The Procore API as this project relies on it (procore.md Part A, P-1..P-13): `/oauth/authorize`, `/oauth/token`
and `/rest/v1.0/...`, with the variants of P-12 (`Config.variant`).

State: OAuth clients, codes and tokens, companies (rounding rule, Start/Stop projects, line item types, people, time
types), projects (tools, cost codes) and timecard entries, indexed by company+date and company+party so that
listing stays fast with tens of thousands of entries. Every entry change is told to `on_entry_change`, where
`procore_webhooks` listens.
"""

from __future__ import annotations

import html
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode, urlsplit

from emulators.common import client_credentials, fault_response, jwt_like, now, page_count, random_token
from emulators.server import Config, FaultRule, Request, Response, Router

MAX_BULK = 100
LOCKED_STATUSES = ("approved", "completed")
APPROVAL_STATUSES = ("pending", "reviewed", "approved", "completed")
ROUNDING_RULES = ("up", "down", "nearest", "favor_employee")
ROUNDING_INCREMENTS = (5, 6, 10, 15)
BASE = "/rest/v1.0"
PROJECT_FIELDS = frozenset({"name", "display_name", "project_number", "address", "city", "state_code", "zip",
                            "country_code", "time_zone", "tz_name", "active", "tools", "latitude", "longitude"})
PERSON_FIELDS = frozenset({"first_name", "last_name", "is_employee", "employee_id", "user_id"})
COST_CODE_FIELDS = frozenset({"name", "code", "full_code", "budgeted", "line_item_type_ids"})


@dataclass(frozen=True)
class Source:
    """Who changed an entry, as webhook payloads tell it: the application and the Procore user."""

    application_id: str | None
    user_id: int | None


# Changes made by a person in Procore's own web app (the admin "as a person" endpoints) carry this application.
PERSON_APPLICATION_ID = "procore-web"
PERSON_USER_ID = 1_000_001


class Unprocessable(Exception):
    """422 {"errors": {field: [msg]}} for one entry."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


class Failure(Exception):
    """Any other Procore error answer: status + {"errors": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def errors(status: int, message: Any) -> Response:
    return Response.json(status, {"errors": message})


class RateLimiter:
    """Hourly and spike windows per company (P-9). Fixed windows starting at the first request of each;
    `time_scale` shortens both so that benchmarks can exercise a reset in seconds."""

    def __init__(self, config: Config):
        self.config = config
        self.windows: dict[str, dict[str, float]] = {}

    def reset(self) -> None:
        self.windows.clear()

    def hit(self, key: str) -> tuple[bool, list[tuple[str, str]], float]:
        """Count one request; returns (allowed, X-Rate-Limit headers of the tighter window, its reset time)."""
        rl = self.config.rate_limit
        scale = float(rl["time_scale"])
        lengths = {"hourly": 3600.0 / scale, "spike": float(rl["spike_window_s"]) / scale}
        t = time.time()
        w = self.windows.setdefault(key, {})
        state = []
        for name, length in lengths.items():
            if t >= w.get(f"{name}_start", -math.inf) + length:
                w[f"{name}_start"], w[f"{name}_n"] = t, 0
            w[f"{name}_n"] += 1
            state.append((int(rl[name]), int(w[f"{name}_n"]), w[f"{name}_start"] + length))
        over = [s for s in state if s[1] > s[0]]
        limit, used, reset_at = (max(over, key=lambda s: s[2]) if over
                                 else min(state, key=lambda s: (s[0] - s[1], -s[2])))
        headers = [("X-Rate-Limit-Limit", str(limit)), ("X-Rate-Limit-Remaining", str(max(0, limit - used))),
                   ("X-Rate-Limit-Reset", str(math.ceil(reset_at)))]
        return not over, headers, reset_at


class Procore:
    name = "procore"

    def __init__(self, world: dict[str, Any], config: Config):
        self.config = config
        self.limiter = RateLimiter(config)
        self.clients = {c["client_id"]: c for c in world.get("oauth_clients", [])}
        self.refresh_tokens = {r["token"]: {"client_id": r["client_id"]} for r in world.get("refresh_tokens", [])}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.auth_codes: dict[str, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.line_item_types: dict[int, dict[str, Any]] = {}
        self.people: dict[int, dict[str, Any]] = {}
        self.time_types: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.cost_codes: dict[int, dict[str, Any]] = {}
        self.entries: dict[int, dict[str, Any]] = {}
        self.by_date: dict[int, dict[str, set[int]]] = {}
        self.by_party: dict[int, dict[int, set[int]]] = {}
        self.entry_ids = itertools.count(int(world.get("entry_id_start", 880_000_001)))
        for c in world.get("companies", []):
            cid = int(c["id"])
            rounding = c.get("rounding_configuration")
            self.companies[cid] = {
                "id": cid, "name": c["name"],
                "rounding_configuration": _rounding(rounding, cid) if rounding else None,
                "projects_timecard_in_out_enabled": [int(p) for p in c.get("projects_timecard_in_out_enabled", [])],
            }
            for lit in c.get("line_item_types", []):
                self.line_item_types[int(lit["id"])] = {**lit, "company_id": cid}
            for person in c.get("people", []):
                self.people[int(person["id"])] = {"user_id": None, "employee_id": None, **person, "company_id": cid}
            for tt in c.get("time_types", []):
                self.time_types[int(tt["id"])] = {"global": False, **tt, "company_id": cid}
        for p in world.get("projects", []):
            pid = int(p["id"])
            self.projects[pid] = {k: v for k, v in p.items() if k != "cost_codes"} | {"id": pid}
            for cc in p.get("cost_codes", []):
                self.cost_codes[int(cc["id"])] = {**cc, "project_id": pid}

        # Told of every create, update and delete of a timecard entry (the webhooks listen here).
        self.on_entry_change: Callable[[str, dict[str, Any], Source], None] = lambda *change: None

        self.router = Router()
        add = self.add_route
        add("GET", "/oauth/authorize", lambda req: self.authorize(req, _query_fields(req)))
        add("POST", "/oauth/authorize", lambda req: self.authorize(req, req.form()))
        add("POST", "/oauth/token", self.oauth_token)
        add("POST", "/oauth/revoke", self.oauth_revoke)
        add("GET", f"{BASE}/companies", self.list_companies)
        add("GET", f"{BASE}/projects", self.list_projects)
        add("GET", f"{BASE}/projects/{{pid}}", lambda req: Response.json(200, self.render_project(self._project(req))))
        add("GET", f"{BASE}/company_configuration", self.company_configuration)
        add("GET", f"{BASE}/companies/{{cid}}/rounding_configuration", self.rounding_configuration)
        add("GET", f"{BASE}/projects/{{pid}}/tools", self.list_tools)
        add("GET", f"{BASE}/cost_codes", self.list_cost_codes)
        add("GET", f"{BASE}/line_item_types", self.list_line_item_types)
        add("GET", f"{BASE}/companies/{{cid}}/people", self.list_people)
        add("GET", f"{BASE}/timecard_time_types", self.list_project_time_types)
        add("GET", f"{BASE}/companies/{{cid}}/timecard_time_types", self.list_company_time_types)
        add("POST", f"{BASE}/companies/{{cid}}/timesheets", self.bulk_create)
        for scope in ("projects/{pid}", "companies/{cid}"):
            add("GET", f"{BASE}/{scope}/timecard_entries", self.list_entries)
            add("POST", f"{BASE}/{scope}/timecard_entries", self.create_entry)
            add("GET", f"{BASE}/{scope}/timecard_entries/{{id}}", self.show_entry)
            add("PATCH", f"{BASE}/{scope}/timecard_entries/{{id}}", self.update_entry)
            add("DELETE", f"{BASE}/{scope}/timecard_entries/{{id}}", self.delete_entry)

    def add_route(self, method: str, template: str, handler: Callable[[Request], Response]) -> None:
        """A route whose handler may raise Unprocessable or Failure for Procore's error answers."""
        def run(req: Request) -> Response:
            try:
                return handler(req)
            except Unprocessable as exc:
                return errors(422, exc.errors)
            except Failure as exc:
                return errors(exc.status, exc.message)

        self.router.add(method, template, run)

    # -- Service protocol --------------------------------------------------------------------------------------
    def guard(self, req: Request) -> Response | None:
        if not req.path.startswith("/rest/"):
            return None
        header = (req.headers.get("Procore-Company-Id") or "").strip()
        # Every request counts, failed ones too (P-9); the budget is per company.
        allowed, headers, reset_at = self.limiter.hit(header)
        req.context["rate_headers"] = headers
        if not allowed:
            resp = Response.text(429, "You have surpassed the max number of requests for an hour. "
                                      "Please wait until your limit resets.")
            if self.config.rate_limit["retry_after_on_429"]:
                resp.headers.append(("Retry-After", str(max(1, math.ceil(reset_at - time.time())))))
            return resp
        token = self.access_tokens.get(req.bearer() or "")
        if token is None or token["expires_at"] <= time.time():
            return errors(401, "The access token is invalid")
        if not header:
            return errors(400, "Missing Procore-Company-Id header!")
        try:
            company_id = int(header)
        except ValueError:
            return errors(400, f"Invalid Procore-Company-Id header: {header!r}")
        if company_id not in token["company_ids"] or company_id not in self.companies:
            return errors(404, "Company not found")  # P-11: what the token can't see is not found
        req.context["company_id"] = company_id
        return None

    def finish(self, req: Request, resp: Response) -> None:
        resp.headers.extend(req.context.get("rate_headers", []))

    def not_found(self, req: Request) -> Response:
        return errors(404, "Not Found")

    def bad_request(self, req: Request, message: str) -> Response:
        return errors(400, message)

    def expire_caller(self, req: Request) -> None:
        self.access_tokens.pop(req.bearer() or "", None)

    def fault_response(self, kind: str, rule: FaultRule, req: Request) -> Response:
        if kind == "429":
            resp = Response.text(429, "You have surpassed the max number of requests. Please wait until your "
                                      "limit resets.")
            if rule.retry_after is not None:
                resp.headers.append(("Retry-After", str(rule.retry_after)))
        else:
            resp = fault_response(kind, rule, json_error=lambda status, msg: errors(status, msg))
        if not req.path.startswith("/rest/") or kind in ("html_502", "empty_body"):
            return resp  # login calls carry no rate-limit headers, and a proxy's page knows nothing of them
        # Status faults come from Procore itself: they count and carry the rate-limit headers like any answer.
        _, headers, _ = self.limiter.hit((req.headers.get("Procore-Company-Id") or "").strip())
        if kind == "429":
            wait = rule.retry_after if rule.retry_after is not None else 1
            headers = [headers[0], ("X-Rate-Limit-Remaining", "0"), ("X-Rate-Limit-Reset", str(now() + wait))]
        resp.headers += headers
        return resp

    # -- OAuth (P-2) -------------------------------------------------------------------------------------------
    def oauth_token(self, req: Request) -> Response:
        form = req.form()
        grant = form.get("grant_type")
        client_id, secret = client_credentials(req, form)
        if grant not in ("client_credentials", "refresh_token", "authorization_code"):
            if not grant:
                return _oauth_error(400, "invalid_request", "The request is missing a required parameter: "
                                                            "grant_type.")
            return _oauth_error(400, "unsupported_grant_type",
                                "The authorization grant type is not supported by the authorization server.")
        client = self.clients.get(client_id or "")
        if client is None or client["client_secret"] != secret:
            return _oauth_error(401, "invalid_client", "Client authentication failed due to unknown client, no "
                                                       "client authentication included, or unsupported "
                                                       "authentication method.")
        if grant == "client_credentials":
            return self._issue(client, with_refresh=False)
        if grant == "authorization_code":
            return self._redeem_code(client, form)
        old = form.get("refresh_token") or ""
        rec = self.refresh_tokens.get(old)
        if rec is None or rec["client_id"] != client["client_id"]:
            return _oauth_error(400, "invalid_grant", INVALID_GRANT)
        del self.refresh_tokens[old]  # rotation: the old refresh token is dead at once, even if this answer is lost
        return self._issue(client, with_refresh=True)

    def _issue(self, client: dict[str, Any], *, with_refresh: bool) -> Response:
        ttl = int(self.config["procore_token_ttl_s"])
        created = now()
        access = jwt_like({"sub": client["client_id"], "iat": created, "exp": created + ttl})
        self.access_tokens[access] = {"client_id": client["client_id"], "expires_at": time.time() + ttl,
                                      "company_ids": {int(c) for c in client.get("company_ids", [])}}
        body = {"access_token": access, "token_type": "bearer", "expires_in": ttl, "created_at": created}
        if with_refresh:
            body["refresh_token"] = random_token(64, "0123456789abcdef")
            self.refresh_tokens[body["refresh_token"]] = {"client_id": client["client_id"]}
        return Response.json(200, body)

    # -- authorization-code grant (P-13) ------------------------------------------------------------------------
    def authorize(self, req: Request, fields: dict[str, str]) -> Response:
        """GET: the consent page naming the app; POST (its form): approve or deny, then back to redirect_uri."""
        client = self.clients.get(fields.get("client_id") or "")
        redirect_uri = fields.get("redirect_uri") or ""
        if client is None:
            return _page(400, "Unknown application", "<p>No Procore app has this client_id.</p>")
        if not _is_http_url(redirect_uri) or redirect_uri not in client.get("redirect_uris", [redirect_uri]):
            return _page(400, "Invalid redirect URI",
                         "<p>The redirect_uri is missing or is not registered for this app.</p>")
        state = fields.get("state")
        if fields.get("response_type") != "code":
            return _redirect(redirect_uri, error="unsupported_response_type", state=state)
        if req.method == "GET":
            return _consent_page(_app_name(client), fields)
        if fields.get("decision") != "approve":
            return _redirect(redirect_uri, error="access_denied", state=state)
        code = random_token(43)
        self.auth_codes[code] = {"client_id": client["client_id"], "redirect_uri": redirect_uri,
                                 "expires_at": time.time() + int(self.config["procore_auth_code_ttl_s"])}
        return _redirect(redirect_uri, code=code, state=state)

    def _redeem_code(self, client: dict[str, Any], form: dict[str, str]) -> Response:
        # A code is spent by the first token call that names it, whether that call succeeds or not.
        grant = self.auth_codes.pop(form.get("code") or "", None)
        if (grant is None or grant["client_id"] != client["client_id"] or grant["expires_at"] <= time.time()
                or grant["redirect_uri"] != form.get("redirect_uri")):
            return _oauth_error(400, "invalid_grant", INVALID_GRANT)
        return self._issue(client, with_refresh=True)

    def oauth_revoke(self, req: Request) -> Response:
        token = req.form().get("token") or ""
        self.access_tokens.pop(token, None)
        self.refresh_tokens.pop(token, None)
        return Response.json(200, {})

    def expire_all(self) -> int:
        n = len(self.access_tokens)
        self.access_tokens.clear()
        return n

    # -- reads (P-4) -------------------------------------------------------------------------------------------
    def list_companies(self, req: Request) -> Response:
        token = self.access_tokens[req.bearer() or ""]
        found = [c for cid, c in self.companies.items() if cid in token["company_ids"]]
        return self.paginate(req, found, lambda c: {"id": c["id"], "name": c["name"], "is_active": True,
                                                    "my_company": True})

    def list_projects(self, req: Request) -> Response:
        cid = req.context["company_id"]
        found = [p for p in self.projects.values() if p["company_id"] == cid and p.get("active", True)]
        return self.paginate(req, found, self.render_project)

    def render_project(self, p: dict[str, Any]) -> dict[str, Any]:
        company = self.companies[p["company_id"]]
        out = {k: v for k, v in p.items() if k not in ("tools", "company_id")}
        return {"display_name": p.get("name"), "project_number": None, "country_code": "US", "county": None,
                "active": True, "stage": "Course of Construction", "origin_id": None, **out,
                "company": {"id": company["id"], "name": company["name"]}}

    def company_configuration(self, req: Request) -> Response:
        company = self.companies[req.context["company_id"]]
        rounding = company["rounding_configuration"]
        return Response.json(200, {
            "projects_timecard_in_out_enabled": list(company["projects_timecard_in_out_enabled"]),
            "rounding_configuration": ({"rule": rounding["rule"], "time_increment": rounding["time_increment"]}
                                       if rounding else None),
            "timesheets_week_start_day": "Monday", "use_24_hour_mode": False,
            "projects_timecard_default_start_time": "8:00", "projects_timecard_default_stop_time": "17:00",
        })

    def rounding_configuration(self, req: Request) -> Response:
        company = self.companies[self._company_in_path(req)]
        rounding = company["rounding_configuration"]
        if rounding is None:
            raise Failure(404, "Rounding configuration not found")
        return Response.json(200, dict(rounding))

    def list_tools(self, req: Request) -> Response:
        project = self._project(req)
        tools = project.get("tools", [])
        active = req.arg("filters[is_active]")
        if active is not None:
            tools = [t for t in tools if bool(t.get("is_active")) == (active.lower() == "true")]
        return self.paginate(req, tools, dict)

    def list_cost_codes(self, req: Request) -> Response:
        project = self._project(req, param="project_id")
        codes = [c for c in self.cost_codes.values() if c["project_id"] == project["id"]]
        return self.paginate(req, codes, self.render_cost_code)

    def render_cost_code(self, c: dict[str, Any]) -> dict[str, Any]:
        types = [self.line_item_types[i] for i in c.get("line_item_type_ids", []) if i in self.line_item_types]
        return {"id": c["id"], "code": c["code"], "full_code": c.get("full_code", c["code"]), "name": c["name"],
                "budgeted": bool(c.get("budgeted")), "biller_type": "Project", "biller_id": c["project_id"],
                "line_item_types": [_lit(t) for t in types]}

    def list_line_item_types(self, req: Request) -> Response:
        cid = req.context["company_id"]
        return self.paginate(req, [t for t in self.line_item_types.values() if t["company_id"] == cid], _lit)

    def list_people(self, req: Request) -> Response:
        cid = self._company_in_path(req)
        raw = req.arg("filters[is_employee]")
        found = [p for p in self.people.values() if p["company_id"] == cid
                 and (raw is None or bool(p["is_employee"]) == (raw.lower() == "true"))]
        return self.paginate(req, found, _person)

    def list_project_time_types(self, req: Request) -> Response:
        project = self._project(req, param="project_id")
        return self._time_types(req, project["company_id"])

    def list_company_time_types(self, req: Request) -> Response:
        return self._time_types(req, self._company_in_path(req))

    def _time_types(self, req: Request, cid: int) -> Response:
        found = [t for t in self.time_types.values() if t["company_id"] == cid]
        return self.paginate(req, found, lambda t: {k: v for k, v in t.items() if k != "company_id"})

    # -- timecard entries (P-5..P-7) -----------------------------------------------------------------------------
    def bulk_create(self, req: Request) -> Response:
        cid = self._company_in_path(req)
        if self._variant("bulk_forbidden"):
            raise Failure(403, "You do not have access to the Timesheets tool of this company")
        body = req.json()
        items = body.get("timecard_entries") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise Failure(400, "param is missing or the value is empty: timecard_entries")
        if len(items) > MAX_BULK:
            raise Failure(400, f"Too many timecard entries: {len(items)} sent, at most {MAX_BULK} per request")
        valid, index_errors = [], []
        for i, item in enumerate(items):
            try:
                valid.append(self.validate(cid, item))
            except Unprocessable as exc:
                index_errors.append({"index": i, "errors": exc.errors})
        if index_errors and not self._variant("partial_commit"):  # P-5: all or nothing
            return errors(422, index_errors)
        source = self._source(req)
        stored = [self._store(cid, fields, source) for fields in valid]
        if index_errors:
            return errors(422, index_errors)
        if self._variant("bulk_500_after_commit"):
            raise Failure(500, "Internal server error")
        return Response.json(200, [self._written(e) for e in stored])

    def create_entry(self, req: Request) -> Response:
        cid = req.context["company_id"]
        body = json_object(req)
        data = body.get("timecard_entry")
        if not isinstance(data, dict) or not data:
            raise Failure(400, "param is missing or the value is empty: timecard_entry")
        if "pid" in req.params:
            data = {**data, "project_id": self._project(req)["id"]}
        else:
            self._company_in_path(req)
            if body.get("project_id") is not None:
                data = {**data, "project_id": body["project_id"]}
        return Response.json(201, self._written(self._store(cid, self.validate(cid, data), self._source(req))))

    def list_entries(self, req: Request) -> Response:
        cid = req.context["company_id"]
        project_id = None
        if "pid" in req.params:
            project_id = self._project(req)["id"]
        else:
            self._company_in_path(req)
        start, end = _date_arg(req, "start_date"), _date_arg(req, "end_date")
        if project_id is not None and start is None and end is None:
            start = end = _date_arg(req, "log_date") or date.today().isoformat()  # project list: today only
        parties = _party_filter(req)
        if parties:
            by_party = self.by_party.get(cid, {})
            ids: Iterable[int] = itertools.chain.from_iterable(by_party.get(p, ()) for p in parties)
        else:
            ids = itertools.chain.from_iterable(
                s for d, s in self.by_date.get(cid, {}).items()
                if (start is None or d >= start) and (end is None or d <= end))
        found = [e for e in (self.entries[i] for i in ids)
                 if (start is None or e["date"] >= start) and (end is None or e["date"] <= end)
                 and (project_id is None or e["project_id"] == project_id)]
        found.sort(key=lambda e: (e["date"], e["id"]))
        return self.paginate(req, found, self.render_entry)

    def show_entry(self, req: Request) -> Response:
        return Response.json(200, self.render_entry(self._entry(req)))

    def update_entry(self, req: Request) -> Response:
        entry = self._entry(req)
        body = json_object(req)
        patch = body.get("timecard_entry")
        if not isinstance(patch, dict):
            raise Failure(400, "param is missing or the value is empty: timecard_entry")
        self._check_unlocked(entry)
        if "cid" in req.params and body.get("project_id") is not None:
            patch = {**patch, "project_id": body["project_id"]}
        if "pid" in req.params:
            patch = {**patch, "project_id": entry["project_id"]}
        self._update(entry, patch, self._source(req))
        return Response.json(200, self._written(entry))

    def delete_entry(self, req: Request) -> Response:
        entry = self._entry(req)
        self._check_unlocked(entry)
        self._delete(entry, self._source(req))
        return Response.empty(200)  # procore.md §4.1: delete answers 200 with an empty body

    def _check_unlocked(self, entry: dict[str, Any]) -> None:
        """P-7: approved and completed entries can't be changed through the API."""
        if entry["approval_status"] not in LOCKED_STATUSES:
            return
        if self._variant("locked_403"):
            raise Failure(403, "You do not have permission to perform this action")
        raise Failure(422, "Approved timecard entries cannot be modified")

    def validate(self, cid: int, data: Any) -> dict[str, Any]:
        """Check one entry against the company's projects, people, cost codes and the project's entry mode.
        Returns the fields to store; raises Unprocessable with every problem found."""
        if not isinstance(data, dict):
            raise Unprocessable({"base": ["must be an object"]})
        errs: dict[str, list[str]] = {}

        def err(field: str, message: str) -> None:
            errs.setdefault(field, []).append(message)

        def ref(field: str) -> int | None:
            value = data.get(field)
            if value is None or value == "":
                return None
            if isinstance(value, bool):
                err(field, "is not a number")
                return None
            try:
                return int(value)
            except (TypeError, ValueError):
                err(field, "is not a number")
                return None

        company = self.companies[cid]
        project_id = ref("project_id")
        project = self.projects.get(project_id) if project_id is not None else None
        if project_id is None and "project_id" not in errs:
            err("project_id", "can't be blank")
        elif project_id is not None and (project is None or project["company_id"] != cid):
            err("project_id", "does not exist in this company")
            project = None

        party_id = ref("party_id")
        if party_id is None and "party_id" not in errs:
            err("party_id", "can't be blank")
        elif party_id is not None:
            person = self.people.get(party_id)
            if person is None or person["company_id"] != cid:
                err("party_id", "does not exist in this company")
            elif not person["is_employee"]:
                err("party_id", "is not an employee of this company")

        day = data.get("date")
        if not day:
            err("date", "can't be blank")
        elif not isinstance(day, str) or not _is_date(day):
            err("date", "is not a valid date (YYYY-MM-DD)")

        cost_code_id = ref("cost_code_id")
        cost_code = None
        if cost_code_id is None and "cost_code_id" not in errs:
            err("cost_code_id", "can't be blank")
        elif cost_code_id is not None and project is not None:
            cost_code = self.cost_codes.get(cost_code_id)
            if cost_code is None or cost_code["project_id"] != project["id"]:
                err("cost_code_id", "is not a cost code of this project")
                cost_code = None
            elif not cost_code.get("budgeted"):
                err("cost_code_id", "is not on the project budget")
            elif not any(self.line_item_types.get(i, {}).get("base_type") == "labor"
                         for i in cost_code.get("line_item_type_ids", [])):
                err("cost_code_id", "has no Labor cost type on the project budget")

        lit_id = ref("line_item_type_id")
        if lit_id is None and "line_item_type_id" not in errs:
            err("line_item_type_id", "can't be blank")
        elif lit_id is not None:
            lit = self.line_item_types.get(lit_id)
            if lit is None or lit["company_id"] != cid:
                err("line_item_type_id", "does not exist in this company")
            elif lit.get("base_type") != "labor":
                err("line_item_type_id", "is not a labor cost type")
            elif cost_code is not None and lit_id not in cost_code.get("line_item_type_ids", []):
                err("line_item_type_id", "is not budgeted for this cost code")

        time_type_id = ref("timecard_time_type_id")
        if time_type_id is not None and self.time_types.get(time_type_id, {}).get("company_id") != cid:
            err("timecard_time_type_id", "does not exist in this company")

        billable = data.get("billable", False)
        if billable is None:
            billable = False
        if not isinstance(billable, bool):
            err("billable", "must be true or false")

        hours = time_in = time_out = lunch = None
        if project is not None:
            if project["id"] in company["projects_timecard_in_out_enabled"]:
                if data.get("hours") not in (None, ""):
                    err("hours", "is computed from time_in and time_out on projects that record start and stop "
                                 "times")
                time_in, time_out = _time_field(data, "time_in", err), _time_field(data, "time_out", err)
                lunch = _lunch(data.get("lunch_time"), err)
                if time_in and time_out and lunch is not None:
                    seconds = (time_out - time_in).total_seconds() - lunch * 60
                    if time_out <= time_in:
                        err("time_out", "must be after time_in")
                    elif seconds <= 0:
                        err("lunch_time", "must be shorter than the time worked")
                    else:
                        hours = (Decimal(int(seconds)) / 3600).quantize(Decimal("0.01"), ROUND_HALF_UP)
                        if hours > 24:
                            err("hours", "must be less than or equal to 24")
            else:
                for field in ("time_in", "time_out"):
                    if data.get(field) not in (None, ""):
                        err(field, "is not used on projects that record total hours")
                hours = _hours(data.get("hours"), err)
        if errs:
            raise Unprocessable(errs)
        return {
            "project_id": project_id, "party_id": party_id, "date": day, "hours": _fmt_hours(hours),
            "time_in": time_in, "time_out": time_out, "lunch_time": lunch, "cost_code_id": cost_code_id,
            "line_item_type_id": lit_id, "timecard_time_type_id": time_type_id, "billable": billable,
            "description": data.get("description"), "origin_id": data.get("origin_id"),
            "origin_data": data.get("origin_data"), "datetime": data.get("datetime"),
        }

    def _store(self, cid: int, fields: dict[str, Any], source: Source) -> dict[str, Any]:
        stamp = _utc_now()
        entry = {"id": next(self.entry_ids), "company_id": cid, **self._as_stored(fields),
                 "approval_status": "pending", "created_at": stamp, "updated_at": stamp, "deleted_at": None}
        self.entries[entry["id"]] = entry
        self._index(entry)
        self.on_entry_change("create", entry, source)
        return entry

    def _update(self, entry: dict[str, Any], patch: dict[str, Any], source: Source) -> None:
        """Apply a partial change, validated exactly like a create."""
        fields = self.validate(entry["company_id"], {**self._as_input(entry), **patch})
        self._unindex(entry)
        entry.update(self._as_stored(fields), updated_at=_utc_now())
        self._index(entry)
        self.on_entry_change("update", entry, source)

    def _delete(self, entry: dict[str, Any], source: Source) -> None:
        self._unindex(entry)
        entry["deleted_at"] = entry["updated_at"] = _utc_now()
        self.on_entry_change("delete", entry, source)

    def _source(self, req: Request) -> Source:
        """Our API token's application: the OAuth client's `application_id`, or its client_id."""
        token = self.access_tokens[req.bearer() or ""]
        client = self.clients[token["client_id"]]
        return Source(str(client.get("application_id") or client["client_id"]), client.get("user_id"))

    def _as_stored(self, fields: dict[str, Any]) -> dict[str, Any]:
        """What Procore keeps of validated fields: as sent, or (`integer_hours`) hours without their fraction."""
        if not self._variant("integer_hours") or fields["hours"] is None:
            return fields
        return {**fields, "hours": _fmt_hours(Decimal(int(Decimal(fields["hours"]))))}

    def _written(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The answer to a create or an update: the entry, without `approval_status` under `no_approval_status`."""
        out = self.render_entry(entry)
        if self._variant("no_approval_status"):
            del out["approval_status"]
        return out

    def _variant(self, name: str) -> bool:
        return self.config.variant(self.name, name)

    def _index(self, e: dict[str, Any]) -> None:
        self.by_date.setdefault(e["company_id"], {}).setdefault(e["date"], set()).add(e["id"])
        self.by_party.setdefault(e["company_id"], {}).setdefault(e["party_id"], set()).add(e["id"])

    def _unindex(self, e: dict[str, Any]) -> None:
        self.by_date[e["company_id"]][e["date"]].discard(e["id"])
        self.by_party[e["company_id"]][e["party_id"]].discard(e["id"])

    def _as_input(self, e: dict[str, Any]) -> dict[str, Any]:
        """A stored entry as a request body, so that a PATCH is validated exactly like a create."""
        keys = ("project_id", "party_id", "date", "cost_code_id", "line_item_type_id", "timecard_time_type_id",
                "billable", "description", "origin_id", "origin_data", "datetime")
        out = {k: e[k] for k in keys}
        if e["time_in"] is not None:
            out.update(time_in=_iso(e["time_in"]), time_out=_iso(e["time_out"]), lunch_time=e["lunch_time"])
        else:
            out["hours"] = e["hours"]
        return out

    def render_entry(self, e: dict[str, Any]) -> dict[str, Any]:
        project = self.projects.get(e["project_id"], {})
        person = self.people.get(e["party_id"], {})
        cost_code = self.cost_codes.get(e["cost_code_id"], {})
        time_type = self.time_types.get(e["timecard_time_type_id"] or 0)
        return {
            "id": e["id"], "date": e["date"], "datetime": e["datetime"], "hours": e["hours"],
            "time_in": _iso(e["time_in"]), "time_out": _iso(e["time_out"]), "lunch_time": e["lunch_time"],
            "billable": e["billable"], "description": e["description"], "approval_status": e["approval_status"],
            "origin_id": e["origin_id"], "origin_data": e["origin_data"], "in_progress": False,
            "project": {"id": e["project_id"], "name": project.get("name")},
            "party": {"id": e["party_id"], "name": _name(person)},
            "cost_code": {"id": e["cost_code_id"], "code": cost_code.get("code"),
                          "full_code": cost_code.get("full_code"), "name": cost_code.get("name")},
            "line_item_type_id": e["line_item_type_id"],
            "timecard_time_type": ({"id": time_type["id"], "time_type": time_type["time_type"],
                                    "abbreviated_time_type": time_type.get("abbreviated_time_type")}
                                   if time_type else None),
            "created_at": _iso(e["created_at"]), "updated_at": _iso(e["updated_at"]),
            "deleted_at": _iso(e["deleted_at"]),
        }

    # -- admin -----------------------------------------------------------------------------------------------
    def all_entries(self) -> list[dict[str, Any]]:
        return [{**self.render_entry(e), "company_id": e["company_id"]}
                for e in sorted(self.entries.values(), key=lambda e: e["id"])]

    def set_approval(self, entry_id: int, status: str, source: Source) -> dict[str, Any]:
        entry = self.entries.get(entry_id)
        if entry is None:
            raise KeyError(f"no timecard entry {entry_id}")
        if status not in APPROVAL_STATUSES:
            raise ValueError(f"approval_status must be one of {APPROVAL_STATUSES}")
        entry["approval_status"] = status
        entry["updated_at"] = _utc_now()
        self.on_entry_change("update", entry, source)
        return {**self.render_entry(entry), "company_id": entry["company_id"]}

    def edit_entry(self, entry_id: int, fields: dict[str, Any], source: Source) -> dict[str, Any]:
        """A person changes an entry in Procore (approved ones too: the lock is the API's, not an admin's)."""
        entry = self._live_entry(entry_id)
        try:
            self._update(entry, fields, source)
        except Unprocessable as exc:
            raise ValueError(f"timecard entry {entry_id}: {exc.errors}") from None
        return {**self.render_entry(entry), "company_id": entry["company_id"]}

    def remove_entry(self, entry_id: int, source: Source) -> None:
        self._delete(self._live_entry(entry_id), source)

    def _live_entry(self, entry_id: int) -> dict[str, Any]:
        entry = self.entries.get(entry_id)
        if entry is None or entry["deleted_at"] is not None:
            raise KeyError(f"no timecard entry {entry_id}")
        return entry

    def patch_company(self, cid: int, fields: dict[str, Any]) -> dict[str, Any]:
        company = _lookup(self.companies, cid, "company")
        fields = dict(fields)
        if "rounding" in fields:  # short alias accepted for tests
            fields["rounding_configuration"] = fields.pop("rounding")
        unknown = set(fields) - {"name", "rounding_configuration", "projects_timecard_in_out_enabled"}
        if unknown:
            raise ValueError(f"companies can't patch {sorted(unknown)}")
        if "rounding_configuration" in fields:
            raw = fields["rounding_configuration"]
            fields["rounding_configuration"] = _rounding(raw, cid) if raw else None
        if "projects_timecard_in_out_enabled" in fields:
            fields["projects_timecard_in_out_enabled"] = [int(p) for p in fields["projects_timecard_in_out_enabled"]]
        company.update(fields)
        return dict(company)

    def patch_project(self, pid: int, fields: dict[str, Any]) -> dict[str, Any]:
        project = _lookup(self.projects, pid, "project")
        fields = dict(fields)
        timesheets = fields.pop("timesheets_active", None)
        unknown = set(fields) - PROJECT_FIELDS
        if unknown:
            raise ValueError(f"projects can't patch {sorted(unknown)}")
        project.update(fields)
        if timesheets is not None:
            tools = [t for t in project.get("tools", []) if t.get("title") == "Timesheets"]
            if not tools:
                raise ValueError(f"project {pid} has no Timesheets tool")
            for tool in tools:
                tool["is_active"] = bool(timesheets)
        return self.render_project(project) | {"tools": project.get("tools", [])}

    def patch_cost_code(self, cost_code_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        cost_code = _lookup(self.cost_codes, cost_code_id, "cost code")
        unknown = set(fields) - COST_CODE_FIELDS
        if unknown:
            raise ValueError(f"cost codes can't patch {sorted(unknown)}")
        if "line_item_type_ids" in fields:
            ids = [int(i) for i in fields["line_item_type_ids"]]
            missing = [i for i in ids if i not in self.line_item_types]
            if missing:
                raise ValueError(f"unknown line item types {missing}")
            fields = {**fields, "line_item_type_ids": ids}
        cost_code.update(fields)
        return self.render_cost_code(cost_code) | {"project_id": cost_code["project_id"]}

    def patch_person(self, person_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        person = _lookup(self.people, person_id, "person")
        unknown = set(fields) - PERSON_FIELDS
        if unknown:
            raise ValueError(f"people can't patch {sorted(unknown)}")
        person.update(fields)
        return _person(person)

    # -- helpers -----------------------------------------------------------------------------------------------
    def _company_in_path(self, req: Request) -> int:
        """A company id in the path must be the one of the Procore-Company-Id header."""
        try:
            cid = int(req.params["cid"])
        except ValueError:
            raise Failure(404, "Company not found") from None
        if cid != req.context["company_id"]:
            raise Failure(404, "Company not found")
        return cid

    def _project(self, req: Request, param: str | None = None) -> dict[str, Any]:
        raw = req.arg(param) if param else req.params["pid"]
        if raw is None:
            raise Failure(400, f"{param} is required")
        try:
            project = self.projects.get(int(raw))
        except ValueError:
            project = None
        if project is None or project["company_id"] != req.context["company_id"]:
            raise Failure(404, "Project not found")
        return project

    def _entry(self, req: Request) -> dict[str, Any]:
        try:
            entry = self.entries.get(int(req.params["id"]))
        except ValueError:
            entry = None
        scope_ok = entry is not None and (
            entry["project_id"] == self._project(req)["id"] if "pid" in req.params
            else entry["company_id"] == self._company_in_path(req))
        if entry is None or entry["deleted_at"] is not None or not scope_ok:
            raise Failure(404, "Timecard entry not found")
        return entry

    def paginate(self, req: Request, items: list[Any], render: Callable[[Any], Any]) -> Response:
        """P-10: page/per_page with Total, Per-Page and Link headers (no rel="next" on the last page)."""
        page, per_page = _positive(req, "page", 1), _positive(req, "per_page", 100)
        per_page = min(per_page, 1000, self.config["procore_max_per_page"] or 1000)
        last = page_count(len(items), per_page)
        chunk = items[(page - 1) * per_page: page * per_page]

        def url(n: int) -> str:
            pairs = [(k, v) for k, vs in req.query.items() if k not in ("page", "per_page") for v in vs]
            return f"<http://{req.host}{req.path}?{urlencode([*pairs, ('page', n), ('per_page', per_page)])}>"

        links = [f'{url(1)}; rel="first"']
        if page > 1:
            links.append(f'{url(min(page - 1, last))}; rel="prev"')
        if page < last:
            links.append(f'{url(page + 1)}; rel="next"')
        links.append(f'{url(last)}; rel="last"')
        headers = [("Total", str(len(items))), ("Per-Page", str(per_page)), ("Link", ", ".join(links))]
        return Response.json(200, [render(x) for x in chunk], headers)


# ---------------------------------------------------------------------------------------------------- helpers

INVALID_GRANT = ("The provided authorization grant is invalid, expired, revoked, does not match the redirection "
                 "URI used in the authorization request, or was issued to another client.")


def _oauth_error(status: int, code: str, description: str) -> Response:
    return Response.json(status, {"error": code, "error_description": description})


def _query_fields(req: Request) -> dict[str, str]:
    return {k: v[0] for k, v in req.query.items() if v}


def _app_name(client: dict[str, Any]) -> str:
    return str(client.get("name") or f"Procore app {client['client_id'][:8]}")


def _is_http_url(raw: str) -> bool:
    parts = urlsplit(raw)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _redirect(uri: str, **params: str | None) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return Response(302, headers=[("Location", f"{uri}{'&' if '?' in uri else '?'}{query}")])


def _page(status: int, title: str, body: str) -> Response:
    return Response.text(status, f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                                 f"</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
                         content_type="text/html; charset=utf-8")


def _consent_page(app: str, fields: dict[str, str]) -> Response:
    """What a signed-in Procore user sees: the app by name, Approve or Deny (a form POST back here)."""
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(fields.get(k) or "")}">'
                     for k in ("response_type", "client_id", "redirect_uri", "state"))
    return _page(200, f"Authorize {app}",
                 f"<p><strong>{html.escape(app)}</strong> would like to use your Procore account.</p>"
                 f'<form method="post" action="/oauth/authorize">{hidden}'
                 '<button type="submit" name="decision" value="approve">Approve</button> '
                 '<button type="submit" name="decision" value="deny">Deny</button></form>')


def _rounding(raw: dict[str, Any], cid: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("rounding_configuration must be an object or null")
    if raw.get("rule") not in ROUNDING_RULES:
        raise ValueError(f"rounding rule must be one of {ROUNDING_RULES}")
    if raw.get("time_increment") not in ROUNDING_INCREMENTS:
        raise ValueError(f"rounding time_increment must be one of {ROUNDING_INCREMENTS}")
    return {"id": int(raw.get("id") or cid + 1), "company_id": cid, "time_increment": raw["time_increment"],
            "rule": raw["rule"]}


def _lookup(table: dict[int, dict[str, Any]], key: int, what: str) -> dict[str, Any]:
    try:
        return table[int(key)]
    except (KeyError, ValueError):
        raise KeyError(f"no {what} {key}") from None


def _lit(t: dict[str, Any]) -> dict[str, Any]:
    return {"id": t["id"], "name": t["name"], "code": t.get("code"), "base_type": t["base_type"]}


def _person(p: dict[str, Any]) -> dict[str, Any]:
    return {"id": p["id"], "first_name": p.get("first_name"), "last_name": p.get("last_name"), "name": _name(p),
            "is_employee": bool(p.get("is_employee")), "employee_id": p.get("employee_id"),
            "user_id": p.get("user_id")}


def _name(p: dict[str, Any]) -> str | None:
    return f"{p.get('first_name') or ''} {p.get('last_name') or ''}".strip() or None


def json_object(req: Request) -> dict[str, Any]:
    """The request body, which must be a JSON object (400 otherwise)."""
    body = req.json()
    if not isinstance(body, dict):
        raise Failure(400, "request body must be a JSON object")
    return body


def _positive(req: Request, name: str, default: int) -> int:
    raw = req.arg(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise Failure(400, f"{name} must be a positive integer")
    return value


def _date_arg(req: Request, name: str) -> str | None:
    raw = req.arg(name)
    if raw in (None, ""):
        return None
    if not _is_date(raw):
        raise Failure(400, f"{name} must be a date (YYYY-MM-DD)")
    return raw


def _party_filter(req: Request) -> set[int]:
    raw = req.query.get("filters[party_id][]", []) + req.query.get("filters[party_id]", [])
    try:
        return {int(x) for value in raw for x in value.split(",") if x.strip()}
    except ValueError:
        raise Failure(400, "filters[party_id] must be person ids") from None


def _is_date(raw: str) -> bool:
    try:
        return date.fromisoformat(raw).isoformat() == raw
    except ValueError:
        return False


def _time_field(data: dict[str, Any], field: str, err: Callable[[str, str], None]) -> datetime | None:
    raw = data.get(field)
    if raw in (None, ""):
        err(field, "can't be blank on projects that record start and stop times")
        return None
    try:
        value = datetime.fromisoformat(str(raw))
    except ValueError:
        err(field, "is not an ISO 8601 date-time")
        return None
    if value.tzinfo is None:
        err(field, "must include a UTC offset")
        return None
    return value.astimezone(UTC)


def _lunch(raw: Any, err: Callable[[str, str], None]) -> int | None:
    if raw in (None, ""):
        return 0
    try:
        minutes = Decimal(str(raw))
    except InvalidOperation:
        minutes = Decimal(-1)
    if isinstance(raw, bool) or minutes < 0 or minutes != minutes.to_integral_value():
        err("lunch_time", "must be a whole number of minutes")
        return None
    return int(minutes)


def _hours(raw: Any, err: Callable[[str, str], None]) -> Decimal | None:
    """P-5: a decimal string ("7.25"), more than 0 and at most 24."""
    if raw in (None, ""):
        err("hours", "can't be blank on projects that record total hours")
        return None
    try:
        if not isinstance(raw, str):
            raise InvalidOperation
        hours = Decimal(raw.strip())
        if not hours.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        err("hours", "must be a decimal number in a string, e.g. \"7.25\"")
        return None
    if hours <= 0:
        err("hours", "must be greater than 0")
    elif hours > 24:
        err("hours", "must be less than or equal to 24")
    return hours


def _fmt_hours(hours: Decimal | None) -> str | None:
    if hours is None:
        return None
    text = format(hours.normalize(), "f")
    return text if "." in text else f"{text}.0"


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _utc_now() -> datetime:
    return datetime.now(UTC)
