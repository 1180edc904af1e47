"""`make cluster-manifests`: the complete set of manifests for a cluster, Secrets included, one per kind of cluster.

    python infra/k8s/cluster_manifests.py [--values FILE] [--out DIR]

Reads the operator's values (`infra/k8s/secrets.env`, from `secrets.env.example`; never committed), gives
every value left empty a random one, keeps all of them in `DIR/secrets.env` (mode 0600, reused by the next
render so passwords stay stable), derives the database URLs, and writes kustomize overlays over `infra/k8s`:
`services` (namespace `cxr`, whose `secretGenerator` makes every Secret the manifests mount) and, for each
overlay of `infra/k8s/overlays` (`gpu`, `cpu-only`), the pipeline's namespace (PIPELINE_NAMESPACE: the
Secrets its tasks read and the overlay's GPU quota). `DIR/gpu.yaml` and `DIR/cpu-only.yaml` are the renders:
they hold the Secrets, so they stay in `build/` (ignored by git) and are applied, not shared.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]

# operator value -> default ("" : random); each is a line of secrets.env.example
DEFAULTS = {
    "POSTGRES_USER": "cxr",
    "POSTGRES_PASSWORD": "",
    "S3_ROOT_USER": "cxr-admin",
    "S3_ROOT_PASSWORD": "",
    "S3_MLFLOW_USER": "mlflow",
    "S3_MLFLOW_PASSWORD": "",
    "S3_DVC_USER": "dvc",
    "S3_DVC_PASSWORD": "",
    "MLFLOW_ADMIN_PASSWORD": "",
    "MLFLOW_WEBHOOK_ENCRYPTION_KEY": "",
    "WEBHOOK_SECRET": "",
    "RECORDS_USER": "cxr_records",
    "RECORDS_PASSWORD": "",
    "METRICS_TOKEN": "",
    "MLFLOW_WEBAPP_USER": "webapp",
    "MLFLOW_WEBAPP_PASSWORD": "",
    "MLFLOW_CI_USER": "ci",
    "MLFLOW_CI_PASSWORD": "",
    # the web app's Ingress and its sign-in proxy (infra/k8s/ingress.yaml): the host and the hospital's OpenID
    # Connect provider, the client registered there; TLS certificate and key files (PEM; empty: self-signed)
    "CXR_HOST": "cxr.example.org",
    "OIDC_ISSUER_URL": "https://login.example.org",
    "OIDC_CLIENT_ID": "cxr",
    "OIDC_CLIENT_SECRET": "",
    "OAUTH2_COOKIE_SECRET": "",
    "TLS_CERT_FILE": "-",
    "TLS_KEY_FILE": "-",
    # the Kubeflow profile's namespace the pipeline runs in, and how many GPUs its pods may hold at once (gpu)
    "PIPELINE_NAMESPACE": "kubeflow-user",
    "PIPELINE_GPUS": "1",
}
OVERLAYS = ("gpu", "cpu-only")  # infra/k8s/overlays: what differs between the two kinds of cluster
PIPELINE_SECRETS = ("cxr-mlflow-ci", "cxr-s3-dvc")  # params.yaml cluster.mlflow_secret, cluster.dvc_secret
PLACEHOLDERS = ("CXR_HOST", "OIDC_ISSUER_URL", "OIDC_CLIENT_SECRET")  # only the operator can know these


def random_value(name: str) -> str:
    if name in ("MLFLOW_WEBHOOK_ENCRYPTION_KEY", "OAUTH2_COOKIE_SECRET"):  # a Fernet key; 32 bytes for oauth2-proxy
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_urlsafe(24)


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines ('#' comments, blank lines); an unknown key stops the render with its name."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key.strip() not in DEFAULTS:
            raise SystemExit(
                f"{path}:{number}: '{key.strip()}' is not one of the values {path.name} takes; "
                f"see {HERE / 'secrets.env.example'}."
            )
        values[key.strip()] = value.strip()
    return values


def settle_values(given: dict[str, str], kept: dict[str, str]) -> dict[str, str]:
    """The operator's value, else the one kept from the last render, else the default, else a random one."""
    return {
        name: given.get(name) or kept.get(name) or default or random_value(name) for name, default in DEFAULTS.items()
    }


def postgres_url(user: str, password: str, database: str) -> str:
    return f"postgresql+psycopg2://{quote(user, safe='')}:{quote(password, safe='')}@postgres:5432/{database}"


def secret_files(v: dict[str, str]) -> dict[str, dict[str, str]]:
    """Secret name -> key -> value: every Secret infra/k8s mounts."""
    mlflow_db = postgres_url(v["POSTGRES_USER"], v["POSTGRES_PASSWORD"], "mlflow")
    return {
        # the MLflow sign-in tables live in the tracking database (their own alembic table, alembic_version_auth)
        "cxr-postgres": {
            "username": v["POSTGRES_USER"],
            "password": v["POSTGRES_PASSWORD"],
            "mlflow-uri": mlflow_db,
            "auth-uri": mlflow_db,
        },
        "cxr-s3": {"access-key-id": v["S3_ROOT_USER"], "secret-access-key": v["S3_ROOT_PASSWORD"]},
        "cxr-s3-mlflow": {"access-key-id": v["S3_MLFLOW_USER"], "secret-access-key": v["S3_MLFLOW_PASSWORD"]},
        "cxr-s3-dvc": {"access-key-id": v["S3_DVC_USER"], "secret-access-key": v["S3_DVC_PASSWORD"]},
        "cxr-mlflow-auth": {
            "admin-password": v["MLFLOW_ADMIN_PASSWORD"],
            "webhook-encryption-key": v["MLFLOW_WEBHOOK_ENCRYPTION_KEY"],
        },
        "cxr-webhook": {"secret": v["WEBHOOK_SECRET"]},
        "cxr-records": {
            "username": v["RECORDS_USER"],
            "password": v["RECORDS_PASSWORD"],
            "url": postgres_url(v["RECORDS_USER"], v["RECORDS_PASSWORD"], "cxr_records"),
        },
        "cxr-metrics": {"token": v["METRICS_TOKEN"]},
        "cxr-mlflow-webapp": {"username": v["MLFLOW_WEBAPP_USER"], "password": v["MLFLOW_WEBAPP_PASSWORD"]},
        "cxr-mlflow-ci": {"username": v["MLFLOW_CI_USER"], "password": v["MLFLOW_CI_PASSWORD"]},
        "cxr-oauth2-proxy": {"oauth2-proxy.cfg": oauth2_proxy_config(v)},
    }


def tls_files(v: dict[str, str], out: Path) -> dict[str, str]:
    """The Ingress' certificate: the operator's PEM files, else a self-signed one for CXR_HOST (kept)."""
    if v["TLS_CERT_FILE"] != "-":
        for name in ("TLS_CERT_FILE", "TLS_KEY_FILE"):
            if not Path(v[name]).is_file():
                raise SystemExit(f"{name} is {v[name]}, which is not a file; give the PEM file, or leave it empty.")
        return {"tls.crt": Path(v["TLS_CERT_FILE"]).read_text(), "tls.key": Path(v["TLS_KEY_FILE"]).read_text()}
    crt, key = out / "self-signed" / f"{v['CXR_HOST']}.crt", out / "self-signed" / f"{v['CXR_HOST']}.key"
    if not (crt.is_file() and key.is_file()):
        key_pem, crt_pem = self_signed(v["CXR_HOST"])
        write_private(key, key_pem)
        write_private(crt, crt_pem)
    return {"tls.crt": crt.read_text(), "tls.key": key.read_text()}


def self_signed(host: str) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem.decode(), cert.public_bytes(pem).decode()


def oauth2_proxy_config(v: dict[str, str]) -> str:
    """oauth2-proxy's configuration file (TOML): the provider, the client, the cookie secret."""
    settings = {
        "provider": "oidc",
        "oidc_issuer_url": v["OIDC_ISSUER_URL"],
        "client_id": v["OIDC_CLIENT_ID"],
        "client_secret": v["OIDC_CLIENT_SECRET"],
        "cookie_secret": v["OAUTH2_COOKIE_SECRET"],
    }
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


GPU_QUOTA = """patches:  # PIPELINE_GPUS
  - target: {{kind: ResourceQuota, name: cxr-pipeline-accelerators}}
    patch: '[{{"op": "replace", "path": "/spec/hard/requests.nvidia.com~1gpu", "value": {gpus}}}]'
"""
INGRESS_HOST = """configMapGenerator:
  - name: cxr-ingress
    literals:
      - host={host}
replacements:  # the operator's host name into both Ingresses
  - source: {kind: ConfigMap, name: cxr-ingress, fieldPath: data.host}
    targets:
      - select: {kind: Ingress}
        fieldPaths: [spec.rules.0.host, spec.tls.0.hosts.0]
"""


def generators(overlay: Path, files: dict[str, dict[str, str]]) -> str:
    """secretGenerator entries making `files` (cxr-tls: a TLS Secret), their values written under `overlay`."""
    entries = []
    for name, keys in files.items():
        for key, value in keys.items():
            write_private(overlay / "secrets" / name / key, value)
        listed = "".join(f"\n      - {key}=secrets/{name}/{key}" for key in keys)
        kind = "kubernetes.io/tls" if name == "cxr-tls" else "Opaque"
        entries.append(f"  - name: {name}\n    type: {kind}\n    files:{listed}")
    return "secretGenerator:\n" + "\n".join(entries) + "\n"


def kustomization(namespace: str, resources: list[str], body: str = "") -> str:
    return (
        "# written by infra/k8s/cluster_manifests.py (make cluster-manifests)\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        + (f"namespace: {namespace}\n" if namespace else "")
        + "resources:\n"
        + "".join(f"  - {r}\n" for r in resources)
        + "generatorOptions:\n  disableNameSuffixHash: true  # the names the manifests and cxr pipeline compile use\n"
        "  labels: {app.kubernetes.io/part-of: cxr}\n" + body
    )


def write_overlays(out: Path, files: dict[str, dict[str, str]], v: dict[str, str]) -> dict[str, Path]:
    """Kustomizations under `out/kustomize`: `services` (infra/k8s, its Secrets, cxr-ingress from CXR_HOST), and
    for each of OVERLAYS one over `services` plus the pipeline's namespace; overlay name -> its folder."""
    root = out / "kustomize"
    shutil.rmtree(root, ignore_errors=True)
    services = root / "services"
    body = generators(services, files) + INGRESS_HOST.replace("{host}", v["CXR_HOST"])
    write_private(services / "kustomization.yaml", kustomization("cxr", [os.path.relpath(HERE, services)], body))
    folders = {}
    for name in OVERLAYS:
        pipeline = root / f"pipeline-{name}"
        body = generators(pipeline, {s: files[s] for s in PIPELINE_SECRETS})
        if name == "gpu":
            if not v["PIPELINE_GPUS"].isdigit():
                raise SystemExit(f"PIPELINE_GPUS is {v['PIPELINE_GPUS']!r}; give a whole number of GPUs, e.g. 1.")
            body += GPU_QUOTA.format(gpus=json.dumps(v["PIPELINE_GPUS"]))
        resources = [os.path.relpath(HERE / "overlays" / name, pipeline)]
        write_private(pipeline / "kustomization.yaml", kustomization(v["PIPELINE_NAMESPACE"], resources, body))
        folders[name] = root / name
        write_private(folders[name] / "kustomization.yaml", kustomization("", ["../services", f"../pipeline-{name}"]))
    return folders


def monitoring_objects() -> str:
    """prometheus-operator's objects beside the plain scrape configuration (infra/monitoring): a ServiceMonitor
    scraping every web app pod with the metrics token, and the alert rules of alerts.yml as a PrometheusRule."""
    import yaml

    rules = yaml.safe_load((PROJECT / "infra" / "monitoring" / "alerts.yml").read_text())
    meta = {"namespace": "cxr", "labels": {"app.kubernetes.io/part-of": "cxr"}}
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "webapp", **meta},
        "spec": {
            "selector": {"matchLabels": {"app": "webapp"}},  # the Service; each pod behind it is scraped
            "namespaceSelector": {"matchNames": ["cxr"]},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": "30s",
                    "bearerTokenSecret": {"name": "cxr-metrics", "key": "token"},
                }
            ],
        },
    }
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "cxr-alerts", **meta},
        "spec": rules,
    }
    header = "# written by infra/k8s/cluster_manifests.py: apply where prometheus-operator's CRDs are installed\n"
    return header + yaml.safe_dump_all([monitor, rule], sort_keys=False, width=120)


def kserve_objects(v: dict[str, str]) -> str:
    """KServe's side (infra/k8s/kserve): the serving runtime, the service account and S3 Secret its storage
    initializer reads the model with (MLflow's S3 user, KServe's annotations), and the predictor's
    NetworkPolicy. The InferenceService itself comes from `cxr registry kserve`, which names the released
    version's folder."""
    import yaml

    meta = {"namespace": "cxr", "labels": {"app.kubernetes.io/part-of": "cxr"}}
    endpoint = {
        "serving.kserve.io/s3-endpoint": "minio.cxr.svc.cluster.local:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-region": "us-east-1",
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cxr-kserve-s3", **meta, "annotations": endpoint},
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": v["S3_MLFLOW_USER"], "AWS_SECRET_ACCESS_KEY": v["S3_MLFLOW_PASSWORD"]},
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "cxr-kserve", **meta},
        "secrets": [{"name": "cxr-kserve-s3"}],
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "kserve-predictor", **meta},
        "spec": {
            "podSelector": {"matchLabels": {"component": "predictor"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"cxr.io/serving": "true"}}}]}],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "minio"}}}], "ports": [{"port": 9000}]}],
        },
    }
    runtime = yaml.safe_load((HERE / "kserve" / "servingruntime.yaml").read_text())
    header = (
        "# written by infra/k8s/cluster_manifests.py: apply where KServe's CRDs are installed (Secrets included:\n"
        "# never commit it); then `cxr registry kserve | kubectl apply -f -` deploys the released version\n"
    )
    return header + yaml.safe_dump_all([runtime, account, secret, policy], sort_keys=False, width=120)


def render(values_file: Path, out: Path) -> tuple[list[Path], list[str]]:
    """The renders' paths (one per overlay) and the values only the operator can give that were not given."""
    given = read_env(values_file) if values_file.is_file() else {}
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise SystemExit("kubectl is needed to render the manifests (kubectl kustomize); install it.")
    kept_file = out / "secrets.env"
    values = settle_values(given, read_env(kept_file) if kept_file.is_file() else {})
    write_private(kept_file, "".join(f"{k}={v}\n" for k, v in values.items()))
    files = secret_files(values) | {"cxr-tls": tls_files(values, out)}
    targets = []
    for name, overlay in write_overlays(out, files, values).items():
        done = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"kubectl kustomize {overlay} failed: {done.stderr.strip()}")
        targets.append(out / f"{name}.yaml")
        write_private(targets[-1], done.stdout)
    (out / "monitoring.yaml").write_text(monitoring_objects())
    write_private(out / "kserve.yaml", kserve_objects(values))
    return targets, [name for name in PLACEHOLDERS if not given.get(name)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, default=HERE / "secrets.env", help="the operator's values")
    parser.add_argument("--out", type=Path, default=PROJECT / "build" / "cluster", help="where the render goes")
    args = parser.parse_args(argv)
    targets, unset = render(args.values, args.out)
    written = " and ".join(str(t) for t in targets)
    print(f"wrote {written} (Secrets included: apply the one for your cluster, never commit it); values kept in "
          f"{args.out / 'secrets.env'}")  # fmt: skip
    if unset:
        print(
            f"warning: set {', '.join(unset)} in {args.values} (placeholders now), then render again", file=sys.stderr
        )


if __name__ == "__main__":
    main(sys.argv[1:])
