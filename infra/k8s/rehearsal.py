"""`make cluster-rehearsal`: the cluster install started for real, in Docker, with the project's images.

    python infra/k8s/rehearsal.py [--keep] [--workdir DIR]

Renders the manifests as `make cluster-manifests` does (own values, under DIR), then starts each workload's
pod spec as a container (`rehearsal_pods.py` says how a pod spec is translated) and walks the operator
guide: PostgreSQL, S3, the records database and bucket set-up Jobs, MLflow with sign-in; the MLflow
identities added as the admin; a model registered by the `ci` identity (`cxr pipeline run`, tiny settings)
and promoted by a release manager; the web app with two replicas sharing records on PostgreSQL (a
prediction answered by one replica takes a finding through the other); the drift CronJob's job template
run as a Job on those records; Debian's Prometheus scraping both replicas with the project's scrape
configuration and the metrics token. Ends with one line of JSON saying what it checked; exit 1 when a check
failed. Test tooling, not product: a cluster runs the same manifests with `kubectl apply`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(PROJECT / "infra" / "monitoring")]
from rehearsal_pods import (  # noqa: E402
    NETWORK,
    NOT_REHEARSED,
    Cluster,
    Substitute,
    docker,
    pod_template,
    published,
    run_args,
    substitute_for,
    teardown,
    wait_ready,
)
from static_scrape import static_scrape_config  # noqa: E402

BIN = Path(sys.executable).parent
SAMPLE = PROJECT / "data" / "covid-radiography-sample"
BUCKETS = """
import pathlib, boto3
root = pathlib.Path("/secrets/root")
s3 = boto3.client("s3", endpoint_url="http://minio:9000", region_name="us-east-1",
                  aws_access_key_id=(root / "access-key-id").read_text(),
                  aws_secret_access_key=(root / "secret-access-key").read_text())
have = {b["Name"] for b in s3.list_buckets()["Buckets"]}
for bucket in ("mlflow", "cxr-data"):
    if bucket not in have:
        s3.create_bucket(Bucket=bucket)
print("buckets mlflow and cxr-data ready")
"""
# the pipeline's settings for the rehearsal's model: the rehearsal is of the install, not of the model
TINY = ["train.image_size=64", "train.epochs=1", "lungs.size=32", "lungs.epochs=2"]
TINY += ["gate.min_f1=0.0", "gate.min_val_per_class=1", "evaluate.bootstrap_samples=50", "augment.preview_images=2"]
USER_HEADER = {"X-Auth-Request-User": "rehearsal-radiologist"}  # what oauth2-proxy sets in the cluster


def substitutes(tag: str) -> dict[str, Substitute]:
    moto = f"cxr-moto:{tag}"
    return {
        "postgres": Substitute(f"cxr-postgres:{tag}", why="Debian's PostgreSQL 15 (infra/docker/postgres.Dockerfile)"),
        "minio/minio": Substitute(
            moto,
            ["python3", "/app/moto_server.py"],
            {"httpGet": {"path": "/moto-api/", "port": 9000}},
            "moto's S3 server (infra/docker/moto.Dockerfile) on port 9000, data on the minio-data claim",
        ),
        "minio/mc": Substitute(
            moto, ["python3", "-c", BUCKETS], why="boto3 creates the two buckets with the root credentials"
        ),
    }


class Rehearsal:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        tag = yaml.safe_load((PROJECT / "params.yaml").read_text())["cluster"]["image_tag"]
        self.substitutes = substitutes(tag)
        self.cluster = self.render()
        self.report: dict = {"pods_ready": {}, "jobs": {}}
        self.mlflow = ""  # where this machine reaches the MLflow pod, once it is started (services)

    def render(self) -> Cluster:
        out = self.workdir / "cluster"
        values = self.workdir / "values.env"  # the placeholders an operator fills: any value does here
        values.write_text("CXR_HOST=cxr.rehearsal.test\nOIDC_ISSUER_URL=https://login.rehearsal.test\n"
                          "OIDC_CLIENT_SECRET=rehearsal\n")  # fmt: skip
        subprocess.run([sys.executable, str(HERE / "cluster_manifests.py"), "--values", str(values), "--out",
                        str(out)], check=True, capture_output=True, text=True, timeout=300)  # fmt: skip
        # the CPU-only cluster's set: the rehearsal has no GPU (the two sets differ only in the pipeline's quota)
        return Cluster([d for d in yaml.safe_load_all((out / "cpu-only.yaml").read_text()) if d])

    def secret(self, name: str, key: str) -> str:
        return self.cluster.secrets[name][key].decode()

    def start(self, kind: str, name: str) -> list[str]:
        """Every replica of a Deployment or StatefulSet, started and ready; their container names."""
        workload = self.cluster.get(kind, name)
        pods = [f"{name}-{i}" for i in range(workload["spec"].get("replicas", 1))]
        substitute = substitute_for(workload, self.substitutes)
        for pod in pods:
            docker("run", "-d", *run_args(self.cluster, workload, pod, self.workdir / "pods", self.substitutes))
        for pod in pods:
            took = wait_ready(f"cxr-rehearsal-{pod}", pod_template(workload), substitute)
            self.report["pods_ready"][pod] = round(took, 1)
        return [f"cxr-rehearsal-{pod}" for pod in pods]

    def run_job(self, kind: str, name: str) -> int:
        """A Job (or a CronJob's job template) run to its end, retried as its backoffLimit allows."""
        workload = self.cluster.get(kind, name)
        spec = workload["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else workload["spec"]
        container, code = f"cxr-rehearsal-{name}", -1
        for attempt in range(spec.get("backoffLimit", 6) + 1):
            docker("rm", "-f", container, check=False)
            docker("run", "-d", *run_args(self.cluster, workload, name, self.workdir / "pods", self.substitutes))
            code = int(docker("wait", container, timeout=1200).stdout.strip())
            self.report["jobs"][name] = {"exit": code, "attempts": attempt + 1}
            if code == 0:
                break
            logs = docker("logs", "--tail", "15", container, check=False)
            print(f"job {name} exited {code}:\n{logs.stdout}{logs.stderr}", file=sys.stderr)
            time.sleep(3)
        return code

    def cxr(self, identity: tuple[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """The `cxr` command on this machine against the MLflow pod (the operator's port-forward)."""
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.mlflow, "MLFLOW_TRACKING_USERNAME": identity[0]}
        env["MLFLOW_TRACKING_PASSWORD"] = identity[1]
        out = subprocess.run([str(BIN / "cxr"), *args], cwd=self.workdir, env=env, input=stdin, text=True,
                             capture_output=True, timeout=1200)  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"cxr {' '.join(args[:3])}: exit {out.returncode}: {out.stderr[-3000:]}")
        return out

    def services(self) -> None:
        """The stateful services and the set-up Jobs, then MLflow, as the operator guide's `kubectl apply`."""
        docker("network", "create", "--label", "cxr.rehearsal=1", NETWORK)
        self.start("StatefulSet", "postgres")
        self.start("Deployment", "minio")
        assert self.run_job("Job", "records-db-setup") == 0, "records-db-setup failed"
        assert self.run_job("Job", "minio-setup") == 0, "minio-setup failed"
        (mlflow,) = self.start("Deployment", "mlflow")
        self.mlflow = published(mlflow, 5000)

    def release_a_model(self) -> str:
        """The identities added as the admin, a model registered by `ci`, promoted by a release manager."""
        admin = ("admin", self.secret("cxr-mlflow-auth", "admin-password"))
        users = {
            "reader": (self.secret("cxr-mlflow-webapp", "username"), self.secret("cxr-mlflow-webapp", "password")),
            "ci": (self.secret("cxr-mlflow-ci", "username"), self.secret("cxr-mlflow-ci", "password")),
            "release-manager": ("rehearsal-rm", os.urandom(12).hex()),
        }
        for role, (user, password) in users.items():
            self.cxr(admin, "team", "add-user", user, "--role", role, "--password-stdin", stdin=password + "\n")
        data = self.workdir / "data"
        for label in ("COVID", "Normal"):
            (data / label).mkdir(parents=True, exist_ok=True)
            for path in sorted((SAMPLE / label).glob("*.png"))[:60]:
                shutil.copy(path, data / label / path.name)
        shutil.copy(PROJECT / "params.yaml", self.workdir / "params.yaml")
        overrides = [arg for value in TINY for arg in ("--set", value)]
        run = json.loads(self.cxr(users["ci"], "pipeline", "run", "--json", "--data", str(data), *overrides).stdout)
        version = str(run["registered"]["version"])
        self.cxr(users["release-manager"], "registry", "promote", version, "--reason", "cluster rehearsal")
        self.report["registered_by_ci_and_promoted"] = version
        return version

    def serve(self, version: str) -> list[str]:
        """Both web app replicas ready on the champion; predictions spread over them; a finding for one
        replica's answer recorded through the other."""
        replicas = [published(c, 8080) for c in self.start("Deployment", "webapp")]
        films = [p for label in ("COVID", "Normal") for p in sorted((SAMPLE / label).glob("*.png"))[150:170]]
        answers = []
        for i, film in enumerate(films):  # a refusal (422: the input gate) is an answer too, and is recorded
            files = {"file": (film.name, film.read_bytes())}
            answer = requests.post(f"{replicas[i % 2]}/api/predict", files=files, headers=USER_HEADER, timeout=120)
            assert answer.status_code in (200, 422), f"replica {i % 2}: {answer.status_code} {answer.text[:500]}"
            assert answer.json()["model_version"] == version, answer.json()
            answers.append(answer.json())
        self.report["refused"] = sum("error" in a for a in answers)
        first = next(a for i, a in enumerate(answers) if i % 2 == 0 and "error" not in a)  # replica 0's
        finding = {"prediction_id": first["prediction_id"], "finding": "covid"}
        across = requests.post(f"{replicas[1]}/api/feedback", json=finding, headers=USER_HEADER, timeout=30)
        unknown = requests.post(f"{replicas[1]}/api/feedback", json={**finding, "prediction_id": "no-such-id"},
                                headers=USER_HEADER, timeout=30)  # fmt: skip
        self.report["predictions"] = len(answers)
        self.report["finding_across_replicas"] = across.status_code
        self.report["unknown_finding"] = unknown.status_code
        return replicas

    def scrape(self, replicas: list[str]) -> dict:
        """Debian's Prometheus with the project's scrape configuration, the pod discovery replaced by the two
        replicas (labelled as the discovery labels them), until both are up and the predictions counted."""
        binary = shutil.which("prometheus")
        if not binary:
            raise RuntimeError("Debian's prometheus is needed: apt-get install prometheus (.ci/run does)")
        where = self.workdir / "prometheus"
        where.mkdir(exist_ok=True)
        targets = [url.removeprefix("http://") for url in replicas]
        static_scrape_config(targets, self.secret("cxr-metrics", "token"), where, interval="2s")
        return _poll_prometheus(binary, where)

    def rehearse(self) -> dict:
        start = time.monotonic()
        self.services()
        version = self.release_a_model()
        replicas = self.serve(version)
        self.report["memory"] = _memory()  # each pod's use against its limit, after the predictions
        self.report["drift_job_exit"] = self.run_job("CronJob", "drift-check")
        self.report["prometheus"] = self.scrape(replicas)
        self.report["substituted"] = {k: f"{v.image}: {v.why}" for k, v in self.substitutes.items()}
        self.report["not_rehearsed"] = NOT_REHEARSED
        self.report["seconds"] = round(time.monotonic() - start)
        return self.report


def _poll_prometheus(binary: str, where: Path) -> dict:
    port = _free_port()
    args = [binary, f"--config.file={where / 'prometheus.yml'}", f"--storage.tsdb.path={where / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(where / "prometheus.log").open("w"))
    api, found = f"http://127.0.0.1:{port}/api/v1", {"targets_up": 0, "predictions_counted": 0}
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                targets = requests.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
                query = {"query": 'sum(cxr_predictions_total{job="cxr-webapp"})'}
                result = requests.get(f"{api}/query", params=query, timeout=5).json()["data"]["result"]
                found["targets_up"] = sum(t["health"] == "up" for t in targets)
                found["predictions_counted"] = int(float(result[0]["value"][1])) if result else 0
                if found["targets_up"] == len(targets) == 2 and found["predictions_counted"]:
                    break
            except (requests.RequestException, KeyError, ValueError):
                pass
            time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return found


def _memory() -> dict[str, str]:
    running = docker("ps", "-q", "--filter", "label=cxr.rehearsal=1").stdout.split()
    out = docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *running)
    lines = [line.split(maxsplit=1) for line in out.stdout.splitlines()]
    return {name.removeprefix("cxr-rehearsal-"): use for name, use in lines}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def passed(report: dict) -> bool:
    return (
        report.get("finding_across_replicas") == 200
        and report.get("unknown_finding") == 404
        and report.get("drift_job_exit") == 0
        and report.get("prometheus", {}).get("targets_up") == 2
        and report.get("prometheus", {}).get("predictions_counted") == report.get("predictions")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where the render and pod files go")
    parser.add_argument("--keep", action="store_true", help="leave the containers running (docker ps)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cxr-rehearsal-"))
    workdir.mkdir(parents=True, exist_ok=True)
    teardown()  # what an interrupted rehearsal left
    report: dict = {}
    try:
        rehearsal = Rehearsal(workdir)
        report = rehearsal.report
        rehearsal.rehearse()
    except (AssertionError, RuntimeError, subprocess.SubprocessError, requests.RequestException) as exc:
        report["failed"] = str(exc)[-3000:]
    finally:
        if not args.keep:
            teardown()
    report["passed"] = passed(report) and "failed" not in report
    print(json.dumps(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
