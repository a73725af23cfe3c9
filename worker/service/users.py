"""The people who use the web console: adding them, signing them in (throttled after repeated failures) and
what their role lets them do. Passwords are kept only as werkzeug scrypt hashes."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import redis
from werkzeug.security import check_password_hash, generate_password_hash

from worker.db import session_scope
from worker.inputs import InvalidArgument, positive_id
from worker.models import User
from worker.settings import get_settings
from worker.store import users as user_store

MIN_PASSWORD_LENGTH = 10
# Five wrong passwords for one email from one address, or thirty from one address across emails, and that
# address waits out the rest of the quarter hour: slow for a guesser, a short wait for a person who mistyped.
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_CLIENT = 30
THROTTLE_WINDOW_S = 15 * 60
PASSWORD_HASH_METHOD = "scrypt"
# Checked when the email is unknown, so that a wrong email takes as long as a wrong password.
_UNKNOWN_USER_HASH = generate_password_hash(
    "no such user: any password is wrong", method=PASSWORD_HASH_METHOD
)


class Role(StrEnum):
    admin = "admin"  # everything, connections, rules, schedules and users included
    payroll = "payroll"  # projects, clock events, syncs, runs, the ledger and technicians


@dataclass(frozen=True)
class UserView:
    id: int
    email: str
    role: Role
    last_sign_in_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


class SignInRefused(Exception):
    """Wrong email or password (one message for both, so the answer does not tell which emails exist)."""

    def __init__(self, message: str = "wrong email or password") -> None:
        super().__init__(message)


class SignInThrottled(SignInRefused):
    def __init__(self, retry_after_s: int) -> None:
        minutes = max(1, -(-retry_after_s // 60))
        super().__init__(
            f"too many wrong passwords: try again in {minutes} minute{'s' if minutes > 1 else ''}"
        )
        self.retry_after_s = retry_after_s


def add_user(email: str, password: str, role: Role | str) -> UserView:
    """Add a console user, or give an existing one a new password and role."""
    email = _email(email)
    role = _role(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    with session_scope() as s:
        return _view(
            user_store.save_user(s, email, generate_password_hash(password, PASSWORD_HASH_METHOD), role)
        )


def list_users() -> list[UserView]:
    with session_scope() as s:
        return [_view(u) for u in user_store.list_users(s)]


def get_user(user_id: int) -> UserView | None:
    """The user of a session; None when they were removed since they signed in."""
    with session_scope() as s:
        user = user_store.user_by_id(s, positive_id(user_id, "user_id"))
        return _view(user) if user is not None else None


def remove_user(user_id: int) -> None:
    with session_scope() as s:
        if not user_store.remove_user(s, positive_id(user_id, "user_id")):
            raise LookupError(f"there is no user {user_id}")


def sign_in(email: str, password: str, *, client: str, now: datetime | None = None) -> UserView:
    """The user with this email and password. `client` is where the attempt comes from (an IP address):
    failures are counted per email and client, and past the limit the attempt is refused before the password
    is looked at."""
    email = email.strip().lower()
    throttle = SignInThrottle.default()
    keys = (f"email:{email}|{client}", f"client:{client}")
    throttle.check(keys[0], MAX_FAILURES_PER_EMAIL)
    throttle.check(keys[1], MAX_FAILURES_PER_CLIENT)
    with session_scope() as s:
        user = user_store.user_by_email(s, email)
        if (
            not check_password_hash(user.password_hash if user else _UNKNOWN_USER_HASH, password)
            or user is None
        ):
            for key in keys:
                throttle.fail(key)
            raise SignInRefused()
        user_store.record_sign_in(s, user, now or datetime.now(UTC))
        throttle.clear(keys[0])
        return _view(user)


class SignInThrottle:
    """Failed sign-ins counted per key over a fixed window: in Redis, shared by every web process; in memory
    for the embedded demo, which has no Redis and runs one process."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.redis = client
        self.memory: dict[str, tuple[int, float]] = {}
        self.guard = threading.Lock()

    @classmethod
    def default(cls) -> SignInThrottle:
        url = get_settings().rate_budget_url
        with _throttles_guard:
            if url not in _throttles:
                _throttles[url] = cls(redis.Redis.from_url(url) if url else None)
            return _throttles[url]

    def check(self, key: str, limit: int) -> None:
        failures, retry_after = self._read(_key(key))
        if failures >= limit:
            raise SignInThrottled(retry_after)

    def fail(self, key: str) -> None:
        name = _key(key)
        if self.redis is not None:
            with self.redis.pipeline() as pipe:
                pipe.incr(name)
                pipe.expire(name, THROTTLE_WINDOW_S, nx=True)
                pipe.execute()
            return
        with self.guard:
            count, until = self.memory.get(name, (0, 0.0))
            if until <= time.monotonic():
                count, until = 0, time.monotonic() + THROTTLE_WINDOW_S
            self.memory[name] = (count + 1, until)

    def clear(self, key: str) -> None:
        if self.redis is not None:
            self.redis.delete(_key(key))
        else:
            with self.guard:
                self.memory.pop(_key(key), None)

    def _read(self, name: str) -> tuple[int, int]:
        """The failures counted under the key and the seconds until they are forgotten."""
        if self.redis is not None:
            with self.redis.pipeline() as pipe:
                pipe.get(name)
                pipe.ttl(name)
                count, ttl = pipe.execute()
            return int(count or 0), max(int(ttl), 1)
        with self.guard:
            count, until = self.memory.get(name, (0, 0.0))
        left = until - time.monotonic()
        return (count, int(left) + 1) if left > 0 else (0, 0)


_throttles: dict[str | None, SignInThrottle] = {}
_throttles_guard = threading.Lock()


def _key(key: str) -> str:
    # Hashed: an email is personal data and has no business in a Redis key listing.
    return "stsync:signin:" + hashlib.sha256(key.encode()).hexdigest()


def _email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and "." in domain) or any(c.isspace() for c in email) or len(email) > 320:
        raise InvalidArgument(f"{email!r} is not an email address")
    return email


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidArgument(f"role must be one of {', '.join(Role)}, got {role!r}") from None


def _view(user: User) -> UserView:
    return UserView(user.id, user.email, Role(user.role), user.last_sign_in_at)
