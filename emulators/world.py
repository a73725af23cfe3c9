"""Deterministic worlds for the emulators: a ServiceTrade account with technicians and their punches, and the
Procore company they work for. `generate_world(...)` returns the seed dict; `python -m emulators.world --out F`
writes one. The shape is documented in emulators/README.md; `world["handles"]` holds the ids tests use.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from emulators.common import IdGenerator

DEFAULT_ROUNDING: Mapping[str, Any] = {"rule": "nearest", "time_increment": 15}
# Project sites: IANA zone, Rails zone name, street, city, state, zip. New York first (the total-hours project).
SITES = [
    ("America/New_York", "Eastern Time (US & Canada)", "350 Jay Street", "Brooklyn", "NY", "11201"),
    ("America/Chicago", "Central Time (US & Canada)", "1100 W Randolph Street", "Chicago", "IL", "60607"),
    ("America/Los_Angeles", "Pacific Time (US & Canada)", "200 N Spring Street", "Los Angeles", "CA", "90012"),
    ("America/Phoenix", "Arizona", "2 N Central Avenue", "Phoenix", "AZ", "85004"),
    ("America/Denver", "Mountain Time (US & Canada)", "1437 Bannock Street", "Denver", "CO", "80202"),
    ("America/Anchorage", "Alaska", "632 W 6th Avenue", "Anchorage", "AK", "99501"),
    ("Pacific/Honolulu", "Hawaii", "530 S King Street", "Honolulu", "HI", "96813"),
]
PROJECT_NAMES = [
    "Jay Street Tower Fit-out", "Randolph Medical Pavilion", "Spring Street Courthouse Retrofit",
    "Central Avenue Transit Hub", "Bannock Street Library", "Sixth Avenue Clinic", "King Street Offices",
]
FIRST_NAMES = ["Maria", "James", "Aisha", "Luis", "Priya", "Tom", "Keiko", "Darnell", "Sofia", "Ben", "Nora",
               "Omar", "Grace", "Ivan", "Hannah", "Mateo", "Chloe", "Raj", "Elena", "Marcus"]
LAST_NAMES = ["Garcia", "Okafor", "Nguyen", "Smith", "Patel", "Kowalski", "Tanaka", "Brooks", "Rossi", "Miller",
              "Haddad", "Johansson", "Reyes", "Chen", "Murphy", "Silva", "Novak", "Fischer", "Ali", "Walsh"]
LINE_ITEM_TYPES = [("Labor", "L", "labor"), ("Materials", "M", "materials"), ("Equipment", "E", "equipment"),
                   ("Subcontract", "S", "commitment"), ("Other", "O", "other")]
LABOR_CODES = [("01-100", "General Conditions Labor"), ("26-050", "Electrical Labor"), ("23-050", "HVAC Labor")]
TIME_TYPES = [("Regular Time", "REG"), ("Overtime", "OT"), ("Double Time", "DT"), ("Salary", "SAL")]
TOOLS = [("timesheets", "Timesheets"), ("daily_log", "Daily Log"), ("budgeting", "Budget"),
         ("directory", "Directory")]
DAY_S = 86400


def generate_world(seed: int = 1, projects: int = 3, technicians: int = 10, days: int = 14,
                   start: date = date(2026, 3, 2), *, visits_per_day: int = 2,
                   rounding: Mapping[str, Any] | None = DEFAULT_ROUNDING) -> dict[str, Any]:
    """A world for the emulators, the same for the same arguments.

    Every technician works every weekday of `days` days from `start` on every project (each project's job only
    sees its own punches): `visits_per_day` enroute+onsite visits a day, the first with a lunch break. One
    technician works one overnight shift per project; when the range holds a US DST change another works a
    shift across it. `rounding=None` gives a company without a rounding rule.
    """
    if projects < 1 or technicians < 1 or days < 1 or visits_per_day < 1:
        raise ValueError("projects, technicians, days and visits_per_day must be at least 1")
    rng = random.Random(seed)
    procore_ids = _ProcoreIds(rng)
    st_ids = IdGenerator(rng.randrange(2**32))

    company_id = rng.randrange(4_000_000, 5_000_000)
    lits = [{"id": procore_ids.next(), "name": n, "code": c, "base_type": b} for n, c, b in LINE_ITEM_TYPES]
    labor_lit, materials_lit, equipment_lit = lits[0]["id"], lits[1]["id"], lits[2]["id"]

    names = _unique_names(rng, technicians + 3)
    techs = _technicians(rng, st_ids, procore_ids, names[:technicians])
    office = [{"id": procore_ids.next(), "first_name": f, "last_name": la, "is_employee": True,
               "employee_id": f"E-{2001 + i}", "user_id": procore_ids.next()}
              for i, (f, la) in enumerate(names[technicians:technicians + 2])]
    outsider_first, outsider_last = names[technicians + 2]
    non_employee = {"id": procore_ids.next(), "first_name": outsider_first, "last_name": outsider_last,
                    "is_employee": False, "employee_id": "E-9001", "user_id": None}
    for tech in techs:
        if tech["expect"] == "not_employee":
            tech["external_id"] = non_employee["employee_id"]
    people = [t["person"] for t in techs if t["person"]] + office + [non_employee]

    project_list, handles_codes = [], {"labor": {}, "non_labor": {}, "unbudgeted": {}}
    for i in range(projects):
        zone, rails_zone, street, city, state, zip_code = SITES[i % len(SITES)]
        name = PROJECT_NAMES[i % len(PROJECT_NAMES)]
        if i >= len(PROJECT_NAMES):
            name += f" {i // len(PROJECT_NAMES) + 1}"
        pid = procore_ids.next()
        labor = [{"id": procore_ids.next(), "code": code.split("-")[1], "full_code": code, "name": label,
                  "budgeted": True, "line_item_type_ids": [labor_lit] + ([materials_lit] if n == 0 else [])}
                 for n, (code, label) in enumerate(LABOR_CODES)]
        concrete = {"id": procore_ids.next(), "code": "300", "full_code": "03-300", "name": "Cast-in-Place Concrete",
                    "budgeted": True, "line_item_type_ids": [materials_lit, equipment_lit]}
        painting = {"id": procore_ids.next(), "code": "900", "full_code": "09-900", "name": "Painting",
                    "budgeted": False, "line_item_type_ids": [labor_lit]}
        project_list.append({
            "id": pid, "company_id": company_id, "name": name, "display_name": name,
            "project_number": f"P-{2026}-{i + 1:03d}", "address": street, "city": city, "state_code": state,
            "zip": zip_code, "country_code": "US", "time_zone": rails_zone, "tz_name": zone, "active": True,
            "tools": [{"id": procore_ids.next(), "engine_name": engine, "title": title, "position": n,
                       "required": False, "is_active": title != "Timesheets" or i % 2 == 0}
                      for n, (engine, title) in enumerate(TOOLS)],
            "cost_codes": [*labor, concrete, painting],
        })
        key = str(pid)
        handles_codes["labor"][key] = [{"cost_code_id": c["id"], "line_item_type_id": labor_lit} for c in labor]
        handles_codes["non_labor"][key] = [{"cost_code_id": concrete["id"], "line_item_type_id": materials_lit}]
        handles_codes["unbudgeted"][key] = [{"cost_code_id": painting["id"], "line_item_type_id": labor_lit}]
    start_stop = [p["id"] for i, p in enumerate(project_list) if i % 2 == 1]

    # ServiceTrade account: the API user, the vendor company, technicians, one unrelated customer job.
    vendor_id, admin_id = st_ids.next(), st_ids.next()
    st_users = [{"id": admin_id, "firstName": "Avery", "lastName": "Admin", "email": "api@northwind-fire.example",
                 "status": "active", "timezone": "America/New_York", "isTech": False, "externalIds": {}}]
    for t in techs:
        ext = {} if t["external_id"] is None else {"procore": t["external_id"]}
        st_users.append({"id": t["st_user_id"], "firstName": t["first"], "lastName": t["last"],
                         "email": f"{t['first'].lower()}.{t['last'].lower()}@northwind-fire.example",
                         "status": "active", "timezone": "America/New_York", "isTech": True, "externalIds": ext})
    other_company, other_location, other_job = st_ids.next(), st_ids.next(), st_ids.next()
    st_password = _token(rng, 16)
    st_client_id, st_client_secret = f"st-{_token(rng, 24)}", _token(rng, 40)
    workdays = [start + timedelta(days=d) for d in range(days) if (start + timedelta(days=d)).weekday() < 5]
    user_ids = [t["st_user_id"] for t in techs]
    ok_users = [t["st_user_id"] for t in techs if t["expect"] == "ok"]
    night_users = (ok_users[0], ok_users[1 % len(ok_users)])  # the overnight shift, the shift across DST
    plans = {str(p["id"]): _plan(rng, ZoneInfo(p["tz_name"]), user_ids, workdays, (start, days), visits_per_day,
                                 night_users)
             for p in project_list}
    other_events = [{**e, "id": st_ids.next(), "job_id": other_job}
                    for e in _plan(rng, ZoneInfo("America/New_York"), ok_users[:2], workdays[:1], (start, 0), 1,
                                   None)]

    pc_client_id, pc_secret, pc_refresh = _token(rng, 43), _token(rng, 43), _token(rng, 64, "0123456789abcdef")
    world = {
        "meta": {"seed": seed, "projects": projects, "technicians": technicians, "days": days,
                 "start": start.isoformat(), "visits_per_day": visits_per_day},
        "servicetrade": {
            "id_seed": rng.randrange(2**32),
            "vendor_company_id": vendor_id,
            "logins": [{"username": "api@northwind-fire.example", "password": st_password, "user_id": admin_id}],
            "oauth_clients": [{"client_id": st_client_id, "client_secret": st_client_secret, "user_id": admin_id}],
            "users": st_users,
            "companies": [
                {"id": vendor_id, "name": "Northwind Fire & Security", "vendor": True, "customer": False,
                 "address": {"street": "88 Harbor Way", "city": "Boston", "state": "MA", "postalCode": "02210"}},
                {"id": other_company, "name": "Lakeside Medical Center", "customer": True,
                 "address": {"street": "12 Lake Road", "city": "Albany", "state": "NY", "postalCode": "12207"}},
            ],
            "locations": [{"id": other_location, "name": "Lakeside Medical Center - Main Campus",
                           "companyId": other_company,
                           "address": {"street": "12 Lake Road", "city": "Albany", "state": "NY",
                                       "postalCode": "12207"}}],
            "jobs": [{"id": other_job, "number": 10001, "name": "Annual sprinkler inspection", "type": "inspection",
                      "status": "scheduled", "locationId": other_location, "vendorId": vendor_id,
                      "customerId": other_company}],
            "clock_events": other_events,
            "clock_event_plans": plans,
        },
        "procore": {
            "oauth_clients": [{"client_id": pc_client_id, "client_secret": pc_secret, "company_ids": [company_id],
                               "name": "stsync"}],
            "refresh_tokens": [{"token": pc_refresh, "client_id": pc_client_id}],
            "companies": [{
                "id": company_id, "name": "Summit Builders Inc.",
                "rounding_configuration": dict(rounding) if rounding else None,
                "projects_timecard_in_out_enabled": start_stop,
                "line_item_types": lits,
                "people": people,
                "time_types": [{"id": procore_ids.next(), "time_type": n, "abbreviated_time_type": a, "global": True}
                               for n, a in TIME_TYPES],
            }],
            "projects": project_list,
        },
    }
    world["handles"] = {
        "st_username": "api@northwind-fire.example", "st_password": st_password,
        "st_client_id": st_client_id, "st_client_secret": st_client_secret, "st_vendor_company_id": vendor_id,
        "procore_company_id": company_id, "procore_client_id": pc_client_id,
        "procore_client_secret": pc_secret, "procore_refresh_token": pc_refresh,
        "project_ids": [p["id"] for p in project_list],
        "start_stop_project_ids": start_stop,
        "labor_cost_codes": handles_codes["labor"],
        "non_labor_cost_codes": handles_codes["non_labor"],
        "unbudgeted_cost_codes": handles_codes["unbudgeted"],
        "labor_line_item_type_id": labor_lit, "non_labor_line_item_type_id": materials_lit,
        "technicians": [{"st_user_id": t["st_user_id"], "name": f"{t['first']} {t['last']}",
                         "employee_id": t["external_id"] or None, "expect": t["expect"],
                         "party_id": t["person"]["id"] if t["person"] else None} for t in techs],
        # beyond the contract's list, for convenience
        "timesheets_project_ids": [p["id"] for i, p in enumerate(project_list) if i % 2 == 0],
        "project_zones": {str(p["id"]): p["tz_name"] for p in project_list},
        "non_employee_person_id": non_employee["id"],
    }
    return world


class _ProcoreIds:
    """Procore-looking ids: large (past 32 bits, as Procore's are), unique, from the world's RNG."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.taken: set[int] = set()

    def next(self) -> int:
        while True:
            value = 562_949_953_000_000 + self.rng.randrange(10**9)
            if value not in self.taken:
                self.taken.add(value)
                return value


def _token(rng: random.Random, length: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _unique_names(rng: random.Random, n: int) -> list[tuple[str, str]]:
    pool = [(f, la) for f in FIRST_NAMES for la in LAST_NAMES]
    rng.shuffle(pool)
    names = pool[:n]
    # Beyond 400 people the pool repeats with a numbered last name, still unique.
    names += [(pool[i % len(pool)][0], f"{pool[i % len(pool)][1]}-{i // len(pool)}") for i in range(len(pool), n)]
    return names


def _technicians(rng: random.Random, st_ids: IdGenerator, procore_ids: _ProcoreIds,
                 names: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Mostly technicians with a valid Employee ID; #1 has none, #2 a wrong one, #3 points at the non-employee
    person, #5 has an empty one."""
    special = {1: ("no_employee_id", None), 2: ("invalid_employee_id", "E-4040"), 3: ("not_employee", None),
               5: ("no_employee_id", "")}
    techs = []
    for i, (first, last) in enumerate(names):
        expect, external = special.get(i, ("ok", f"E-{1001 + i}"))
        person = None
        if expect == "ok":
            person = {"id": procore_ids.next(), "first_name": first, "last_name": last, "is_employee": True,
                      "employee_id": external, "user_id": procore_ids.next() if rng.random() < 0.7 else None}
        techs.append({"st_user_id": st_ids.next(), "first": first, "last": last, "expect": expect,
                      "external_id": external, "person": person})
    return techs


def _plan(rng: random.Random, zone: ZoneInfo, user_ids: list[int], workdays: list[date], date_range: tuple[date, int],
          visits_per_day: int, night_users: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The punches of every technician on one project, sorted by time (ties keep their logical order).
    `night_users` = (who works the overnight shift, who works across a DST change), or None for neither."""
    events: list[tuple[int, int, dict[str, Any]]] = []
    seq = 0

    def punch(user: int, activity: str, kind: str, at: int) -> None:
        nonlocal seq
        source = "ivr" if rng.random() < 0.03 else "web" if rng.random() < 0.02 else "mobile"
        events.append((at, seq, {"user_id": user, "activity": activity, "eventType": kind, "eventTime": at,
                                 "source": source}))
        seq += 1

    def off_round(t: int) -> int:
        """Push a punch off the 5-minute marks so that every rounding rule has something to do."""
        return t + 60 * rng.randint(1, 4) if (t // 60) % 5 == 0 else t

    midnight = {d: int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()) for d in workdays}
    overnight_user = night_users[0] if night_users else None
    overnight_day = workdays[min(2, len(workdays) - 1)] if workdays else None
    for user in user_ids:
        for day in workdays:
            if user == overnight_user and day == overnight_day:
                begin = off_round(midnight[day] + 19 * 3600 + 30 * 60 + rng.randint(0, 1800))
                _shift(punch, off_round, rng, user, begin, begin + 8 * 3600 + rng.randint(0, 2400), with_break=False)
                continue
            day_start = midnight[day] + 6 * 3600 + 30 * 60 + rng.randint(0, 2400)
            day_end = midnight[day] + 15 * 3600 + 15 * 60 + rng.randint(0, 7200)
            span = (day_end - day_start) // visits_per_day
            for v in range(visits_per_day):
                seg = day_start + v * span
                _shift(punch, off_round, rng, user, off_round(seg + rng.randint(0, 300)),
                       off_round(seg + span - rng.randint(0, 480)), with_break=v == 0)
    start, days = date_range
    for change in _dst_changes(zone, start, days) if night_users else []:
        night = change - timedelta(days=1)
        base = datetime(night.year, night.month, night.day, 21, 40, tzinfo=zone) if night >= start else \
            datetime(change.year, change.month, change.day, 0, 10, tzinfo=zone)
        begin = off_round(int(base.timestamp()) + rng.randint(0, 900))
        _shift(punch, off_round, rng, night_users[1], begin, begin + 8 * 3600 + rng.randint(0, 1800),
               with_break=False)
    events.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in events]


def _shift(punch: Any, off_round: Any, rng: random.Random, user: int, begin: int, end: int, *,
           with_break: bool) -> None:
    """Drive (enroute), then work on site until `end`; optionally a lunch break in the middle."""
    arrive = off_round(begin + rng.randint(12 * 60, 40 * 60))
    punch(user, "enroute", "clockIn", begin)
    punch(user, "enroute", "clockOut", arrive)
    on_site = arrive + rng.randint(30, 200)
    punch(user, "onsite", "clockIn", on_site)
    if with_break and end - on_site > 3 * 3600:
        lunch = off_round(on_site + (end - on_site) // 2 + rng.randint(-1800, 1800))
        back = off_round(lunch + rng.randint(20 * 60, 45 * 60))
        punch(user, "onsite", "clockOut", lunch)
        punch(user, "onbreak", "clockIn", lunch)
        punch(user, "onbreak", "clockOut", back)
        punch(user, "onsite", "clockIn", back)
    punch(user, "onsite", "clockOut", max(end, on_site + 1800))


def _dst_changes(zone: ZoneInfo, start: date, days: int) -> list[date]:
    """Dates within the range on which the zone's UTC offset changes (US: 2nd Sunday of March, 1st of November)."""
    found = []
    for d in (start + timedelta(days=n) for n in range(days)):
        before = datetime(d.year, d.month, d.day, 0, 0, tzinfo=zone).utcoffset()
        after = datetime(d.year, d.month, d.day, 12, 0, tzinfo=zone).utcoffset()
        if before != after:
            found.append(d)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.world", description="Write an emulator world.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--projects", type=int, default=3)
    parser.add_argument("--technicians", type=int, default=10)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 2))
    parser.add_argument("--visits-per-day", type=int, default=2)
    parser.add_argument("--no-rounding", action="store_true", help="company without a rounding rule")
    args = parser.parse_args(argv)
    world = generate_world(seed=args.seed, projects=args.projects, technicians=args.technicians, days=args.days,
                           start=args.start, visits_per_day=args.visits_per_day,
                           rounding=None if args.no_rounding else DEFAULT_ROUNDING)
    args.out.write_text(json.dumps(world, indent=1))
    punches = sum(len(p) for p in world["servicetrade"]["clock_event_plans"].values())
    print(f"wrote {args.out}: {args.projects} projects, {args.technicians} technicians, {punches} punches",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
