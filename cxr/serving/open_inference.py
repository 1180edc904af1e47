"""The registered model served the platform way: MLServer's MLflow runtime, Open Inference Protocol v2.

`cxr serve --protocol v2` writes MLServer's two settings files into a private temporary folder and runs
`mlserver start` on it. MLServer loads the model with `mlflow.pyfunc.load_model` (the model as logged,
cxr/inference/classifier.py), answers `POST /v2/models/<name>/infer` on REST and gRPC, gathers concurrent
requests into one model call (its adaptive batching: `serve.max_batch`, `serve.max_wait_ms`) and serves
Prometheus metrics. The request carries each file's bytes in a BYTES tensor named `image` (base64 in the
REST JSON body); the response has `probability` (FP32, NaN for a refused file: null in JSON), `label`,
`reason` (BYTES), `in_distribution` and `ood_score` per file. REST is the served protocol: MLServer 1.7's
gRPC encoder cannot send a NaN, so a request with a refused file fails there. A KServe InferenceService
runs the same runtime (infra/k8s/kserve/).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from cxr.aliases import CHAMPION
from cxr.errors import CxrError
from cxr.release.promotion import released_version
from cxr.serving.model_store import default_alias

RUNTIME = "mlserver_mlflow.MLflowRuntime"


def server_settings(host: str, port: int) -> dict:
    """MLServer's settings.json: REST on `port`, gRPC on port+1, metrics on port+2; one process (the model
    is loaded once; TensorFlow uses the cores inside it)."""
    return {
        "host": host,
        "http_port": port,
        "grpc_port": port + 1,
        "metrics_port": port + 2,
        "parallel_workers": 0,
        "debug": False,
    }


def model_settings(name: str, model_uri: str, max_batch: int, max_wait_ms: int) -> dict:
    """MLServer's model-settings.json for the MLflow runtime on `model_uri`; a registered version
    (models:/name/N) is named as the model's version, so every answer says which version gave it."""
    parameters = {"uri": model_uri}
    if re.fullmatch(r"models:/[^@/]+/\d+", model_uri):
        parameters["version"] = model_uri.rsplit("/", 1)[1]
    settings = {"name": name, "implementation": RUNTIME, "parameters": parameters}
    if max_batch > 1:
        settings.update(max_batch_size=max_batch, max_batch_time=max_wait_ms / 1000)
    return settings


def write_settings(folder: Path, name: str, model_uri: str, host: str, port: int, serve) -> Path:
    """The two files MLServer reads, the model's in a sub-folder named after the model."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(server_settings(host, port), indent=2))
    model = model_settings(name, model_uri, serve.max_batch, serve.max_wait_ms)
    (folder / name / "model-settings.json").write_text(json.dumps(model, indent=2))
    return folder


def mlserver_command() -> list[str]:
    """MLServer's command line, through cxr/serving/mlserver_start.py, in this Python (the venv or image)."""
    if importlib.util.find_spec("mlserver") is None:
        raise CxrError("MLServer is not installed here; run `make setup` (requirements.lock installs mlserver).")
    return [sys.executable, "-m", "cxr.serving.mlserver_start"]


def released_model(name: str) -> tuple[str, str]:
    """(models:/name/N, warning) of the version to serve when no --model is given: the one at @champion when
    a release command put it there; the last release when @champion was moved outside the release process
    (as the web app does); @challenger's, with a warning, before any release. A version number, not the
    alias: MLServer loads once, so the answer names the version it serves."""
    alias, version, warning = default_alias(name)
    if alias != CHAMPION:
        return f"models:/{name}/{version.version}", warning
    released, problem = released_version(name)
    if released is None:
        raise CxrError(f"Not serving: {problem}. Promote a version with `cxr registry promote`.")
    if problem:
        warning = (
            f"Not serving version {version.version}: {problem}. Serving version {released.version}, the last release."
        )
    return f"models:/{name}/{released.version}", warning


def serve_v2(model_uri: str, name: str, host: str, port: int, serve) -> None:
    """Replace this process with `mlserver start` on `model_uri` (so signals reach MLServer directly)."""
    folder = write_settings(Path(tempfile.mkdtemp(prefix="cxr-mlserver-")), name, model_uri, host, port, serve)
    command = mlserver_command()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # a bar per download fills the server's log
    os.execv(command[0], [*command, "start", str(folder)])
