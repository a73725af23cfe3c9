"""`python -m worker.flower`: no Flower without a login, the login kept out of argv, and a real Flower that
answers 401 without the login and 200 with it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from . import processes


def _flower_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWER_")}
    return {**env, "CELERY_BROKER_URL": redis_url, **extra}


def _refusal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.flower", *args], capture_output=True, text=True, env=env,
                          cwd=processes.ROOT, timeout=60)


@pytest.mark.parametrize("auth", [None, "", "   ", "nocolon", ":password", "user:", "ops:pw,other"])
def test_flower_refuses_to_start_without_a_valid_login(auth: str | None, redis_url: str) -> None:
    env = _flower_env(redis_url) if auth is None else _flower_env(redis_url, FLOWER_BASIC_AUTH=auth)
    done = _refusal(env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("flower: refusing to start: FLOWER_BASIC_AUTH")
    assert done.stderr.count("\n") == 1


def test_flower_refuses_a_login_on_the_command_line(redis_url: str) -> None:
    done = _refusal(_flower_env(redis_url, FLOWER_BASIC_AUTH="ops:pw"), "--basic-auth=ops:pw")
    assert done.returncode == 2
    assert "not as --basic-auth" in done.stderr


def _wait_until_serving(base: str, proc: processes.Proc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/healthcheck", timeout=2)
            return
        except requests.RequestException:
            if proc.popen is not None and proc.popen.poll() is not None:
                raise AssertionError(f"flower exited with {proc.popen.returncode}:\n{proc.output()}") from None
            time.sleep(0.3)
    raise AssertionError(f"flower did not answer within 60 s:\n{proc.output()}")


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a listening socket on a port, from the kernel's own table."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            addresses.add(".".join(str(b) for b in reversed(bytes.fromhex(host))))
    return addresses


def test_flower_serves_on_localhost_only_to_its_login_given_by_environment(redis_url: str) -> None:
    port = processes.free_port()
    env = _flower_env(redis_url, FLOWER_BASIC_AUTH="ops:pw-flower-1")
    proc = processes.Proc("flower", [sys.executable, "-m", "worker.flower", f"--port={port}"], env).start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, proc)
        assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401
        assert requests.get(f"{base}/api/workers", auth=("ops", "wrong"), timeout=5).status_code == 401
        assert requests.get(f"{base}/api/workers", auth=("ops", "pw-flower-1"), timeout=5).status_code == 200

        assert proc.popen is not None
        argv = Path(f"/proc/{proc.popen.pid}/cmdline").read_bytes().split(b"\0")
        assert b"flower" in argv and b"--address=127.0.0.1" in argv
        assert not any(b"pw-flower-1" in arg for arg in argv)
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        proc.stop()
