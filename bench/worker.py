"""The stsync contender as a child process: the process whose wall time and peak RSS the benchmark reports.

    python -m bench.worker SPEC.json    # `stsync sync PID --start D --end D --json` for each project, timed

It runs the very `stsync` command an operator types, in-process (as `make demo` does), so one process holds what
a worker holds, and syncs its projects one after another, as one worker process takes one task after the next.
The environment (DATABASE_URL, the API URLs, STSYNC_SECRET_KEY, REDIS_URL) comes from the harness, which also
runs `setup` (connect, link, one rule per project) in its own process before the clock starts.

The answer is one JSON line on stdout: wall time measured after the imports (interpreter start-up is the same for
every contender and is not what is compared), the per-project reports and the peak RSS of this process (VmHWM).
With `"wait_for_go": true` the child prints `READY` once imported and starts when a line arrives on stdin, so
that two workers can be started together. `"spread": true` makes the shared Procore budget pace each window's calls
evenly up to its reset instead of spending them at once (the `rate_limited` scenario measures both).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.handmade import peak_rss_mb


def stsync(*args: Any) -> tuple[int, str]:
    """One `stsync` command in this process: (exit status, stdout)."""
    from worker.cli import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main([str(a) for a in args], prog_name="stsync", standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


class SetupFailed(RuntimeError):
    """An `stsync` setup command exited non-zero; the message holds its output."""


def must(*args: Any) -> str:
    code, out = stsync(*args)
    if code != 0:
        raise SetupFailed(f"`stsync {' '.join(map(str, args[:3]))} ...` exited {code}:\n{out[-2000:]}")
    return out


def setup(h: dict[str, Any], projects: list[int]) -> None:
    """Connect both APIs, link each project to a new ServiceTrade job, one rule each (the first labor code)."""
    must("connect", "procore", "--company-id", h["procore_company_id"], "--client-id", h["procore_client_id"],
         "--client-secret", h["procore_client_secret"])
    must("connect", "servicetrade", "--username", h["st_username"], "--password", h["st_password"])
    for pid in projects:
        must("project", "link", pid, "--job-type", "service_call", "--json")
        code = h["labor_cost_codes"][str(pid)][0]
        must("rules", "add", pid, "--cost-code-id", code["cost_code_id"], "--line-item-type-id",
             code["line_item_type_id"])


def sync(spec: dict[str, Any]) -> dict[str, Any]:
    # Everything a run touches is imported before the clock starts.
    import worker.cli  # noqa: F401
    import worker.sync.runner  # noqa: F401
    from worker.clients.ratelimit import RedisRateBudget

    RedisRateBudget.spread_calls = spec.get("spread", False)

    if spec.get("wait_for_go"):
        print("READY", flush=True)
        sys.stdin.readline()
    runs = []
    started = time.time()
    t0 = time.perf_counter()
    for pid in spec["projects"]:
        code, out = stsync("sync", pid, "--start", spec["start"], "--end", spec["end"], "--json")
        try:
            outcome = json.loads(out)
        except ValueError:
            outcome = {"status": "crashed", "message": out[-2000:]}
        report = outcome.get("report") or {}
        runs.append({"project_id": pid, "exit": code, "status": outcome.get("status"),
                     "message": outcome.get("message"), "posted": report.get("posted", 0),
                     "unchanged": report.get("unchanged", 0), "updated": report.get("updated", 0),
                     "deleted": report.get("deleted", 0), "failed": report.get("failed", 0),
                     "unknown": report.get("unknown", 0), "later": report.get("later", 0),
                     "skipped": report.get("skipped", {}), "procore_writes": report.get("procore_writes", 0)})
    wall = time.perf_counter() - t0
    return {"started": started, "finished": time.time(), "wall_s": wall, "runs": runs,
            "entries": sum(r["posted"] for r in runs), "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.worker SPEC.json", file=sys.stderr)
        return 2
    print(json.dumps(sync(json.loads(Path(argv[0]).read_text()))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
