"""The KServe InferenceService for the released model (infra/k8s/kserve/inferenceservice.yaml, filled in).

KServe reads a model from a storage URI, not from the registry: `storageUri` is the artifact folder (the
one holding MLmodel) of the version at @champion, as the MLflow server stores it in S3. A canary step puts
@challenger's folder there with `canaryTrafficPercent`; KServe keeps the previous ready revision (the
champion) on the rest of the traffic, and promoting the challenger in the registry then rendering again
without a canary moves all traffic to it.
"""

from __future__ import annotations

import copy

from cxr.aliases import CHALLENGER, CHAMPION
from cxr.errors import CxrError
from cxr.release.promotion import released_version
from cxr.release.registry import alias_version, client

VERSION_ENV = "MLSERVER_MODEL_VERSION"  # MLServer names this version in every answer (model_version)
PROXIED = "mlflow-artifacts:/"  # artifacts the tracking server proxies: under its --artifacts-destination


def storage_uri(model_version, artifacts_destination: str) -> str:
    """Where a model version's files are in the artifact store (s3://…), the folder holding its MLmodel."""
    source = model_version.source
    if source.startswith("models:/m-"):
        location = client().get_logged_model(source.removeprefix("models:/")).artifact_location
    else:
        location = client().get_model_version_download_uri(model_version.name, model_version.version)
    if location.startswith(PROXIED):
        location = artifacts_destination.rstrip("/") + "/" + location.removeprefix(PROXIED).lstrip("/")
    if not location.startswith(("s3://", "gs://", "https://", "pvc://")):
        raise CxrError(
            f"Version {model_version.version} is stored at {location}, which KServe cannot read; register models "
            "through the team's MLflow server (artifacts in S3)."
        )
    return location


def inference_service(template: dict, name: str, artifacts_destination: str, canary_percent: int = 0) -> dict:
    """`template` with the champion's storageUri, or with a canary: the challenger's, on `canary_percent`%."""
    if not 0 <= canary_percent <= 100:
        raise CxrError(f"--canary {canary_percent} is not a share of traffic; give a percentage from 1 to 99.")
    alias = CHALLENGER if canary_percent else CHAMPION
    version = alias_version(name, alias) if canary_percent else released_version(name)[0]
    if version is None:
        raise CxrError(f"No version of '{name}' holds @{alias}; nothing to put on KServe.")
    service = copy.deepcopy(template)
    predictor = service["spec"]["predictor"]
    predictor["model"]["storageUri"] = storage_uri(version, artifacts_destination)
    predictor.pop("canaryTrafficPercent", None)
    if canary_percent:
        predictor["canaryTrafficPercent"] = canary_percent
    env = [e for e in predictor["model"].get("env", []) if e.get("name") != VERSION_ENV]
    predictor["model"]["env"] = [*env, {"name": VERSION_ENV, "value": str(version.version)}]  # named in answers
    annotations = service.setdefault("metadata", {}).setdefault("annotations", {})
    annotations["cxr.io/model-version"] = f"{name}/{version.version} (@{alias})"
    return service
