"""`make cluster-rehearsal`: the rendered cluster manifests started in Docker with the project's images
(infra/k8s/rehearsal.py), its last line the JSON verdict."""

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT

pytestmark = pytest.mark.container


def test_the_rendered_manifests_start_serve_two_replicas_share_records_and_are_scraped(images, tmp_path):
    out = subprocess.run(
        [sys.executable, str(PROJECT / "infra" / "k8s" / "rehearsal.py"), "--workdir", str(tmp_path)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and report["passed"], json.dumps(report, indent=1) + out.stderr[-3000:]
    # every workload of the render started from its own pod spec: the services, both replicas, the Jobs
    assert {"postgres-0", "minio-0", "mlflow-0", "webapp-0", "webapp-1"} <= set(report["pods_ready"])
    assert {name: job["exit"] for name, job in report["jobs"].items()} == {
        "records-db-setup": 0,
        "minio-setup": 0,
        "drift-check": 0,
    }
    # a finding for replica 0's answer recorded through replica 1 (shared PostgreSQL); an unknown id is 404
    assert report["finding_across_replicas"] == 200 and report["unknown_finding"] == 404
    assert report["prometheus"] == {"targets_up": 2, "predictions_counted": report["predictions"]}
    assert "postgres" in report["substituted"] and report["not_rehearsed"]
    leftover = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=cxr.rehearsal=1"], capture_output=True, text=True
    )
    assert leftover.stdout.strip() == ""  # torn down
