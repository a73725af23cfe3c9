"""`make demo` runs its real code path here: SQLite, the emulators, the CLI; its report must match Procore."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_its_report_matches_procore(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "STSYNC_SECRET_KEY")}
    env["STSYNC_DEMO_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "worker.demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "duplicates: 0, missing: 0 -> MATCH" in out
    assert "nothing new to post: Procore already has every entry of this window" in out
    assert "no_employee_id" in out and "invalid_employee_id" in out
    assert "--client-secret '***'" in out  # secrets are masked in the echoed commands
    assert (tmp_path / "stsync-demo.sqlite").exists()
