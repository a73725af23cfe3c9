"""The baselines, as a child process: what an integrator writes by hand, with plain `requests`.

    python -m bench.handmade naive SPEC.json       # one POST per entry to the project timecard endpoint
    python -m bench.handmade bare_bulk SPEC.json   # the bulk requests stsync sends, 100 a call, in a tight loop
    python -m bench.handmade bare_read SPEC.json   # only the reads of a run: the floor of a re-run

Both read the same things the same way (ServiceTrade technicians, jobs and clock events; Procore people, company
configuration, rounding rule and each project's zone), pair punches simply (per technician and activity, a
clock-in and the next clock-out; breaks never posted), round by the company rule, cut at local midnight, and
leave out technicians without a valid Employee ID, so they post the same entries as stsync. No ledger, no
database, no look-up before a retry, no logging: a lost answer would mean a duplicate or a gap.

`bare_read` reads what a run of stsync reads and does nothing with it: ServiceTrade technicians, jobs and each
project's clock events of the window (its look-back day on each side included), Procore's company configuration,
rounding rule, cost types and people, each project, its cost codes and tools, and, once, the company's timecard
entries of the window (what stsync looks at before creating entries), a thousand a page. It plans, pairs and
stores nothing, and reads each thing once: a re-run that only confirms what is there can't be cheaper.

`limit` in the spec stops after that many entries (the naive contender at 25 and 150 ms is run on a subset).
The answer is one JSON line on stdout, like `bench.worker`'s.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

DAY = timedelta(days=1)


class HandMade:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.h = spec["handles"]
        self.http = requests.Session()
        self.st = spec["st_url"].rstrip("/")
        self.pc = spec["procore_url"].rstrip("/")
        self.cid = int(self.h["procore_company_id"])
        self.st_cookie = ""
        self.pc_headers: dict[str, str] = {}
        self.next_origin = 1

    # -- ServiceTrade ------------------------------------------------------------------------------------------
    def st_login(self) -> None:
        r = self.http.post(f"{self.st}/auth", json={"username": self.h["st_username"],
                                                     "password": self.h["st_password"]}, timeout=60)
        r.raise_for_status()
        self.st_cookie = f"PHPSESSID={r.json()['data']['authToken']}"

    def st_list(self, path: str, plural: str, **params: Any) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            r = self.http.get(f"{self.st}{path}", params={**params, "page": page},
                              headers={"Cookie": self.st_cookie}, timeout=60)
            r.raise_for_status()
            data = r.json()["data"]
            yield from data[plural]
            if page >= data["totalPages"]:
                return
            page += 1

    # -- Procore -----------------------------------------------------------------------------------------------
    def pc_login(self) -> None:
        r = self.http.post(f"{self.pc}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": self.h["procore_client_id"],
            "client_secret": self.h["procore_client_secret"]}, timeout=60)
        r.raise_for_status()
        self.pc_headers = {"Authorization": f"Bearer {r.json()['access_token']}",
                           "Procore-Company-Id": str(self.cid)}

    def pc_get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.pc}{path}", params=params, headers=self.pc_headers, timeout=60)

    def pc_list(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        url: str | None = f"{self.pc}{path}"
        query: dict[str, Any] | None = {**params, "per_page": 1000}
        while url:
            r = self.http.get(url, params=query, headers=self.pc_headers, timeout=60)
            r.raise_for_status()
            yield from r.json()
            url, query = r.links.get("next", {}).get("url"), None

    # -- the job ---------------------------------------------------------------------------------------------
    def read_references(self) -> None:
        """What every contender reads once: technicians and jobs, people, company configuration, rounding."""
        self.st_login()
        self.techs = {int(u["id"]): str((u.get("externalIds") or {}).get("procore") or "")
                      for u in self.st_list("/user", "users", isTech="true", limit=1000)}
        self.jobs = {str((j.get("externalIds") or {}).get("procore")): int(j["id"])
                     for j in self.st_list("/job", "jobs", status="all", limit=2000)}
        self.pc_login()
        people = {str(p["employee_id"]): int(p["id"])
                  for p in self.pc_list(f"/rest/v1.0/companies/{self.cid}/people",
                                        **{"filters[is_employee]": "true"})
                  if p.get("employee_id") and p.get("is_employee")}
        self.parties = {uid: people[emp] for uid, emp in self.techs.items() if emp in people}
        config = self.pc_get("/rest/v1.0/company_configuration", company_id=self.cid).json()
        self.in_out = {int(p) for p in config.get("projects_timecard_in_out_enabled") or []}
        r = self.pc_get(f"/rest/v1.0/companies/{self.cid}/rounding_configuration")
        self.rounding = r.json() if r.status_code == 200 else None

    def clock_events(self, pid: int, start: date, end: date, tz: ZoneInfo) -> Iterator[dict[str, Any]]:
        """The project's punches of the window, a day more on each side (a shift may cross midnight)."""
        read_from = datetime.combine(start, dtime(0), tz) - DAY
        read_to = datetime.combine(end + DAY, dtime(0), tz) + DAY
        return self.st_list("/clock", "events", jobId=self.jobs[str(pid)], limit=1000,
                            startTime=int(read_from.timestamp()), endTime=int(read_to.timestamp()))

    def run(self, bulk: bool) -> dict[str, Any]:
        start, end = date.fromisoformat(self.spec["start"]), date.fromisoformat(self.spec["end"])
        limit = self.spec.get("limit")
        self.read_references()
        posted = 0
        for pid in self.spec["projects"]:
            if limit is not None and posted >= limit:
                break
            project = self.pc_get(f"/rest/v1.0/projects/{pid}", company_id=self.cid).json()
            tz = ZoneInfo(project["tz_name"])
            code = self.h["labor_cost_codes"][str(pid)][0]
            entries = [
                {"project_id": pid, "party_id": self.parties[uid], "date": day.isoformat(),
                 "cost_code_id": code["cost_code_id"], "line_item_type_id": code["line_item_type_id"],
                 "description": f"ServiceTrade {activity}",
                 **({"time_in": a.astimezone(tz).isoformat(), "time_out": b.astimezone(tz).isoformat()}
                    if pid in self.in_out else {"hours": hours(a, b)})}
                for uid, activity, a, b in intervals(self.clock_events(pid, start, end, tz), self.rounding, tz)
                if uid in self.parties
                for day, a, b in pieces(a, b, tz) if start <= day <= end
            ]
            if limit is not None:
                entries = entries[: limit - posted]
            posted += self.post_bulk(entries) if bulk else self.post_each(pid, entries)
        return {"entries": posted}

    def read_only(self) -> dict[str, Any]:
        """Every read of a run, nothing planned, nothing written: counts of what was read."""
        start, end = date.fromisoformat(self.spec["start"]), date.fromisoformat(self.spec["end"])
        self.read_references()
        references = sum(1 for _ in self.pc_list("/rest/v1.0/line_item_types", company_id=self.cid))
        events = 0
        for pid in self.spec["projects"]:
            project = self.pc_get(f"/rest/v1.0/projects/{pid}", company_id=self.cid).json()
            tz = ZoneInfo(project["tz_name"])
            references += sum(1 for _ in self.pc_list("/rest/v1.0/cost_codes", project_id=pid))
            references += sum(1 for _ in self.pc_list(f"/rest/v1.0/projects/{pid}/tools"))
            events += sum(1 for _ in self.clock_events(pid, start, end, tz))
        # The company's entries of the window, once for every project: the least that confirms what is there.
        procore_entries = sum(1 for _ in self.pc_list(f"/rest/v1.0/companies/{self.cid}/timecard_entries",
                                                      start_date=start.isoformat(), end_date=end.isoformat()))
        return {"entries": 0, "clock_events_read": events, "procore_entries_read": procore_entries,
                "procore_reference_items_read": references}

    def post_each(self, pid: int, entries: list[dict[str, Any]]) -> int:
        for entry in entries:
            r = self.http.post(f"{self.pc}/rest/v1.0/projects/{pid}/timecard_entries",
                               json={"timecard_entry": entry}, headers=self.pc_headers, timeout=60)
            r.raise_for_status()
        return len(entries)

    def post_bulk(self, entries: list[dict[str, Any]]) -> int:
        for i in range(0, len(entries), 100):
            chunk = []
            for entry in entries[i:i + 100]:
                chunk.append({**entry, "origin_id": self.next_origin, "origin_data": f"bench:{self.next_origin}"})
                self.next_origin += 1
            r = self.http.post(f"{self.pc}/rest/v1.0/companies/{self.cid}/timesheets",
                               json={"timecard_entries": chunk}, headers=self.pc_headers, timeout=60)
            r.raise_for_status()
        return len(entries)


def intervals(events: Iterator[dict[str, Any]], rounding: dict[str, Any] | None,
              tz: ZoneInfo) -> Iterator[tuple[int, str, datetime, datetime]]:
    """(user, activity, rounded start, rounded end): a clock-in and the next clock-out per user and activity."""
    by_key: dict[tuple[int, str], list[tuple[int, int, str]]] = defaultdict(list)
    for e in events:
        if e["activity"] != "onbreak":
            by_key[(int(e["user"]["id"]), e["activity"])].append((e["eventTime"], int(e["id"]), e["eventType"]))
    for (uid, activity), punches in by_key.items():
        punches.sort()
        open_at = None
        for at, _id, kind in punches:
            if kind == "clockIn":
                open_at = at
            elif open_at is not None:
                if 0 < at - open_at <= 86400:
                    a = round_time(datetime.fromtimestamp(open_at, UTC), rounding, tz, start=True)
                    b = round_time(datetime.fromtimestamp(at, UTC), rounding, tz, start=False)
                    if b > a:
                        yield uid, activity, a, b
                open_at = None


def round_time(t: datetime, rounding: dict[str, Any] | None, tz: ZoneInfo, *, start: bool) -> datetime:
    """The company rule on the local wall clock (P-8); 23:59 becomes midnight."""
    if not rounding:
        return t
    offset = t.astimezone(tz).utcoffset() or timedelta(0)
    local = t.replace(tzinfo=None) + offset
    midnight = datetime.combine(local.date(), dtime(0))
    if local.hour == 23 and local.minute == 59:
        return (midnight + DAY - offset).replace(tzinfo=UTC)
    step = int(rounding["time_increment"]) * 60
    secs = (local - midnight).total_seconds()
    below = secs - secs % step
    rule = rounding["rule"]
    if rule == "favor_employee":
        rule = "down" if start else "up"
    if below == secs or rule == "down" or (rule == "nearest" and 2 * (secs - below) < step):
        rounded = below
    else:
        rounded = below + step
    return (midnight + timedelta(seconds=rounded) - offset).replace(tzinfo=UTC)


def pieces(a: datetime, b: datetime, tz: ZoneInfo) -> Iterator[tuple[date, datetime, datetime]]:
    """[a, b) cut at each local midnight."""
    while a < b:
        day = a.astimezone(tz).date()
        cut = min(b, datetime.combine(day + DAY, dtime(0), tz).astimezone(UTC))
        yield day, a, cut
        a = cut


def hours(a: datetime, b: datetime) -> str:
    """A decimal string to the hundredth, halves up, as Procore takes it (P-5)."""
    hundredths, rest = divmod(int((b - a).total_seconds()) * 100, 3600)
    hundredths += 2 * rest >= 3600
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (VmHWM). Not ru_maxrss: on Linux that keeps the parent's
    high-water mark across fork and exec, so a child would report the harness's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("naive", "bare_bulk", "bare_read"):
        print("usage: python -m bench.handmade naive|bare_bulk|bare_read SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    started = time.time()
    t0 = time.perf_counter()
    job = HandMade(spec)
    result = job.read_only() if argv[0] == "bare_read" else job.run(bulk=argv[0] == "bare_bulk")
    wall = time.perf_counter() - t0
    result |= {"started": started, "finished": time.time(), "wall_s": wall, "peak_rss_mb": peak_rss_mb()}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
