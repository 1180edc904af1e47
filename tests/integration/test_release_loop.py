"""The users' release loop end to end, on real X-rays, in a temporary git + DVC repository:

data version A (40 images) -> retrain -> inconclusive (too few validation images to decide on), nothing
registered, and the web app, started anyway, says no model has been released; version B (200) -> retrain
sees the new version -> passed -> @challenger, which the running app picks up by itself; the release
manager promotes it -> @champion;
version C (B plus 40 unseen images) -> retrain -> the gate compares with the champion on the same
validation images and says why it registers (a bar of gate.min_delta=-1 lets it through); the release
manager promotes it and the running app serves it within one reload interval, with no 5xx meanwhile;
`registry compare` and `history` show both. Real `dvc add` and git commits, a real MLflow store, the
real `cxr` command and one `cxr serve` process, never restarted.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests

from tests.conftest import PROJECT, SAMPLE
from tests.integration.conftest import start_server

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
NAME = "covid-xray-vgg16"
# smaller images keep each pipeline run near a minute, and a lower bar suits the smaller images: the test is
# of the loop, not of the model (the README's figures are of the CPU profile as users run it)
RELOAD_S = 3  # serve.reload_s of the app under test: a promotion is served within it
FAST = [
    *("--set", "train.image_size=96", "--set", "gate.min_f1=0.5"),
    *("--set", "evaluate.bootstrap_samples=200", "--set", "augment.preview_images=2"),
    *("--set", "lungs.epochs=20"),  # a segmenter that finds the lungs, in a quarter of the default's time
]


def sh(*args, cwd, env=None, check=True):
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert out.returncode == 0, f"{args}: {out.stdout[-3000:]} {out.stderr[-3000:]}"
    return out


def git(*args, cwd):
    return sh("git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args, cwd=cwd)


def images(per_class: int, skip: int = 0) -> dict[str, list[Path]]:
    """`per_class` real images of each class from the bundled dataset, after the first `skip` (sorted)."""
    return {c: sorted((SAMPLE / c).glob("*.png"))[skip : skip + per_class] for c in ("COVID", "Normal")}


def new_version(repo: Path, files: dict[str, list[Path]], message: str) -> str:
    """Copy `files` into the tracked folder, `dvc add` it, commit; returns the data version (md5)."""
    for label, paths in files.items():
        (repo / "data" / "covid-radiography-sample" / label).mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copy(path, repo / "data" / "covid-radiography-sample" / label / path.name)
    if not (repo / "data.dvc").is_file():  # data.dvc tracks the folder the pipeline reads, as in the project
        (repo / "data.dvc").write_text("outs:\n- path: data/covid-radiography-sample\n")
        sh(BIN / "dvc", "commit", "-f", "-q", "data.dvc", cwd=repo)
    else:
        sh(BIN / "dvc", "add", "-q", "data/covid-radiography-sample", cwd=repo)
        assert not (repo / "data" / "covid-radiography-sample.dvc").exists()  # dvc add updated data.dvc
    git("add", "-A", cwd=repo)
    git("commit", "-qm", message, cwd=repo)
    return (repo / "data.dvc").read_text().split("md5: ")[1].split()[0]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    repo = tmp_path_factory.mktemp("project")
    store = f"sqlite:///{repo / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    git("init", "-q", "-b", "main", cwd=repo)
    shutil.copy(PROJECT / "params.yaml", repo / "params.yaml")
    (repo / ".gitignore").write_text("mlflow.db\n/.kfp/\n/mlflow/\n")
    sh(BIN / "dvc", "init", "-q", cwd=repo)
    return {"repo": repo, "store": store, "env": env}


def cxr(loop, *args, check=False):
    return sh(BIN / "cxr", *args, cwd=loop["repo"], env=loop["env"], check=check)


def client(loop):
    return mlflow.MlflowClient(tracking_uri=loop["store"], registry_uri=loop["store"])


def versions(loop):
    return sorted(client(loop).search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))


def test_the_release_loop_from_new_data_to_a_served_model(loop, tmp_path):
    repo = loop["repo"]
    # A: the 40-image sample -> the gate cannot decide on 8 validation images; nothing registered
    version_a = new_version(repo, images(20), "data A: 40 images")
    a = cxr(loop, "retrain", "--json", *FAST)
    result_a = json.loads(a.stdout)
    assert a.returncode == 3 and result_a["gate"]["outcome"] == "inconclusive", a.stdout[-2000:] + a.stderr[-2000:]
    assert result_a["data_version"] == version_a and versions(loop) == []
    assert result_a["retrain"]["message"] == "no registered version yet: training"
    # 8 validation images (4 per class) are below gate.min_val_per_class: the terminal says so and what next
    assert "below gate.min_val_per_class 10" in result_a["gate"]["reason"] and "gate: INCONCLUSIVE" in a.stderr
    assert "next:\n  make ui, then open http://127.0.0.1:5000/#/experiments/" in a.stderr
    assert "\n  add labelled images" in a.stderr
    run_a = client(loop).get_run(result_a["mlflow_run_id"])
    assert run_a.data.tags["gate.outcome"] == "inconclusive" and run_a.data.tags["registered_version"] == "none"
    assert run_a.info.status == "FINISHED"
    # the web app starts with nothing released: healthy, not ready, and says so
    params = loop["repo"].parent / "serve-params.yaml"
    params.write_text((repo / "params.yaml").read_text().replace("reload_s: 30", f"reload_s: {RELOAD_S}"))
    proc, base = start_server(tmp_path, loop["store"], "--params", str(params), ready=False)
    try:
        _serve_through_the_loop(loop, base)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    history = cxr(loop, "registry", "history", "--json", check=True)
    assert all(str(v.version) in history.stdout for v in versions(loop)) and "promote" in history.stdout


def wait_for_version(base: str, version: str, statuses: list[int], timeout: float = 90) -> float:
    """Seconds until the app answers with `version`; every prediction's status goes to `statuses`."""
    start, image = time.time(), images(1, skip=190)["COVID"][0].read_bytes()
    while time.time() - start < timeout:
        answer = requests.post(base + "/api/predict", files={"file": ("x.png", image)}, timeout=60)
        statuses.append(answer.status_code)
        if answer.status_code == 200 and answer.json()["model_version"] == version:
            return time.time() - start
        time.sleep(1)
    raise AssertionError(f"version {version} not served within {timeout} s: {requests.get(base + '/readyz').text}")


def _serve_through_the_loop(loop, base: str) -> None:
    """B and C of the loop, with the app (started before anything was registered) watched throughout."""
    repo, statuses = loop["repo"], []
    ready = requests.get(base + "/readyz", timeout=10)
    assert ready.status_code == 503 and "No model has been released yet" in ready.json()["reason"]
    assert "No model has been released yet" in requests.get(base + "/", timeout=10).text

    # B: 200 images -> retrain sees the new version, the gate passes, @challenger; the app picks it up
    version_b = new_version(repo, images(100), "data B: 200 images")
    b = cxr(loop, "retrain", "--json", *FAST)
    result_b = json.loads(b.stdout)
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-2000:]
    assert result_b["gate"]["outcome"] == "passed" and result_b["registered"]["alias"] == "challenger"
    (v1,) = versions(loop)
    assert v1.tags["data_version"] == version_b and {"params_hash", "code_version"} <= set(v1.tags)
    assert result_b["scope"]["refuse_rate"] >= 0.9 and result_b["shortcut"]["lungs_hidden_auc"] is not None
    unchanged = cxr(loop, "retrain", *FAST, check=True)
    assert "nothing to do" in unchanged.stdout
    wait_for_version(base, str(v1.version), statuses)

    # the release manager promotes it: the same version, now as @champion
    cxr(loop, "registry", "promote", v1.version, "--reason", "passed on data B", check=True)
    time.sleep(RELOAD_S + 2)
    ready = requests.get(base + "/readyz", timeout=10).json()
    assert ready["model_version"] == str(v1.version) and ready["model_uri"].endswith("@champion"), ready

    # C: B plus 40 images it has not seen -> retrain names the change; the gate compares with the champion
    version_c = new_version(repo, images(20, skip=100), "data C: 240 images")
    c = cxr(loop, "retrain", "--json", *FAST, "--set", "gate.min_delta=-1")
    result_c = json.loads(c.stdout)
    assert result_c["retrain"]["changed"] == ["data"], result_c["retrain"]
    assert f"data {version_b} -> {version_c}" in result_c["retrain"]["message"]
    assert c.returncode == 0, c.stdout[-2000:] + c.stderr[-2000:]
    assert "champion" in result_c["gate"]["reason"], result_c["gate"]
    v1, v2 = versions(loop)
    assert v2.tags["data_version"] == version_c
    # a radiologist records the finding for one of v1's answers: compare shows v1's figures in use
    image = images(1, skip=190)["COVID"][0].read_bytes()
    answer = requests.post(base + "/api/predict", files={"file": ("x.png", image)}, timeout=60).json()
    finding = {"prediction_id": answer["prediction_id"], "finding": "covid"}
    requests.post(base + "/api/feedback", json=finding, timeout=30).raise_for_status()
    compared = cxr(loop, "registry", "compare", "champion", v2.version, check=True)
    assert f"v{v1.version}" in compared.stdout and f"v{v2.version}" in compared.stdout
    in_use = compared.stdout.split("In use, from radiologists' findings")[1]
    assert f"v{v1.version}: sensitivity " in in_use or "Refused" in answer.get("error", ""), compared.stdout

    # the release manager promotes v2: the running app serves it within one interval, no restart, no 5xx
    cxr(loop, "registry", "promote", v2.version, "--reason", "data C", check=True)
    took = wait_for_version(base, str(v2.version), statuses)
    assert took <= 90 and all(s < 500 for s in statuses), statuses
    assert f"version {v2.version}" in requests.get(base + "/", timeout=10).text
