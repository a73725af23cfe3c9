"""What every scenario needs: the emulator, a PostgreSQL database per scenario, Redis, the contenders as child
processes, and the emulator's request counts turned into the numbers the benchmark reports."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet

from emulators.testing import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
CHILD_TIMEOUT_S = 1800
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
NON_BINDING_RATE_LIMIT = {"hourly": 1_000_000_000, "spike": 1_000_000_000, "spike_window_s": 10.0, "time_scale": 1.0}


class BenchError(RuntimeError):
    """A contender or a service failed; the message says which and shows its output."""


@dataclass
class Measure:
    """One timed run of one contender: the fields of results.json, plus what it was measured on."""

    wall_s: float
    entries: int
    procore_calls: int
    procore_write_calls: int
    servicetrade_calls: int
    peak_rss_mb: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 3), "entries": self.entries, "procore_calls": self.procore_calls,
                "procore_write_calls": self.procore_write_calls, "servicetrade_calls": self.servicetrade_calls,
                "peak_rss_mb": round(self.peak_rss_mb, 1), **self.extra}


def median_of(runs: list[Measure]) -> dict[str, Any]:
    """The run with the median wall time (its counts with it), and every run's wall time beside it."""
    chosen = sorted(runs, key=lambda m: m.wall_s)[(len(runs) - 1) // 2]
    out = chosen.as_dict()
    out["wall_s"] = round(statistics.median(m.wall_s for m in runs), 3)
    out["runs"] = len(runs)
    out["wall_s_each"] = [round(m.wall_s, 3) for m in runs]
    return out


class Harness:
    """Owns the emulator process, the scratch directory, the Fernet key and the database lifecycle."""

    def __init__(self, *, verbose: bool = True):
        self.verbose = verbose
        self.secret_key = Fernet.generate_key().decode()
        self._tmp = tempfile.TemporaryDirectory(prefix="stsync-bench-")
        self.workdir = Path(self._tmp.name)
        self.emu = EmulatorProcess()
        self._admin_engine: sa.Engine | None = None
        self._template = f"bench_template_{os.getpid()}"
        self._template_ready = False
        self._children = 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> Harness:
        self._admin_engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            self._admin_engine.connect().close()
        except Exception as exc:
            raise BenchError(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc}); `make services` starts it") from exc
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except Exception as exc:
            raise BenchError(f"Redis at {REDIS_URL} is not reachable ({exc}); `make services` starts it") from exc
        self.emu.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emu.stop()
        if self._admin_engine is not None:
            if self._template_ready:
                from worker.db import dispose_engines

                dispose_engines()
                self._drop(self._template)
            self._admin_engine.dispose()
        self._tmp.cleanup()

    def log(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    # -- services --------------------------------------------------------------------------------------------
    @contextmanager
    def database(self, name: str) -> Iterator[str]:
        """A fresh database `bench_<name>_<pid>` at the latest schema, dropped afterwards. The schema is migrated
        once per benchmark (`worker.migrate.upgrade`) into a template database that each scenario's is copied
        from. The pid keeps a benchmark and the smoke test from dropping each other's databases."""
        assert self._admin_engine is not None
        if not self._template_ready:
            from worker.migrate import upgrade

            self._recreate(self._template)
            upgrade(self._url(self._template))
            self._template_ready = True
        db = f"bench_{name}_{os.getpid()}"
        self._recreate(db, template=self._template)
        try:
            yield self._url(db)
        finally:
            self._drop(db)

    def _url(self, db: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"

    def _recreate(self, db: str, template: str | None = None) -> None:
        assert self._admin_engine is not None
        self._drop(db)
        with self._admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{db}"' + (f' TEMPLATE "{template}"' if template else "")))

    def _drop(self, db: str) -> None:
        assert self._admin_engine is not None
        with self._admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))

    def empty_database(self, url: str) -> None:
        """Every table emptied (between repeats of one scenario)."""
        from worker.models import Base

        engine = sa.create_engine(url)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()

    def flush_rate_budget(self) -> None:
        """Forget the shared Procore rate budget (only stsync's keys: the database may be shared)."""
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match="stsync:procore-budget:*"))
        if keys:
            client.delete(*keys)
        client.close()

    def env(self, database_url: str) -> dict[str, str]:
        """The environment of an stsync process pointed at the emulator and the scenario's database."""
        return {
            "DATABASE_URL": database_url,
            "SERVICETRADE_API_URL": self.emu.st_url,
            "PROCORE_API_URL": self.emu.procore_url,
            "PROCORE_LOGIN_URL": self.emu.procore_url,
            "STSYNC_SECRET_KEY": self.secret_key,
            "REDIS_URL": REDIS_URL,
            "LOG_FORMAT": "json",
        }

    def setup_stsync(self, database_url: str, handles: dict[str, Any], projects: list[int]) -> None:
        """`stsync connect`, `project link` and `rules add`, in this process (untimed; a child would only add
        start-up time), with the same environment as the timed child and warnings-only logs."""
        from bench.worker import SetupFailed, setup
        from worker.db import dispose_engines
        from worker.settings import reset_settings

        saved = dict(os.environ)
        os.environ.update(self.env(database_url), LOG_LEVEL="WARNING")
        reset_settings()
        try:
            setup(handles, projects)
        except SetupFailed as exc:
            raise BenchError(f"stsync setup: {exc}") from exc
        finally:
            dispose_engines()
            os.environ.clear()
            os.environ.update(saved)
            reset_settings()

    # -- the emulator ----------------------------------------------------------------------------------------
    def load(self, world: dict[str, Any]) -> None:
        """The world in the emulator; config, counts and faults back to their defaults."""
        self.emu.admin.reset(world)

    def latency(self, latency_ms: int) -> None:
        """Latency on every API call from now on (set after the untimed setup, which need not wait for it), and
        a Procore rate limit that never binds: the emulator's default spike window (10,000 per 10 s) is within
        reach of the naive one-POST-per-entry loop on loopback, and throughput scenarios compare the work, not
        the limit (`rate_limited` measures that)."""
        self.emu.admin.config(latency_ms=latency_ms, procore_rate_limit=NON_BINDING_RATE_LIMIT)

    def counts(self) -> dict[str, int]:
        summary = self.emu.admin.requests()
        procore = [r for r in summary["by_route"] if r["service"] == "procore"]
        return {
            "procore_calls": sum(r["count"] for r in procore),
            "procore_write_calls": sum(r["count"] for r in procore if r["method"] in WRITE_METHODS
                                       and not r["route"].startswith("/oauth")),
            "servicetrade_calls": sum(r["count"] for r in summary["by_route"] if r["service"] == "servicetrade"),
            "procore_429": sum(r["count"] for r in procore if r["status"] == 429),
            # The look-ups before creating: reads of the company's timecard entries by people and dates.
            "procore_lookup_calls": sum(r["count"] for r in procore if r["method"] == "GET"
                                        and r["route"].endswith("/timecard_entries")),
        }

    def create_jobs(self, world: dict[str, Any], project_ids: list[int]) -> None:
        """For the hand-made baselines: the ServiceTrade customer, location and job of each project (what
        `stsync project link` creates); the world's planned punches attach to the job when it is created."""
        h = world["handles"]
        http = requests.Session()
        st = self.emu.st_url
        auth = http.post(f"{st}/auth", json={"username": h["st_username"], "password": h["st_password"]}, timeout=60)
        auth.raise_for_status()
        cookie = {"Cookie": f"PHPSESSID={auth.json()['data']['authToken']}"}
        projects = {int(p["id"]): p for p in world["procore"]["projects"]}

        def post(path: str, body: dict[str, Any]) -> int:
            r = http.post(f"{st}{path}", json=body, headers=cookie, timeout=60)
            if not r.ok:
                raise BenchError(f"creating ServiceTrade {path} {body['name']!r}: {r.status_code} {r.text[:300]}")
            return int(r.json()["data"]["id"])

        for pid in project_ids:
            p = projects[pid]
            ext = {"procore": str(pid)}
            address = {"street": p["address"], "city": p["city"], "state": p["state_code"], "postalCode": p["zip"]}
            company = post("/company", {"name": p["name"], "customer": True, "address": address, "externalIds": ext})
            location = post("/location", {"name": p["name"], "companyId": company, "address": address,
                                          "externalIds": ext})
            post("/job", {"locationId": location, "vendorId": h["st_vendor_company_id"], "customerId": company,
                          "type": "service_call", "name": p["name"], "externalIds": ext})
        http.close()

    # -- children --------------------------------------------------------------------------------------------
    def spec_file(self, spec: dict[str, Any]) -> Path:
        self._children += 1
        path = self.workdir / f"spec-{self._children}.json"
        path.write_text(json.dumps(spec))
        return path

    def start_child(self, args: list[str], spec: dict[str, Any],
                    env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Path]:
        """`python -m ARGS... SPEC.json`; stdout is read by finish_child, stderr (the logs) goes to a file."""
        stderr = self.workdir / f"child-{self._children + 1}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", *args, str(self.spec_file(spec))],
            cwd=ROOT, env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr.open("w"), text=True,
        )
        return proc, stderr

    def finish_child(self, proc: subprocess.Popen[str], stderr: Path, what: str) -> dict[str, Any]:
        try:
            out, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise BenchError(f"{what}: no answer within {CHILD_TIMEOUT_S} s") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = stderr.read_text()[-3000:]
            raise BenchError(f"{what} exited {proc.returncode}:\n{out[-2000:]}\n{tail}")
        return json.loads(lines[-1])

    def child(self, args: list[str], spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
        proc, stderr = self.start_child(args, spec, env)
        return self.finish_child(proc, stderr, " ".join(args))

    def workers(self, spec: dict[str, Any], groups: list[list[int]], env: dict[str, str]) -> dict[str, Any]:
        """`bench.worker` processes side by side, one per group of projects, started together once all are
        imported; their answers as one: wall time from the first start to the last finish, entries and runs
        of all, the largest peak RSS (each process is a worker of its own)."""
        children = [self.start_child(["bench.worker"], {**spec, "projects": group, "wait_for_go": True}, env)
                    for group in groups]
        for proc, _ in children:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "READY":
                raise BenchError("an stsync worker did not get ready")
        for proc, _ in children:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results, failures = [], []
        for proc, log in children:  # every child is waited for before the database goes away
            try:
                results.append(self.finish_child(proc, log, "stsync sync"))
            except BenchError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
        return {"started": min(r["started"] for r in results), "finished": max(r["finished"] for r in results),
                "wall_s": max(r["finished"] for r in results) - min(r["started"] for r in results),
                "runs": [run for r in results for run in r["runs"]], "entries": sum(r["entries"] for r in results),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "processes": len(results)}


def measure(result: dict[str, Any], counts: dict[str, int], **extra: Any) -> Measure:
    return Measure(
        wall_s=float(result["wall_s"]), entries=int(result["entries"]), procore_calls=counts["procore_calls"],
        procore_write_calls=counts["procore_write_calls"], servicetrade_calls=counts["servicetrade_calls"],
        peak_rss_mb=float(result["peak_rss_mb"]),
        extra={"procore_lookup_calls": counts["procore_lookup_calls"], **extra},
    )


def machine() -> dict[str, Any]:
    """Where the numbers were taken: CPU, cores, memory, OS, Python, PostgreSQL."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    pg = None
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            pg = conn.execute(sa.text("SHOW server_version")).scalar()
        engine.dispose()
    except Exception:  # noqa: BLE001 - the version is only informative
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": pg,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
