"""Tests of the deployed shape: the images `make images` builds, run by a real Docker engine.

They fail (never skip) without Docker or the images: .ci/run installs docker.io, starts dockerd and
runs `make images` before the tests.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxr.params import load_params
from tests.conftest import PROJECT

CXR = str(Path(sys.executable).parent / "cxr")
FAST = ["--set", "train.image_size=32", "--set", "train.epochs=1", "--set", "evaluate.bootstrap_samples=50"]
FAST += ["--set", "lungs.size=32", "--set", "lungs.epochs=2"]  # a two-epoch lung segmenter: the test is of the loop


def image_names() -> dict[str, str]:
    cluster = load_params().cluster
    registry = cluster.image_registry.rstrip("/")
    return {name: f"{registry}/cxr-{name}:{cluster.image_tag}" for name in ("python-components", "webapp", "mlflow")}


def cxr(*args, env=None, check=True, timeout=1200):
    out = subprocess.run(
        [CXR, *args], cwd=PROJECT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out


@pytest.fixture(scope="session")
def images():
    """The built images (fails with the fix when Docker or an image is missing)."""
    names = image_names()
    for image in names.values():
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
        assert found.returncode == 0, f"{image} is not built (or dockerd is not running): run `make images`"
    return names
