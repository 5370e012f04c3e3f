"""promtool on the committed Prometheus config, rules and rule unit tests."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from deploy_paths import PROMETHEUS_DIR, RULE_FILES, require_binary


def promtool(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_rule_files_exist():
    assert {path.name for path in RULE_FILES} == {"recording.yml", "alerts.yml"}


def test_promtool_check_config():
    # Also loads and checks every rule file the config names (rules/*.yml).
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda path: path.name)
def test_promtool_check_rules(rule_file):
    promtool("check", "rules", str(rule_file))


def test_promtool_rule_unit_tests():
    """Each alert fires on a synthetic failure and stays quiet on a healthy neighbour."""
    promtool("test", "rules", str(PROMETHEUS_DIR / "tests" / "alerts_test.yml"))


def test_every_alert_has_a_unit_test():
    alerts = {rule["alert"] for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((PROMETHEUS_DIR / "tests" / "alerts_test.yml").read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert alerts == firing


def test_rule_names_follow_level_metric_operation():
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    level, metric, operation = rule["record"].split(":")
                    assert level == "specgate" and metric and operation, rule["record"]
                else:
                    assert rule["alert"].startswith("Specgate"), rule["alert"]
                    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
                    assert {"summary", "description"} <= set(rule["annotations"])
