"""The pipeline's kfp v2 components, one per step: GENERATED from components/sources.py by
`python -m components.generate` (do not edit; tests/unit/test_components.py checks it is in step).

Each takes the typed run parameters its step reads (`train_learning_rate`, ...), rebuilds `params` from
them and runs the step's body from components/sources.py. kfp ships each function's source into its
container, so every import happens inside the function body.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.sources import CPU_IMAGE, GPU_IMAGE

__all__ = ["ingest", "validate", "start_run", "augment", "train", "evaluate", "gate", "register", "finalize", "reject"]


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(
    data_dir: str,
    dvc_remote: str,
    data_version: str,
    folder_version: str,
    code_version: str,
    dataset: Output[Dataset],
    ingest_positive_class: str,
    ingest_split: dict,
    ingest_seed: int,
    ingest_near_duplicate_bits: int,
    ingest_workers: int,
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
        ingest_positive_class: params.yaml ingest.positive_class (str).
        ingest_split: params.yaml ingest.split (dict).
        ingest_seed: params.yaml ingest.seed (int).
        ingest_near_duplicate_bits: params.yaml ingest.near_duplicate_bits (int).
        ingest_workers: params.yaml ingest.workers (int).

    Returns:
        data_version: The DVC version of the files actually read."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "ingest.positive_class": ingest_positive_class,
            "ingest.split": ingest_split,
            "ingest.seed": ingest_seed,
            "ingest.near_duplicate_bits": ingest_near_duplicate_bits,
            "ingest.workers": ingest_workers,
        },
        "cpu",
    )
    from collections import namedtuple
    from pathlib import Path

    from cxr.steps.context import resolve_data
    from cxr.steps.ingest import run_ingest

    scratch = str(Path(dataset.path).parent / "source")
    data_dir, actual_version = resolve_data(data_dir, data_version, dvc_remote, scratch)
    summary = run_ingest(data_dir, dataset.path, params)
    dataset.metadata.update({**summary, "data_version": actual_version})
    return namedtuple("IngestOutputs", ["data_version"])(actual_version)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate(
    dataset: Input[Dataset],
    code_version: str,
    validation: Output[Dataset],
    report: Output[HTML],
    ingest_near_duplicate_bits: int,
    validate_expected_classes: list,
    validate_min_width: int,
    validate_min_height: int,
    validate_allowed_modes: list,
    validate_min_class_share: float,
    validate_max_class_share: float,
) -> NamedTuple("ValidateOutputs", [("valid", bool)]):
    """great-expectations suite over the manifest. Cached; a failed suite is an outcome, not an error:
    start_run records it and stops the pipeline, naming the files.

    Args:
        dataset: The ingested dataset (manifest.csv and images).
        code_version: Hash of the cxr code that compiled the pipeline; only part of the cache key.
        validation: Output: outcome.json (success, statistics, failures) and the data docs.
        report: Output: the suite's HTML data docs page.
        ingest_near_duplicate_bits: params.yaml ingest.near_duplicate_bits (int).
        validate_expected_classes: params.yaml validate.expected_classes (list).
        validate_min_width: params.yaml validate.min_width (int).
        validate_min_height: params.yaml validate.min_height (int).
        validate_allowed_modes: params.yaml validate.allowed_modes (list).
        validate_min_class_share: params.yaml validate.min_class_share (float).
        validate_max_class_share: params.yaml validate.max_class_share (float).

    Returns:
        valid: Whether every expectation held."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "ingest.near_duplicate_bits": ingest_near_duplicate_bits,
            "validate.expected_classes": validate_expected_classes,
            "validate.min_width": validate_min_width,
            "validate.min_height": validate_min_height,
            "validate.allowed_modes": validate_allowed_modes,
            "validate.min_class_share": validate_min_class_share,
            "validate.max_class_share": validate_max_class_share,
        },
        "cpu",
    )
    import shutil

    from cxr.data.validation import report_index
    from cxr.steps.validate import run_validation

    outcome = run_validation(dataset.path, validation.path, params)
    page = report_index(validation.path)
    if page is not None:
        shutil.copyfile(page, report.path)
    validation.metadata.update({"success": outcome.success, "failures": len(outcome.failures)})
    return (outcome.success,)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
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
    ingest_positive_class: str,
    ingest_split: dict,
    ingest_seed: int,
    ingest_near_duplicate_bits: int,
    ingest_workers: int,
    validate_expected_classes: list,
    validate_min_width: int,
    validate_min_height: int,
    validate_allowed_modes: list,
    validate_min_class_share: float,
    validate_max_class_share: float,
    augment_rotation_deg: float,
    augment_width_shift: float,
    augment_height_shift: float,
    augment_shear: float,
    augment_zoom: float,
    augment_horizontal_flip: bool,
    augment_mirror_both: bool,
    augment_shuffle_buffer: int,
    augment_preview_images: int,
    train_image_size: int,
    train_batch_size: int,
    train_epochs: int,
    train_learning_rate: float,
    train_momentum: float,
    train_clipnorm: float,
    train_weights: str,
    train_weights_path: str,
    train_freeze_base: bool,
    train_base_input: str,
    train_mixed_precision: str,
    train_flip_average: bool,
    train_augment_on: str,
    train_pooling: str,
    train_stat_blocks: list,
    train_stat_zones: list,
    train_runtime: str,
    train_precision: str,
    train_head: str,
    train_standardise: bool,
    train_dropout: float,
    train_l2: float,
    train_seed: int,
    lungs_view: str,
    lungs_equalise: bool,
    lungs_masks_dir: str,
    lungs_fit_share: float,
    lungs_size: int,
    lungs_epochs: int,
    lungs_seed: int,
    evaluate_threshold: float,
    evaluate_threshold_strategy: str,
    evaluate_target_sensitivity: float,
    evaluate_threshold_min_per_class: int,
    evaluate_threshold_prior_images: float,
    evaluate_bootstrap_samples: int,
    evaluate_prevalence: float,
    evaluate_cv_folds: int,
    evaluate_external_dir: str,
    ood_enabled: bool,
    ood_quantile: float,
    ood_folds: int,
    ood_max_components: int,
    ood_target_accept: float,
    ood_target_reject: float,
    ood_shift_quantile: float,
    ood_drift_components: int,
    scope_enabled: bool,
    scope_reference_dir: str,
    scope_accept_quantile: float,
    scope_c: float,
    scope_folds: int,
    scope_target_accept: float,
    scope_target_refuse: float,
    gate_min_f1: float,
    gate_min_delta: float,
    gate_min_val_per_class: int,
    gate_max_lungs_hidden_auc: float,
    gate_min_external_specificity: float,
    register_model_name: str,
    register_alias: str,
    mlflow_experiment: str,
    profile: str,
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
        ingest_positive_class: params.yaml ingest.positive_class (str).
        ingest_split: params.yaml ingest.split (dict).
        ingest_seed: params.yaml ingest.seed (int).
        ingest_near_duplicate_bits: params.yaml ingest.near_duplicate_bits (int).
        ingest_workers: params.yaml ingest.workers (int).
        validate_expected_classes: params.yaml validate.expected_classes (list).
        validate_min_width: params.yaml validate.min_width (int).
        validate_min_height: params.yaml validate.min_height (int).
        validate_allowed_modes: params.yaml validate.allowed_modes (list).
        validate_min_class_share: params.yaml validate.min_class_share (float).
        validate_max_class_share: params.yaml validate.max_class_share (float).
        augment_rotation_deg: params.yaml augment.rotation_deg (float).
        augment_width_shift: params.yaml augment.width_shift (float).
        augment_height_shift: params.yaml augment.height_shift (float).
        augment_shear: params.yaml augment.shear (float).
        augment_zoom: params.yaml augment.zoom (float).
        augment_horizontal_flip: params.yaml augment.horizontal_flip (bool).
        augment_mirror_both: params.yaml augment.mirror_both (bool).
        augment_shuffle_buffer: params.yaml augment.shuffle_buffer (int).
        augment_preview_images: params.yaml augment.preview_images (int).
        train_image_size: params.yaml train.image_size (int).
        train_batch_size: params.yaml train.batch_size (int).
        train_epochs: params.yaml train.epochs (int).
        train_learning_rate: params.yaml train.learning_rate (float).
        train_momentum: params.yaml train.momentum (float).
        train_clipnorm: params.yaml train.clipnorm (float).
        train_weights: params.yaml train.weights (str). One of: hed, imagenet, none.
        train_weights_path: params.yaml train.weights_path (str).
        train_freeze_base: params.yaml train.freeze_base (bool).
        train_base_input: params.yaml train.base_input (str). One of: caffe, rescale.
        train_mixed_precision: params.yaml train.mixed_precision (str). One of: auto, on, off, true, false.
        train_flip_average: params.yaml train.flip_average (bool).
        train_augment_on: params.yaml train.augment_on (str). One of: auto, data, model.
        train_pooling: params.yaml train.pooling (str). One of: block_stats, flatten, average.
        train_stat_blocks: params.yaml train.stat_blocks (list).
        train_stat_zones: params.yaml train.stat_zones (list).
        train_runtime: params.yaml train.runtime (str). One of: auto, tensorflow, openvino.
        train_precision: params.yaml train.precision (str). One of: fp32, bf16, int8.
        train_head: params.yaml train.head (str). One of: linear, paper.
        train_standardise: params.yaml train.standardise (bool).
        train_dropout: params.yaml train.dropout (float).
        train_l2: params.yaml train.l2 (float).
        train_seed: params.yaml train.seed (int).
        lungs_view: params.yaml lungs.view (str). One of: crop, lungs, film.
        lungs_equalise: params.yaml lungs.equalise (bool).
        lungs_masks_dir: params.yaml lungs.masks_dir (str).
        lungs_fit_share: params.yaml lungs.fit_share (float).
        lungs_size: params.yaml lungs.size (int).
        lungs_epochs: params.yaml lungs.epochs (int).
        lungs_seed: params.yaml lungs.seed (int).
        evaluate_threshold: params.yaml evaluate.threshold (float).
        evaluate_threshold_strategy: params.yaml evaluate.threshold_strategy (str). One of: max_f1, target_sensitivity, fixed.
        evaluate_target_sensitivity: params.yaml evaluate.target_sensitivity (float).
        evaluate_threshold_min_per_class: params.yaml evaluate.threshold_min_per_class (int).
        evaluate_threshold_prior_images: params.yaml evaluate.threshold_prior_images (float).
        evaluate_bootstrap_samples: params.yaml evaluate.bootstrap_samples (int).
        evaluate_prevalence: params.yaml evaluate.prevalence (float).
        evaluate_cv_folds: params.yaml evaluate.cv_folds (int).
        evaluate_external_dir: params.yaml evaluate.external_dir (str).
        ood_enabled: params.yaml ood.enabled (bool).
        ood_quantile: params.yaml ood.quantile (float).
        ood_folds: params.yaml ood.folds (int).
        ood_max_components: params.yaml ood.max_components (int).
        ood_target_accept: params.yaml ood.target_accept (float).
        ood_target_reject: params.yaml ood.target_reject (float).
        ood_shift_quantile: params.yaml ood.shift_quantile (float).
        ood_drift_components: params.yaml ood.drift_components (int).
        scope_enabled: params.yaml scope.enabled (bool).
        scope_reference_dir: params.yaml scope.reference_dir (str).
        scope_accept_quantile: params.yaml scope.accept_quantile (float).
        scope_c: params.yaml scope.c (float).
        scope_folds: params.yaml scope.folds (int).
        scope_target_accept: params.yaml scope.target_accept (float).
        scope_target_refuse: params.yaml scope.target_refuse (float).
        gate_min_f1: params.yaml gate.min_f1 (float).
        gate_min_delta: params.yaml gate.min_delta (float).
        gate_min_val_per_class: params.yaml gate.min_val_per_class (int).
        gate_max_lungs_hidden_auc: params.yaml gate.max_lungs_hidden_auc (float).
        gate_min_external_specificity: params.yaml gate.min_external_specificity (float).
        register_model_name: params.yaml register.model_name (str).
        register_alias: params.yaml register.alias (str).
        mlflow_experiment: params.yaml mlflow.experiment (str).
        profile: The params.yaml profile the values came from (cpu, paper).

    Returns:
        run_id: The MLflow parent run's id."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "ingest.positive_class": ingest_positive_class,
            "ingest.split": ingest_split,
            "ingest.seed": ingest_seed,
            "ingest.near_duplicate_bits": ingest_near_duplicate_bits,
            "ingest.workers": ingest_workers,
            "validate.expected_classes": validate_expected_classes,
            "validate.min_width": validate_min_width,
            "validate.min_height": validate_min_height,
            "validate.allowed_modes": validate_allowed_modes,
            "validate.min_class_share": validate_min_class_share,
            "validate.max_class_share": validate_max_class_share,
            "augment.rotation_deg": augment_rotation_deg,
            "augment.width_shift": augment_width_shift,
            "augment.height_shift": augment_height_shift,
            "augment.shear": augment_shear,
            "augment.zoom": augment_zoom,
            "augment.horizontal_flip": augment_horizontal_flip,
            "augment.mirror_both": augment_mirror_both,
            "augment.shuffle_buffer": augment_shuffle_buffer,
            "augment.preview_images": augment_preview_images,
            "train.image_size": train_image_size,
            "train.batch_size": train_batch_size,
            "train.epochs": train_epochs,
            "train.learning_rate": train_learning_rate,
            "train.momentum": train_momentum,
            "train.clipnorm": train_clipnorm,
            "train.weights": train_weights,
            "train.weights_path": train_weights_path,
            "train.freeze_base": train_freeze_base,
            "train.base_input": train_base_input,
            "train.mixed_precision": train_mixed_precision,
            "train.flip_average": train_flip_average,
            "train.augment_on": train_augment_on,
            "train.pooling": train_pooling,
            "train.stat_blocks": train_stat_blocks,
            "train.stat_zones": train_stat_zones,
            "train.runtime": train_runtime,
            "train.precision": train_precision,
            "train.head": train_head,
            "train.standardise": train_standardise,
            "train.dropout": train_dropout,
            "train.l2": train_l2,
            "train.seed": train_seed,
            "lungs.view": lungs_view,
            "lungs.equalise": lungs_equalise,
            "lungs.masks_dir": lungs_masks_dir,
            "lungs.fit_share": lungs_fit_share,
            "lungs.size": lungs_size,
            "lungs.epochs": lungs_epochs,
            "lungs.seed": lungs_seed,
            "evaluate.threshold": evaluate_threshold,
            "evaluate.threshold_strategy": evaluate_threshold_strategy,
            "evaluate.target_sensitivity": evaluate_target_sensitivity,
            "evaluate.threshold_min_per_class": evaluate_threshold_min_per_class,
            "evaluate.threshold_prior_images": evaluate_threshold_prior_images,
            "evaluate.bootstrap_samples": evaluate_bootstrap_samples,
            "evaluate.prevalence": evaluate_prevalence,
            "evaluate.cv_folds": evaluate_cv_folds,
            "evaluate.external_dir": evaluate_external_dir,
            "ood.enabled": ood_enabled,
            "ood.quantile": ood_quantile,
            "ood.folds": ood_folds,
            "ood.max_components": ood_max_components,
            "ood.target_accept": ood_target_accept,
            "ood.target_reject": ood_target_reject,
            "ood.shift_quantile": ood_shift_quantile,
            "ood.drift_components": ood_drift_components,
            "scope.enabled": scope_enabled,
            "scope.reference_dir": scope_reference_dir,
            "scope.accept_quantile": scope_accept_quantile,
            "scope.c": scope_c,
            "scope.folds": scope_folds,
            "scope.target_accept": scope_target_accept,
            "scope.target_refuse": scope_target_refuse,
            "gate.min_f1": gate_min_f1,
            "gate.min_delta": gate_min_delta,
            "gate.min_val_per_class": gate_min_val_per_class,
            "gate.max_lungs_hidden_auc": gate_max_lungs_hidden_auc,
            "gate.min_external_specificity": gate_min_external_specificity,
            "register.model_name": register_model_name,
            "register.alias": register_alias,
            "mlflow.experiment": mlflow_experiment,
        },
        profile,
    )
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


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def augment(
    dataset: Input[Dataset],
    tracking_uri: str,
    parent_run_id: str,
    augmentation: Output[Dataset],
    augment_rotation_deg: float,
    augment_width_shift: float,
    augment_height_shift: float,
    augment_shear: float,
    augment_zoom: float,
    augment_horizontal_flip: bool,
    augment_mirror_both: bool,
    augment_shuffle_buffer: int,
    augment_preview_images: int,
    train_image_size: int,
    train_seed: int,
):
    """The paper's augmentation (applied on the fly by training, train split only) and a preview.

    Args:
        dataset: The ingested dataset.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        augmentation: Output: augmentation.json (the parameters training applies) and a preview grid.
        augment_rotation_deg: params.yaml augment.rotation_deg (float).
        augment_width_shift: params.yaml augment.width_shift (float).
        augment_height_shift: params.yaml augment.height_shift (float).
        augment_shear: params.yaml augment.shear (float).
        augment_zoom: params.yaml augment.zoom (float).
        augment_horizontal_flip: params.yaml augment.horizontal_flip (bool).
        augment_mirror_both: params.yaml augment.mirror_both (bool).
        augment_shuffle_buffer: params.yaml augment.shuffle_buffer (int).
        augment_preview_images: params.yaml augment.preview_images (int).
        train_image_size: params.yaml train.image_size (int).
        train_seed: params.yaml train.seed (int)."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "augment.rotation_deg": augment_rotation_deg,
            "augment.width_shift": augment_width_shift,
            "augment.height_shift": augment_height_shift,
            "augment.shear": augment_shear,
            "augment.zoom": augment_zoom,
            "augment.horizontal_flip": augment_horizontal_flip,
            "augment.mirror_both": augment_mirror_both,
            "augment.shuffle_buffer": augment_shuffle_buffer,
            "augment.preview_images": augment_preview_images,
            "train.image_size": train_image_size,
            "train.seed": train_seed,
        },
        "cpu",
    )
    from cxr.steps.augment import augment_step
    from cxr.steps.context import RunContext

    spec = augment_step(RunContext(tracking_uri, parent_run_id), dataset.path, augmentation.path, params)
    augmentation.metadata.update({k: str(v) for k, v in spec.items()})


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    augmentation: Input[Dataset],
    tracking_uri: str,
    parent_run_id: str,
    model: Output[Model],
    ingest_positive_class: str,
    ingest_split: dict,
    ingest_seed: int,
    ingest_near_duplicate_bits: int,
    ingest_workers: int,
    augment_rotation_deg: float,
    augment_width_shift: float,
    augment_height_shift: float,
    augment_shear: float,
    augment_zoom: float,
    augment_horizontal_flip: bool,
    augment_mirror_both: bool,
    augment_shuffle_buffer: int,
    augment_preview_images: int,
    train_image_size: int,
    train_batch_size: int,
    train_epochs: int,
    train_learning_rate: float,
    train_momentum: float,
    train_clipnorm: float,
    train_weights: str,
    train_weights_path: str,
    train_freeze_base: bool,
    train_base_input: str,
    train_mixed_precision: str,
    train_flip_average: bool,
    train_augment_on: str,
    train_pooling: str,
    train_stat_blocks: list,
    train_stat_zones: list,
    train_runtime: str,
    train_precision: str,
    train_head: str,
    train_standardise: bool,
    train_dropout: float,
    train_l2: float,
    train_seed: int,
    lungs_view: str,
    lungs_equalise: bool,
    lungs_masks_dir: str,
    lungs_fit_share: float,
    lungs_size: int,
    lungs_epochs: int,
    lungs_seed: int,
    evaluate_threshold: float,
    evaluate_threshold_strategy: str,
    evaluate_target_sensitivity: float,
    evaluate_threshold_min_per_class: int,
    evaluate_threshold_prior_images: float,
    evaluate_bootstrap_samples: int,
    evaluate_prevalence: float,
    evaluate_cv_folds: int,
    evaluate_external_dir: str,
    ood_enabled: bool,
    ood_quantile: float,
    ood_folds: int,
    ood_max_components: int,
    ood_target_accept: float,
    ood_target_reject: float,
    ood_shift_quantile: float,
    ood_drift_components: int,
    scope_enabled: bool,
    scope_reference_dir: str,
    scope_accept_quantile: float,
    scope_c: float,
    scope_folds: int,
    scope_target_accept: float,
    scope_target_refuse: float,
    profile: str,
) -> NamedTuple("TrainOutputs", [("model_uri", str)]):
    """VGG16 (frozen in the CPU profile, fine-tuned in the paper's) and its head (`train.head`: a linear
    probe, or the paper's Dense 1024 -> 512 -> 1), fitted, calibrated and thresholded on held-out images.

    Args:
        dataset: The ingested dataset.
        augmentation: The augmentation spec from the augment step.
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        model: Output: model.keras and config.json (image size, threshold and how it was chosen).
        ingest_positive_class: params.yaml ingest.positive_class (str).
        ingest_split: params.yaml ingest.split (dict).
        ingest_seed: params.yaml ingest.seed (int).
        ingest_near_duplicate_bits: params.yaml ingest.near_duplicate_bits (int).
        ingest_workers: params.yaml ingest.workers (int).
        augment_rotation_deg: params.yaml augment.rotation_deg (float).
        augment_width_shift: params.yaml augment.width_shift (float).
        augment_height_shift: params.yaml augment.height_shift (float).
        augment_shear: params.yaml augment.shear (float).
        augment_zoom: params.yaml augment.zoom (float).
        augment_horizontal_flip: params.yaml augment.horizontal_flip (bool).
        augment_mirror_both: params.yaml augment.mirror_both (bool).
        augment_shuffle_buffer: params.yaml augment.shuffle_buffer (int).
        augment_preview_images: params.yaml augment.preview_images (int).
        train_image_size: params.yaml train.image_size (int).
        train_batch_size: params.yaml train.batch_size (int).
        train_epochs: params.yaml train.epochs (int).
        train_learning_rate: params.yaml train.learning_rate (float).
        train_momentum: params.yaml train.momentum (float).
        train_clipnorm: params.yaml train.clipnorm (float).
        train_weights: params.yaml train.weights (str). One of: hed, imagenet, none.
        train_weights_path: params.yaml train.weights_path (str).
        train_freeze_base: params.yaml train.freeze_base (bool).
        train_base_input: params.yaml train.base_input (str). One of: caffe, rescale.
        train_mixed_precision: params.yaml train.mixed_precision (str). One of: auto, on, off, true, false.
        train_flip_average: params.yaml train.flip_average (bool).
        train_augment_on: params.yaml train.augment_on (str). One of: auto, data, model.
        train_pooling: params.yaml train.pooling (str). One of: block_stats, flatten, average.
        train_stat_blocks: params.yaml train.stat_blocks (list).
        train_stat_zones: params.yaml train.stat_zones (list).
        train_runtime: params.yaml train.runtime (str). One of: auto, tensorflow, openvino.
        train_precision: params.yaml train.precision (str). One of: fp32, bf16, int8.
        train_head: params.yaml train.head (str). One of: linear, paper.
        train_standardise: params.yaml train.standardise (bool).
        train_dropout: params.yaml train.dropout (float).
        train_l2: params.yaml train.l2 (float).
        train_seed: params.yaml train.seed (int).
        lungs_view: params.yaml lungs.view (str). One of: crop, lungs, film.
        lungs_equalise: params.yaml lungs.equalise (bool).
        lungs_masks_dir: params.yaml lungs.masks_dir (str).
        lungs_fit_share: params.yaml lungs.fit_share (float).
        lungs_size: params.yaml lungs.size (int).
        lungs_epochs: params.yaml lungs.epochs (int).
        lungs_seed: params.yaml lungs.seed (int).
        evaluate_threshold: params.yaml evaluate.threshold (float).
        evaluate_threshold_strategy: params.yaml evaluate.threshold_strategy (str). One of: max_f1, target_sensitivity, fixed.
        evaluate_target_sensitivity: params.yaml evaluate.target_sensitivity (float).
        evaluate_threshold_min_per_class: params.yaml evaluate.threshold_min_per_class (int).
        evaluate_threshold_prior_images: params.yaml evaluate.threshold_prior_images (float).
        evaluate_bootstrap_samples: params.yaml evaluate.bootstrap_samples (int).
        evaluate_prevalence: params.yaml evaluate.prevalence (float).
        evaluate_cv_folds: params.yaml evaluate.cv_folds (int).
        evaluate_external_dir: params.yaml evaluate.external_dir (str).
        ood_enabled: params.yaml ood.enabled (bool).
        ood_quantile: params.yaml ood.quantile (float).
        ood_folds: params.yaml ood.folds (int).
        ood_max_components: params.yaml ood.max_components (int).
        ood_target_accept: params.yaml ood.target_accept (float).
        ood_target_reject: params.yaml ood.target_reject (float).
        ood_shift_quantile: params.yaml ood.shift_quantile (float).
        ood_drift_components: params.yaml ood.drift_components (int).
        scope_enabled: params.yaml scope.enabled (bool).
        scope_reference_dir: params.yaml scope.reference_dir (str).
        scope_accept_quantile: params.yaml scope.accept_quantile (float).
        scope_c: params.yaml scope.c (float).
        scope_folds: params.yaml scope.folds (int).
        scope_target_accept: params.yaml scope.target_accept (float).
        scope_target_refuse: params.yaml scope.target_refuse (float).
        profile: The params.yaml profile the values came from (cpu, paper).

    Returns:
        model_uri: The logged MLflow model (models:/m-<id>)."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "ingest.positive_class": ingest_positive_class,
            "ingest.split": ingest_split,
            "ingest.seed": ingest_seed,
            "ingest.near_duplicate_bits": ingest_near_duplicate_bits,
            "ingest.workers": ingest_workers,
            "augment.rotation_deg": augment_rotation_deg,
            "augment.width_shift": augment_width_shift,
            "augment.height_shift": augment_height_shift,
            "augment.shear": augment_shear,
            "augment.zoom": augment_zoom,
            "augment.horizontal_flip": augment_horizontal_flip,
            "augment.mirror_both": augment_mirror_both,
            "augment.shuffle_buffer": augment_shuffle_buffer,
            "augment.preview_images": augment_preview_images,
            "train.image_size": train_image_size,
            "train.batch_size": train_batch_size,
            "train.epochs": train_epochs,
            "train.learning_rate": train_learning_rate,
            "train.momentum": train_momentum,
            "train.clipnorm": train_clipnorm,
            "train.weights": train_weights,
            "train.weights_path": train_weights_path,
            "train.freeze_base": train_freeze_base,
            "train.base_input": train_base_input,
            "train.mixed_precision": train_mixed_precision,
            "train.flip_average": train_flip_average,
            "train.augment_on": train_augment_on,
            "train.pooling": train_pooling,
            "train.stat_blocks": train_stat_blocks,
            "train.stat_zones": train_stat_zones,
            "train.runtime": train_runtime,
            "train.precision": train_precision,
            "train.head": train_head,
            "train.standardise": train_standardise,
            "train.dropout": train_dropout,
            "train.l2": train_l2,
            "train.seed": train_seed,
            "lungs.view": lungs_view,
            "lungs.equalise": lungs_equalise,
            "lungs.masks_dir": lungs_masks_dir,
            "lungs.fit_share": lungs_fit_share,
            "lungs.size": lungs_size,
            "lungs.epochs": lungs_epochs,
            "lungs.seed": lungs_seed,
            "evaluate.threshold": evaluate_threshold,
            "evaluate.threshold_strategy": evaluate_threshold_strategy,
            "evaluate.target_sensitivity": evaluate_target_sensitivity,
            "evaluate.threshold_min_per_class": evaluate_threshold_min_per_class,
            "evaluate.threshold_prior_images": evaluate_threshold_prior_images,
            "evaluate.bootstrap_samples": evaluate_bootstrap_samples,
            "evaluate.prevalence": evaluate_prevalence,
            "evaluate.cv_folds": evaluate_cv_folds,
            "evaluate.external_dir": evaluate_external_dir,
            "ood.enabled": ood_enabled,
            "ood.quantile": ood_quantile,
            "ood.folds": ood_folds,
            "ood.max_components": ood_max_components,
            "ood.target_accept": ood_target_accept,
            "ood.target_reject": ood_target_reject,
            "ood.shift_quantile": ood_shift_quantile,
            "ood.drift_components": ood_drift_components,
            "scope.enabled": scope_enabled,
            "scope.reference_dir": scope_reference_dir,
            "scope.accept_quantile": scope_accept_quantile,
            "scope.c": scope_c,
            "scope.folds": scope_folds,
            "scope.target_accept": scope_target_accept,
            "scope.target_refuse": scope_target_refuse,
        },
        profile,
    )
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


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    tracking_uri: str,
    parent_run_id: str,
    metrics: Output[Metrics],
    val_classification: Output[ClassificationMetrics],
    test_classification: Output[ClassificationMetrics],
    report: Output[Dataset],
    train_seed: int,
    evaluate_bootstrap_samples: int,
    evaluate_prevalence: float,
    evaluate_external_dir: str,
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
        train_seed: params.yaml train.seed (int).
        evaluate_bootstrap_samples: params.yaml evaluate.bootstrap_samples (int).
        evaluate_prevalence: params.yaml evaluate.prevalence (float).
        evaluate_external_dir: params.yaml evaluate.external_dir (str).

    Returns:
        val_f1: Validation F1 (COVID positive)."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "train.seed": train_seed,
            "evaluate.bootstrap_samples": evaluate_bootstrap_samples,
            "evaluate.prevalence": evaluate_prevalence,
            "evaluate.external_dir": evaluate_external_dir,
        },
        "cpu",
    )
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


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate(
    dataset: Input[Dataset],
    report: Input[Dataset],
    tracking_uri: str,
    mlflow_ui: str,
    parent_run_id: str,
    summary: Output[Markdown],
    decision: Output[Artifact],
    evaluate_bootstrap_samples: int,
    gate_min_f1: float,
    gate_min_delta: float,
    gate_min_val_per_class: int,
    gate_max_lungs_hidden_auc: float,
    gate_min_external_specificity: float,
    register_model_name: str,
    register_alias: str,
    mlflow_experiment: str,
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
        evaluate_bootstrap_samples: params.yaml evaluate.bootstrap_samples (int).
        gate_min_f1: params.yaml gate.min_f1 (float).
        gate_min_delta: params.yaml gate.min_delta (float).
        gate_min_val_per_class: params.yaml gate.min_val_per_class (int).
        gate_max_lungs_hidden_auc: params.yaml gate.max_lungs_hidden_auc (float).
        gate_min_external_specificity: params.yaml gate.min_external_specificity (float).
        register_model_name: params.yaml register.model_name (str).
        register_alias: params.yaml register.alias (str).
        mlflow_experiment: params.yaml mlflow.experiment (str).

    Returns:
        outcome: passed, failed or inconclusive."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "evaluate.bootstrap_samples": evaluate_bootstrap_samples,
            "gate.min_f1": gate_min_f1,
            "gate.min_delta": gate_min_delta,
            "gate.min_val_per_class": gate_min_val_per_class,
            "gate.max_lungs_hidden_auc": gate_max_lungs_hidden_auc,
            "gate.min_external_specificity": gate_min_external_specificity,
            "register.model_name": register_model_name,
            "register.alias": register_alias,
            "mlflow.experiment": mlflow_experiment,
        },
        "cpu",
    )
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


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(
    model_uri: str,
    decision: Input[Artifact],
    tracking_uri: str,
    parent_run_id: str,
    data_version: str,
    git_commit: str,
    ingest_positive_class: str,
    train_weights: str,
    register_model_name: str,
    register_alias: str,
    profile: str,
) -> NamedTuple("RegisterOutputs", [("version", str)]):
    """Register the gated model as a new version with the challenger alias, its gate record and model card.

    Args:
        model_uri: The MLflow model from the train step.
        decision: The gate's decision (gate.json).
        tracking_uri: MLflow tracking server or store.
        parent_run_id: The pipeline's MLflow parent run.
        data_version: The DVC version of the data the ingest step read.
        git_commit: Commit of the code that compiled the pipeline.
        ingest_positive_class: params.yaml ingest.positive_class (str).
        train_weights: params.yaml train.weights (str). One of: hed, imagenet, none.
        register_model_name: params.yaml register.model_name (str).
        register_alias: params.yaml register.alias (str).
        profile: The params.yaml profile the values came from (cpu, paper).

    Returns:
        version: The registered version number."""
    from cxr.params import from_flat

    params = from_flat(
        {
            "ingest.positive_class": ingest_positive_class,
            "train.weights": train_weights,
            "register.model_name": register_model_name,
            "register.alias": register_alias,
        },
        profile,
    )
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


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def finalize(
    tracking_uri: str, kfp_run_id: str, status: dsl.PipelineTaskFinalStatus, mlflow_experiment: str
) -> NamedTuple("FinalizeOutputs", [("closed_as", str)]):
    """Exit handler: closes the MLflow parent run however the pipeline ended (FAILED unless it succeeded).

    Args:
        tracking_uri: MLflow tracking server or store.
        kfp_run_id: The Kubeflow run id the parent run is tagged with.
        status: The pipeline's final state, filled in by Kubeflow.
        mlflow_experiment: params.yaml mlflow.experiment (str).

    Returns:
        closed_as: FAILED or FINISHED when the run was still open, '' when a step had closed it (or none was opened)."""
    from cxr.params import from_flat

    params = from_flat({"mlflow.experiment": mlflow_experiment}, "cpu")
    from cxr import events
    from cxr.tracking import runs as tracking

    closed = tracking.close_pipeline_run(
        tracking_uri, params.mlflow.experiment, kfp_run_id, status.state, status.error_message
    )
    events.figure(f"pipeline {status.state}; MLflow run " + (f"closed as {closed}" if closed else "already closed"))
    return (closed,)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
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
