"""Every alert in infra/monitoring/alerts.yml is unit-tested with Prometheus' own promtool (Debian's
`prometheus` package): it fires when it should, stays quiet when it should not, and resolves."""

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import PROJECT

MONITORING = PROJECT / "infra" / "monitoring"


@pytest.mark.system
def test_promtool_passes_the_alert_unit_tests_and_each_alert_has_them():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed: apt-get install prometheus (.ci/run installs it)"
    out = subprocess.run(
        [promtool, "test", "rules", str(MONITORING / "alerts.test.yml")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {r["alert"] for g in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    cases = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
    checks = [(t["alertname"], bool(t["exp_alerts"])) for case in cases for t in case["alert_rule_test"]]
    assert {name for name, firing in checks if firing} == alerts  # each fires in some case
    assert {name for name, firing in checks if not firing} == alerts  # and is checked quiet (before or after)
