"""docker-compose.yml, checked without Docker: its shape, and every service's command and healthcheck run outside
Docker against the local PostgreSQL and Redis."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from . import processes

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROMETHEUS_CONFIG = ROOT / "ops" / "prometheus" / "prometheus.yml"
LONG_RUNNING = sorted(name for name in SERVICES if name != "migrate")
FLOWER_LOGIN = ("ops", "pw-compose-1")


def _environment(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in (SERVICES[service].get("environment") or {}).items()}


def _depends_on(service: str) -> dict[str, dict[str, str]]:
    return SERVICES[service].get("depends_on") or {}


def _healthcheck(service: str) -> list[str]:
    return SERVICES[service]["healthcheck"]["test"]


# -- shape ------------------------------------------------------------------------------------------------------


def test_only_the_web_app_is_published_and_there_is_exactly_one_beat() -> None:
    published = {name: svc["ports"] for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {"web": ["8000:8000"]}
    assert SERVICES["web"]["command"] == ["stsync", "web", "--bind", "0.0.0.0:8000"]
    beats = [name for name, svc in SERVICES.items() if "beat" in (svc.get("command") or [])]
    assert beats == ["beat"]
    assert SERVICES["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_a_sync_worker_and_a_dispatch_worker_each_pinged_by_its_own_node_name() -> None:
    for service, queue, concurrency in (("worker", "sync", "2"), ("dispatch", "dispatch", "1")):
        command = SERVICES[service]["command"]
        assert command[command.index("-Q") + 1] == queue, service
        assert command[command.index("--concurrency") + 1] == concurrency, service
        assert command[command.index("-n") + 1] == f"{queue}@%h", service
        healthcheck = _healthcheck(service)
        assert healthcheck[:5] == ["CMD", "python", "-m", "worker.health", "worker"], service
        assert healthcheck[healthcheck.index("--name") + 1] == queue, service


def test_every_long_running_service_has_a_healthcheck_and_restarts() -> None:
    for name in LONG_RUNNING:
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert SERVICES[name]["restart"] == "unless-stopped", name
    assert SERVICES["migrate"]["restart"] == "no"
    assert _healthcheck("beat")[1:6] == ["python", "-m", "worker.health", "beat", "--max-age"]
    assert "/healthz" in " ".join(_healthcheck("web"))


def test_depends_on_waits_for_health_and_for_the_migration() -> None:
    for name in SERVICES:
        for dependency, spec in _depends_on(name).items():
            expected = "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            assert spec == {"condition": expected}, f"{name} -> {dependency}"
    for name in ("worker", "dispatch", "beat", "web"):
        assert {"migrate", "postgres", "redis"} <= set(_depends_on(name)), name
    assert "dispatch" in _depends_on("beat")  # beat's health is the dispatcher's tick


def test_redis_has_a_password_and_every_broker_url_carries_it() -> None:
    redis_command = " ".join(SERVICES["redis"]["command"])
    assert "requirepass" in redis_command and "$$REDIS_PASSWORD" in redis_command
    assert "noeviction" in redis_command
    assert "REDISCLI_AUTH" in " ".join(_healthcheck("redis"))
    urls = [(name, value) for name in SERVICES for value in _environment(name).values() if "redis://" in value]
    assert {name for name, _ in urls} >= {"migrate", "worker", "dispatch", "beat", "web", "flower"}
    for name, url in urls:
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/\d", url), f"{name}: {url}"


def test_flower_gets_only_the_broker_and_its_login() -> None:
    flower = SERVICES["flower"]
    assert flower["command"] == ["python", "-m", "worker.flower"]
    environment = _environment("flower")
    assert set(environment) == {"CELERY_BROKER_URL", "FLOWER_BASIC_AUTH", "FLOWER_ADDRESS", "LOG_FORMAT"}
    for key, value in environment.items():
        for secret in ("STSYNC_SECRET_KEY", "DATABASE_URL", "POSTGRES_PASSWORD", "METRICS_TOKEN"):
            assert secret not in key and secret not in value, key
    assert "--basic-auth" not in " ".join(flower["command"])


def test_prometheus_runs_under_the_monitoring_profile_with_the_alert_rules() -> None:
    prometheus = SERVICES["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./ops/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    assert "./ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "METRICS_TOKEN" in prometheus["environment"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["stsync"]["static_configs"] == [{"targets": ["web:8000"]}]
    assert jobs["stsync"]["authorization"] == {"type": "Bearer", "credentials_file": "/tmp/metrics_token"}
    assert jobs["flower"]["static_configs"] == [{"targets": ["flower:5555"]}]
    assert SERVICES["emulators"]["profiles"] == ["trial"]


def test_promtool_accepts_the_prometheus_configuration(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run scripts/system-deps.sh", pytrace=False)
    shutil.copy(ROOT / "ops" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "metrics_token").write_text("token")
    config = PROMETHEUS_CONFIG.read_text().replace("/etc/prometheus/alerts.yml", "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(config.replace("/tmp/metrics_token", "metrics_token"))
    done = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- each command and healthcheck, run here -------------------------------------------------------------------


def _runnable(argv: list[str], port: int) -> list[str]:
    """A compose command made runnable here: this environment's `celery`/`stsync`/`python`, the service's port
    moved to a free one, listening on 127.0.0.1 only."""
    moved = []
    for arg in argv:
        for fixed in ("8000", "5555", "8765"):
            arg = arg.replace(f"0.0.0.0:{fixed}", f"127.0.0.1:{port}").replace(f"127.0.0.1:{fixed}/",
                                                                                f"127.0.0.1:{port}/")
        moved.append(arg.replace("8765", str(port)).replace("0.0.0.0", "127.0.0.1"))
    head = {"celery": [sys.executable, "-m", "celery"], "stsync": [sys.executable, "-m", "worker.cli"],
            "python": [sys.executable]}[moved[0]]
    return head + moved[1:]


def _run_healthcheck(proc: processes.Proc, port: int, env: dict[str, str], timeout: float = 60) -> None:
    """Run the service's healthcheck until it passes, as Docker would; fail with the service's output if it exits,
    or with the healthcheck's last answer."""
    argv = _runnable(_healthcheck(proc.name)[1:], port)
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            return
        if proc.popen is not None and proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.name} healthcheck kept failing: {(done.stdout + done.stderr)[-2000:]}")
        time.sleep(1)


def _app_env(db_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url, **extra}


def _start(service: str, argv: list[str], env: dict[str, str]) -> processes.Proc:
    return processes.Proc(service, argv, env).start()


@pytest.mark.slow
def test_migrate_command_upgrades_the_database(db_url: str, redis_url: str) -> None:
    done = subprocess.run(_runnable(SERVICES["migrate"]["command"], 0), env=_app_env(db_url, redis_url), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("service", ["worker", "dispatch"])
def test_worker_commands_start_and_pass_their_healthcheck(service: str, db_url: str, redis_url: str) -> None:
    env = _app_env(db_url, redis_url)
    proc = _start(service, _runnable(SERVICES[service]["command"], 0), env)
    try:
        proc.wait_for(processes.WORKER_READY, 60)
        _run_healthcheck(proc, 0, env)
    finally:
        proc.stop()


@pytest.mark.slow
def test_beat_command_starts_and_passes_its_healthcheck_once_the_dispatcher_ticks(
        db_url: str, redis_url: str, tmp_path: Path) -> None:
    env = _app_env(db_url, redis_url, DISPATCH_INTERVAL_S="2")
    argv = [a.replace("/tmp/celerybeat-schedule", str(tmp_path / "beat.db")) for a in SERVICES["beat"]["command"]]
    dispatch = _start("dispatch", _runnable(SERVICES["dispatch"]["command"], 0), env)
    beat = _start("beat", _runnable(argv, 0), env)
    try:
        beat.wait_for(processes.BEAT_READY, 60)
        _run_healthcheck(beat, 0, env, timeout=30)
    finally:
        beat.stop()
        dispatch.stop()


@pytest.mark.slow
def test_flower_starts_with_only_its_compose_environment_and_asks_for_the_login(redis_url: str) -> None:
    port = processes.free_port()
    env = {**_environment("flower"), "PATH": os.environ["PATH"], "CELERY_BROKER_URL": redis_url,
           "FLOWER_BASIC_AUTH": ":".join(FLOWER_LOGIN), "FLOWER_ADDRESS": "127.0.0.1"}
    proc = _start("flower", [*_runnable(SERVICES["flower"]["command"], port), f"--port={port}"], env)
    try:
        _run_healthcheck(proc, port, env)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401
        assert requests.get(f"{base}/api/workers", auth=FLOWER_LOGIN, timeout=5).status_code == 200
    finally:
        proc.stop()


@pytest.mark.slow
def test_web_command_starts_and_answers_its_healthcheck(db_url: str, redis_url: str) -> None:
    port = processes.free_port()
    env = _app_env(db_url, redis_url, METRICS_TOKEN="metrics-compose-1")
    proc = _start("web", _runnable(SERVICES["web"]["command"], port), env)
    try:
        _run_healthcheck(proc, port, env)
    finally:
        proc.stop()


@pytest.mark.slow
def test_emulators_command_starts_and_answers_its_healthcheck() -> None:
    port = processes.free_port()
    proc = _start("emulators", _runnable(SERVICES["emulators"]["command"], port), dict(os.environ))
    try:
        proc.wait_for(r"READY http://", 30)
        _run_healthcheck(proc, port, dict(os.environ))
    finally:
        proc.stop()


@pytest.mark.slow
def test_redis_command_requires_the_password_its_healthcheck_gives(tmp_path: Path) -> None:
    port = processes.free_port()
    env = {**os.environ, "REDIS_PASSWORD": "pw-redis-compose-1"}
    shell, flag, script = SERVICES["redis"]["command"]
    script = script.replace("$$", "$") + f" --port {port} --bind 127.0.0.1 --save '' --dir {tmp_path}"
    proc = _start("redis", [shell, flag, script], env)
    try:
        check = _healthcheck("redis")[1].replace("$$", "$").replace("redis-cli", f"redis-cli -p {port}")
        _run_healthcheck_shell(check, env)
        refused = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=10,
                                 env={k: v for k, v in env.items() if k != "REDISCLI_AUTH"})
        assert "NOAUTH" in refused.stdout + refused.stderr
    finally:
        proc.stop()


def _run_healthcheck_shell(script: str, env: dict[str, str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["sh", "-c", script], env=env, timeout=10).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"healthcheck kept failing: {script}")
        time.sleep(0.5)
