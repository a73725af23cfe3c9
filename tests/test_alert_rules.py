"""The Prometheus alert rules are valid and behave as their unit tests say (a firing and a quiet case for each
alert), checked with promtool. A machine without promtool fails here: `make test` installs it
(scripts/system-deps.sh)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parent.parent / "ops" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts_test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run scripts/system-deps.sh (Debian package `prometheus`)",
                    pytrace=False)
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=RULES_DIR, timeout=120)


def _alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_alert_rules() -> None:
    done = _promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    done = _promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_case_and_words_for_a_person() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in _alerts():
        name = alert["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name} has no firing case"
        assert any(not case["exp_alerts"] for case in mine), f"{name} has no quiet case"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        assert alert["labels"]["severity"] in ("warning", "critical"), name


def test_alerts_about_a_project_name_it() -> None:
    for alert in _alerts():
        if "stsync_project_" in alert["expr"]:
            assert "{{ $labels.project }}" in alert["annotations"]["summary"], alert["alert"]


def test_the_rules_use_only_the_metrics_of_the_contract() -> None:
    contract = set(re.findall(r"^\| `(stsync_\w+)", (RULES_DIR / "README.md").read_text(), re.MULTILINE))
    used = {metric for alert in _alerts() for metric in re.findall(r"stsync_\w+", alert["expr"])}
    assert used <= contract, used - contract
