"""Expected failures read as one sentence, at once: no third-party traceback, no minutes of retries."""

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import PROJECT

CXR = str(Path(sys.executable).parent / "cxr")


def test_an_unreachable_tracking_server_is_one_sentence_without_retrying_for_minutes():
    started = time.monotonic()
    out = subprocess.run(
        [CXR, "pipeline", "run", "--tracking-uri", "http://127.0.0.1:9", "--json"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 60  # MLflow's own retries take about four minutes
    assert out.returncode == 2 and "Traceback" not in out.stderr and "WARNING" not in out.stderr
    assert "The MLflow tracking server at http://127.0.0.1:9 cannot be reached" in out.stderr
    assert '"exit_code": 2' in out.stdout


def test_a_site_check_needs_the_records_store_where_its_verdict_is_kept():
    out = subprocess.run(
        [CXR, "monitor", "drift", "--server", "http://127.0.0.1:9", "--site", "Ward 5"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--site and --each-site test the records store, where the verdicts are kept: add --records." in out.stderr
