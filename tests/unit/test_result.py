"""The run's outcome as a contract: the --json object follows its schema, the exit code says what
happened (0 registered, 3 gate refused, 2 failed), and the CI job summary tells the story."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from cxr.params import load_params
from cxr_cli.result import (
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_REGISTERED,
    SCHEMA_PATH,
    build_result,
    failure_result,
    load_result,
    render_markdown,
    render_text,
    skipped_result,
)
from pipelines.local import PipelineOutcome

SCHEMA = json.loads(SCHEMA_PATH.read_text())
CXR = str(Path(sys.executable).parent / "cxr")
METRICS = {
    **{f"val_{k}": v for k, v in {"f1": 0.8, "f1_ci_low": 0.5, "f1_ci_high": 1.0, "n": 20, "tp": 8, "fp": 2}.items()},
    **{f"val_{k}": v for k, v in {"tn": 8, "fn": 2, "accuracy": 0.8, "roc_auc": 0.9, "threshold": 0.5}.items()},
    "test_f1": 0.7,
    "test_f1_ci_low": 0.4,
    "test_f1_ci_high": 0.9,
    "test_n": 20,
    **{f"{s}_{k}": v for s in ("val", "test") for k, v in {"ppv": 0.31, "npv": 0.97, "prevalence": 0.1}.items()},
    **{"val_ood_accept_rate": 1.0, "test_ood_accept_rate": 0.95, "ood_reject_rate": 0.98, "ood_n": 50},
}


def outcome(**fields) -> PipelineOutcome:
    base = dict(
        run_id="abc123",
        status="FINISHED",
        metrics=METRICS,
        gate_passed=True,
        gate_outcome="passed",
        gate_reason="val F1 lower bound 0.50 >= gate.min_f1 0.50",
        registered_version="4",
        run_name="pipeline-x",
        experiment_id="7",
        data_version="e007317ae8a10228b6bf72619c8db6e8.dir",
        git_commit="db098999b113",
    )
    return PipelineOutcome(**{**base, **fields})


CASES = {
    "registered": (outcome(), EXIT_REGISTERED),
    "gate failed": (outcome(gate_passed=False, gate_outcome="failed", registered_version="none"), EXIT_REFUSED),
    "inconclusive": (
        outcome(gate_passed=False, gate_outcome="inconclusive", registered_version="none", gate_advice="add images"),
        EXIT_REFUSED,
    ),
    "step failed": (
        outcome(status="FAILED", gate_passed=None, gate_outcome="", registered_version="", error="x.png is corrupt"),
        EXIT_FAILED,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_way_a_run_ends_has_its_exit_code_and_follows_the_schema(case):
    run, code = CASES[case]
    result = build_result(run, load_params(), "sqlite:////tmp/mlflow.db", "run.log")
    jsonschema.validate(result, SCHEMA)
    assert result["exit_code"] == code
    assert (result["registered"] is not None) == (code == EXIT_REGISTERED)
    if code != EXIT_REGISTERED:
        assert result["not_registered_reason"]


def test_runs_that_never_started_or_had_nothing_to_do_follow_the_schema_too():
    jsonschema.validate(failure_result("Data folder /x does not exist", "sqlite:///m.db"), SCHEMA)
    skipped = skipped_result(
        "http://mlflow:5000",
        retrain={
            "ran": False,
            "message": "nothing",
            "data_version": "v",
            "changed": [],
            "signature": {"data_version": "v", "params_hash": "p", "code_version": "c"},
        },
    )
    jsonschema.validate(skipped, SCHEMA)
    assert skipped["exit_code"] == 0 and skipped["status"] == "SKIPPED"


def test_the_schema_refuses_what_a_script_could_not_rely_on():
    result = build_result(CASES["registered"][0], load_params(), "sqlite:///m.db")
    for broken in ({**result, "exit_code": 1}, {k: v for k, v in result.items() if k != "gate"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


def test_the_terminal_summary_gives_intervals_the_decision_and_what_to_do_next():
    text = "\n".join(render_text(build_result(CASES["registered"][0], load_params(), "sqlite:///m.db", "run.log")))
    assert "0.80 [0.50, 1.00]" in text and "gate: PASSED; registered covid-xray-vgg16 version 4 as @challenger" in text
    assert "make ui, then open http://127.0.0.1:5000/#/experiments/7/runs/abc123" in text
    assert "cxr serve --model models:/covid-xray-vgg16/4" in text and "cxr registry promote 4" in text
    assert "PPV / NPV at prevalence 0.10: val 0.31 / 0.97, test 0.31 / 0.97" in text
    assert "input gate: accepts 100% of val, 95% of test; refuses 98% of 50 non-X-rays" in text
    refused = build_result(CASES["inconclusive"][0], load_params(), "https://mlflow.example.org")
    text = "\n".join(render_text(refused))
    assert "gate: INCONCLUSIVE; nothing registered" in text and "  add images" in text
    assert "open https://mlflow.example.org/#/experiments/7/runs/abc123" in text


def test_the_job_summary_has_the_data_version_metrics_gate_link_and_confusion_matrix():
    md = render_markdown(build_result(CASES["registered"][0], load_params(), "https://mlflow.example.org"))
    assert md.startswith("## Retraining: gate: PASSED; registered covid-xray-vgg16 version 4")
    assert "| Data version | `e007317ae8a10228b6bf72619c8db6e8.dir` |" in md
    assert "[pipeline-x](https://mlflow.example.org/#/experiments/7/runs/abc123?workflowType=machine_learning)" in md
    assert "| val | 20 | 0.80 [0.50, 1.00] |" in md and "| test | 20 | 0.70 [0.40, 0.90] |" in md
    assert "| **Normal** | 8 | 2 |" in md and "| **COVID** | 2 | 8 |" in md
    assert "input gate: accepts 100% of val, 95% of test; refuses 98% of 50 non-X-rays." in md


def test_summary_command_renders_a_result_file_and_refuses_a_broken_one_in_a_sentence(tmp_path):
    good = tmp_path / "result.json"
    good.write_text(json.dumps(build_result(CASES["step failed"][0], load_params(), "sqlite:///m.db")))
    out = subprocess.run([CXR, "pipeline", "summary", str(good)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "**Error:** x.png is corrupt" in out.stdout
    assert load_result(good)["exit_code"] == EXIT_FAILED
    for content in ("", '{"schema": "something else"}'):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        out = subprocess.run([CXR, "pipeline", "summary", str(bad)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stdout.startswith("## Retraining: no result") and str(bad) in out.stderr


def test_a_cross_validated_run_reports_the_fold_spread_and_its_calibration():
    cv = {
        f"cv_{m}_{s}": v
        for m in ("f1", "accuracy", "sensitivity", "specificity")
        for s, v in (("mean", 0.8), ("std", 0.1))
    }
    calibrated = {"temperature": 1.7, "ece_before_calibration": 0.21, "ece_after_calibration": 0.06}
    result = build_result(outcome(metrics=METRICS | cv | calibrated | {"cv_folds": 5}), load_params(), "sqlite:///m.db")
    jsonschema.validate(result, SCHEMA)
    assert result["cross_validation"]["folds"] == 5 and result["cross_validation"]["f1"] == {"mean": 0.8, "std": 0.1}
    text = "\n".join(render_text(result))
    assert "5-fold CV over train + val (mean ± std over folds): f1 0.80 ± 0.10, accuracy 0.80 ± 0.10" in text
    assert "calibration: temperature 1.70, ECE 0.210 -> 0.060 on the images it was fitted on" in text
    assert "5-fold CV over train + val" in render_markdown(result)
    plain = build_result(outcome(), load_params(), "sqlite:///m.db")
    assert plain["cross_validation"] is None and plain["calibration"] is None
    assert "CV" not in "\n".join(render_text(plain))
