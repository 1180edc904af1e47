"""The training pipeline: wiring only (steps, typed artifacts, the gate branch, the exit handler, caching,
retries, timeouts, resources).

Its inputs are where things are (data, tracking server, lineage) and every typed run parameter from
`components.parameters` (`train_learning_rate`, `gate_min_f1`, ...), defaulting to the effective params."""

import copy
import inspect
from dataclasses import dataclass

from kfp import dsl, kubernetes

from components import kfp_steps as steps
from components.parameters import PROFILE, parameter_values, pipeline_parameters
from cxr.params import Params

PIPELINE_NAME = "covid-xray-vgg16-training"
MLFLOW_SECRET_KEYS = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}
# (name, default, description): where the data and the tracking server are, and the run's lineage
LOCATION_INPUTS = (
    ("data_dir", "", "Dataset folder the pods mount; empty: fetch data_version from dvc_remote."),
    ("dvc_remote", "", "DVC remote to fetch data_version from (s3://bucket/dvc-store)."),
    ("data_version", "unversioned", "The DVC version to train on (data.dvc's md5)."),
    (
        "folder_version",
        "",
        "md5 of the data folder as a local runner read it (empty on a cluster): ingest's cache key.",
    ),
    ("tracking_uri", "", "MLflow tracking server the steps log to."),
    ("mlflow_ui", "", "MLflow UI address as a browser reaches it, for links (empty: tracking_uri)."),
    ("run_name", "", "Name of the MLflow parent run (empty: MLflow picks one)."),
    ("git_commit", "unknown", "Commit of the code that compiled the pipeline."),
    ("code_version", "", "Hash of the cxr code that compiled the pipeline: part of the cached steps' keys."),
    ("kfp_host", "", "Kubeflow Pipelines endpoint the run was submitted to (the MLflow run links back)."),
    ("image_cpu", "", "The CPU steps' image as compiled, by digest where known: the MLflow run records it."),
    ("image_gpu", "", "The training step's image as compiled, by digest where known: the MLflow run records it."),
)
# Steps that reach S3, the DVC remote or MLflow retry transient failures with exponential backoff.
RETRY = {"num_retries": 3, "backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}
TRAIN_RETRY = {**RETRY, "num_retries": 1}  # a retried training costs its whole run again: once


def with_image(component, image: str | None):
    """A copy of a component that runs in `image` (None: unchanged)."""
    if not image:
        return component
    component = copy.deepcopy(component)
    component.component_spec.implementation.container.image = image
    return component


def _signature(params: Params, inputs: dict) -> inspect.Signature:
    """The pipeline function's typed inputs: the location inputs, then every run parameter and the profile."""
    defaults = {name: inputs.get(name, default) for name, default, _ in LOCATION_INPUTS}
    defaults |= parameter_values(params)
    kinds = {p.name: p.annotation for p in pipeline_parameters()}
    return inspect.Signature(
        [
            inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value, annotation=kinds.get(name, str)
            )
            for name, value in defaults.items()
        ]
    )


def _docstring() -> str:
    lines = [f"    {name}: {text}" for name, _, text in LOCATION_INPUTS]
    lines += [f"    {p.name}: {p.description}" for p in pipeline_parameters()]
    lines.append(f"    {PROFILE}: The params.yaml profile the defaults came from (cpu, paper).")
    return "Train, gate and register the chest X-ray COVID-19 classifier.\n\nArgs:\n" + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TaskOptions:
    """How the tasks run on a cluster: secrets, GPU placement, retries and timeouts (see build_pipeline)."""

    cluster: object  # params.cluster
    data_secret: str = ""
    data_endpoint_url: str = ""
    mlflow_secret: str = ""
    gpu_placement: bool = False
    retries: bool = False
    data_pvc: str = ""  # mounted at cluster.data_dir in the ingest pod


def build_pipeline(
    params: Params,
    inputs: dict | None = None,
    images: dict[str, str] | None = None,
    data_secret: str = "",
    data_endpoint_url: str = "",
    mlflow_secret: str = "",
    gpu_placement: bool = False,
    retries: bool = False,
    data_pvc: str = "",
):
    """The pipeline, its run parameters defaulting to `params` and its location inputs to `inputs`; the
    placeholder images (steps.CPU_IMAGE, steps.GPU_IMAGE) replaced by `images`; the ingest task given the
    DVC remote's credentials from Kubernetes secret `data_secret` and its endpoint; every task the MLflow
    identity in Kubernetes secret `mlflow_secret` (keys `username`, `password`) as
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (the values never enter the package or a log);
    with `gpu_placement`, the training task on params.cluster's GPU nodes; with `retries`, retry policies on
    the tasks that reach S3, the DVC remote or MLflow (a local run fails at once instead); with `data_pvc`,
    that claim mounted at params.cluster.data_dir in the ingest pod. Timeouts from params.cluster."""
    images = images or {}
    components = {
        name: with_image(getattr(steps, name), images.get(steps.CPU_IMAGE))
        for name in ("ingest", "validate", "start_run", "augment", "evaluate", "gate", "register", "reject", "finalize")
    }
    on_gpu = bool(params.cluster.accelerator)
    components["train"] = with_image(steps.train, images.get(steps.GPU_IMAGE if on_gpu else steps.CPU_IMAGE))
    secrets = (data_secret, data_endpoint_url, mlflow_secret)
    options = TaskOptions(params.cluster, *secrets, gpu_placement, retries, data_pvc)
    signature = _signature(params, inputs or {})

    # kfp reads the pipeline's inputs from the function's signature: the location inputs and every run
    # parameter (~120, derived from the params dataclasses), set below as __signature__
    def training_pipeline(*values):
        tasks = _wire(dict(zip(signature.parameters, values, strict=True)), components, options)
        _configure(tasks, options)

    training_pipeline.__signature__ = signature
    training_pipeline.__doc__ = _docstring()
    return dsl.pipeline(name=PIPELINE_NAME)(training_pipeline)


def _call(component, args: dict, **given):
    """A task of `component`, given the pipeline inputs it declares (its run parameters) and `given`."""
    declared = component.component_spec.inputs or {}
    return component(**{k: v for k, v in args.items() if k in declared and k not in given}, **given)


def _wire(args: dict, c: dict, options: TaskOptions) -> dict:
    """The tasks, in order, with their artifacts passed along; the gate's branches; the exit handler."""
    where = {"tracking_uri": args["tracking_uri"]}
    job = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    t = {"finalize": _call(c["finalize"], args, kfp_run_id=job, **where).set_display_name("finalize")}
    with dsl.ExitHandler(t["finalize"], name="mlflow-run"):
        t["ingest"] = _call(c["ingest"], args).set_display_name("ingest")
        _give_data_access(t["ingest"], options)
        dataset = t["ingest"].outputs["dataset"]
        t["validate"] = _call(c["validate"], args, dataset=dataset).set_display_name("validate")
        t["start"] = _call(
            c["start_run"],
            args,
            dataset=dataset,
            validation=t["validate"].outputs["validation"],
            data_version_read=t["ingest"].outputs["data_version"],
            kfp_run_id=job,
        ).set_display_name("start MLflow run")
        run = {"parent_run_id": t["start"].outputs["run_id"], **where}
        t["augment"] = _call(c["augment"], args, dataset=dataset, **run).set_display_name("augment")
        augmentation = t["augment"].outputs["augmentation"]
        t["train"] = _call(c["train"], args, dataset=dataset, augmentation=augmentation, **run)
        _place_training(t["train"], options)
        model = t["train"].outputs["model"]
        t["evaluate"] = _call(c["evaluate"], args, dataset=dataset, model=model, **run).set_display_name("evaluate")
        report = t["evaluate"].outputs["report"]
        t["gate"] = _call(c["gate"], args, dataset=dataset, report=report, **run).set_display_name("gate")
        outcome, decision = t["gate"].outputs["outcome"], t["gate"].outputs["decision"]
        with dsl.If(outcome == "passed", name="gate-passed"):
            t["register"] = _call(
                c["register"],
                args,
                model_uri=t["train"].outputs["model_uri"],
                decision=decision,
                data_version=t["ingest"].outputs["data_version"],
                **run,
            ).set_display_name("register")
        with dsl.Elif(outcome == "inconclusive", name="gate-inconclusive"):
            t["inconclusive"] = c["reject"](decision=decision, **run).set_display_name("inconclusive")
        with dsl.Else(name="gate-failed"):
            t["reject"] = c["reject"](decision=decision, **run).set_display_name("not registered")
    return t


def _give_data_access(ingest, options: TaskOptions) -> None:
    """The ingest task's way to the data: the DVC remote's credentials and endpoint, or the claim holding
    the dataset mounted at cluster.data_dir."""
    if options.data_pvc:
        kubernetes.mount_pvc(ingest, pvc_name=options.data_pvc, mount_path=options.cluster.data_dir)
    if options.data_secret:
        keys = {"access-key-id": "AWS_ACCESS_KEY_ID", "secret-access-key": "AWS_SECRET_ACCESS_KEY"}
        kubernetes.use_secret_as_env(ingest, secret_name=options.data_secret, secret_key_to_env=keys)
    if options.data_endpoint_url:
        ingest.set_env_variable("AWS_ENDPOINT_URL", options.data_endpoint_url)


def _place_training(train, options: TaskOptions) -> None:
    """One accelerator (params.cluster.accelerator) on the GPU nodes; none on a CPU-only cluster."""
    accelerator = options.cluster.accelerator
    if not accelerator:
        train.set_display_name("train (CPU)").set_memory_request("8G").set_cpu_request("2")
        return
    train.set_display_name("train (GPU)").set_accelerator_type(accelerator).set_accelerator_limit(1)
    train.set_memory_request("16G").set_cpu_request("4")
    if options.gpu_placement:
        for key, value in options.cluster.gpu_node_selector.items():
            kubernetes.add_node_selector(train, key, str(value))
        for toleration in options.cluster.gpu_tolerations:
            kubernetes.add_toleration(train, **dict(toleration))


def _configure(tasks: dict, options: TaskOptions) -> None:
    """Caching, timeouts, retries and the MLflow identity of every task.

    Cached: ingest (keyed on the data version and the ingest parameters) and validation, which write
    nothing to MLflow; but not ingest from a mounted volume (cluster.data_pvc), whose content can change in
    place under the same inputs. Never cached: whatever opens or writes the MLflow run, reads the champion or
    writes the registry."""
    cached = ("validate",) if options.data_pvc else ("ingest", "validate")
    for name, task in tasks.items():
        task.set_caching_options(name in cached)
        training = name == "train"
        kubernetes.set_timeout(task, options.cluster.train_timeout_s if training else options.cluster.step_timeout_s)
        if options.retries and name != "validate":  # validation reads only its input artifact
            task.set_retry(**(TRAIN_RETRY if training else RETRY))
        if options.mlflow_secret:
            kubernetes.use_secret_as_env(task, secret_name=options.mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS)
