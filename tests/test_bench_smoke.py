"""The benchmark harness (`python -m bench`, issue #7) end to end on the tiniest worlds, so that it can't rot.

It checks the harness's own contract: every scenario and contender is measured with the fields of results.json,
the baselines post the entries stsync posts, the re-run runs on the first run's state. The performance targets
are only reported by the benchmark, never asserted here. The 25 ms payroll is left out to keep it short: it is
the 0 ms code path with the emulator's latency set, and so is the 150 ms one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["payroll_0ms", "rerun", "incremental_history", "incremental_month", "incremental_empty", "rate_limited"]
FIELDS = {"wall_s", "entries", "procore_calls", "procore_write_calls", "servicetrade_calls", "peak_rss_mb"}


def test_bench_runs_every_scenario_end_to_end_in_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--quiet", "--only", ",".join([*SCENARIOS, "memory", "console"]),
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        # The test suite's Redis database, not the benchmark's: a `make bench` may be running beside the tests.
        env={**os.environ, "BENCH_REDIS_URL": os.environ["REDIS_URL"]},
    )
    assert proc.returncode == 0, f"python -m bench --tiny failed:\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}"
    assert "scenario" in proc.stdout and "peak RSS" in proc.stdout, "no table on screen"
    results = json.loads(out.read_text())

    assert results["machine"]["cores"] and results["machine"]["date"]
    assert sorted(results["scenarios"]) == sorted(SCENARIOS)
    payroll = results["scenarios"]["payroll_0ms"]
    assert sorted(payroll) == ["bare_bulk", "naive", "stsync"]
    for scenario in results["scenarios"].values():
        for contender in scenario.values():
            assert set(contender) >= FIELDS, f"missing {FIELDS - set(contender)}"
            assert contender["wall_s"] > 0 and contender["peak_rss_mb"] > 0
            assert contender["procore_calls"] >= contender["procore_write_calls"]

    stsync, naive, bare = payroll["stsync"], payroll["naive"], payroll["bare_bulk"]
    assert stsync["entries"] > 30
    assert bare["entries"] == stsync["entries"], "the bare-bulk baseline must post what stsync posts"
    # --tiny runs the naive baseline on a subset (as the full run does at 25 ms): one POST per entry.
    assert naive["entries"] == naive["subset_of_entries"] == 30
    assert naive["procore_write_calls"] == naive["entries"]
    assert bare["procore_write_calls"] < bare["entries"]
    rerun = results["scenarios"]["rerun"]
    assert rerun["stsync"]["unchanged"] == stsync["entries"], "the re-run must start from the first run's ledger"
    assert rerun["bare_read"]["procore_write_calls"] == 0 and rerun["bare_read"]["entries"] == 0
    assert rerun["bare_read"]["procore_entries_read"] == stsync["entries"], \
        "bare_read reads back what stsync posted, on the same emulator state"
    assert rerun["bare_read"]["clock_events_read"] > stsync["entries"]
    assert results["scenarios"]["incremental_history"]["stsync"]["entries"] > 0
    assert results["scenarios"]["incremental_empty"]["stsync"]["entries"] > 0
    assert results["scenarios"]["incremental_month"]["stsync"]["entries"] > 0
    for pacing in ("stsync", "stsync_spread"):  # each window spent at once (the default), and spread
        limited = results["scenarios"]["rate_limited"][pacing]
        assert limited["workers"] == 2 and limited["entries_per_hour"] > 0
        assert limited["entries"] == results["scenarios"]["rate_limited"]["stsync"]["entries"]

    page = results["console"]  # bench/console.py, hooked in as the `console` scenario
    assert page["events"] > 0 and page["rows"] > 0 and page["median_ms"] > 0

    assert results["memory_series"] and all(p["intervals"] > 0 and p["peak_rss_mb"] > 0
                                            for p in results["memory_series"])
    assert {t["target"] for t in results["targets"]} and all(
        {"target", "measured", "goal", "met"} <= set(t) for t in results["targets"])
