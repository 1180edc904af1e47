"""TensorFlow's import prints nothing through cxr, and the filter keeps every line that is not its known noise."""

import subprocess
import sys

from tests.conftest import PROJECT

ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    "I0000 00:00:1796262018.289818   17656 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders."
)


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True)


def test_importing_tensorflow_through_cxr_prints_nothing():
    bare = run_python("import tensorflow")
    assert ABSL in bare.stderr, "TensorFlow no longer prints its start-up line: cxr/startup.py can go"
    through_cxr = run_python("import cxr, keras, tensorflow as tf; print(tf.constant(2.0).numpy())")
    assert through_cxr.returncode == 0, through_cxr.stderr
    assert through_cxr.stderr == ""
    assert through_cxr.stdout == "2.0\n"


def test_the_filter_drops_only_the_known_lines_and_keeps_everything_on_failure():
    code = f"""
import os, sys
from cxr.startup import filtered_stderr
with filtered_stderr():
    os.write(2, b"{ABSL}\\n{ONEDNN}\\nreal: a library could not load\\n")
    print("python warning", file=sys.stderr)
try:
    with filtered_stderr():
        os.write(2, b"{ABSL}\\n")
        raise ImportError("boom")
except ImportError:
    pass
print("after", file=sys.stderr)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"real: a library could not load\npython warning\n{ABSL}\nafter\n"
