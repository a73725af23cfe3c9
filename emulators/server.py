"""HTTP plumbing shared by both emulated APIs: request/response values, routing by path template, the
emulator-wide configuration, fault injection, request counting and the threaded server itself.

Every API request goes through `Emulator.handle`: configured latency, then fault rules, then the service's
guard (authentication, rate limits) and route handler under the one state lock, then counting. Admin requests
(`/_admin/...`) skip latency, faults and counting.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

SERVICES = ("servicetrade", "procore")
FAULT_KINDS = frozenset(
    {"429", "503", "500", "502", "504", "latency", "timeout", "lost_response", "html_502", "empty_body",
     "expire_auth"}
)
# How long a `timeout` fault holds the connection when the rule names no latency_ms.
DEFAULT_TIMEOUT_HOLD_MS = 2000


class BadRequest(Exception):
    """The request body or a parameter could not be parsed; each service renders it in its own error shape."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    host: str
    service: str = ""
    params: dict[str, str] = field(default_factory=dict)
    route: str | None = None
    context: dict[str, Any] = field(default_factory=dict)  # what a service's guard learned (company, headers)

    def arg(self, name: str) -> str | None:
        """First value of a query parameter (None when absent)."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from exc

    def form(self) -> dict[str, str]:
        """Form fields of an OAuth call: x-www-form-urlencoded (the standard) or a JSON object."""
        ctype = (self.headers.get("Content-Type") or "").lower()
        if "json" in ctype:
            data = self.json()
            if not isinstance(data, dict):
                raise BadRequest("request body must be an object")
            return {k: str(v) for k, v in data.items() if v is not None}
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return value.strip() or None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, "application/json; charset=utf-8", list(headers or []))

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode(), content_type)

    @classmethod
    def empty(cls, status: int) -> Response:
        return cls(status)


Handler = Callable[[Request], Response]


class Route:
    def __init__(self, method: str, template: str, handler: Handler):
        self.method = method
        self.template = template
        self.handler = handler
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self.regex = re.compile(f"^{pattern}/?$")


class Router:
    """Routes by method and path template (`/api/job/{id}`); the template is what requests are counted under."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        self.routes.append(Route(method, template, handler))

    def match(self, method: str, path: str) -> tuple[Route | None, str | None, dict[str, str]]:
        """(route, template, params). A path that exists under another method gives (None, template, params)."""
        template = None
        params: dict[str, str] = {}
        for route in self.routes:
            m = route.regex.match(path)
            if not m:
                continue
            if route.method == method:
                return route, route.template, m.groupdict()
            template, params = route.template, m.groupdict()
        return None, template, params


class Service(Protocol):
    """One emulated API: routes plus the checks every one of its requests passes first."""

    name: str
    router: Router

    def guard(self, req: Request) -> Response | None:
        """Authentication / rate limiting before routing; a Response ends the request."""

    def finish(self, req: Request, resp: Response) -> None:
        """Last touch on every response of the service (e.g. rate-limit headers)."""

    def not_found(self, req: Request) -> Response: ...

    def bad_request(self, req: Request, message: str) -> Response: ...

    def expire_caller(self, req: Request) -> None:
        """Kill the session or token the request carries (the `expire_auth` fault)."""

    def fault_response(self, kind: str, rule: FaultRule, req: Request) -> Response:
        """The answer of an injected fault, given instead of processing the request."""


# ---------------------------------------------------------------------------------------------------- config

RATE_LIMIT_DEFAULTS: dict[str, Any] = {
    "hourly": 100_000,
    "spike": 10_000,
    "spike_window_s": 10.0,
    "time_scale": 1.0,
    "retry_after_on_429": False,
}
# Other readings of the APIs (servicetrade.md ST-9, procore.md P-12), off unless named; emulators/README.md says
# exactly what each one changes.
VARIANTS: dict[str, frozenset[str]] = {
    "procore": frozenset({"partial_commit", "bulk_forbidden", "bulk_500_after_commit", "integer_hours",
                          "no_approval_status", "locked_403"}),
    "servicetrade": frozenset({"userinfo_bare", "paging_loose"}),
}
CONFIG_DEFAULTS: dict[str, Any] = {
    "st_max_page_size": None,
    "procore_max_per_page": None,
    "procore_rate_limit": None,
    "procore_token_ttl_s": 5400,
    "procore_auth_code_ttl_s": 600,
    "latency_ms": 0,
    "variants": {"procore": [], "servicetrade": []},
    "webhooks_enabled": True,
    "webhook_timeout_s": 5.0,
    "webhook_backoff_scale": 1.0,
    "webhook_duplicates": False,
}


class Config:
    """The `/_admin/config` knobs. `rate_limit` is always the full effective rate-limit settings."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = dict(CONFIG_DEFAULTS)

    def reset(self) -> None:
        self.values = dict(CONFIG_DEFAULTS)

    def update(self, patch: dict[str, Any]) -> None:
        """Partial update; raises ValueError naming the bad key (nothing changes then)."""
        new = dict(self.values)
        for key, value in patch.items():
            if key not in CONFIG_DEFAULTS:
                raise ValueError(f"unknown config key {key!r}")
            if key in ("st_max_page_size", "procore_max_per_page"):
                if value is not None and (not _is_int(value) or value < 1):
                    raise ValueError(f"{key} must be a positive integer or null")
            elif key in ("procore_token_ttl_s", "procore_auth_code_ttl_s", "latency_ms"):
                if not _is_int(value) or value < 0:
                    raise ValueError(f"{key} must be a non-negative integer")
            elif key in ("webhooks_enabled", "webhook_duplicates"):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
            elif key in ("webhook_timeout_s", "webhook_backoff_scale"):
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ValueError(f"{key} must be a positive number")
            elif key == "variants":
                value = _variants({**new["variants"], **(value or {})} if value is not None else {})
            elif key == "procore_rate_limit" and value is not None:
                if not isinstance(value, dict) or set(value) - set(RATE_LIMIT_DEFAULTS):
                    raise ValueError(f"procore_rate_limit takes only {sorted(RATE_LIMIT_DEFAULTS)}")
                merged = {**RATE_LIMIT_DEFAULTS, **value}
                if not (_is_int(merged["hourly"]) and _is_int(merged["spike"])):
                    raise ValueError("procore_rate_limit hourly and spike must be integers")
                if float(merged["spike_window_s"]) <= 0 or float(merged["time_scale"]) <= 0:
                    raise ValueError("procore_rate_limit spike_window_s and time_scale must be positive")
                value = merged
            new[key] = value
        self.values = new

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def rate_limit(self) -> dict[str, Any]:
        return self.values["procore_rate_limit"] or dict(RATE_LIMIT_DEFAULTS)

    def variant(self, service: str, name: str) -> bool:
        """Whether the named variant of `service` is switched on."""
        return name in self.values["variants"][service]


def _variants(raw: Any) -> dict[str, list[str]]:
    """`{"procore": [...], "servicetrade": [...]}` checked against VARIANTS; a service not named has none."""
    if not isinstance(raw, dict) or set(raw) - set(VARIANTS):
        raise ValueError(f"variants takes only {sorted(VARIANTS)}")
    out: dict[str, list[str]] = {}
    for service, known in VARIANTS.items():
        names = raw.get(service) or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"variants.{service} must be a list of names")
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"unknown {service} variants {unknown}; known: {sorted(known)}")
        out[service] = sorted(set(names))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------- faults

@dataclass
class FaultRule:
    kind: str
    service: str = "any"
    method: str | None = None
    path: re.Pattern[str] | None = None
    count: int | None = None
    probability: float | None = None
    retry_after: int | None = None
    latency_ms: int | None = None
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FaultRule:
        if not isinstance(raw, dict):
            raise ValueError("a fault rule must be an object")
        kind = str(raw.get("kind"))
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {raw.get('kind')!r}; kinds: {sorted(FAULT_KINDS)}")
        service = raw.get("service") or "any"
        if service not in (*SERVICES, "any"):
            raise ValueError(f"service must be one of {[*SERVICES, 'any']}")
        try:
            path = re.compile(raw["path"]) if raw.get("path") else None
        except re.error as exc:
            raise ValueError(f"path is not a valid regex: {exc}") from exc
        for key in ("count", "retry_after", "latency_ms", "seed"):
            if raw.get(key) is not None and not _is_int(raw[key]):
                raise ValueError(f"{key} must be an integer or null")
        probability = raw.get("probability")
        if probability is not None and not (isinstance(probability, int | float) and 0 <= probability <= 1):
            raise ValueError("probability must be a number between 0 and 1")
        return cls(
            kind=kind, service=service, method=(raw.get("method") or None) and str(raw["method"]).upper(),
            path=path, count=raw.get("count"), probability=probability, retry_after=raw.get("retry_after"),
            latency_ms=raw.get("latency_ms"), rng=random.Random(raw.get("seed")),
        )

    def applies(self, service: str, method: str, path: str) -> bool:
        return (
            self.service in ("any", service)
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(path) is not None)
        )

    def fire(self) -> bool:
        """Decide for one matching request; a count-limited rule is used up as it fires."""
        if self.count is not None and self.count <= 0:
            return False
        if self.probability is not None and self.rng.random() >= self.probability:
            return False
        if self.count is not None:
            self.count -= 1
        return True


# ---------------------------------------------------------------------------------------------------- emulator

@dataclass
class Outcome:
    """What the connection handler does: write `response`, or close the socket without a byte."""

    response: Response | None
    close_silently: bool = False
    hold_s: float = 0.0


class Emulator:
    """All emulator state behind one lock. The services and the admin routes are plugged in by
    `emulators.admin.Admin`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config = Config()
        self.services: dict[str, Service] = {}
        self.admin_router = Router()
        self.faults: list[FaultRule] = []
        self.counts: Counter[tuple[str, str, str, int]] = Counter()

    # -- request flow -----------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Outcome:
        if req.path.startswith("/_admin/"):
            return Outcome(self._handle_admin(req))
        req.service = service_for(req.path)
        service = self.services.get(req.service)
        if service is None:
            return Outcome(Response.json(404, {"error": f"no emulated API at {req.path}"}))
        route, req.route, req.params = service.router.match(req.method, req.path)
        latency = self.config["latency_ms"]
        if latency:
            time.sleep(latency / 1000)
        with self.lock:
            rule = next((r for r in self.faults if r.applies(req.service, req.method, req.path) and r.fire()), None)
        if rule is not None:
            if rule.kind == "latency":
                time.sleep((rule.latency_ms or 0) / 1000)
            elif rule.kind == "timeout":
                with self.lock:
                    self._count(req, 0)
                hold = rule.latency_ms if rule.latency_ms is not None else DEFAULT_TIMEOUT_HOLD_MS
                return Outcome(None, close_silently=True, hold_s=hold / 1000)
            elif rule.kind not in ("expire_auth", "lost_response"):
                with self.lock:
                    resp = service.fault_response(rule.kind, rule, req)
                    self._count(req, resp.status)
                return Outcome(resp)
        with self.lock:
            if rule is not None and rule.kind == "expire_auth":
                service.expire_caller(req)
            resp = self._dispatch(service, route, req)
            self._count(req, resp.status)
        # A lost response is committed above; the client just never hears about it.
        return Outcome(None if rule and rule.kind == "lost_response" else resp,
                       close_silently=bool(rule and rule.kind == "lost_response"))

    def _dispatch(self, service: Service, route: Route | None, req: Request) -> Response:
        try:
            resp = service.guard(req)
            if resp is None:
                resp = route.handler(req) if route is not None else service.not_found(req)
        except BadRequest as exc:
            resp = service.bad_request(req, str(exc))
        except Exception as exc:  # an emulator bug must show as such, not as a dropped connection
            traceback.print_exc()
            resp = Response.json(500, {"error": f"emulator internal error: {exc!r}"})
        service.finish(req, resp)
        return resp

    def _handle_admin(self, req: Request) -> Response:
        route, req.route, req.params = self.admin_router.match(req.method, req.path)
        if route is None:
            return Response.json(404, {"error": f"no admin endpoint {req.method} {req.path}"})
        with self.lock:
            try:
                return route.handler(req)
            except KeyError as exc:  # an unknown id
                return Response.json(404, {"error": str(exc.args[0]) if exc.args else "not found"})
            except (BadRequest, ValueError, TypeError) as exc:
                return Response.json(400, {"error": str(exc)})

    def _count(self, req: Request, status: int) -> None:
        self.counts[(req.service, req.method, req.route or "(unmatched)", status)] += 1

    # -- admin helpers ---------------------------------------------------------------------------------------
    def request_counts(self) -> dict[str, Any]:
        by_route = [
            {"service": s, "method": m, "route": r, "status": st, "count": n}
            for (s, m, r, st), n in sorted(self.counts.items())
        ]
        return {"total": sum(self.counts.values()), "by_route": by_route}


def service_for(path: str) -> str:
    if path == "/api" or path.startswith(("/api/", "/oauth2/")):
        return "servicetrade"
    if path.startswith(("/rest/", "/oauth/")):
        return "procore"
    return "other"


# ---------------------------------------------------------------------------------------------------- HTTP

class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        self.emulator = emulator
        super().__init__(address, RequestHandler)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        # Responses go out in one write; without this, Nagle + delayed ACK add ~40 ms per keep-alive call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator's stdout carries only the READY line."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        req = Request(
            method=self.command, path=parts.path, query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers, body=body, host=self.headers.get("Host") or "127.0.0.1",
        )
        outcome = self.server.emulator.handle(req)
        if outcome.close_silently:
            if outcome.hold_s:
                time.sleep(outcome.hold_s)
            self._drop_connection()
            return
        assert outcome.response is not None
        self._write(outcome.response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _write(self, resp: Response) -> None:
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {resp.status} {reason}", f"Date: {self.date_time_string()}",
                 f"x-request-id: {uuid.uuid4()}", f"Content-Length: {len(resp.body)}"]
        if resp.content_type:
            lines.append(f"Content-Type: {resp.content_type}")
        lines += [f"{k}: {v}" for k, v in resp.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + resp.body)

    def _drop_connection(self) -> None:
        """Close without writing a single byte: the client sees the connection end with no response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()
