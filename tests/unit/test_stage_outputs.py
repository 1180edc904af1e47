"""The data stages' outputs on 24 bundled X-rays, recorded per code version (code_versions.yaml): a change that
alters what ingest, validate or augment writes fails here until the stage's number is raised, so `dvc repro`
reruns it; a refactor that changes no output passes and leaves `dvc status` clean.

After raising a number on purpose, record the new outputs:
    .venv/bin/python -m tests.unit.test_stage_outputs --record
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import PROJECT, SAMPLE

RECORD = Path(__file__).with_name("stage_outputs.json")
STAGES = ("ingest", "validate", "augment")


def sample(dest: Path, per_class: int = 12) -> Path:
    for folder in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
        (dest / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.png"))[:per_class]:
            shutil.copy(path, dest / folder.name / path.name)
    return dest


def digest_tree(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def stage_outputs(tmp: Path) -> dict[str, str]:
    """Each data stage's output digest, the stages run as `cxr stage` runs them (without the MLflow logging).
    The preview image is digested coarsely (size, mean to 1 gray level): augmentation draws in float."""
    from cxr.data.augment import augmentation_spec, write_preview
    from cxr.data.manifest import read_manifest, split_frame
    from cxr.params import load_params
    from cxr.steps.ingest import run_ingest
    from cxr.steps.validate import run_validation

    params = load_params(overrides=["augment.preview_images=4", "train.image_size=64"])
    data, ds, report = sample(tmp / "data"), tmp / "dataset", tmp / "validation"
    run_ingest(str(data), str(ds), params)
    outcome = run_validation(str(ds), str(report), params)
    spec = augmentation_spec(params.augment)
    preview = write_preview(
        split_frame(read_manifest(ds), "train"), ds, params.augment, 64, tmp / "preview.png", seed=params.train.seed
    )
    pixels = np.asarray(Image.open(preview), np.float64)
    augmented = {"spec": spec, "preview": [list(pixels.shape), round(float(pixels.mean()))]}
    checked = {"success": outcome.success, "statistics": outcome.statistics, "failed": sorted(outcome.failures)}
    return {
        "ingest": digest_tree(ds),
        "validate": hashlib.sha256(json.dumps(checked, sort_keys=True).encode()).hexdigest()[:16],
        "augment": hashlib.sha256(json.dumps(augmented, sort_keys=True).encode()).hexdigest()[:16],
    }


def code_versions() -> dict[str, int]:
    return yaml.safe_load((PROJECT / "code_versions.yaml").read_text())


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return stage_outputs(tmp_path_factory.mktemp("stages"))


@pytest.mark.parametrize("stage", STAGES)
def test_a_data_stage_writes_what_its_code_version_recorded(outputs, stage):
    recorded = json.loads(RECORD.read_text())[stage]
    assert recorded["version"] == code_versions()[stage], (
        f"code_versions.yaml raised {stage} to {code_versions()[stage]}: record its outputs with "
        "`.venv/bin/python -m tests.unit.test_stage_outputs --record`"
    )
    assert outputs[stage] == recorded["digest"], (
        f"What the {stage} stage writes changed: raise `{stage}` in code_versions.yaml (so dvc repro reruns it), "
        "then record with `.venv/bin/python -m tests.unit.test_stage_outputs --record`."
    )


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = stage_outputs(Path(tmp))
    versions = code_versions()
    RECORD.write_text(json.dumps({s: {"version": versions[s], "digest": found[s]} for s in STAGES}, indent=2) + "\n")
    print(RECORD.read_text())
