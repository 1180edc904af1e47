"""The web app in-process (Flask's test client) around a tiny model built in memory, not trained: the
fast tier's check of the upload -> decode -> gate -> model -> answer path and of bad input. The same app
as a real `cxr serve` process, with real uploads and a trained model, is tests/integration/test_serving.py."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLE, dicom_path, synthetic_xray, tiny

MAX_MB = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from cxr.inference.classifier import XrayClassifier
    from cxr.inference.gradcam import GradCam
    from cxr.model.architecture import build_model
    from cxr.model.config import MODEL_FILE, ModelConfig
    from cxr.serving.model_store import ServedModel

    folder = tmp_path_factory.mktemp("model")
    build_model(tiny("train.weights=none").train).save(folder / MODEL_FILE)  # unfitted: any probability will do
    ModelConfig(image_size=32, positive_class="COVID", negative_class="Normal", threshold=0.5).write(folder)
    classifier = XrayClassifier().load(folder / MODEL_FILE, ModelConfig.read(folder))
    gradcam = GradCam(classifier.keras_model, 32)
    return ServedModel("models:/covid-xray-vgg16/7", "7", "d1", classifier, gradcam=gradcam)


@pytest.fixture(scope="module")
def client(served):
    from cxr.serving.app import create_app

    return create_app(served, max_upload_mb=MAX_MB).test_client()


def png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def post(client, data: bytes, name: str = "x.png"):
    return client.post("/api/predict", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_health_and_readiness_name_the_served_version(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["ready"] and ready["model_version"] == "7" and ready["data_version"] == "d1"


@pytest.mark.parametrize(
    "name, data",
    [
        ("real.png", (SAMPLE / "COVID" / "COVID-1.png").read_bytes()),
        ("synthetic.png", png(synthetic_xray(4, 96))),
        ("chest.dcm", dicom_path().read_bytes()),
    ],
)
def test_an_upload_gets_a_probability_and_the_label_its_threshold_gives(client, name, data):
    response = post(client, data, name)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert 0.0 <= body["probability"] <= 1.0 and body["model_version"] == "7"
    assert body["label"] == ("COVID" if body["probability"] >= body["threshold"] else "Normal")


@pytest.mark.parametrize(
    "name, data, status, words",
    [
        ("empty.png", b"", 400, "is empty"),
        ("notes.txt", b"just some text, not an image", 415, "not a PNG, JPEG or DICOM"),
        ("half.png", png(synthetic_xray(5, 64))[:200], 422, "corrupt or truncated"),
        ("big.png", b"\x89PNG" + b"0" * (MAX_MB * 1024 * 1024 + 10), 413, f"{MAX_MB} MB limit"),
    ],
)
def test_bad_input_gets_one_sentence_and_a_4xx(client, name, data, status, words):
    response = post(client, data, name)
    assert response.status_code == status
    assert words in response.get_json()["error"]
    assert client.get("/healthz").status_code == 200


def test_the_page_answers_an_upload_with_the_label(client):
    page = client.post(
        "/", data={"file": (io.BytesIO(png(synthetic_xray(6, 80))), "x.png")}, content_type="multipart/form-data"
    )
    assert page.status_code == 200 and ("COVID" in page.get_data(as_text=True))
    assert np.isfinite(client.get("/readyz").get_json()["threshold"])


def institution_dicom(name: str) -> bytes:
    import pydicom

    ds = pydicom.dcmread(dicom_path())
    ds.InstitutionName = name
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_each_answer_names_its_site_and_says_not_validated_until_a_drift_check_there_passes(served, tmp_path):
    from cxr.serving.app import create_app
    from cxr.serving.records import PredictionRecords

    store = PredictionRecords(f"sqlite:///{tmp_path / 'records.db'}")
    client = create_app(served, max_upload_mb=MAX_MB, records=store, site="Ward 5").test_client()
    film = png(synthetic_xray(7, 96))
    body = post(client, film).get_json()  # a PNG: the configured site
    assert (body["site"], body["site_validated"]) == ("Ward 5", False)
    assert body["site_warning"].startswith("Not yet validated at Ward 5: no drift check")
    body = post(client, institution_dicom("St Elsewhere"), "chest.dcm").get_json()  # the DICOM names its own
    assert (body["site"], body["site_validated"]) == ("St Elsewhere", False)
    page = client.post("/", data={"file": (io.BytesIO(film), "x.png")}, content_type="multipart/form-data")
    assert 'id="site-warning"' in page.get_data(as_text=True)

    store.record_site_check("Ward 5", "7", 40, 0.3, drift=False)  # what cxr monitor drift --records --site keeps
    body = post(client, film).get_json()
    assert body["site_validated"] is True and "site_warning" not in body
    page = client.post("/", data={"file": (io.BytesIO(film), "x.png")}, content_type="multipart/form-data")
    assert 'id="site-warning"' not in page.get_data(as_text=True)
    assert [r["site"] for r in store.rows()] == ["Ward 5", "St Elsewhere", "Ward 5", "Ward 5", "Ward 5"]


def test_without_records_no_site_can_be_validated(client):
    body = post(client, png(synthetic_xray(8, 96))).get_json()
    assert body["site"] is None and body["site_validated"] is False
    assert "this server keeps no records" in body["site_warning"]


def test_an_inference_service_that_does_not_answer_gets_a_503_sentence(served):
    """serve.inference_url naming a service that is down: the upload is decoded here, then 503, one sentence."""
    from dataclasses import replace

    from cxr.serving.app import create_app
    from cxr.serving.inference_client import InferenceClient
    from tests.integration.conftest import free_port

    down = InferenceClient(f"http://127.0.0.1:{free_port()}", "covid-xray-vgg16", timeout_s=5)
    client = create_app(replace(served, remote=down), max_upload_mb=MAX_MB).test_client()
    answer = post(client, (SAMPLE / "COVID" / "COVID-1.png").read_bytes())
    assert answer.status_code == 503 and "The inference service at http://127.0.0.1:" in answer.get_json()["error"]
    assert post(client, b"not an image").status_code == 415  # bad input is still the app's own 4xx


def test_an_answer_from_another_version_gets_a_note_instead_of_a_heat_map(served):
    """The service names version 8 while the app explains version 7 (a rollout, a KServe canary)."""
    from dataclasses import replace

    from cxr.serving.app import Predictor
    from cxr.serving.inference_client import InferenceClient

    remote = replace(served, remote=InferenceClient("http://inference.example", "covid-xray-vgg16"))
    other = Predictor.answered_by(remote, {"answered_by": "8"})
    assert other["inference_url"] == "http://inference.example"
    assert "answered with version 8, and this app explains version 7" in other["heatmap_note"]
    assert "heatmap_note" not in Predictor.answered_by(remote, {"answered_by": "7"})
    assert Predictor.answered_by(served, {"answered_by": "8"}) == {}  # in process: nothing to say
