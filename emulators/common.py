"""Helpers both emulated APIs use: seeded ids, tokens, OAuth client authentication, page counts and the
answers of injected faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import string
import time
from collections.abc import Callable, Iterable
from typing import Any

from emulators.server import FaultRule, Request, Response

MAX_SAFE_INT = 2**53 - 1  # ids stay exact in JavaScript clients too
_SIXTEEN_DIGITS = 10**15


class IdGenerator:
    """Unique 16-digit ids below 2^53, reproducible for a seed (the same calls give the same ids)."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        self._taken: set[int] = set()

    def reserve(self, ids: Iterable[int]) -> None:
        self._taken.update(ids)

    def next(self) -> int:
        while True:
            value = self._rng.randrange(_SIXTEEN_DIGITS, MAX_SAFE_INT)
            if value not in self._taken:
                self._taken.add(value)
                return value


def random_token(length: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


_JWT_KEY = secrets.token_bytes(32)


def jwt_like(claims: dict[str, Any]) -> str:
    """An HS256 JWT with the given claims: clients may decode it to read `exp`; the emulator looks tokens up."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({**claims, "jti": secrets.token_hex(8)}, separators=(",", ":")).encode())
    signature = b64(hmac.new(_JWT_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def client_credentials(req: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """client_id/client_secret from HTTP Basic (preferred when present) or from the form fields."""
    auth = req.headers.get("Authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return None, None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def now() -> int:
    return int(time.time())


def page_count(total: int, size: int) -> int:
    return max(1, -(-total // size))


def fault_response(kind: str, rule: FaultRule, json_error: Callable[[int, str], Response]) -> Response:
    """The response of an injected fault, shared by both services (the JSON error shape is theirs)."""
    if kind == "html_502":
        return Response.text(502, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                                  "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                                  "</body>\r\n</html>\r\n", content_type="text/html")
    if kind == "empty_body":
        return Response(200, b"", "application/json; charset=utf-8")
    status = int(kind)
    resp = json_error(status, {429: "Too many requests", 503: "Service temporarily unavailable",
                               500: "Internal server error", 502: "Bad gateway",
                               504: "Gateway timeout"}[status])
    retry_after = rule.retry_after if rule.retry_after is not None else (1 if status == 503 else None)
    if retry_after is not None:
        resp.headers.append(("Retry-After", str(retry_after)))
    return resp
