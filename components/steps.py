"""One thin kfp v2 component per pipeline step. Each translates typed artifacts to paths and calls its
step in `cxr.steps` (one module per step); no logic lives here. kfp ships each function's source into
its container, so every import happens inside the function body.

Images: CPU steps run in the components image, training in the GPU training image. Both names are
placeholders rewritten at compile time from `cluster.image_registry` and `cluster.image_tag`
(`pipelines.compile.compile_pipeline`).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

CPU_IMAGE = "cxr-python-components:latest"
GPU_IMAGE = "cxr-python-train-gpu:latest"


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(
    data_dir: str,
    params_json: str,
    tracking_uri: str,
    run_name: str,
    data_version: str,
    git_commit: str,
    dvc_remote: str,
    kfp_run_id: str,
    dataset: Output[Dataset],
) -> NamedTuple("IngestOutputs", [("run_id", str), ("data_version", str)]):
    """Folder of class sub-folders -> manifest + normalised images; opens the pipeline's MLflow run.

    Args:
        data_dir: Folder of class sub-folders (checkout or mounted volume); unused when dvc_remote is set.
        params_json: The run's parameters (params.yaml after profile and overrides) as JSON.
        tracking_uri: MLflow tracking server or store.
        run_name: Name of the MLflow parent run.
        data_version: The DVC version asked for (data.dvc's md5); fetched from dvc_remote when that is set.
        git_commit: Commit of the code that compiled the pipeline.
        dvc_remote: DVC remote to fetch data_version from (s3://bucket/dvc-store or a path); empty: read data_dir.
        kfp_run_id: The Kubeflow run id; tags the MLflow run so the exit handler can close it.
        dataset: Output: manifest.csv and the normalised images.

    Returns:
        run_id: The MLflow parent run's id. data_version: the DVC version of the files actually read.
    """
    from collections import namedtuple
    from pathlib import Path

    from cxr.params import params_from_json
    from cxr.steps.context import open_pipeline_run
    from cxr.steps.ingest import ingest_step

    params = params_from_json(params_json)
    scratch = str(Path(dataset.path).parent / "source")
    ctx, data_dir, actual_version = open_pipeline_run(
        params,
        tracking_uri,
        run_name,
        data_dir,
        data_version,
        git_commit,
        "kfp",
        dvc_remote,
        scratch,
        {"kfp_run_id": kfp_run_id},
    )
    summary = ingest_step(ctx, data_dir, dataset.path, params)
    dataset.metadata.update({**summary, "data_version": actual_version})
    return namedtuple("IngestOutputs", ["run_id", "data_version"])(ctx.parent_run_id, actual_version)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate(
    dataset: Input[Dataset],
    params_json: str,
    tracking_uri: str,
    parent_run_id: str,
    report: Output[HTML],
) -> NamedTuple("ValidateOutputs", [("valid", bool)]):
    """great-expectations suite over the manifest; fails the pipeline (naming files) on violations.

    Args:
        dataset: The ingested dataset (manifest.csv and images).
        params_json: The run's parameters (params.yaml after profile and overrides) as JSON.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        report: Output: the suite's HTML data docs.

    Returns:
        valid: True (an invalid dataset fails the step).
    """
    import shutil
    from pathlib import Path

    from cxr.data.validation import report_index
    from cxr.params import params_from_json
    from cxr.steps.context import RunContext
    from cxr.steps.validate import validate_step

    report_dir = Path(report.path).parent / "validation"
    try:
        validate_step(
            RunContext(tracking_uri, parent_run_id), dataset.path, str(report_dir), params_from_json(params_json)
        )
    finally:
        page = report_index(report_dir)
        if page is not None:
            shutil.copyfile(page, report.path)
    return (True,)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def augment(
    dataset: Input[Dataset],
    params_json: str,
    tracking_uri: str,
    parent_run_id: str,
    augmentation: Output[Dataset],
):
    """The paper's augmentation (applied on the fly by training, train split only) and a preview.

    Args:
        dataset: The ingested dataset.
        params_json: The run's parameters (params.yaml after profile and overrides) as JSON.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        augmentation: Output: augmentation.json (the parameters training applies) and a preview grid.
    """
    from cxr.params import params_from_json
    from cxr.steps.augment import augment_step
    from cxr.steps.context import RunContext

    spec = augment_step(
        RunContext(tracking_uri, parent_run_id), dataset.path, augmentation.path, params_from_json(params_json)
    )
    augmentation.metadata.update({k: str(v) for k, v in spec.items()})


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    augmentation: Input[Dataset],
    params_json: str,
    tracking_uri: str,
    parent_run_id: str,
    model: Output[Model],
) -> NamedTuple("TrainOutputs", [("model_uri", str)]):
    """VGG16 (frozen in the CPU profile, fine-tuned in the paper's) and its head (`train.head`: a linear
    probe, or the paper's Dense 1024 -> 512 -> 1), fitted, calibrated and thresholded on held-out images.

    Args:
        dataset: The ingested dataset.
        augmentation: The augmentation spec from the augment step.
        params_json: The run's parameters (params.yaml after profile and overrides) as JSON.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        model: Output: model.keras and config.json (image size, threshold and how it was chosen).

    Returns:
        model_uri: The logged MLflow model (models:/m-<id>).
    """
    import json
    from pathlib import Path

    from cxr.params import params_from_json
    from cxr.steps.context import RunContext
    from cxr.steps.train import train_step

    params = params_from_json(params_json)
    spec = json.loads((Path(augmentation.path) / "augmentation.json").read_text())
    print("augmentation applied to the train split:", spec)
    model_uri = train_step(RunContext(tracking_uri, parent_run_id), dataset.path, model.path, params)
    model.metadata.update(
        {"mlflow_model_uri": model_uri, "image_size": params.train.image_size, "weights": params.train.weights}
    )
    return (model_uri,)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    params_json: str,
    tracking_uri: str,
    parent_run_id: str,
    metrics: Output[Metrics],
    val_classification: Output[ClassificationMetrics],
    test_classification: Output[ClassificationMetrics],
    report: Output[Dataset],
) -> NamedTuple("EvaluateOutputs", [("val_f1", float)]):
    """Metrics on val (gated) and test (recorded) with bootstrap intervals, confusion matrices, ROC.

    Args:
        dataset: The ingested dataset.
        model: The trained model from the train step.
        params_json: The run's parameters (params.yaml after profile and overrides) as JSON.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        metrics: Output: every val_*/test_* metric (shown in the KFP UI).
        val_classification: Output: the validation confusion matrix and ROC curve.
        test_classification: Output: the test confusion matrix and ROC curve.
        report: Output: val_report.json and test_report.json (predictions, intervals) and the plots.

    Returns:
        val_f1: Validation F1 (COVID positive).
    """
    import math

    from cxr.params import params_from_json
    from cxr.steps.context import RunContext
    from cxr.steps.evaluate import evaluate_step

    reports = evaluate_step(
        RunContext(tracking_uri, parent_run_id), dataset.path, model.path, report.path, params_from_json(params_json)
    )
    for split, target in (("val", val_classification), ("test", test_classification)):
        if split not in reports:
            continue
        r = reports[split]
        for key, value in r["metrics"].items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics.log_metric(f"{split}_{key}", value)
        target.log_confusion_matrix(r["confusion_matrix"]["labels"], r["confusion_matrix"]["matrix"])
        if r["roc"]["fpr"]:
            target.log_roc_curve(r["roc"]["fpr"], r["roc"]["tpr"], r["roc"]["thresholds"])
    return (float(reports["val"]["metrics"]["f1"]),)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate(
    dataset: Input[Dataset],
    report: Input[Dataset],
    params_json: str,
    tracking_uri: str,
    parent_run_id: str,
) -> NamedTuple("GateOutputs", [("outcome", str), ("decision", str)]):
    """The promotion gate on validation F1 intervals (against the champion on the same images).

    Args:
        dataset: The ingested dataset (its validation split re-scores the champion).
        report: The evaluation reports (val_report.json decides, test_report.json is recorded).
        params_json: The run's parameters as JSON (gate.min_f1, gate.min_delta, gate.min_val_per_class).
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.

    Returns:
        outcome: passed, failed or inconclusive. decision: the whole decision as JSON.
    """
    from collections import namedtuple

    from cxr.params import params_from_json
    from cxr.steps.context import RunContext
    from cxr.steps.gate import gate_step

    decision = gate_step(
        RunContext(tracking_uri, parent_run_id), dataset.path, report.path, params_from_json(params_json)
    )
    print("gate:", decision.outcome.upper(), "-", decision.reason)
    return namedtuple("GateOutputs", ["outcome", "decision"])(decision.outcome, decision.to_json())


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(
    model_uri: str,
    decision: str,
    params_json: str,
    tracking_uri: str,
    parent_run_id: str,
    data_version: str,
    git_commit: str,
) -> NamedTuple("RegisterOutputs", [("version", str)]):
    """Register the gated model as a new version with the challenger alias, its gate record and model card.

    Args:
        model_uri: The MLflow model from the train step.
        decision: The gate's decision as JSON.
        params_json: The run's parameters (params.yaml after profile and overrides) as JSON.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        data_version: The DVC version of the data the ingest step read.
        git_commit: Commit of the code that compiled the pipeline.

    Returns:
        version: The registered version number.
    """
    from cxr.params import params_from_json
    from cxr.steps.context import RunContext
    from cxr.steps.register import register_step

    version = register_step(
        RunContext(tracking_uri, parent_run_id),
        model_uri,
        decision,
        params_from_json(params_json),
        {"data_version": data_version, "git_commit": git_commit},
    )
    print("registered version", version)
    return (version,)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def finalize(params_json: str, tracking_uri: str, kfp_run_id: str, status: dsl.PipelineTaskFinalStatus) -> NamedTuple(
    "FinalizeOutputs", [("closed_as", str)]
):
    """Exit handler: closes the MLflow parent run however the pipeline ended (FAILED unless it succeeded).

    Args:
        params_json: The run's parameters as JSON (for the experiment name).
        tracking_uri: MLflow tracking server or store.
        kfp_run_id: The Kubeflow run id the parent run is tagged with.
        status: The pipeline's final state, filled in by Kubeflow.

    Returns:
        closed_as: FAILED or FINISHED when the run was still open, '' when a step had closed it.
    """
    from cxr.params import params_from_json
    from cxr.tracking import runs as tracking

    experiment = params_from_json(params_json).mlflow.experiment
    closed = tracking.close_pipeline_run(tracking_uri, experiment, kfp_run_id, status.state, status.error_message)
    from cxr import events

    events.figure(f"pipeline {status.state}; MLflow run " + (f"closed as {closed}" if closed else "already closed"))
    return (closed,)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def reject(decision: str, tracking_uri: str, parent_run_id: str) -> NamedTuple("RejectOutputs", [("reason", str)]):
    """The gate failed or was inconclusive: nothing is registered; the reason is recorded on the MLflow run.

    Args:
        decision: The gate's decision as JSON.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.

    Returns:
        reason: Why nothing was registered.
    """
    from cxr.steps.context import RunContext
    from cxr.steps.register import reject_step

    reason = reject_step(RunContext(tracking_uri, parent_run_id), decision)
    print("not registered:", reason)
    return (reason,)
