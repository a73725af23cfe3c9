"""Real worker, beat and Flower processes for end-to-end tests: started with the project's own commands, watched
through their logs, stopped (or killed) on demand."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELERY = [sys.executable, "-m", "celery", "-A", "worker.app"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.popen: subprocess.Popen[str] | None = None

    def start(self) -> Proc:
        self.popen = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self.lines.append(line)

    def output(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            if regex.search(self.output()):
                return
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not print /{pattern}/ within {timeout}s:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no acknowledgement, as a crash would."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def worker(env: dict[str, str], name: str = "w1", concurrency: int = 2) -> Proc:
    return Proc(f"worker {name}", [*CELERY, "worker", "-Q", "sync,dispatch", "-n", f"{name}@%h", "-c",
                                   str(concurrency), "--without-gossip", "--without-mingle", "-E",
                                   "--loglevel", "INFO"], env).start()


def beat(env: dict[str, str], schedule_file: Path) -> Proc:
    return Proc("beat", [*CELERY, "beat", "--loglevel", "INFO", "--schedule", str(schedule_file)], env).start()


def flower(env: dict[str, str], port: int, basic_auth: str) -> Proc:
    """Flower as the README and compose start it: the wrapper that refuses to start without a login, which it
    takes from the environment (never the command line), bound to 127.0.0.1."""
    return Proc("flower", [sys.executable, "-m", "worker.flower", f"--port={port}"],
                {**env, "FLOWER_BASIC_AUTH": basic_auth, "FLOWER_ADDRESS": "127.0.0.1"}).start()


WORKER_READY = r"ready\."
BEAT_READY = r"beat: Starting|Scheduler: Sending"


def publish(task, broker_url: str, **options) -> None:
    """Send a task message to a given broker, whatever connection the app's producer pool already holds."""
    with task.app.connection_for_write(broker_url) as connection:
        task.apply_async(connection=connection, **options)
