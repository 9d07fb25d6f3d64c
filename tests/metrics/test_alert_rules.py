"""conf/alerts.example.yml: valid Prometheus rules that fire on the runner's series (promtool check
rules and promtool test rules, with scripts/test installing promtool), and whose expressions name
only metrics the runner exports (checked by parsing, also where promtool is missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from runner.metrics.registry import NAMES

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "conf" / "alerts.example.yml"
PROMTOOL = shutil.which("promtool")
SUFFIXES = ("_bucket", "_count", "_sum")


def exported(name: str) -> bool:
    return name in NAMES or any(name.endswith(s) and name[: -len(s)] in NAMES for s in SUFFIXES)


def test_every_rule_names_only_metrics_the_runner_exports() -> None:
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"RunnerNoSuccessIn26h", "RunnerJobFailed", "RunnerSlotsMissed",
                                           "RunnerPoolExhausted"}
    for rule in rules:
        names = set(re.findall(r"\brunner_[a-z_]+", rule["expr"]))
        assert names, rule["alert"]
        assert all(exported(n) for n in names), (rule["alert"], names)
        labels = set(re.findall(r"\$labels\.(\w+)", str(rule.get("annotations", {}))))
        assert labels <= {"job", "status", "trigger", "database", "target", "task"}, rule["alert"]
    assert not exported("runner_runs_totl")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/test installs it with apt)")
def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=Path(__file__).parent,
                          capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, unit.stdout + unit.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/test installs it with apt)")
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("> 26 * 3600", "> 26 * * 3600"))
    check = subprocess.run([PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True, timeout=60)
    assert check.returncode != 0
