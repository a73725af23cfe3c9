"""`make demo` runs its real code path here: SQLite, the emulators, the CLI; its report must match Procore. The
demo lives outside the product, which never imports the emulators."""

from __future__ import annotations

import os
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


def test_demo_runs_and_its_report_matches_procore(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "STSYNC_SECRET_KEY")}
    env["STSYNC_DEMO_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "duplicates: 0, missing: 0 -> MATCH" in out
    assert "nothing new to post: Procore already has every entry of this window" in out
    assert "no_employee_id" in out and "invalid_employee_id" in out
    assert "--client-secret '***'" in out  # secrets are masked in the echoed commands
    assert (tmp_path / "stsync-demo.sqlite").exists()


def test_no_product_module_imports_the_emulators() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_PRODUCT_MODULE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
