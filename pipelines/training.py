"""The training pipeline: wiring only (steps, typed artifacts, the gate branch, the exit handler, resources)."""

import copy

from kfp import dsl, kubernetes

from components import steps

PIPELINE_NAME = "covid-xray-vgg16-training"
MLFLOW_SECRET_KEYS = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}


def with_image(component, image: str | None):
    """A copy of a component that runs in `image` (None: unchanged)."""
    if not image:
        return component
    component = copy.deepcopy(component)
    component.component_spec.implementation.container.image = image
    return component


def build_pipeline(
    gpu_node_selector: dict | None = None,
    gpu_tolerations: list | None = None,
    images: dict[str, str] | None = None,
    data_secret: str = "",
    data_endpoint_url: str = "",
    mlflow_secret: str = "",
):
    """The pipeline, with the training task's node selector and tolerations (kfp-kubernetes) set, the
    placeholder images (steps.CPU_IMAGE, steps.GPU_IMAGE) replaced by `images`, the ingest task given
    the DVC remote's credentials from Kubernetes secret `data_secret` and its endpoint, and every task
    the MLflow identity in Kubernetes secret `mlflow_secret` (keys `username`, `password`) as
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD: the values never enter the package or a log."""
    images = images or {}
    cpu = {
        name: with_image(getattr(steps, name), images.get(steps.CPU_IMAGE))
        for name in ("ingest", "validate", "augment", "evaluate", "gate", "register", "reject", "finalize")
    }
    train_step = with_image(steps.train, images.get(steps.GPU_IMAGE))

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Ingest, validate, augment, train (GPU), evaluate, gate on validation F1 and register "
        "the chest X-ray COVID-19 classifier.",
    )
    def training_pipeline(
        data_dir: str,
        params_json: str,
        tracking_uri: str,
        run_name: str = "",
        data_version: str = "unversioned",
        git_commit: str = "unknown",
        dvc_remote: str = "",
    ):
        common = {"params_json": params_json, "tracking_uri": tracking_uri}
        finalize = cpu["finalize"](kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **common).set_display_name("finalize")
        with dsl.ExitHandler(finalize, name="mlflow-run"):
            ingest = cpu["ingest"](
                data_dir=data_dir,
                run_name=run_name,
                data_version=data_version,
                git_commit=git_commit,
                dvc_remote=dvc_remote,
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                **common,
            ).set_display_name("ingest")
            if data_secret:
                keys = {"access-key-id": "AWS_ACCESS_KEY_ID", "secret-access-key": "AWS_SECRET_ACCESS_KEY"}
                kubernetes.use_secret_as_env(ingest, secret_name=data_secret, secret_key_to_env=keys)
            if data_endpoint_url:
                ingest.set_env_variable("AWS_ENDPOINT_URL", data_endpoint_url)
            run_id = ingest.outputs["run_id"]
            dataset = ingest.outputs["dataset"]
            validate = cpu["validate"](dataset=dataset, parent_run_id=run_id, **common).set_display_name("validate")
            augment = cpu["augment"](dataset=dataset, parent_run_id=run_id, **common).after(validate)
            train = train_step(
                dataset=dataset, augmentation=augment.outputs["augmentation"], parent_run_id=run_id, **common
            )
            train.set_display_name("train (GPU)").set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
            train.set_memory_request("16G").set_cpu_request("4")
            for key, value in (gpu_node_selector or {}).items():
                kubernetes.add_node_selector(train, key, str(value))
            for toleration in gpu_tolerations or []:
                kubernetes.add_toleration(train, **toleration)
            evaluate = cpu["evaluate"](dataset=dataset, model=train.outputs["model"], parent_run_id=run_id, **common)
            gate = cpu["gate"](
                dataset=dataset, report=evaluate.outputs["report"], parent_run_id=run_id, **common
            ).set_display_name("gate")
            outcome, decision = gate.outputs["outcome"], gate.outputs["decision"]
            with dsl.If(outcome == "passed", name="gate-passed"):
                register = cpu["register"](
                    model_uri=train.outputs["model_uri"],
                    decision=decision,
                    parent_run_id=run_id,
                    data_version=ingest.outputs["data_version"],
                    git_commit=git_commit,
                    **common,
                )
            with dsl.Elif(outcome == "inconclusive", name="gate-inconclusive"):
                inconclusive = cpu["reject"](decision=decision, tracking_uri=tracking_uri, parent_run_id=run_id)
                inconclusive.set_display_name("inconclusive")
            with dsl.Else(name="gate-failed"):
                reject = cpu["reject"](decision=decision, tracking_uri=tracking_uri, parent_run_id=run_id)
        # Every run opens its own MLflow run and the champion may change between runs: never reuse outputs.
        for task in (ingest, validate, augment, train, evaluate, gate, register, inconclusive, reject, finalize):
            task.set_caching_options(False)
            if mlflow_secret:
                kubernetes.use_secret_as_env(task, secret_name=mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS)

    return training_pipeline
