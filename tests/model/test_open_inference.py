"""The logged model served by MLServer's MLflow runtime (`cxr serve --protocol v2`), asked over the Open
Inference Protocol by Triton's own client (tritonclient), answering as `cxr predict` does."""

import base64
import os
import subprocess
import time

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from tests.conftest import PROJECT, SAMPLE, dicom_path
from tests.integration.conftest import CXR, free_port
from tests.model.test_input_gate import predict

pytestmark = pytest.mark.slow  # the real CPU-profile network and a real MLServer process

NAME = "covid-xray-vgg16"  # register.model_name: the model's name on the v2 endpoint


@pytest.fixture(scope="module")
def mlserver(logged, tmp_path_factory):
    """`cxr serve --protocol v2` on the logged model, on loopback."""
    tmp = tmp_path_factory.mktemp("mlserver")
    port = free_port()
    log = open(tmp / "mlserver.log", "w")
    env = {**os.environ, "MLFLOW_TRACKING_URI": logged["uri"]}
    args = [CXR, "serve", "--protocol", "v2", "--model", logged["model"], "--port", str(port)]
    proc = subprocess.Popen(args, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    client = triton.InferenceServerClient(f"127.0.0.1:{port}", concurrency=8)
    deadline = time.time() + 240
    while time.time() < deadline:
        assert proc.poll() is None, (tmp / "mlserver.log").read_text()
        try:
            if client.is_model_ready(NAME):
                break
        except Exception:  # noqa: BLE001 (not listening yet)
            pass
        time.sleep(1)
    yield {"client": client, "port": port, "log": tmp / "mlserver.log"}
    proc.terminate()
    proc.wait(timeout=60)


def request(blobs: list[bytes]):
    """The v2 request's tensors: the files' bytes as the BYTES tensor `image` (base64 in the JSON body)."""
    array = np.array([[base64.b64encode(b)] for b in blobs], dtype=object)
    image = triton.InferInput("image", list(array.shape), "BYTES")
    image.set_data_from_numpy(array, binary_data=False)
    outputs = [triton.InferRequestedOutput(n, binary_data=False) for n in ("probability", "label", "reason")]
    return [image], outputs


def answers(result):
    return tuple(result.as_numpy(n).ravel() for n in ("probability", "label", "reason"))


def infer(client, blobs: list[bytes], **parameters):
    inputs, outputs = request(blobs)
    return answers(client.infer(NAME, inputs, outputs=outputs, parameters=parameters or None))


def text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def test_metadata_names_the_v2_tensors(mlserver):
    meta = mlserver["client"].get_model_metadata(NAME)
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("image", "BYTES")]
    outputs = {t["name"]: t["datatype"] for t in meta["outputs"]}
    assert outputs["probability"] == "FP32" and outputs["label"] == outputs["reason"] == "BYTES"


def test_answers_as_cxr_predict_does(logged, mlserver, tmp_path):
    unreadable = tmp_path / "notes.png"
    unreadable.write_bytes(b"not an image at all")
    files = [*sorted((SAMPLE / "COVID").glob("*.png"))[:3], *sorted((SAMPLE / "Normal").glob("*.png"))[:3]]
    files += [logged["chart"], logged["text"], dicom_path(), unreadable]
    probability, label, reason = infer(mlserver["client"], [f.read_bytes() for f in files])
    out, rows = predict(logged, *files)
    assert len(rows) == len(files) == len(probability), out.stderr
    for row, p, lab, why in zip(rows, probability, text(label), text(reason), strict=True):
        if row.get("probability") is None:
            assert np.isnan(p) and lab == "" and why, row
            assert why == (row.get("reason") or row["error"].replace(str(unreadable), "the file"))
        else:
            assert abs(p - row["probability"]) < 1e-5 and lab == row["label"] and why == "", row
    assert np.isnan(probability[6:8]).all()  # the chart and the text image: refused by the input gate
    assert "not a PNG, JPEG or DICOM" in text(reason)[-1]


def test_allow_ood_scores_the_refused_anyway(logged, mlserver):
    probability, label, reason = infer(mlserver["client"], [logged["chart"].read_bytes()], allow_ood=True)
    assert 0 <= probability[0] <= 1 and text(label)[0] in ("COVID", "Normal")
    assert "does not look like" in text(reason)[0]


def test_concurrent_requests_are_answered_alike_and_counted(mlserver):
    films = [f.read_bytes() for f in sorted((SAMPLE / "Normal").glob("*.png"))[:8]]
    alone = [infer(mlserver["client"], [film]) for film in films[:2]]
    pending = []
    for film in films:  # 8 in flight at once (the client's greenlets: it is not thread-safe)
        inputs, outputs = request([film])
        pending.append(mlserver["client"].async_infer(NAME, inputs, outputs=outputs))
    together = [answers(p.get_result()) for p in pending]
    for (p_alone, *_), (p_together, *_) in zip(alone, together[:2], strict=False):
        assert abs(p_alone[0] - p_together[0]) < 1e-5
    assert answered(mlserver) >= 10  # MLServer's own request counter


def test_nothing_the_user_reads_is_a_warning_or_an_image(mlserver):
    log = mlserver["log"].read_text()
    assert "Traceback" not in log and "UserWarning" not in log and "WARNING" not in log
    assert "Downloading artifacts" not in log  # no progress bar per file


@pytest.fixture(scope="module")
def webapp(logged, mlserver, tmp_path_factory):
    """The radiologists' web app (a real `cxr serve`) with serve.inference_url on the MLServer above."""
    from tests.integration.conftest import start_server

    tmp = tmp_path_factory.mktemp("webapp-remote")
    url = f"http://127.0.0.1:{mlserver['port']}"
    params = (PROJECT / "params.yaml").read_text().replace('inference_url: ""', f'inference_url: "{url}"', 1)
    (tmp / "params.yaml").write_text(params)
    args = ("--model", logged["model"], "--tracking-uri", logged["uri"], "--params", str(tmp / "params.yaml"))
    proc, base = start_server(tmp, logged["uri"], *args)
    yield {"base": base, "url": url}
    proc.terminate()
    proc.wait(timeout=90)


def answered(mlserver) -> float:
    metrics = requests.get(f"http://127.0.0.1:{mlserver['port'] + 2}/metrics", timeout=10).text
    lines = [line for line in metrics.splitlines() if line.startswith("model_infer_request_success_total")]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_the_web_app_answers_through_the_inference_service(logged, mlserver, webapp):
    film = (SAMPLE / "COVID" / "COVID-3.png").read_bytes()
    (expected,), _, _ = infer(mlserver["client"], [film])
    before = answered(mlserver)
    body = requests.post(f"{webapp['base']}/api/predict?heatmap=true", files={"file": ("x.png", film)}, timeout=120)
    result = body.json()
    assert body.status_code == 200 and abs(result["probability"] - expected) < 1e-5
    assert result["inference_url"] == webapp["url"] and answered(mlserver) == before + 1  # MLServer answered
    assert result["heatmap_png"] and "heatmap_note" not in result  # explained here, on the same model
    chart = requests.post(f"{webapp['base']}/api/predict", files={"file": ("c.png", logged["chart"].read_bytes())})
    assert chart.status_code == 422 and "does not look like" in chart.json()["error"]
    page = requests.post(f"{webapp['base']}/", files={"file": ("x.png", film)}, timeout=120).text
    assert "the inference service at " + webapp["url"] in page
