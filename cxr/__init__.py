"""cxr: the core library of the COVID-19 chest X-ray classifier. It knows nothing about Kubeflow.

Its subpackages are layered: a module imports only from its own subpackage and from those before it in
`LAYERS`, never from one after it (imports inside functions included; tests/unit/test_layers.py checks
it). Above the library: `components` (the Kubeflow components), then `pipelines`, then `cxr_cli`.
"""

import os

from cxr.startup import quiet_tensorflow_import

__version__ = "0.1.0"

# Artifacts travel through the tracking server, whoever downloads them: the project's clients hold no S3
# credentials and may not reach the store (a laptop through a port-forward, the web app behind its
# NetworkPolicy). An MLflow 3 server on S3 otherwise hands clients presigned URLs to the store's
# in-cluster address (http://minio:9000/...), where every download hangs (found by make cluster-rehearsal).
os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")

# TensorFlow's native libraries print two lines on every load that no setting reaches (cxr/startup.py).
quiet_tensorflow_import()

LAYERS = (
    "startup",  # what every process does first: TensorFlow's import without its start-up noise
    "errors",  # CxrError: the one sentence a user sees
    "events",  # progress events
    "aliases",  # the registry's alias names
    "params",  # typed parameters (params.yaml)
    "data",  # images, manifests, validation, augmentation, lung views
    "model",  # the network, the lung segmenter, fitting one network
    "safety",  # input gate, scope check, drift reference: fitted on the model's features
    "evaluation",  # metrics, splits, thresholds, the shortcut probe, the external check
    "inference",  # the served classifier: preprocessing, scoring, Grad-CAM
    "training",  # the train stage: classifier, calibration, then the safety monitors
    "tracking",  # MLflow runs, the training signature
    "release",  # gate, card, registry, promotion, retraining
    "steps",  # the pipeline's steps as plain functions
    "serving",  # the web app
    "mlflow_auth",  # the MLflow server plug-in
)
PROJECT_LAYERS = ("cxr", "components", "pipelines", "cxr_cli")
