"""The console's clock events page with about 2,000 clock events in the window: server time, median of several
requests (issue #14).

    python -m bench.console                 # 2,000 events, 7 timed requests after one warm-up
    python -m bench.console --requests 3    # fewer requests

The page is served by the real Flask app through its test client (no socket, so the time is the server's: the
view, the service call with its reads from the emulators and PostgreSQL, and the template), signed in as a user,
against a world of one project whose window holds the events. Needs PostgreSQL and Redis (`make services`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from bench.harness import BenchError, Harness
from bench.scenarios import PAYROLL_START, Shape

# 25 technicians x 10 workdays x 8 punches (enroute, onsite, break, onsite: in and out) = 2,000 clock events.
CONSOLE_SHAPE = Shape(projects=1, technicians=25, days=14, start=PAYROLL_START)
USER = ("bench@example.com", "bench console password")


def clock_events_page(hx: Harness, shape: Shape = CONSOLE_SHAPE, *, requests: int = 7) -> dict[str, Any]:
    """Median, fastest and slowest server time in ms of GET /projects/<id>/events over the shape's window, with
    the number of clock events in that window, the rows the page showed and the service call's own median."""
    world = shape.world()
    project_id = world["handles"]["project_ids"][0]
    events = len(world["servicetrade"]["clock_event_plans"][str(project_id)])
    with hx.database("console") as url:
        hx.load(world)
        hx.setup_stsync(url, world["handles"], [project_id])
        hx.latency(0)
        with _environment(hx.env(url)):
            times, rows = _time_page(project_id, shape.start, shape.end, requests)
            service_times = _time_service(project_id, shape.start, shape.end, requests)
    return {
        "events": events,
        "rows": rows,
        "requests": requests,
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "service_median_ms": round(statistics.median(service_times), 1),
    }


def _time_page(project_id: int, start: date, end: date, requests: int) -> tuple[list[float], int]:
    from worker.service import users
    from worker.web.app import create_app

    users.add_user(*USER, role="payroll")
    client = create_app().test_client()
    page = client.get("/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if token is None:
        raise BenchError("the sign-in page has no CSRF token")
    client.post("/sign-in", data={"email": USER[0], "password": USER[1], "csrf_token": token.group(1)})
    path = f"/projects/{project_id}/events?start={start}&end={end}"
    times: list[float] = []
    body = ""
    for i in range(requests + 1):
        began = time.perf_counter()
        response = client.get(path)
        elapsed_ms = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise BenchError(f"GET {path} answered {response.status_code}")
        body = response.get_data(as_text=True)
        if i:  # the first request warms the caches (company reference, templates) and is not counted
            times.append(elapsed_ms)
    return times, body.count('name="event"')


def _time_service(project_id: int, start: date, end: date, requests: int) -> list[float]:
    """The service call alone (what the page spends outside Flask and its template), for comparison."""
    from worker.service import syncing

    times = []
    for _ in range(requests):
        began = time.perf_counter()
        syncing.clock_events(project_id, start, end)
        times.append((time.perf_counter() - began) * 1000)
    return times


def _time_service(project_id: int, start: date, end: date, requests: int) -> list[float]:
    """The service call alone (what the page spends outside Flask and its template), for comparison."""
    from worker.service import syncing

    times = []
    for _ in range(requests):
        began = time.perf_counter()
        syncing.clock_events(project_id, start, end)
        times.append((time.perf_counter() - began) * 1000)
    return times


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    from worker.db import dispose_engines
    from worker.settings import reset_settings

    saved = dict(os.environ)
    os.environ.update(env, LOG_LEVEL="WARNING")
    reset_settings()
    try:
        yield
    finally:
        dispose_engines()
        os.environ.clear()
        os.environ.update(saved)
        reset_settings()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=7, help="timed requests after the warm-up")
    args = parser.parse_args(argv)
    with Harness(verbose=True) as hx:
        result = clock_events_page(hx, requests=args.requests)
    print(json.dumps(result))
    print(
        f"clock events page: {result['events']} events ({result['rows']} rows) in the window, median "
        f"{result['median_ms']:.0f} ms over {result['requests']} requests "
        f"(fastest {result['min_ms']:.0f} ms, slowest {result['max_ms']:.0f} ms); the service call alone: "
        f"median {result['service_median_ms']:.0f} ms",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
