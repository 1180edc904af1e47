"""Images by digest through a real registry on loopback (Debian's docker-registry): the push records the
registry's digest, the registry serves that exact manifest, a pull by digest gets the image, and it runs
as a cluster runs it: uid 10001 given on the command line, no passwd entry, no USER variable."""

import json
import os
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from cxr.params import load_params
from tests.conftest import PROJECT
from tests.integration.conftest import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow]
MANIFESTS = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    binary = shutil.which("docker-registry")
    assert binary, "Debian's docker-registry is needed: apt-get install docker-registry (.ci/run does)"
    tmp = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    serve = [binary, "serve", str(tmp / "config.yml")]
    proc = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(60):
        try:
            if requests.get(f"{base}/v2/", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def docker(*args, check=True, timeout=900):
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert not check or out.returncode == 0, out.stderr[-2000:]
    return out


def test_a_pushed_image_is_named_by_its_digest_and_runs_pulled_by_it_as_uid_10001(images, registry, tmp_path):
    ref = f"{registry}/cxr/cxr-webapp:test"
    docker("tag", images["webapp"], ref)
    digests = tmp_path / "image-digests.json"
    env = {**os.environ, "CXR_IMAGE_DIGESTS": str(digests)}
    push = subprocess.run(
        ["bash", "infra/docker/build-images.sh", "push", ref], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert push.returncode == 0, push.stderr[-2000:]
    pinned = json.loads(digests.read_text())[ref]
    assert pinned.startswith(f"{registry}/cxr/cxr-webapp@sha256:") and f"pushed {pinned}" in push.stdout
    digest = pinned.split("@")[1]
    manifest = requests.get(f"http://{registry}/v2/cxr/cxr-webapp/manifests/{digest}", headers={"Accept": MANIFESTS})
    assert manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == digest

    docker("rmi", ref)  # only the digest names it now
    docker("pull", pinned)
    probe = 'id -u; getent passwd "$(id -u)" || echo "no passwd entry"; echo "USER=${USER:-unset}"; '
    probe += "cxr --help | grep -m1 Usage"
    out = docker("run", "--rm", "--network", "none", "--user", "10001:10001", pinned, "bash", "-c", probe).stdout
    assert out.splitlines()[:3] == ["10001", "no passwd entry", "USER=unset"], out
    assert "Usage: cxr" in out
    docker("rmi", pinned, check=False)


def test_the_default_push_pins_the_gpu_training_image_with_the_rest(images, registry, tmp_path):
    """`make images-push` (build-images.sh push, no references): with cluster.accelerator set, the GPU
    training image the compiled pipeline names is pushed and pinned too. The GPU image itself (CUDA, several
    GB) is not built here: the components image stands in under its name, so that the push has one to send."""
    tag = load_params().cluster.image_tag
    sources = {**images, "python-train-gpu": images["python-components"]}
    for name, image in sources.items():
        docker("tag", image, f"{registry}/cxr-{name}:{tag}")
    digests = tmp_path / "image-digests.json"
    env = {**os.environ, "CXR_IMAGE_DIGESTS": str(digests), "CXR_IMAGE_REGISTRY": registry}
    push = subprocess.run(
        ["bash", "infra/docker/build-images.sh", "push"], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert push.returncode == 0, push.stderr[-2000:]
    pinned = json.loads(digests.read_text())
    assert set(pinned) == {f"{registry}/cxr-{name}:{tag}" for name in sources}
    assert pinned[f"{registry}/cxr-python-train-gpu:{tag}"].startswith(f"{registry}/cxr-python-train-gpu@sha256:")
    for name in sources:
        docker("rmi", f"{registry}/cxr-{name}:{tag}", check=False)
