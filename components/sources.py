"""The pipeline's steps as kfp components are written: one thin function per step, translating typed
artifacts to paths and calling its step in `cxr.steps` (one module per step); no logic lives here.

Each function takes `params: Params` and names the run parameters it reads in `@step(uses=...)`;
`python -m components.generate` writes components/kfp_steps.py, where each is the kfp component whose
signature holds exactly those typed parameters. kfp ships each component's source into its container,
so every import happens inside the function body.

Images: CPU steps run in the components image, training in the GPU training image. Both names are
placeholders rewritten at compile time from `cluster.image_registry` and `cluster.image_tag`
(`pipelines.compile.compile_pipeline`).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from cxr.params import Params

CPU_IMAGE = "cxr-python-components:latest"
GPU_IMAGE = "cxr-python-train-gpu:latest"


def step(uses: tuple[str, ...], image: str = CPU_IMAGE):
    """Marks a step for components/generate.py: the run parameters it reads (sections, `stage.key`
    entries, or `profile`) and the image it runs in. The function itself is returned unchanged."""

    def mark(func):
        func.__kfp__ = {"uses": tuple(uses), "image": image}
        return func

    return mark


SHAPING = (
    "ingest",
    "validate",
    "augment",
    "train",
    "lungs",
    "evaluate",
    "ood",
    "scope",
)  # what start_run hashes and logs


@step(uses=("ingest",))
def ingest(
    data_dir: str,
    dvc_remote: str,
    data_version: str,
    folder_version: str,
    code_version: str,
    dataset: Output[Dataset],
    params: Params,
) -> NamedTuple("IngestOutputs", [("data_version", str)]):
    """Folder of class sub-folders -> manifest + normalised images. Cached: keyed on the data version and
    the ingest parameters; it writes nothing to MLflow (start_run records it).

    Args:
        data_dir: Folder of class sub-folders (checkout or mounted volume); unused when dvc_remote is set.
        dvc_remote: DVC remote to fetch data_version from (s3://bucket/dvc-store or a path); empty: read data_dir.
        data_version: The DVC version asked for (data.dvc's md5).
        folder_version: md5 of data_dir as a local runner read it (empty on a cluster); only part of the cache key.
        code_version: Hash of the cxr code that compiled the pipeline; only part of the cache key.
        dataset: Output: manifest.csv and the normalised images.

    Returns:
        data_version: The DVC version of the files actually read.
    """
    from collections import namedtuple
    from pathlib import Path

    from cxr.steps.context import resolve_data
    from cxr.steps.ingest import run_ingest

    scratch = str(Path(dataset.path).parent / "source")
    data_dir, actual_version = resolve_data(data_dir, data_version, dvc_remote, scratch)
    summary = run_ingest(data_dir, dataset.path, params)
    dataset.metadata.update({**summary, "data_version": actual_version})
    return namedtuple("IngestOutputs", ["data_version"])(actual_version)


@step(uses=("validate", "ingest.near_duplicate_bits"))
def validate(
    dataset: Input[Dataset],
    code_version: str,
    validation: Output[Dataset],
    report: Output[HTML],
    params: Params,
) -> NamedTuple("ValidateOutputs", [("valid", bool)]):
    """great-expectations suite over the manifest. Cached; a failed suite is an outcome, not an error:
    start_run records it and stops the pipeline, naming the files.

    Args:
        dataset: The ingested dataset (manifest.csv and images).
        code_version: Hash of the cxr code that compiled the pipeline; only part of the cache key.
        validation: Output: outcome.json (success, statistics, failures) and the data docs.
        report: Output: the suite's HTML data docs page.

    Returns:
        valid: Whether every expectation held.
    """
    import shutil

    from cxr.data.validation import report_index
    from cxr.steps.validate import run_validation

    outcome = run_validation(dataset.path, validation.path, params)
    page = report_index(validation.path)
    if page is not None:
        shutil.copyfile(page, report.path)
    validation.metadata.update({"success": outcome.success, "failures": len(outcome.failures)})
    return (outcome.success,)


@step(uses=(*SHAPING, "gate", "register", "mlflow", "profile"))
def start_run(
    dataset: Input[Dataset],
    validation: Input[Dataset],
    tracking_uri: str,
    run_name: str,
    data_dir: str,
    dvc_remote: str,
    data_version: str,
    data_version_read: str,
    git_commit: str,
    kfp_run_id: str,
    kfp_host: str,
    image_cpu: str,
    image_gpu: str,
    params: Params,
) -> NamedTuple("StartRunOutputs", [("run_id", str)]):
    """Opens the pipeline's MLflow run (never cached): lineage tags, every effective parameter, the ingest
    counts and the validation outcome; a dataset that failed validation stops the pipeline here.

    Args:
        dataset: The ingested dataset.
        validation: The validation outcome and data docs.
        tracking_uri: MLflow tracking server or store.
        run_name: Name of the MLflow parent run.
        data_dir: The data folder ingest read (empty when fetched from dvc_remote); the datasets' source.
        dvc_remote: The DVC remote ingest fetched from (empty: the repository's own); the datasets' source.
        data_version: The DVC version asked for.
        data_version_read: The DVC version of the files ingest read.
        git_commit: Commit of the code that compiled the pipeline.
        kfp_run_id: The Kubeflow run id; tags the MLflow run so the exit handler can close it.
        kfp_host: The Kubeflow Pipelines endpoint the run was submitted to; the MLflow run links back to it.
        image_cpu: The CPU steps' image as compiled, by digest where known; recorded as a tag.
        image_gpu: The training step's image as compiled, by digest where known; recorded as a tag.

    Returns:
        run_id: The MLflow parent run's id.
    """
    from cxr import events
    from cxr.steps.context import start_lineage_run
    from cxr.steps.ingest import record_ingest, summarise
    from cxr.steps.validate import read_outcome, record_validation

    tags = {"kfp_run_id": kfp_run_id}
    tags |= {key: ref for key, ref in (("image_cpu", image_cpu), ("image_gpu", image_gpu)) if ref}
    if kfp_host:
        tags["kfp_run_url"] = f"{kfp_host.rstrip('/')}/#/runs/details/{kfp_run_id}"
    ctx = start_lineage_run(
        params, tracking_uri, run_name, data_version_read, data_version, git_commit, "kfp", tags, data_dir, dvc_remote
    )
    record_ingest(ctx, dataset.path, summarise(dataset.path))
    record_validation(ctx, validation.path, read_outcome(validation.path))
    events.figure(f"MLflow run {ctx.parent_run_id}")
    return (ctx.parent_run_id,)


@step(uses=("augment", "train.image_size", "train.seed"))
def augment(
    dataset: Input[Dataset],
    tracking_uri: str,
    parent_run_id: str,
    augmentation: Output[Dataset],
    params: Params,
):
    """The paper's augmentation (applied on the fly by training, train split only) and a preview.

    Args:
        dataset: The ingested dataset.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        augmentation: Output: augmentation.json (the parameters training applies) and a preview grid.
    """
    from cxr.steps.augment import augment_step
    from cxr.steps.context import RunContext

    spec = augment_step(RunContext(tracking_uri, parent_run_id), dataset.path, augmentation.path, params)
    augmentation.metadata.update({k: str(v) for k, v in spec.items()})


@step(uses=("ingest", "augment", "train", "lungs", "evaluate", "ood", "scope", "profile"), image=GPU_IMAGE)
def train(
    dataset: Input[Dataset],
    augmentation: Input[Dataset],
    tracking_uri: str,
    parent_run_id: str,
    model: Output[Model],
    params: Params,
) -> NamedTuple("TrainOutputs", [("model_uri", str)]):
    """VGG16 (frozen in the CPU profile, fine-tuned in the paper's) and its head (`train.head`: a linear
    probe, or the paper's Dense 1024 -> 512 -> 1), fitted, calibrated and thresholded on held-out images.

    Args:
        dataset: The ingested dataset.
        augmentation: The augmentation spec from the augment step.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        model: Output: model.keras and config.json (image size, threshold and how it was chosen).

    Returns:
        model_uri: The logged MLflow model (models:/m-<id>).
    """
    import json
    from pathlib import Path

    from cxr.steps.context import RunContext
    from cxr.steps.train import train_step

    spec = json.loads((Path(augmentation.path) / "augmentation.json").read_text())
    print("augmentation applied to the train split:", spec)
    model_uri = train_step(RunContext(tracking_uri, parent_run_id), dataset.path, model.path, params)
    model.metadata.update(
        {"mlflow_model_uri": model_uri, "image_size": params.train.image_size, "weights": params.train.weights}
    )
    return (model_uri,)


@step(uses=("evaluate.bootstrap_samples", "evaluate.prevalence", "evaluate.external_dir", "train.seed"))
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    tracking_uri: str,
    parent_run_id: str,
    metrics: Output[Metrics],
    val_classification: Output[ClassificationMetrics],
    test_classification: Output[ClassificationMetrics],
    report: Output[Dataset],
    params: Params,
) -> NamedTuple("EvaluateOutputs", [("val_f1", float)]):
    """Metrics on val (gated) and test (recorded) with bootstrap intervals, confusion matrices, ROC.

    Args:
        dataset: The ingested dataset.
        model: The trained model from the train step.
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

    from cxr.steps.context import RunContext
    from cxr.steps.evaluate import evaluate_step

    reports = evaluate_step(RunContext(tracking_uri, parent_run_id), dataset.path, model.path, report.path, params)
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


@step(uses=("gate", "register.model_name", "register.alias", "evaluate.bootstrap_samples", "mlflow.experiment"))
def gate(
    dataset: Input[Dataset],
    report: Input[Dataset],
    tracking_uri: str,
    mlflow_ui: str,
    parent_run_id: str,
    summary: Output[Markdown],
    decision: Output[Artifact],
    params: Params,
) -> NamedTuple("GateOutputs", [("outcome", str)]):
    """The promotion gate on validation F1 intervals (against the champion on the same images).

    Args:
        dataset: The ingested dataset (its validation split re-scores the champion).
        report: The evaluation reports (val_report.json decides, test_report.json is recorded).
        tracking_uri: MLflow tracking server or store.
        mlflow_ui: The MLflow UI's address as a browser reaches it (empty: tracking_uri); for the summary's links.
        parent_run_id: The pipeline's MLflow parent run.
        summary: Output: the decision and the link to the MLflow run (Markdown, shown in the KFP UI).
        decision: Output: the whole decision (gate.json, cxr.release.gate.GateDecision), for register or reject.

    Returns:
        outcome: passed, failed or inconclusive.
    """
    from collections import namedtuple
    from pathlib import Path

    from cxr.steps.context import RunContext
    from cxr.steps.gate import gate_step, gate_summary

    decided = gate_step(RunContext(tracking_uri, parent_run_id), dataset.path, report.path, params)
    print("gate:", decided.outcome.upper(), "-", decided.reason)
    Path(summary.path).write_text(gate_summary(decided, mlflow_ui or tracking_uri, parent_run_id))
    Path(decision.path).write_text(decided.to_json())
    decision.metadata.update({"outcome": decided.outcome, "reason": decided.reason})
    return namedtuple("GateOutputs", ["outcome"])(decided.outcome)


@step(uses=("register", "ingest.positive_class", "train.weights", "profile"))
def register(
    model_uri: str,
    decision: Input[Artifact],
    tracking_uri: str,
    parent_run_id: str,
    data_version: str,
    git_commit: str,
    params: Params,
) -> NamedTuple("RegisterOutputs", [("version", str)]):
    """Register the gated model as a new version with the challenger alias, its gate record and model card.

    Args:
        model_uri: The MLflow model from the train step.
        decision: The gate's decision (gate.json).
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        data_version: The DVC version of the data the ingest step read.
        git_commit: Commit of the code that compiled the pipeline.

    Returns:
        version: The registered version number.
    """
    from pathlib import Path

    from cxr.release.gate import GateDecision
    from cxr.steps.context import RunContext
    from cxr.steps.register import register_step
    from cxr.tracking.record import Lineage

    version = register_step(
        RunContext(tracking_uri, parent_run_id),
        model_uri,
        GateDecision.from_json(Path(decision.path).read_text()),
        params,
        Lineage(data_version=data_version, git_commit=git_commit),
    )
    print("registered version", version)
    return (version,)


@step(uses=("mlflow.experiment",))
def finalize(tracking_uri: str, kfp_run_id: str, status: dsl.PipelineTaskFinalStatus, params: Params) -> NamedTuple(
    "FinalizeOutputs", [("closed_as", str)]
):
    """Exit handler: closes the MLflow parent run however the pipeline ended (FAILED unless it succeeded).

    Args:
        tracking_uri: MLflow tracking server or store.
        kfp_run_id: The Kubeflow run id the parent run is tagged with.
        status: The pipeline's final state, filled in by Kubeflow.

    Returns:
        closed_as: FAILED or FINISHED when the run was still open, '' when a step had closed it (or none was opened).
    """
    from cxr import events
    from cxr.tracking import runs as tracking

    closed = tracking.close_pipeline_run(
        tracking_uri, params.mlflow.experiment, kfp_run_id, status.state, status.error_message
    )
    events.figure(f"pipeline {status.state}; MLflow run " + (f"closed as {closed}" if closed else "already closed"))
    return (closed,)


@step(uses=())
def reject(decision: Input[Artifact], tracking_uri: str, parent_run_id: str) -> NamedTuple(
    "RejectOutputs", [("reason", str)]
):
    """The gate failed or was inconclusive: nothing is registered; the reason is recorded on the MLflow run.

    Args:
        decision: The gate's decision (gate.json).
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.

    Returns:
        reason: Why nothing was registered.
    """
    from pathlib import Path

    from cxr.release.gate import GateDecision
    from cxr.steps.context import RunContext
    from cxr.steps.register import reject_step

    decided = GateDecision.from_json(Path(decision.path).read_text())
    reason = reject_step(RunContext(tracking_uri, parent_run_id), decided)
    print("not registered:", reason)
    return (reason,)
