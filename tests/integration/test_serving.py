"""The web app through a real `cxr serve` process on loopback: API, bad inputs, fuzz, DICOM."""

import io
import json

import numpy as np
import pydicom
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import SAMPLE, dicom_path, synthetic_xray
from tests.hostile import deflate_bomb, many_frames, zero_window_width

# fits a network and starts `cxr serve` (the fast tier has tests/unit/test_serving_in_process.py)
pytestmark = pytest.mark.slow

MAX_MB = 8  # serve.max_upload_mb of the test server (conftest.py)


def png(array, fmt="PNG", mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def png16(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("I;16").save(buf, format="PNG")
    return buf.getvalue()


def post(server, data: bytes, name="x.png", path="/api/predict"):
    return requests.post(server["base"] + path, files={"file": (name, data)}, timeout=60)


def test_health_ready_and_openapi(server):
    assert requests.get(server["base"] + "/healthz").json() == {"status": "ok"}
    ready = requests.get(server["base"] + "/readyz").json()
    assert ready["ready"] and ready["model_version"] == server["version"] and ready["data_version"] == "test-data-v1"
    spec = requests.get(server["base"] + "/openapi.json").json()
    assert {"/api/predict", "/api/predict/batch", "/healthz", "/readyz"} <= set(spec["paths"])


def test_warns_when_serving_a_challenger(server):
    assert "serving @challenger" in server["log"].read_text()
    assert "serving @challenger" in requests.get(server["base"] + "/").text


@pytest.mark.parametrize(
    "name, data",
    [
        ("real.png", (SAMPLE / "COVID" / "COVID-1.png").read_bytes()),
        ("wide.jpg", png(synthetic_xray(1, 300)[:100], fmt="JPEG")),
        ("rgba.png", png(np.dstack([synthetic_xray(2, 80)] * 3 + [np.full((80, 80), 255, np.uint8)]))),
        ("sixteen.png", png16(synthetic_xray(3, 90).astype(np.int32) * 250)),
        ("chest.dcm", dicom_path().read_bytes()),
    ],
)
def test_predicts_any_supported_image(server, name, data):
    response = post(server, data, name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.0 <= body["probability"] <= 1.0 and body["label"] in {"COVID", "Normal"}
    ready = requests.get(server["base"] + "/readyz").json()
    assert body["threshold"] == ready["threshold"] and 0.0 <= body["threshold"] <= 1.0
    assert body["model_version"] == server["version"]
    assert body["label"] == ("COVID" if body["probability"] >= body["threshold"] else "Normal")


def test_heatmap_is_an_image_of_the_upload(server):
    body = requests.post(
        server["base"] + "/api/predict?heatmap=true",
        files={"file": ("x.png", (SAMPLE / "Normal" / "Normal-2.png").read_bytes())},
    ).json()
    heat = Image.open(io.BytesIO(__import__("base64").b64decode(body["heatmap_png"])))
    assert heat.size == (299, 299) and heat.mode == "RGB"


def test_dicom_patient_fields_never_come_back(server):
    ds = pydicom.dcmread(dicom_path())
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "SECRET-12345"
    buf = io.BytesIO()
    ds.save_as(buf)
    response = post(server, buf.getvalue(), "patient.dcm")
    assert response.status_code == 200
    assert "Doe" not in response.text and "SECRET-12345" not in response.text
    log = server["log"].read_text()
    assert "Doe" not in log and "SECRET-12345" not in log and "patient.dcm" not in log


def _truncated():
    data = png(synthetic_xray(4, 64))
    return data[: len(data) // 2]


def _bomb():
    buf = io.BytesIO()
    Image.new("L", (12000, 8000)).save(buf, format="PNG")
    return buf.getvalue()


def _no_pixels():
    ds = pydicom.dcmread(dicom_path())
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data, status, words",
    [
        ("empty.png", b"", 400, "is empty"),
        ("notes.txt", b"just some text, not an image", 415, "not a PNG, JPEG or DICOM"),
        ("half.png", _truncated(), 422, "corrupt or truncated"),
        ("bomb.png", _bomb(), 413, "downscale it"),
        ("big.png", b"\x89PNG" + b"0" * (MAX_MB * 1024 * 1024 + 10), 413, f"{MAX_MB} MB limit"),
        ("nopixels.dcm", _no_pixels(), 422, "without pixel data"),
        ("deflate-bomb.dcm", deflate_bomb(256 << 20), 413, "deflated DICOM that inflates to more than"),
        ("frames.dcm", many_frames(5000, 256, 256), 413, "over the 90,000,000-sample limit"),
    ],
)
def test_bad_input_gets_a_4xx_sentence_and_the_server_keeps_serving(server, name, data, status, words):
    response = post(server, data, name)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert requests.get(server["base"] + "/healthz").status_code == 200


def test_missing_file_field_and_html_error_page(server):
    assert requests.post(server["base"] + "/api/predict", data={"x": "1"}).status_code == 400
    page = requests.post(server["base"] + "/", files={"file": ("a.txt", b"nope")})
    assert page.status_code == 415 and "not a PNG, JPEG or DICOM" in page.text


def test_batch_reports_per_file_results(server):
    files = [
        ("files", ("a.png", (SAMPLE / "COVID" / "COVID-2.png").read_bytes())),
        ("files", ("b.txt", b"garbage")),
        ("files", ("c.png", (SAMPLE / "Normal" / "Normal-4.png").read_bytes())),
    ]
    results = requests.post(server["base"] + "/api/predict/batch", files=files).json()["results"]
    assert [("error" in r) for r in results] == [False, True, False]
    assert results[1]["status"] == 415
    assert requests.post(server["base"] + "/api/predict/batch").status_code == 400


def test_uploads_leave_no_files_behind(server):
    before = {p for p in server["dir"].rglob("*")}
    post(server, (SAMPLE / "COVID" / "COVID-5.png").read_bytes())
    after = {p for p in server["dir"].rglob("*")}
    assert {p for p in after - before if p.suffix not in (".log",)} == set()


# Schema-driven fuzz: bodies as the OpenAPI description allows them (binary parts, any field names, any
# query), from random bytes to mutated real images; the server must never answer 5xx.
real = (SAMPLE / "COVID" / "COVID-8.png").read_bytes()
dicoms = [dicom_path().read_bytes(), deflate_bomb(256 << 20), many_frames(3, 64, 64, full=True), zero_window_width()]


def mutations(originals: list[bytes]):
    """Truncations, appended junk and single-byte flips of the given files."""
    pick = st.sampled_from(originals)
    return st.one_of(
        st.builds(lambda d, f, junk: d[: int(f * len(d))] + junk, pick, st.floats(0, 1), st.binary(max_size=64)),
        st.builds(
            lambda d, f, b: d[: int(f * (len(d) - 1))] + bytes([b]) + d[int(f * (len(d) - 1)) + 1 :],
            pick,
            st.floats(0, 1),
            st.integers(0, 255),
        ),  # fmt: skip
    )


bodies = st.one_of(st.binary(max_size=4096), mutations([real]), mutations(dicoms))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=bodies,
    field=st.sampled_from(["file", "files", "image", ""]),
    path=st.sampled_from(["/api/predict", "/api/predict/batch", "/api/predict?heatmap=true", "/"]),
    filename=st.text(max_size=30),
)
def test_fuzz_never_5xx(server, body, field, path, filename):
    files = {field or "file": (filename or "f", body)} if field else None
    response = requests.post(server["base"] + path, files=files, data=None if field else body, timeout=60)
    assert response.status_code < 500, response.text[:300]
    if response.headers.get("content-type", "").startswith("application/json"):
        json.loads(response.text)


def peak_rss_mb(pid: int) -> float:
    """Peak RSS of the gunicorn worker (the master's child), which holds the model and decodes uploads."""
    (worker,) = open(f"/proc/{pid}/task/{pid}/children").read().split()
    lines = open(f"/proc/{worker}/status").read().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


def test_hostile_dicoms_cost_the_server_bounded_memory_and_a_zero_window_decodes(server):
    """A 1.9 MB deflate bomb would inflate to 2 GB in pydicom; the server inflates at most ~173 MB of it."""
    before = peak_rss_mb(server["pid"])
    bomb = deflate_bomb(2 << 30)
    assert len(bomb) < 3 << 20
    for _ in range(3):
        assert post(server, bomb, "bomb.dcm").status_code == 413
    assert post(server, many_frames(100_000, 512, 512), "frames.dcm").status_code == 413
    grown = peak_rss_mb(server["pid"]) - before
    print(f"peak RSS before {before:.0f} MB, growth over 3 bombs and a 26-billion-sample header {grown:.0f} MB")
    assert grown < 400
    response = post(server, zero_window_width(), "ww0.dcm")
    assert response.status_code == 200 and response.json()["label"]


def test_responses_carry_security_headers_and_the_page_runs_only_its_own_script(server):
    page = requests.get(server["base"] + "/", timeout=30)
    csp = page.headers["Content-Security-Policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert f'<script nonce="{nonce}">' in page.text and f'<style nonce="{nonce}">' in page.text
    assert nonce != requests.get(server["base"] + "/", timeout=30).headers["Content-Security-Policy"].split("'")[3]
    api = post(server, (SAMPLE / "COVID" / "COVID-2.png").read_bytes())
    for response in (page, api):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_server_never_unpickles_the_registered_model(server):
    """Its python_model.pkl was replaced before start-up by a payload that creates a file when unpickled:
    the server predicts from the Keras file and config alone, and the payload never ran."""
    import mlflow

    assert post(server, (SAMPLE / "COVID" / "COVID-2.png").read_bytes()).status_code == 200
    assert not (server["dir"] / "pwned").exists()
    mlflow.set_tracking_uri(server["uri"])
    mlflow.set_registry_uri(server["uri"])  # earlier tests may have pointed the registry elsewhere
    try:  # MLflow's own loader would have run it: the payload is live (loading then fails on what it built)
        mlflow.pyfunc.load_model("models:/covid-xray-vgg16@challenger")
    except Exception:
        pass
    assert (server["dir"] / "pwned").exists()


def test_overload_gets_503_with_retry_after_and_no_other_error(server):
    """More concurrent predictions than serve.max_inflight (4 in the test server's params): the excess
    is refused at once with 503 + Retry-After, not queued without bound; every admitted one succeeds."""
    from concurrent.futures import ThreadPoolExecutor

    data = (SAMPLE / "COVID" / "COVID-2.png").read_bytes()
    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(lambda _: post(server, data), range(40)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(200) >= 4, codes
    busy = [r for r in responses if r.status_code == 503]
    assert busy, "40 concurrent requests never exceeded 4 in flight"
    assert all(r.headers["Retry-After"] == "5" and "busy" in r.json()["error"] for r in busy)
    assert post(server, data).status_code == 200  # and it recovers


def metric(text: str, name: str, **labels) -> float:
    """One sample's value in a Prometheus text page (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_predictions_by_model_version_and_outcome(server):
    base, version = server["base"], server["version"]
    before = requests.get(base + "/metrics").text
    body = post(server, (SAMPLE / "COVID" / "COVID-1.png").read_bytes(), "patient-jane-doe.png").json()
    post(server, b"not an image at all", "broken.png")
    after = requests.get(base + "/metrics")
    assert after.status_code == 200 and after.headers["Content-Type"].startswith("text/plain")
    text = after.text
    counted = {"model_version": version, "outcome": body["label"]}
    assert metric(text, "cxr_predictions_total", **counted) == metric(before, "cxr_predictions_total", **counted) + 1
    bad = {"model_version": version, "outcome": "bad_input"}
    assert metric(text, "cxr_predictions_total", **bad) == metric(before, "cxr_predictions_total", **bad) + 1
    for stage in ("decode", "model"):
        assert metric(text, "cxr_stage_seconds_count", model_version=version, stage=stage) >= 1
    assert metric(text, "cxr_probability_count", model_version=version) >= 1
    assert metric(text, "cxr_model_serving", model_version=version) == 1
    assert metric(text, "cxr_model_reloads_total", result="swapped") >= 1
    assert "jane" not in text and "broken" not in text  # numbers only: no file name, no image property


def test_a_radiologists_finding_is_recorded_against_the_prediction_and_shows_in_monitor_performance(server):
    import os
    import subprocess
    import sys
    from pathlib import Path

    base = server["base"]
    covid = post(server, (SAMPLE / "COVID" / "COVID-1.png").read_bytes(), "a.png").json()
    normal = post(server, (SAMPLE / "Normal" / "Normal-2.png").read_bytes(), "b.png").json()
    for body, finding in ((covid, "covid"), (normal, "not_covid")):
        answer = requests.post(
            base + "/api/feedback", json={"prediction_id": body["prediction_id"], "finding": finding}
        )
        assert answer.status_code == 200, answer.text
    page = requests.post(base + "/feedback", data={"prediction_id": normal["prediction_id"], "finding": "unsure"})
    assert page.status_code == 200 and "Finding &#39;unsure&#39; recorded" in page.text
    unknown = requests.post(base + "/api/feedback", json={"prediction_id": "nope", "finding": "covid"})
    wrong = requests.post(base + "/api/feedback", json={"prediction_id": covid["prediction_id"], "finding": "maybe"})
    assert unknown.status_code == 404 and "No prediction nope is on record" in unknown.json()["error"]
    assert wrong.status_code == 422 and "not one of covid, not_covid, unsure" in wrong.json()["error"]
    out = subprocess.run(
        [str(Path(sys.executable).parent / "cxr"), "monitor", "performance", "--json", "--version", server["version"]],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)[server["version"]]
    assert figures["counts"]["unsure"] >= 1  # the page's later finding replaced the API's for that prediction
    judged = figures["counts"]["tp"] + figures["counts"]["fp"] + figures["counts"]["tn"] + figures["counts"]["fn"]
    assert judged >= 1 and figures["sensitivity"]["n"] + figures["specificity"]["n"] == judged
