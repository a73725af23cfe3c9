"""docker-compose.yml, checked without Docker: its shape, and every service's command started outside Docker
against the local PostgreSQL and Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from . import processes

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROJECT_SERVICES = ["migrate", "worker", "beat", "flower", "emulators"]


def test_only_flower_is_published_and_there_is_exactly_one_beat() -> None:
    published = sorted(name for name, svc in SERVICES.items() if svc.get("ports"))
    assert published == ["flower"]
    beats = [name for name, svc in SERVICES.items() if "beat" in (svc.get("command") or [])]
    assert beats == ["beat"]
    assert SERVICES["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_redis_never_evicts_keys_and_services_have_health_and_restart() -> None:
    assert "noeviction" in SERVICES["redis"]["command"]
    for name in ("postgres", "redis", "worker", "flower"):
        assert "healthcheck" in SERVICES[name], name
    for name in ("postgres", "redis", "worker", "beat", "flower"):
        assert SERVICES[name]["restart"] == "unless-stopped", name
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["emulators"]["profiles"] == ["trial"]
    assert "--basic-auth" in " ".join(SERVICES["flower"]["command"])


def _argv(service: str, port: int) -> list[str]:
    """The compose command, made runnable here: `celery`/`stsync`/`python` from this environment."""
    argv = [re.sub(r"\$\{FLOWER_BASIC_AUTH[^}]*\}", "ops:pw-compose-1", a) for a in SERVICES[service]["command"]]
    argv = [a.replace("--port=5555", f"--port={port}").replace("8765", str(port)) for a in argv]
    head = {"celery": [sys.executable, "-m", "celery"], "stsync": [sys.executable, "-m", "worker.cli"],
            "python": [sys.executable]}[argv[0]]
    return head + argv[1:]


@pytest.mark.slow
@pytest.mark.parametrize("service", PROJECT_SERVICES)
def test_every_service_command_exists_and_starts(service: str, db_url: str, redis_url: str, tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/13"}
    port = processes.free_port()
    argv = _argv(service, port)
    if service == "migrate":
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return
    argv = [a.replace("/tmp/celerybeat-schedule", str(tmp_path / "beat.db")) for a in argv]
    proc = processes.Proc(service, argv, env).start()
    try:
        if service == "worker":
            proc.wait_for(processes.WORKER_READY, 60)
        elif service == "beat":
            proc.wait_for(processes.BEAT_READY, 60)
        elif service == "emulators":
            proc.wait_for(r"READY http://", 30)
        else:
            base = f"http://127.0.0.1:{port}"
            proc.wait_for(r"Visit me at|Registered tasks|Connected to", 60)
            import time

            for _ in range(50):
                try:
                    if requests.get(f"{base}/healthcheck", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.3)
            assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401
            assert requests.get(f"{base}/api/workers", auth=("ops", "pw-compose-1"), timeout=5).status_code == 200
    finally:
        proc.stop()
