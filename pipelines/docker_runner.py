"""kfp's local DockerRunner, set up for this project: the component images, host networking with the
service names mapped to loopback, the data folder and a local MLflow store mounted at their own paths,
and a container launch that reports a step's real exit code.

kfp 2.17 starts every container with auto_remove=True and, when the container is gone before its exit
code is read, counts the step as succeeded (kubeflow/pipelines#13332). `reliable_containers` swaps in a
launch that keeps the container until its exit code is read, then removes it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import docker
from kfp import local
from kfp.local import docker_task_handler

from cxr.errors import CxrError

SERVICE_NAMES = ("mlflow", "s3", "postgres", "webapp")


def require_images(images: list[str]) -> dict[str, str]:
    """One sentence, before anything runs, when an image is missing (DockerRunner would try to pull it).
    Returns what names each image's exact content, recorded on the MLflow run: its registry digest when it
    was pushed or pulled by one, else the local image id (`image (id sha256:…)`)."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise CxrError(
            f"No Docker engine answers ({exc.__class__.__name__}); start dockerd, or run without --runner docker."
        ) from exc
    identities = {}
    try:
        for image in images:
            try:
                found = client.images.get(image)
            except docker.errors.ImageNotFound:
                raise CxrError(f"Image {image} is not built here; run `make images` first.") from None
            repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
            by_digest = [d for d in found.attrs.get("RepoDigests") or [] if d.startswith(f"{repo}@")]
            identities[image] = by_digest[0] if by_digest else f"{image} (id {found.id})"
    finally:
        client.close()
    return identities


STEP_USER = "CXR_STEP_USER"  # uid:gid the step containers run as (default: this process's)


def step_user() -> str:
    return os.environ.get(STEP_USER) or f"{os.getuid()}:{os.getgid()}"


def runner(gpu: bool = False):
    """A DockerRunner: host network, service names -> 127.0.0.1, this user's uid:gid (files the steps write
    under the pipeline root and in a local store stay yours), or $CXR_STEP_USER's: `10001:10001` runs them
    as the cluster does, a uid with no passwd entry and no USER variable (the pipeline root must be writable
    by it). The MLflow identity (MLFLOW_TRACKING_USERNAME/PASSWORD, from VAR_FILE files too) reaches each
    step through the container's environment, never its command line."""
    args = {
        "network_mode": "host",
        "extra_hosts": {name: "127.0.0.1" for name in SERVICE_NAMES},
        "user": step_user(),
        "environment": {
            "HOME": "/tmp",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "GIT_PYTHON_REFRESH": "quiet",
            **{k: v for k, v in os.environ.items() if k.startswith(("MLFLOW_TRACKING_", "MLFLOW_HTTP_REQUEST_"))},
        },
    }
    if gpu:
        import docker

        args["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return local.DockerRunner(**args)


def _run_container(client, image: str, command: list[str], volumes: dict, mounts: dict, **run_args) -> int:
    """Start the step's container, stream its output, return its real exit code, then remove it."""
    container = client.containers.run(
        image=image, command=command, detach=True, stdout=True, stderr=True, volumes={**mounts, **volumes}, **run_args
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        code = int(container.wait()["StatusCode"])
        print(f"container {container.short_id} ({image}) exited with code {code}")
        return code
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


@contextlib.contextmanager
def reliable_containers(mounts: dict[Path, str]):
    """While active, kfp's DockerRunner launches steps with `_run_container`, `mounts` (the data folder, a
    local MLflow store) bound at their own paths ({path: "ro"|"rw"}) beside the pipeline root kfp mounts itself."""
    binds = {str(p): {"bind": str(p), "mode": mode} for p, mode in mounts.items()}
    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = functools.partial(_run_container, mounts=binds)
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original
