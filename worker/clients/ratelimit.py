"""One Procore rate budget per company, shared by every worker (DESIGN §4, P-9).

The server tells us, on every response, how many calls are left in the current window and when it resets. The
budget keeps that count in Redis and takes one call from it *before* each request, atomically, so N workers
together stay under the limit instead of each discovering it through 429s.

By default a window is spent as fast as the workers ask, then every worker waits for its reset. With
`spread=True` the calls left (less the reserve) are paced evenly over the time left until the reset instead,
shared by every worker through one "next call due" time (a generic cell rate algorithm whose rate is recomputed
at each call), with a burst of BURST_CALLS allowed ahead of the pace. Spreading is not the default because it
measured worse: against windows of fixed length that start at their first call (P-9, as the emulator keeps them),
throughput is set by how soon each window is used up so that the next can start, which spending at once already
does best, and spreading also paces the last calls of a run that would have fitted in the window (the benchmark's
`rate_limited` scenario, two workers, measures both: spreading reached fewer entries per hour, with no 429 either
way). It suits rolling windows, or many workers that would otherwise wake together at the reset.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import redis

from worker.clients.errors import DeferRun
from worker.clients.metrics import count_response

MAX_SLEEP_S = 60.0
# Until a response tells us the new window, a passed window is assumed to restart with the last known limit,
# for at most this long. Reset times are whole seconds, so a window counts as passed one second after its reset.
PROVISIONAL_WINDOW_S = 1.0
# Calls that may go ahead of the pace (a short run's reference reads need not wait for the spacing).
BURST_CALLS = 2
# The pace never holds a call back longer than this: a nearly spent hourly window waits for its reset (and defers
# the run) instead of trickling its last calls minutes apart.
MAX_SPACING_S = 10.0


class RateBudget(Protocol):
    """A count of the calls left in the server's current rate-limit window, shared by whoever uses one token."""

    def acquire(self) -> None:
        """Take one call from the budget, waiting briefly if it is spent; DeferRun if the wait would be a minute
        or more."""

    def observe(self, limit: int, remaining: int, reset_epoch: int) -> None:
        """What the server said in X-Rate-Limit-Limit / -Remaining / -Reset."""

    def record_response(self, company_id: int, status: int) -> None:
        """Count one answer by its status code for the metrics (worker/clients/metrics.py)."""


# KEYS[1] = budget hash; ARGV = now, reserve, provisional window, spread (1/0), burst calls, max spacing.
# Returns "0" to go, or the seconds to wait.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local reserve = tonumber(ARGV[2])
local reset = tonumber(redis.call('HGET', KEYS[1], 'reset') or '0')
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining') or '-1')
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '-1')
if remaining < 0 then return '0' end
if now >= reset + 1 then
  if limit < 0 then return '0' end
  redis.call('HSET', KEYS[1], 'remaining', limit - 1, 'reset', now + tonumber(ARGV[3]), 'prov', 1, 'next', now)
  return '0'
end
if remaining <= reserve then return tostring(reset + 1 - now) end
if ARGV[4] == '1' then
  local spacing = math.min((reset + 1 - now) / (remaining - reserve), tonumber(ARGV[6]))
  local due = math.max(tonumber(redis.call('HGET', KEYS[1], 'next') or '0'), now)
  local early = due - now - tonumber(ARGV[5]) * spacing
  if early > 0 then return tostring(early) end
  redis.call('HSET', KEYS[1], 'next', due + spacing)
end
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
return '0'
"""

# KEYS[1] = budget hash; ARGV = limit, remaining, reset, now. A later reset (or any answer after a provisional window)
# is a new window; the same window keeps the smaller count (ours already counts calls not answered yet).
_OBSERVE = """
local limit = tonumber(ARGV[1])
local remaining = tonumber(ARGV[2])
local reset = tonumber(ARGV[3])
local cur_reset = tonumber(redis.call('HGET', KEYS[1], 'reset') or '0')
local cur_remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining') or '-1')
-- A late answer about a window that has already ended says nothing about the current one.
if reset + 1 <= tonumber(ARGV[4]) then return 0 end
local provisional = redis.call('HGET', KEYS[1], 'prov') == '1'
if provisional then
  redis.call('HSET', KEYS[1], 'limit', limit, 'remaining', math.min(remaining, cur_remaining), 'reset', reset,
             'prov', 0)
elseif cur_remaining < 0 or reset > cur_reset or (reset ~= cur_reset and remaining < cur_remaining) then
  -- a new window, or another window that is tighter than ours (the limit changed, or the hourly cap is near);
  -- the pace starts over with it
  redis.call('HSET', KEYS[1], 'limit', limit, 'remaining', remaining, 'reset', reset, 'prov', 0, 'next', 0)
elseif reset == cur_reset and remaining < cur_remaining then
  redis.call('HSET', KEYS[1], 'remaining', remaining)
end
redis.call('EXPIRE', KEYS[1], 7200)
return 1
"""


class _Waiting:
    def __init__(self, sleep: Callable[[float], None], what: str) -> None:
        self.sleep = sleep
        self.what = what

    def wait(self, seconds: float) -> None:
        if seconds >= MAX_SLEEP_S:
            raise DeferRun(seconds, f"the {self.what} is used up until its window resets")
        # Short naps with jitter, so that workers waking together don't stampede the new window.
        self.sleep(min(seconds, 1.0) + random.random() * 0.05)


class RedisRateBudget:
    """The budget of one Procore company in Redis, shared by every worker; both operations are one Lua script each,
    so concurrent workers never take the same call twice. `reserve` calls of each window are left unused as a
    margin for calls in flight that the server has counted and we have not heard about yet. The same Redis keeps
    the count of answers by status (worker/clients/metrics.py). `spread=True` paces the window's calls evenly up
    to its reset instead of spending them at once (see the module's note; the benchmark measures both)."""

    spread_calls = False

    def __init__(
        self,
        redis_url: str | redis.Redis,
        key: str,
        reserve: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        spread: bool | None = None,
    ) -> None:
        self.redis = redis.Redis.from_url(redis_url) if isinstance(redis_url, str) else redis_url
        self.spread = type(self).spread_calls if spread is None else spread
        self.key = key
        self.reserve = reserve
        self.clock = clock
        self._waiting = _Waiting(sleep, "shared Procore rate budget")
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._observe = self.redis.register_script(_OBSERVE)

    def acquire(self) -> None:
        while True:
            wait = float(self._acquire(keys=[self.key], args=[
                self.clock(), self.reserve, PROVISIONAL_WINDOW_S, int(self.spread), BURST_CALLS, MAX_SPACING_S]))
            if wait <= 0:
                return
            self._waiting.wait(wait)

    def observe(self, limit: int, remaining: int, reset_epoch: int) -> None:
        self._observe(keys=[self.key], args=[limit, remaining, reset_epoch, self.clock()])

    def record_response(self, company_id: int, status: int) -> None:
        count_response(self.redis, company_id, status, self.clock())


class LocalRateBudget:
    """The same budget inside one process (the SQLite demo has no Redis)."""

    def __init__(self, reserve: int = 1, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, spread: bool = False) -> None:
        self.reserve = reserve
        self.spread = spread
        self.clock = clock
        self._waiting = _Waiting(sleep, "Procore rate budget")
        self._lock = threading.Lock()
        self.limit = -1
        self.remaining = -1
        self.reset = 0.0
        self.provisional = False
        self.next_due = 0.0
        self.responses: Counter[int] = Counter()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self.clock()
                if self.remaining < 0:
                    return
                if now >= self.reset + 1:
                    if self.limit >= 0:
                        self.remaining, self.reset = self.limit - 1, now + PROVISIONAL_WINDOW_S
                        self.provisional, self.next_due = True, now
                    return
                wait = self.reset + 1 - now if self.remaining <= self.reserve else self._paced(now)
                if wait <= 0:
                    self.remaining -= 1
                    return
            self._waiting.wait(wait)

    def _paced(self, now: float) -> float:
        """What _ACQUIRE does when spreading: 0 to go now (and the next call's due time moved on), or the wait."""
        if not self.spread:
            return 0.0
        spacing = min((self.reset + 1 - now) / (self.remaining - self.reserve), MAX_SPACING_S)
        due = max(self.next_due, now)
        early = due - now - BURST_CALLS * spacing
        if early > 0:
            return early
        self.next_due = due + spacing
        return 0.0

    def observe(self, limit: int, remaining: int, reset_epoch: int) -> None:
        with self._lock:
            if reset_epoch + 1 <= self.clock():
                return
            if self.provisional:
                self.remaining = min(remaining, self.remaining)
                self.limit, self.reset, self.provisional = limit, float(reset_epoch), False
            elif self.remaining < 0 or reset_epoch > self.reset or (
                reset_epoch != self.reset and remaining < self.remaining
            ):
                self.limit, self.remaining, self.reset = limit, remaining, float(reset_epoch)
                self.next_due = 0.0
            elif reset_epoch == self.reset and remaining < self.remaining:
                self.remaining = remaining

    def record_response(self, company_id: int, status: int) -> None:
        """Counted in this process only: the demo has no Redis for a metrics endpoint to read."""
        with self._lock:
            self.responses[status] += 1
