"""A rendered Kubernetes pod spec as a Docker container: what `make cluster-rehearsal` starts (test tooling).

Each workload of `build/cluster/cpu-only.yaml` (Deployment, StatefulSet, Job, a CronJob's job template) becomes
`docker run` with exactly its pod spec's command, args, environment (values from the rendered Secrets and
ConfigMaps), mounted Secret and ConfigMap files (with the modes and ownership kubelet gives them: root,
`defaultMode`, group `fsGroup` and group-readable only when the pod sets `fsGroup`), emptyDirs, claims
(Docker volumes, group `fsGroup` as kubelet sets it), user, group, read-only root filesystem, dropped
capabilities, no privilege escalation and resource limits. Pods share one Docker bridge network on which each
Service is a DNS alias of the pods its selector matches (`webapp`, `webapp.cxr`, `webapp.cxr.svc`,
`webapp.cxr.svc.cluster.local`); a StatefulSet's pod is also `NAME-0.SERVICE`. Probes are polled as kubelet
would (HTTP from the host through a published port, `exec` with `docker exec`).

What it does not do as Kubernetes does is listed in `NOT_REHEARSED` and in docs/team-and-cluster.md.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

NETWORK = "cxr-rehearsal"
LABEL = "cxr.rehearsal=1"
NOT_REHEARSED = [
    "Service port remapping (webapp's Service port 80 -> 8080): a DNS alias cannot remap, in-network clients use 8080",
    "NetworkPolicy: every pod reaches every other (the closure test and checkov cover the policies)",
    "CronJob schedules: the drift-check job template is run once, at once",
    "liveness probes and restarts; oauth2-proxy and the Ingress (no image of them here)",
    "MinIO's users and policies (minio-setup's mc): the S3 stand-in accepts any credentials",
]


@dataclass
class Substitute:
    """A third-party image that cannot be pulled here, replaced by the project's build of the same service."""

    image: str
    command: list[str] | None = None  # replaces the pod's command and args (None: keep them)
    probe: dict | None = None  # replaces the pod's readiness probe (None: keep it)
    why: str = ""


@dataclass
class Cluster:
    """The rendered objects, by kind and name."""

    docs: list[dict]
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    configmaps: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def __post_init__(self):
        for doc in self.docs:
            name = doc["metadata"]["name"]
            if doc["kind"] == "Secret":
                data = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
                self.secrets[name] = data | {k: v.encode() for k, v in (doc.get("stringData") or {}).items()}
            elif doc["kind"] == "ConfigMap":
                self.configmaps[name] = {k: v.encode() for k, v in (doc.get("data") or {}).items()}

    def get(self, kind: str, name: str) -> dict:
        for doc in self.docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{kind}/{name} is not in the render")

    def aliases(self, labels: dict) -> list[str]:
        """The DNS names of every Service whose selector matches `labels`."""
        names = []
        for doc in self.docs:
            selector = doc.get("spec", {}).get("selector") if doc["kind"] == "Service" else None
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                name, ns = doc["metadata"]["name"], doc["metadata"].get("namespace", "default")
                names += [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
        return names


def pod_template(workload: dict) -> dict:
    """The pod template of a Deployment, StatefulSet, Job or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def substitute_for(workload: dict, substitutes: dict[str, Substitute]) -> Substitute | None:
    """The stand-in for the workload's image (looked up by the image's name without its tag), if any."""
    (container,) = pod_template(workload)["spec"]["containers"]
    return substitutes.get(container["image"].rsplit(":", 1)[0])


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ...: {out.stderr.strip()[-2000:]}")
    return out


def _quantity(value: str, memory: bool) -> str:
    """A Kubernetes quantity as Docker writes it (4Gi -> 4g, 250m CPU -> 0.25)."""
    value = str(value)
    if memory:
        return value.replace("Gi", "g").replace("Mi", "m").replace("Ki", "k")
    return str(int(value[:-1]) / 1000) if value.endswith("m") else value


def _projected(files: dict[str, bytes], volume: dict, where: Path, fs_group: int | None) -> Path:
    """A Secret or ConfigMap volume's files as kubelet writes them: owner root, mode `defaultMode` (0644), and
    with the pod's fsGroup, group fsGroup and group-readable (kubelet's SetVolumeOwnership)."""
    source = volume.get("secret") or volume.get("configMap")
    items = source.get("items") or [{"key": k, "path": k} for k in files]
    where.mkdir(parents=True, exist_ok=True)
    mode = source.get("defaultMode", 0o644) | (0o440 if fs_group is not None else 0)
    for item in items:
        path = where / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[item["key"]])
        path.chmod(item.get("mode", mode))
        if fs_group is not None:
            os.chown(path, 0, fs_group)
    return where


def _claim(volume_name: str, image: str, path: str, fs_group: int | None) -> str:
    """A claim as a Docker volume (its `--mount`); with the pod's fsGroup, group-owned and group-writable as
    kubelet makes it."""
    docker("volume", "create", "--label", LABEL, volume_name)
    mount = f"type=volume,src={volume_name},dst={path},volume-nocopy"  # a claim starts empty, whatever the image
    if fs_group is not None:
        script = f"chgrp -R {fs_group} {path} && chmod -R g+rwX {path} && chmod g+s {path}"
        docker("run", "--rm", "--user", "0", "--entrypoint", "sh", "--mount", mount, image, "-c", script)
    return mount


def volume_args(cluster: Cluster, pod: str, template: dict, image: str, workdir: Path) -> list[str]:
    spec = template["spec"]
    (container,) = spec["containers"]
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    args = []
    for mount in container.get("volumeMounts", []):
        path, volume = mount["mountPath"], volumes.get(mount["name"], {})
        if "secret" in volume or "configMap" in volume:
            store = cluster.secrets if "secret" in volume else cluster.configmaps
            name = (volume.get("secret") or {}).get("secretName") or volume["configMap"]["name"]
            where = _projected(store[name], volume, workdir / pod / mount["name"], fs_group)
            args += ["-v", f"{where}:{path}:ro"]
        elif "emptyDir" in volume:
            args += ["--tmpfs", f"{path}:rw,exec,mode=777"]
        else:  # a claim: persistentVolumeClaim or a StatefulSet's volumeClaimTemplates
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName") or f"{mount['name']}-{pod}"
            args += ["--mount", _claim(f"cxr-rehearsal-{claim}", image, path, fs_group)]
    return args


def security_args(template: dict) -> list[str]:
    spec = template["spec"]
    (container,) = spec["containers"]
    pod_sc, sc = spec.get("securityContext", {}), container.get("securityContext", {})
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup", user))
    args = ["--user", f"{user}:{group}"] if user is not None else []
    if pod_sc.get("fsGroup") is not None:
        args += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for capability in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    limits = container.get("resources", {}).get("limits", {})
    if "cpu" in limits:
        args += ["--cpus", _quantity(limits["cpu"], memory=False)]
    if "memory" in limits:
        args += ["--memory", _quantity(limits["memory"], memory=True)]
    return args


def env_file(cluster: Cluster, container: dict, path: Path) -> Path:
    """The container's environment, values from the rendered Secrets and ConfigMaps (a file: no value on a
    command line)."""
    lines = []
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "secretKeyRef" in ref:
            value = cluster.secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]].decode()
        elif "configMapKeyRef" in ref:
            value = cluster.configmaps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]].decode()
        else:
            value = str(var.get("value", ""))
        lines.append(f"{var['name']}={value}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    path.chmod(0o600)
    return path


def run_args(cluster: Cluster, workload: dict, pod: str, workdir: Path, substitutes: dict) -> list[str]:
    """`docker run` arguments for one pod of `workload` named `pod`."""
    template = pod_template(workload)
    (container,) = template["spec"]["containers"]
    substitute = substitute_for(workload, substitutes)
    image = substitute.image if substitute else container["image"]
    args = ["--name", f"cxr-rehearsal-{pod}", "--hostname", pod, "--label", LABEL, "--network", NETWORK]
    names = cluster.aliases(template["metadata"].get("labels", {}))
    if workload["kind"] == "StatefulSet":
        names.append(f"{pod}.{workload['spec']['serviceName']}")
    for name in names:
        args += ["--network-alias", name]
    args += security_args(template) + volume_args(cluster, pod, template, image, workdir)
    args += ["--env-file", str(env_file(cluster, container, workdir / pod / "env"))]
    for port in container.get("ports", []):
        args += ["-p", f"127.0.0.1::{port['containerPort']}"]
    command = substitute.command if substitute and substitute.command else container.get("command")
    rest = [] if substitute and substitute.command else container.get("args", [])
    if command:
        return [*args, "--entrypoint", command[0], image, *command[1:], *rest]
    return [*args, image, *rest]


def published(container: str, port: int) -> str:
    """`http://127.0.0.1:P`: where the host reaches `port` of a started container."""
    out = docker("port", container, str(port)).stdout.split()[0]
    return "http://" + out


def probe_passes(container: str, probe: dict) -> bool:
    try:
        if "httpGet" in probe:
            url = published(container, probe["httpGet"]["port"]) + probe["httpGet"].get("path", "/")
            return requests.get(url, timeout=5).status_code < 400
        return docker("exec", container, *probe["exec"]["command"], check=False, timeout=30).returncode == 0
    except (requests.RequestException, RuntimeError, IndexError):
        return False


def wait_ready(container: str, template: dict, substitute: Substitute | None) -> float:
    """Seconds until the container's readiness probe passes, within its startup probe's allowance."""
    (spec,) = template["spec"]["containers"]
    probe = (substitute.probe if substitute and substitute.probe else None) or spec.get("readinessProbe")
    startup = spec.get("startupProbe")  # without one: 300 s
    allowance = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) if startup else 300
    start = time.monotonic()
    while time.monotonic() - start < allowance:
        state = docker("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", container).stdout.split()
        if state[0] != "true":
            logs = docker("logs", "--tail", "40", container, check=False)
            raise RuntimeError(f"{container} exited ({state[1]}) before it was ready: {logs.stdout}{logs.stderr}")
        if probe is None or probe_passes(container, probe):
            return time.monotonic() - start
        time.sleep(1)
    logs = docker("logs", "--tail", "40", container, check=False)
    raise RuntimeError(f"{container} not ready within {allowance} s: {logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def teardown() -> None:
    """Every container, volume and the network a rehearsal made."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    volumes = docker("volume", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    docker("network", "rm", NETWORK, check=False)
