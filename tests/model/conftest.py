"""The real CPU-profile network trained on the sample, shared by the model tests (input gate, drift)."""

from pathlib import Path

import mlflow
import pytest
from filelock import FileLock

from cxr.data.images import encode_png
from cxr.inference.classifier import XrayClassifier, log_model
from cxr.model.config import ModelConfig
from cxr.model.segmenter import SEGMENTER_FILE
from cxr.params import load_params
from cxr.safety.input_gate import OOD_FILE
from cxr.safety.ood_set import build_ood_set
from tests.conftest import train_on_sample


def _train(tmp):
    served = load_params()
    size = f"train.image_size={served.train.image_size}"  # TINY's 32 px would not be the served gate
    # the segmenter as params.yaml fits it, not TINY's: the gate reads the crop the segmenter finds, so a
    # weaker segmenter would test a weaker gate than the served model's
    lungs = [f"lungs.{key}={getattr(served.lungs, key)}" for key in ("size", "epochs", "fit_share")]
    # the frozen base's pass as params.yaml runs it (auto: OpenVINO int8 here), not TINY's TensorFlow
    runtime = [f"train.{key}={getattr(served.train, key)}" for key in ("runtime", "precision")]
    return train_on_sample(tmp, "train.weights=hed", size, "train.epochs=1", "train.batch_size=8", *lungs, *runtime)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, worker_id):
    """Trained once per test session: under pytest-xdist the first worker to ask trains it into the
    session's shared folder and the others wait for it and load the same files (pytest-xdist's recipe)."""
    tmp = tmp_path_factory.mktemp("gate")
    if worker_id == "master":
        model, shared = _train(tmp), tmp
    else:
        shared = tmp_path_factory.getbasetemp().parent / "model-gate"
        with FileLock(f"{shared}.lock"):
            done = shared / "trained"
            if not done.is_file():
                shared.mkdir(exist_ok=True)
                model = _train(shared)
                done.write_text(str(model))
            model = Path(done.read_text())
    classifier = XrayClassifier().load(
        model / "model.keras", ModelConfig.read(model), model / OOD_FILE, lungs_path=model / SEGMENTER_FILE
    )
    return {"dir": model, "dataset": shared / "ds", "classifier": classifier, "tmp": tmp}


@pytest.fixture(scope="session")
def logged(trained, tmp_path_factory):
    """The model logged to a real MLflow store, as the pipeline logs it; plus a chart and a text image."""
    tmp = tmp_path_factory.mktemp("logged")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    # artifacts beside the store, not in ./mlruns (a SQLite store's default experiment keeps them there)
    experiment = mlflow.create_experiment("model-tests", artifact_location=(tmp / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        log_model(trained["dir"])
    ood = {i.kind: i for i in build_ood_set()}
    files = {"chart": tmp / "chart.png", "text": tmp / "text.png"}
    for kind, path in files.items():
        path.write_bytes(encode_png(ood[kind].array))
    return {"uri": uri, "model": f"runs:/{run.info.run_id}/model", **files}
