"""Webhook deliveries of both emulated APIs: a queue and a few background threads that POST each message to its
hook, retry it by the sender's rules and keep every attempt for tests (`GET /_admin/webhooks/deliveries`).

Services hand a finished message to `Dispatcher.send` (cheap, under the emulator's state lock) and return; the
network is only ever waited on by the dispatcher's own threads, which hold no emulator lock.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulators.server import Config

WORKERS = 4
KEEP_DELIVERIES = 2000
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Straight to the receiver: a proxy from the environment has no business between two local processes.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class RetryRule:
    """When a sender counts a message as delivered, how long it waits before trying again, and when it stops.
    Waits double from `first_wait_s` up to `max_wait_s`; all of them are multiplied by `webhook_backoff_scale`,
    and so is `give_up_after_s`."""

    delivered: Callable[[int], bool]
    gave_up: str
    max_attempts: int | None = None
    give_up_after_s: float | None = None
    first_wait_s: float = 1.0
    max_wait_s: float = 3600.0

    def wait_s(self, attempts: int, scale: float) -> float:
        return min(self.first_wait_s * 2 ** (attempts - 1), self.max_wait_s) * scale

    def gives_up(self, attempts: int, elapsed_s: float, wait_s: float, scale: float) -> bool:
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return self.give_up_after_s is not None and elapsed_s + wait_s > self.give_up_after_s * scale


# ST-10: 3 attempts, then dropped; any 200-499 answer counts.
SERVICETRADE_RETRIES = RetryRule(delivered=lambda status: 200 <= status < 500, gave_up="dropped", max_attempts=3)
# P-14: a 2xx counts; retried with backoff (1 s doubling to 1 h) for 12 hours, then discarded.
PROCORE_RETRIES = RetryRule(delivered=lambda status: 200 <= status < 300, gave_up="discarded",
                            give_up_after_s=12 * 3600)


@dataclass
class Delivery:
    id: int
    service: str
    hook_id: int
    url: str
    headers: dict[str, str]
    payload: dict[str, Any]
    rule: RetryRule
    generation: int
    duplicate: bool
    outcome: str = "pending"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    started: float | None = None

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "service": self.service, "hook_id": self.hook_id, "url": self.url,
                "headers": dict(self.headers), "payload": self.payload, "duplicate": self.duplicate,
                "outcome": self.outcome, "attempts": list(self.attempts)}


class Dispatcher:
    """Sends messages on background threads (started at the first message), oldest due first."""

    def __init__(self, config: Config):
        self.config = config
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Delivery]] = []
        self._recent: deque[Delivery] = deque(maxlen=KEEP_DELIVERIES)
        self._ids = itertools.count(1)
        self._generation = 0
        self._threads: list[threading.Thread] = []

    def send(self, service: str, hook_id: int, url: str, headers: dict[str, str], payload: dict[str, Any],
             rule: RetryRule) -> None:
        """Queue one message for one hook (twice under `webhook_duplicates`); nothing under `webhooks_enabled`
        false."""
        if not self.config["webhooks_enabled"]:
            return
        copies = 2 if self.config["webhook_duplicates"] else 1
        with self._cond:
            for copy in range(copies):
                delivery = Delivery(next(self._ids), service, hook_id, url,
                                    {"Content-Type": "application/json", **headers}, payload, rule,
                                    self._generation, duplicate=copy > 0)
                self._recent.append(delivery)
                heapq.heappush(self._due, (time.monotonic(), delivery.id, delivery))
            self._start_workers()
            self._cond.notify_all()

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [d.record() for d in self._recent]

    def clear(self) -> None:
        """Forget every message, queued or kept; an attempt already on the wire is not recorded."""
        with self._cond:
            self._generation += 1
            self._due.clear()
            self._recent.clear()

    def _start_workers(self) -> None:
        while len(self._threads) < WORKERS:
            thread = threading.Thread(target=self._work, name=f"webhooks-{len(self._threads) + 1}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._cond.wait(timeout=self._due[0][0] - time.monotonic() if self._due else None)
                _, _, delivery = heapq.heappop(self._due)
            self._attempt(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        if not self.config["webhooks_enabled"]:
            with self._cond:
                delivery.outcome = "disabled"
            return
        at = time.monotonic()
        status, error = post_json(delivery.url, delivery.headers, delivery.payload,
                                  float(self.config["webhook_timeout_s"]))
        scale = float(self.config["webhook_backoff_scale"])
        with self._cond:
            if delivery.generation != self._generation:
                return
            delivery.started = delivery.started if delivery.started is not None else at
            delivery.attempts.append({"at": _iso_now(), "status": status, "error": error})
            if status is not None and delivery.rule.delivered(status):
                delivery.outcome = "delivered"
                return
            attempts = len(delivery.attempts)
            wait = delivery.rule.wait_s(attempts, scale)
            if delivery.rule.gives_up(attempts, time.monotonic() - delivery.started, wait, scale):
                delivery.outcome = delivery.rule.gave_up
                return
            delivery.outcome = "retrying"
            heapq.heappush(self._due, (time.monotonic() + wait, delivery.id, delivery))
            self._cond.notify()


def post_json(url: str, headers: dict[str, str], payload: dict[str, Any],
              timeout_s: float) -> tuple[int | None, str | None]:
    """POST the payload; (status, None) for any HTTP answer, (None, why) when none came in time."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read()
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
        return None, str(getattr(exc, "reason", exc))


def ulid() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32 (26 characters)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
