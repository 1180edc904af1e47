"""The KServe objects (infra/k8s/kserve, and what make cluster-manifests writes for KServe) validate against
KServe's own API schema: the models its Python SDK generates from the CRDs (tools/kserve, make tools)."""

import subprocess

import pytest
import yaml

from tests.conftest import PROJECT
from tests.unit.test_cluster_manifests import render

pytestmark = pytest.mark.system  # needs KServe's SDK in its own venv (make tools, .ci/run)

KSERVE = PROJECT / "infra" / "k8s" / "kserve"
PYTHON = PROJECT / "tools" / "kserve" / ".venv" / "bin" / "python"


def validate(*paths):
    return subprocess.run([str(PYTHON), str(KSERVE / "validate.py"), *map(str, paths)], capture_output=True, text=True)


def test_the_runtime_and_the_inference_service_validate():
    out = validate(KSERVE / "servingruntime.yaml", KSERVE / "inferenceservice.yaml")
    assert out.returncode == 0 and "2 KServe objects checked, 0 problems" in out.stdout, out.stdout + out.stderr


def test_the_rendered_kserve_objects_validate_and_are_closed(tmp_path):
    render(
        tmp_path, "S3_MLFLOW_USER=reader\n"
    )  # make cluster-manifests, as tests/unit/test_cluster_manifests.py runs it
    rendered = tmp_path / "out" / "kserve.yaml"
    assert rendered.stat().st_mode & 0o077 == 0  # it holds the S3 Secret
    out = validate(rendered)
    assert out.returncode == 0 and "1 KServe objects checked, 0 problems" in out.stdout, out.stdout
    objects = {d["kind"]: d for d in yaml.safe_load_all(rendered.read_text()) if d}
    secret, account = objects["Secret"], objects["ServiceAccount"]
    assert account["secrets"] == [{"name": secret["metadata"]["name"]}]
    assert secret["stringData"]["AWS_ACCESS_KEY_ID"] == "reader"
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"].startswith("minio.cxr.svc")
    service = yaml.safe_load((KSERVE / "inferenceservice.yaml").read_text())
    predictor = service["spec"]["predictor"]
    assert predictor["serviceAccountName"] == account["metadata"]["name"]
    assert predictor["model"]["runtime"] == objects["ServingRuntime"]["metadata"]["name"]
    assert predictor["model"]["protocolVersion"] == "v2" and predictor["model"]["modelFormat"]["name"] == "mlflow"


def test_a_broken_inference_service_is_caught(tmp_path):
    service = yaml.safe_load((KSERVE / "inferenceservice.yaml").read_text())
    predictor = service["spec"]["predictor"]
    predictor["canaryTrafficPercent"] = "10"  # a string, not an integer
    predictor["model"]["storageURI"] = predictor["model"].pop("storageUri")  # a field KServe does not have
    del predictor["model"]["modelFormat"]  # required
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(service))
    out = validate(tmp_path / "bad.yaml")
    assert out.returncode == 1
    assert "canaryTrafficPercent: int expected" in out.stdout and "storageURI: not a field" in out.stdout
    assert "model: Invalid value for `model_format`, must not be `None`" in out.stdout
