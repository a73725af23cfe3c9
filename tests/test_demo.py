"""`make demo` runs its real code path here: SQLite, the emulators, the CLI, the story an admin follows; it ends
with Procore holding exactly what the ledger recorded, said in words. The demo lives outside the product, which
never imports the emulators."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT_EVERY_PRODUCT_MODULE = """
import importlib, pkgutil, sys
import worker, tasks, schedules
for package in (worker, tasks, schedules):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
print(sorted(m for m in sys.modules if m == "emulators" or m.startswith("emulators.")))
"""


def test_demo_tells_the_admins_story_and_procore_matches_the_ledger(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "STSYNC_SECRET_KEY", "STSYNC_CONFIG", "LOG_FORMAT")}
    env["STSYNC_DEMO_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    assert "--client-secret '***'" in out  # secrets are masked in the echoed commands
    assert "BLOCKS SYNC: the project has no zip" in out and "ready to sync" in out
    assert re.search(r"^Rounding: .*15 minutes", out, re.M), "the rounding rule in words on top of the preview"
    manual = re.findall(r"^\s+posted\s+(.+?) on \d{4}-\d\d-\d\d, [\d.]+ hours, (\d\d-\d{3}) ", out, re.M)
    assert len(manual) == 3 and len({code for _, code in manual}) == 2, "the manual flow posts with two codes"
    nightly = re.findall(r"^nightly run \d+: succeeded, (\d+) entries posted", out, re.M)
    assert len(nightly) == 3 and all(int(n) > 0 for n in nightly), "each project's nightly run posts"
    assert "nothing new to post: Procore already has every entry of this window" in out
    last = re.search(r"^Procore now holds exactly the ([\d,]+) entries stsync recorded: nothing missing, nothing "
                     r"twice\.", out, re.M)
    assert last is not None and int(last.group(1).replace(",", "")) == sum(map(int, nightly)) + len(manual)
    assert out.count("technician       employee id") <= 2, "the technicians table is not printed over and over"
    assert (tmp_path / "stsync-demo.sqlite").exists()


def test_no_product_module_imports_the_emulators() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_PRODUCT_MODULE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_make_console_serves_the_demo_world_to_the_printed_demo_user(tmp_path: Path) -> None:
    import signal
    import socket
    import time

    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "STSYNC_SECRET_KEY", "STSYNC_CONFIG", "LOG_FORMAT")}
    env.update(STSYNC_DEMO_DIR=str(tmp_path), WEB_BIND=f"127.0.0.1:{port}")
    out = tmp_path / "console.out"
    with out.open("w") as sink:
        console = subprocess.Popen([sys.executable, "-m", "demo", "--console"], cwd=ROOT, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not re.search(r"sign in as (\S+) with password (\S+)", out.read_text()):
            assert console.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.5)
        email, password = re.search(r"sign in as (\S+) with password (\S+)", out.read_text()).groups()
        session = requests.Session()
        for _ in range(60):
            try:
                page = session.get(f"http://127.0.0.1:{port}/sign-in", timeout=5).text
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        home = session.post(f"http://127.0.0.1:{port}/sign-in", timeout=30,
                            data={"csrf_token": token, "email": email, "password": password})
        assert home.status_code == 200 and home.url.rstrip("/") == f"http://127.0.0.1:{port}"
        assert "Jay Street Tower Fit-out" in session.get(f"http://127.0.0.1:{port}/projects", timeout=30).text
    finally:
        os.killpg(console.pid, signal.SIGINT)
        console.wait(timeout=30)
